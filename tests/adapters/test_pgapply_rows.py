"""Keyless tables in the apply rounds (cutover/adapters/pgapply_rows.py) against real
PostgreSQL (the clusters and the World of tests/adapters/test_pgapply.py): inserts applied
exactly once, kill -9 included; rewrites replace the table; logged row text reads back the
same whatever the writer's session settings."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from collections.abc import Callable

import pytest
from test_pgapply import World, world_factory  # noqa: F401  (fixture)

from cutover.adapters import pgapply, pgcapture, pgstaging
from cutover.sandbox import pgcluster

# "hist" is the typical insert-only history table (no key); "acc" a keyed one.
SCHEMA = (
    "CREATE TABLE acc (id int PRIMARY KEY, v int)",
    "CREATE TABLE hist (aid int, delta int, note text)",
    "INSERT INTO acc SELECT g, 0 FROM generate_series(1, 100) g",
    "INSERT INTO hist SELECT g % 10, g, 'seed' FROM generate_series(1, 50) g",
    "CREATE TABLE nothing ()",  # keyless, and no column at all: rows are all alike
    "INSERT INTO nothing DEFAULT VALUES",
)
COUNT_NOTHING = "SELECT count(*) FROM nothing;"
HIST_ORDER = "aid, delta, note"


def hist(world: World, conn: object) -> list[tuple[object, ...]]:
    return world.rows(conn, "hist", HIST_ORDER)  # type: ignore[arg-type]


def applied(world: World) -> list[list[str]]:
    return pgcapture.query(
        world.pg, world.target, "SELECT name, since, position FROM _cutover.applied ORDER BY 1;"
    )


@pytest.mark.slow
def test_inserts_of_a_keyless_table_are_applied_once_round_after_round(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=SCHEMA)
    assert [t.name for t in world.plan.logged] == ["public.hist", "public.nothing"]
    # Equal rows twice: a keyless table may hold duplicates, and each must arrive once.
    world.heroku.execute("INSERT INTO hist VALUES (1, 1, 'dup'), (1, 1, 'dup')")
    first = world.apply(world.since)  # no position on the target yet: replaced whole
    assert hist(world, world.target) == hist(world, world.source)
    assert applied(world)[0] == ["public.hist", world.since, first.position]
    world.heroku.execute(
        "INSERT INTO hist VALUES (2, 2, 'dup'), (2, 2, 'dup')",
        "INSERT INTO nothing DEFAULT VALUES",
        "INSERT INTO nothing DEFAULT VALUES",
    )
    second = world.apply(first.position)
    assert set(second.tables) == {"public.hist", "public.nothing"}
    assert second.upserted == 4 and second.entries == 4
    assert pgcapture.query(world.pg, world.target, COUNT_NOTHING) == [["3"]]
    assert hist(world, world.target) == hist(world, world.source)
    # Nothing new: the table's position moves with the round's, nothing is written.
    third = world.apply(second.position)
    assert third.tables == () and third.upserted == 0
    assert applied(world) == [
        ["public.hist", second.position, third.position],
        ["public.nothing", second.position, third.position],
    ]
    # The synced marker counted that round's own write (the position's UPDATE): a later sync's
    # guard, in a new session, finds no writes since.
    time.sleep(1.5)  # past PostgreSQL's 1 s stats flush interval, for any late counts
    assert pgstaging.guard(world.pg, world.target, force=True) is None
    world.heroku.execute("INSERT INTO hist VALUES (3, 3, 'last')")
    last = world.apply(third.position, final=True)
    assert last.whole == () and last.tables == ("public.hist",) and last.upserted == 1
    assert hist(world, world.target) == hist(world, world.source)
    time.sleep(1.5)
    assert pgstaging.guard(world.pg, world.target, force=True) is None


@pytest.mark.slow
def test_an_update_delete_or_truncate_of_a_keyless_table_replaces_it_whole(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=SCHEMA)
    position = world.apply(world.since).position
    for change in (
        "UPDATE hist SET note = 'changed' WHERE aid = 3",
        "DELETE FROM hist WHERE aid = 4",
        "TRUNCATE hist",
    ):
        world.heroku.execute(change, "INSERT INTO hist VALUES (7, 7, 'after')")
        result = world.apply(position)
        assert result.tables == ("public.hist",), change
        assert hist(world, world.target) == hist(world, world.source), change
        position = result.position
    # An UPDATE or DELETE that touched no row rewrote nothing: only the insert is applied.
    world.heroku.execute(
        "UPDATE hist SET note = 'x' WHERE aid = -1",
        "DELETE FROM hist WHERE aid = -1",
        "INSERT INTO hist VALUES (8, 8, 'only')",
    )
    result = world.apply(position)
    assert result.upserted == 1 and result.entries == 1
    assert hist(world, world.target) == hist(world, world.source)


# Types whose text depends on the session (PostgreSQL docs, "Date/Time Output", "Interval
# Output", "Floating-Point Types", "bytea Output Format"). A column named n, as the insert
# trigger's alias of the transition table: `n::text` took the column, (n.*)::text is the row.
ODD_SCHEMA = (
    "CREATE TABLE odd (t timestamp, tz timestamptz, d date, i interval, f float8, b bytea, "
    "n numeric, j jsonb, a int[], s text)",
)
ODD_SESSION = (
    "SET DateStyle = 'SQL, DMY'",
    "SET TimeZone = 'Asia/Kathmandu'",
    "SET IntervalStyle = 'sql_standard'",
    "SET extra_float_digits = -3",
    "SET bytea_output = 'escape'",
)


@pytest.mark.slow
def test_logged_rows_read_back_the_same_whatever_the_writers_session_printed(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=ODD_SCHEMA)
    position = world.apply(world.since).position
    with pgcluster.connect(
        world.heroku.cluster, world.heroku.dbname, world.heroku.owner, world.heroku.password
    ) as conn:
        for setting in ODD_SESSION:
            conn.execute(setting)
        conn.execute(
            "INSERT INTO odd VALUES ('2024-02-03 04:05:06.789', '2024-02-03 04:05:06+00', "
            "'2024-02-03', '1 day 02:03:04.5', 0.1 + 0.2, '\\x00ff5c27'::bytea, 1.50, "
            """'{"k": [1, "t\\"ab\\t"]}', '{1,NULL,3}', E'quote '' tab\\t nl\\n back\\\\ (,)')"""
        )
        conn.execute("INSERT INTO odd (s) VALUES (NULL), ('')")
    result = world.apply(position)
    assert result.upserted == 3
    order = "s NULLS FIRST"
    exact = "SELECT t, tz, d, i, f, b, n, j, a, s, f::text FROM odd ORDER BY s NULLS FIRST"
    assert world.rows(world.target, "odd", order) == world.rows(world.source, "odd", order)
    source = pgcapture.query(world.pg, world.source, exact + ";")
    assert pgcapture.query(world.pg, world.target, exact + ";") == source


def _round_in_child(world: World, since: str) -> None:
    world.apply(since, batch_keys=200, jobs=1)


@pytest.mark.slow
def test_kill_9_after_the_keyless_commit_then_again_inserts_nothing_twice(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """The round is killed once the keyless table's transaction committed (its position on
    the target moved) while keyed batches still run: the marker still says the round's start,
    and the round run again from there inserts none of those rows a second time."""
    world = world_factory(schema=SCHEMA)
    start = world.apply(world.since).position  # hist gets a position on the target
    world.heroku.execute(
        "INSERT INTO hist SELECT g % 10, g, 'k' FROM generate_series(1, 20000) g",
        "INSERT INTO hist VALUES (5, 5, 'dup'), (5, 5, 'dup')",
        "UPDATE acc SET v = v + 1",
        "INSERT INTO acc SELECT g, 1 FROM generate_series(1000, 40999) g",
    )
    child = multiprocessing.get_context("fork").Process(target=_round_in_child, args=(world, start))
    child.start()
    moved: list[list[str]] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.is_alive():
            rows = applied(world)
            if rows and rows[0][2] != start:
                moved = rows  # committed: keyed batches (jobs=1, after it) are still to come
                break
            time.sleep(0.02)
        os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert moved and moved[0][1] == start  # written by a round from `start`
    _, marker, comment = pgstaging.read_marker(world.pg, world.target)
    assert marker is not None and marker.kind == "syncing"
    assert comment.endswith(f" capture={start}")
    assert pgapply.applied_position(world.pg, world.target) == start
    wait_quiet(world)
    again = world.apply(start, final=True)
    assert "public.hist" not in again.tables  # nothing after its own position: not written
    assert hist(world, world.target) == hist(world, world.source)
    assert world.rows(world.target, "acc", "id") == world.rows(world.source, "acc", "id")


@pytest.mark.slow
def test_kill_9_inside_the_keyless_transaction_then_again_converges(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=SCHEMA)
    start = world.apply(world.since).position
    world.heroku.execute(
        "INSERT INTO hist SELECT g % 10, g, repeat('p', 200) FROM generate_series(1, 100000) g"
    )
    child = multiprocessing.get_context("fork").Process(target=_round_in_child, args=(world, start))
    child.start()
    deadline = time.monotonic() + 120
    copying = False
    try:
        while time.monotonic() < deadline and child.is_alive() and not copying:
            copying = pgcapture.query(
                world.pg, world.target,
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'COPY public.hist%';",
            ) == [["t"]]  # fmt: skip
            time.sleep(0.01)
        os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert copying
    wait_quiet(world)  # the killed round's pipeline may still finish (or not) on its own
    again = world.apply(start)
    assert hist(world, world.target) == hist(world, world.source)
    assert applied(world)[0] == ["public.hist", start, again.position]


def wait_quiet(world: World) -> None:
    """Until no other session works on the target (orphaned psqls of a killed round)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = pgcapture.query(
            world.pg, world.target,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend';",
        )  # fmt: skip
        if busy == [["0"]]:
            return
        time.sleep(0.1)
    raise AssertionError("the killed round's sessions did not end")


@pytest.mark.slow
def test_a_keyless_table_captured_the_old_way_is_copied_whole_in_the_final_round(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """A capture installed before keyless tables had a row log (no log, no triggers, recorded
    with log ''): the catch-up leaves the table alone, the final round copies it whole."""
    world = world_factory(schema=SCHEMA)
    relid = pgcapture.query(world.pg, world.source, "SELECT 'hist'::regclass::oid;")[0][0]
    world.heroku.execute(
        *(f"DROP TRIGGER cutover_capture_{e} ON hist" for e in ("ins", "upd", "del", "trunc")),
        f"DROP TABLE _cutover.log_{relid}",
        f"UPDATE _cutover.tables SET log = '' WHERE relid = {relid}",
        "INSERT INTO hist VALUES (9, 9, 'unlogged')",
    )
    caught = world.apply(world.since)
    assert "public.hist" not in caught.tables and caught.whole == ()
    assert hist(world, world.target) != hist(world, world.source)
    last = world.apply(caught.position, final=True)
    assert last.whole == ("public.hist",)
    assert hist(world, world.target) == hist(world, world.source)


@pytest.mark.slow
def test_the_final_round_drops_the_positions_even_when_no_keyless_table_is_left(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """A catch-up wrote keyless positions on Convox; by the final round no keyless table is
    captured any more (dropped on Heroku, say): ``_cutover`` still leaves the Convox database
    before its synced marker, not left behind in the app's database once live."""
    world = world_factory(schema=SCHEMA)
    caught = world.apply(world.since)
    assert applied(world)  # _cutover.applied exists on Convox
    world.plan = dataclasses.replace(world.plan, keyless=(), logged=())
    world.apply(caught.position, final=True)
    gone = "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = '_cutover';"
    assert pgcapture.query(world.pg, world.target, gone) == [["0"]]
    time.sleep(1.5)  # past PostgreSQL's 1 s stats flush interval, for any late counts
    assert pgstaging.guard(world.pg, world.target, force=True) is None


# Types record_out/record_in must carry (PostgreSQL docs, "Composite Types: Composite Type
# Input and Output Syntax"): an enum, a domain, a composite (quoted inside the row's text), a
# stored generated column (computed on Convox, never written), a column dropped on Heroku (absent
# from the row's text and from Convox), numeric NaN and float Infinity.
TYPED_SCHEMA = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok, fine', 'happy\"')",
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE TYPE pair AS (a text, b numeric)",
    "CREATE TABLE typed (gone int, m mood, p posint, c pair, n numeric, f float4, "
    "g int GENERATED ALWAYS AS (p * 2) STORED, r pair[], s text)",
    "ALTER TABLE typed DROP COLUMN gone",
)


@pytest.mark.slow
def test_logged_rows_of_enums_domains_composites_and_generated_columns_read_back_the_same(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=TYPED_SCHEMA)
    position = world.apply(world.since).position
    world.heroku.execute(
        "INSERT INTO typed (m, p, c, n, f, r, s) VALUES "
        "('ok, fine', 3, ROW('x, \"y\" (z)', 'NaN'), 'NaN', '-Infinity', "
        "ARRAY[ROW('q', 1.5)::pair, NULL], 'one'), "
        "('happy\"', 1, NULL, 12.500, 1.1, '{}', E'two\\\\t'), "
        "(NULL, NULL, ROW(NULL, NULL), NULL, NULL, NULL, NULL)"
    )
    result = world.apply(position)
    assert result.upserted == 3
    exact = "SELECT m, p, c, n, f, g, r, s FROM typed ORDER BY s NULLS FIRST;"
    source = pgcapture.query(world.pg, world.source, exact)
    assert len(source) == 3
    assert pgcapture.query(world.pg, world.target, exact) == source


@pytest.mark.slow
def test_a_stale_position_on_convox_makes_the_table_copied_whole_not_refused(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """A position row that counts for no round from here (left by a round from another start:
    the table uncaptured for a while, so not advanced): the table's position is unknown and it
    is replaced whole; the transaction's check compares with the row it read, not with none."""
    world = world_factory(schema=SCHEMA)
    world.heroku.execute("INSERT INTO acc VALUES (1001, 1)")
    first = world.apply(world.since).position
    world.heroku.execute("INSERT INTO acc VALUES (1002, 2)")
    second = world.apply(first).position
    assert len({world.since, first, second}) == 3
    pgcapture.query(
        world.pg, world.target,
        f"UPDATE _cutover.applied SET since = '{world.since}', position = '{first}' "
        "WHERE name = 'public.hist';",
    )  # fmt: skip
    world.heroku.execute("INSERT INTO hist VALUES (6, 6, 'after a stale position')")
    result = world.apply(second)
    assert "public.hist" in result.tables
    assert hist(world, world.target) == hist(world, world.source)
    assert applied(world)[0] == ["public.hist", second, result.position]


@pytest.mark.slow
def test_a_final_round_run_again_after_its_drop_inserts_nothing_twice(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """Killed after the final round's last transaction (``_cutover`` dropped on Convox) and
    before its synced marker: the round runs again from the same start, finds no position and
    replaces the keyless tables whole (no logged row inserted a second time)."""
    world = world_factory(schema=SCHEMA)
    start = world.apply(world.since).position
    world.heroku.execute("INSERT INTO hist VALUES (4, 4, 'dup'), (4, 4, 'dup')")
    world.apply(start, final=True)
    again = world.apply(start, final=True)
    assert "public.hist" in again.tables and again.replaced > 2  # replaced, not 2 rows added
    assert hist(world, world.target) == hist(world, world.source)
    assert pgcapture.query(world.pg, world.target, COUNT_NOTHING) == [["1"]]
