"""Review of issue 13's capture and apply (pgcapture, pgapply) at their edges, against real
PostgreSQL (the clusters and the World of tests/adapters/test_pgapply.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from adapter_support import read_argv_log
from test_pgapply import SCHEMA, World, world_factory  # noqa: F401  (fixture)

from cutover.adapters import pgapply, pgapply_small, pgapply_target, pgcapture, pgstaging
from cutover.adapters.pgapply import ApplyProgress, ApplyResult, apply_changes
from cutover.errors import CutoverError
from cutover.sandbox import pgcluster

# A name holding the install's dollar-quote tag: inside a DO $cutover$ ... $cutover$ block it
# ended the block early (the table name came from the catalog, but the quoting did not hold).
DOLLAR = (
    'CREATE TABLE "odd$cutover$T" ("k$cutover$" int PRIMARY KEY, v text)',
    "INSERT INTO \"odd$cutover$T\" SELECT g, 'v' FROM generate_series(1, 5) g",
)


@pytest.mark.slow
def test_names_holding_the_dollar_quote_tag_are_captured_and_applied(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=DOLLAR)
    assert [t.key for t in world.plan.tables] == [('"k$cutover$"',)]
    assert pgcapture.status(world.pg, world.source).missing_triggers == ()
    world.heroku.execute(
        'UPDATE "odd$cutover$T" SET v = \'w\' WHERE "k$cutover$" < 3',
        'DELETE FROM "odd$cutover$T" WHERE "k$cutover$" = 5',
        "INSERT INTO \"odd$cutover$T\" VALUES (6, 'n')",
    )
    world.apply(world.since)
    table, order = '"odd$cutover$T"', '"k$cutover$"'
    assert world.rows(world.target, table, order) == world.rows(world.source, table, order)
    assert pgcapture.uninstall(world.pg, world.source)
    assert pgcapture.leftovers(world.pg, world.source) == []


@pytest.mark.slow
@pytest.mark.parametrize("superuser", [True, False])
def test_a_catch_up_copying_a_truncated_child_whole_survives_writes_after_its_snapshot(
    world_factory: Callable[..., World],  # noqa: F811
    superuser: bool,
) -> None:
    """The keyed batches read in the round's snapshot S, the whole copy of a truncated table
    reads later; while the app writes (a catch-up), a child copied whole can reference a
    parent born after S. Checking the foreign keys then failed the round, every time the app
    wrote in that gap; a catch-up leaves them NOT VALID and the final round validates them."""
    world = world_factory(superuser=superuser, schema=SCHEMA)
    world.heroku.execute(
        "UPDATE parents SET name = name || '-u' WHERE id < 5",
        "TRUNCATE children",
        "INSERT INTO children (parent_id, note) VALUES (1, 'a'), (2, 'b')",
    )
    wrote: list[bool] = []

    def after_keyed(progress: ApplyProgress) -> None:
        # The last report of the keyed batches: the round's snapshot is taken, the whole
        # copies not started. The app writes a parent and a child of it.
        world.progress.append(progress)
        if progress.tables_done == progress.tables_total and not wrote:
            wrote.append(True)
            world.heroku.execute(
                "INSERT INTO parents (id, name) VALUES (500, 'born after S')",
                "INSERT INTO children (parent_id, note) VALUES (500, 'child of it')",
            )

    first = pgapply_round(world, world.since, final=False, progress=after_keyed)
    assert wrote and first.whole == ("public.children",)
    last = pgapply_round(world, first.position, final=True)
    world.assert_equal()
    assert set(last.tables) == {"public.parents", "public.children"}  # written after S
    fks = "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f';"
    assert pgcapture.query(world.pg, world.target, fks) == [["children_parent_id_fkey", "t"]]


def pgapply_round(
    world: World,
    since: str,
    *,
    final: bool,
    progress: Callable[[ApplyProgress], None] | None = None,
) -> ApplyResult:
    return apply_changes(
        world.runner, world.masker, world.pg, world.source, world.target, since,
        plan=world.plan, final=final, jobs=2, timeout=300,
        progress=progress or world.progress.append,
    )  # fmt: skip


# A unique key on a nullable column is no capture key: "codes" is keyless, copied whole.
KEYLESS_PARENT = (
    "CREATE TABLE codes (code text UNIQUE, label text)",
    "CREATE TABLE uses (id int PRIMARY KEY, code text REFERENCES codes (code))",
    "INSERT INTO codes VALUES ('a', 'A')",
    "INSERT INTO uses VALUES (1, 'a')",
)


@pytest.mark.slow
def test_the_fallback_final_round_checks_foreign_keys_after_the_whole_copies(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """Without session_replication_role, a batch re-adds its table's foreign keys NOT VALID;
    the final round checked them before copying the keyless tables whole, so a row referencing
    a new row of a keyless table failed the final sync."""
    world = world_factory(superuser=False, schema=KEYLESS_PARENT)
    assert world.plan.keyless == ("public.codes",)
    world.heroku.execute("INSERT INTO codes VALUES ('b', 'B')", "INSERT INTO uses VALUES (2, 'b')")
    last = pgapply_round(world, world.since, final=True)
    # codes, keyless with no position on the target yet, is replaced whole in the round
    assert set(last.tables) == {"public.uses", "public.codes"} and last.whole == ()
    for table, order in (("codes", "code"), ("uses", "id")):
        assert world.rows(world.target, table, order) == world.rows(world.source, table, order)
    fks = "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f';"
    assert pgcapture.query(world.pg, world.target, fks) == [["uses_code_fkey", "t"]]


WRITERS = (
    "CREATE TABLE kv (k int PRIMARY KEY, v text)",
    "CREATE TABLE log_of_kv (id serial PRIMARY KEY, k int, what text)",
    "INSERT INTO kv SELECT g, 'v' FROM generate_series(1, 10) g",
)


@pytest.mark.slow
def test_merge_upsert_copy_and_writable_ctes_are_captured(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=WRITERS)
    world.heroku.execute(
        "INSERT INTO kv VALUES (1, 'up'), (11, 'new') ON CONFLICT (k) DO UPDATE SET v = 'up2'",
        "MERGE INTO kv USING (VALUES (2, 'm'), (12, 'mn'), (3, NULL)) s(k, v) ON kv.k = s.k "
        "WHEN MATCHED AND s.v IS NULL THEN DELETE WHEN MATCHED THEN UPDATE SET v = s.v "
        "WHEN NOT MATCHED THEN INSERT VALUES (s.k, s.v)",
        "WITH gone AS (DELETE FROM kv WHERE k = 4 RETURNING k) "
        "INSERT INTO log_of_kv (k, what) SELECT k, 'deleted' FROM gone",
        "WITH moved AS (UPDATE kv SET k = 40 WHERE k = 5 RETURNING k) SELECT count(*) FROM moved",
    )
    world.apply(world.since)
    for table, order in (("kv", "k"), ("log_of_kv", "id")):
        assert world.rows(world.target, table, order) == world.rows(world.source, table, order)


HIERARCHY = (
    "CREATE TABLE base (id int PRIMARY KEY, v text)",
    "CREATE TABLE extra (id int PRIMARY KEY, v text)",
    'CREATE TABLE named (id int PRIMARY KEY, v text COLLATE "C")',
    "INSERT INTO base VALUES (1, 'b')",
    "INSERT INTO extra VALUES (2, 'e')",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "ddl",
    [
        # Writes through "base" then reach "extra" without firing its statement triggers.
        "ALTER TABLE extra INHERIT base",
        # format_type() does not show a collation: the key's log and the table disagreed.
        'ALTER TABLE named ALTER COLUMN id TYPE int, ALTER COLUMN v TYPE text COLLATE "POSIX"',
    ],
)
def test_schema_changes_see_inheritance_and_collations(
    world_factory: Callable[..., World],  # noqa: F811
    ddl: str,
) -> None:
    world = world_factory(schema=HIERARCHY)
    assert pgcapture.schema_changes(world.pg, world.source) == []
    world.heroku.execute(ddl)
    assert pgcapture.schema_changes(world.pg, world.source) != []


@pytest.mark.slow
@pytest.mark.parametrize(
    "ddl",
    [
        "ALTER TABLE base DISABLE TRIGGER cutover_capture_upd",
        "ALTER TABLE base DISABLE TRIGGER ALL",
        # Fires only in sessions with session_replication_role = replica: never for the app.
        "ALTER TABLE base ENABLE REPLICA TRIGGER cutover_capture_ins",
        "DROP TRIGGER cutover_capture_del ON base",
    ],
)
def test_a_capture_trigger_dropped_or_silenced_is_a_schema_change(
    world_factory: Callable[..., World],  # noqa: F811
    ddl: str,
) -> None:
    """Writes made while a capture trigger does not fire are in no log: unless it is said, the
    changed-rows final sync would leave them out. The fingerprint skips cutover's triggers, so
    schema_changes (what catch-up and the final sync consult) said nothing."""
    world = world_factory(schema=HIERARCHY)
    world.heroku.execute(ddl)
    assert pgcapture.status(world.pg, world.source).missing_triggers == ("public.base",)
    changes = pgcapture.schema_changes(world.pg, world.source)
    assert changes == ["public.base: a capture trigger is missing or does not fire"]
    # A refresh (initial-sync re-installs before reading a new position) puts it back.
    pgcapture.install(world.pg, world.source, world.plan)
    assert pgcapture.status(world.pg, world.source).missing_triggers == ()
    assert pgcapture.schema_changes(world.pg, world.source) == []


@pytest.mark.slow
def test_uninstall_beside_a_writer_holding_a_lock_fails_whole_then_goes_through(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=HIERARCHY)
    before = pgcapture.leftovers(world.pg, world.source)
    with pgcluster.connect(
        world.heroku.cluster, world.heroku.dbname, world.heroku.owner, world.heroku.password,
        autocommit=False,
    ) as app:  # fmt: skip
        app.execute("UPDATE extra SET v = 'busy'")  # holds ROW EXCLUSIVE until it ends
        with pytest.raises(CutoverError) as caught:
            pgcapture.uninstall(world.pg, world.source)
        assert "stayed locked by another session for 5s" in caught.value.brief
        assert pgcapture.leftovers(world.pg, world.source) == before  # one transaction
        app.commit()  # its write was logged: the capture was whole all along
    assert pgcapture.uninstall(world.pg, world.source) == before
    assert pgcapture.leftovers(world.pg, world.source) == []


# Heroku installs extensions in their own schema (heroku_ext), which sessions need not have in
# their search_path: citext's operators are then out of sight and "=" / ">" fall back to text's
# (case-sensitive), while DISTINCT, ORDER BY and the unique index use citext's. In either
# schema, a key updated to another case is logged twice, and DISTINCT keeps either spelling.
def citext_schema(schema: str) -> tuple[str, ...]:
    return (
        *([f"CREATE SCHEMA {schema}"] if schema != "public" else []),
        f"CREATE EXTENSION citext SCHEMA {schema}",
        f"CREATE TABLE people (email {schema}.citext PRIMARY KEY, v int)",
        "INSERT INTO people SELECT 'User' || g || '@X', g FROM generate_series(1, 20) g",
    )


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["heroku_ext", "public"])
def test_citext_keys_updated_to_another_case_arrive_spelled_as_on_the_source(
    world_factory: Callable[..., World],  # noqa: F811
    schema: str,
) -> None:
    world = world_factory(schema=citext_schema(schema))
    world.heroku.execute(
        "UPDATE people SET email = upper(email::text) WHERE v <= 5",  # same key, new case
        "UPDATE people SET v = -v WHERE v > 15",
        "DELETE FROM people WHERE v = 10",
    )
    world.apply(world.since, batch_keys=3)
    table, order = "people", "email::text"
    assert world.rows(world.target, table, order) == world.rows(world.source, table, order)


@pytest.mark.slow
def test_a_key_column_named_like_the_logs_own_columns_is_copied_whole_not_refused(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """A key column cutover_seq/cutover_xid collided with the log's own columns (and cutover_n
    with the batch boundaries' row number): the whole install failed. Such a table is copied
    whole in the window instead."""
    world = world_factory(
        schema=(
            "CREATE TABLE odd (cutover_seq int PRIMARY KEY, v text)",
            "CREATE TABLE odder (cutover_n int, cutover_xid int, PRIMARY KEY (cutover_n))",
            "CREATE TABLE plain (id int PRIMARY KEY)",
            "INSERT INTO odd VALUES (1, 'a')",
        )
    )
    assert world.plan.keyless == ("public.odd", "public.odder")
    assert [t.name for t in world.plan.tables] == ["public.plain"]
    world.heroku.execute("INSERT INTO odd VALUES (2, 'b')", "INSERT INTO plain VALUES (1)")
    last = pgapply_round(world, world.since, final=True)
    # keyless for the capture: their rows are logged; with no position yet, replaced whole
    assert last.whole == () and set(last.tables) == {"public.plain", "public.odd", "public.odder"}
    for table, order in (("odd", "cutover_seq"), ("plain", "id")):
        assert world.rows(world.target, table, order) == world.rows(world.source, table, order)


# A table large enough that the planner's default random_page_cost (4.0) prefers reading it
# whole for a batch of two thousand keys.
WIDE = (
    "CREATE TABLE wide (id int PRIMARY KEY, payload text)",
    "INSERT INTO wide SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g",
    "ANALYZE wide",
)
SEQ_SCANS = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'wide';"


@pytest.mark.slow
def test_a_small_batch_of_a_large_table_reads_it_by_key_on_both_sides(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """pgapply_sql.BATCH_PAGE_COST: the batch's source read and target DELETE probe the key's
    index instead of scanning the table (pg_stat_user_tables.seq_scan unchanged on both sides;
    the planner's default page cost scanned it, and at 4 million rows that was 1.1 s)."""
    world = world_factory(schema=WIDE)
    world.convox.execute("ANALYZE wide")
    world.heroku.execute("UPDATE wide SET payload = 'changed' WHERE id % 100 = 0")
    before = [pgcapture.query(world.pg, c, SEQ_SCANS) for c in (world.source, world.target)]
    result = world.apply(world.since)
    assert result.upserted == 2000
    after = [pgcapture.query(world.pg, c, SEQ_SCANS) for c in (world.source, world.target)]
    assert after == before
    changed = "SELECT count(*) FROM wide WHERE payload = 'changed';"
    assert pgcapture.query(world.pg, world.target, changed) == [["2000"]]


ODD = (
    "CREATE TABLE odd (id int PRIMARY KEY, t text, b bytea, j jsonb, f float8, ts timestamptz)",
    "INSERT INTO odd VALUES (1, 'plain', NULL, NULL, NULL, NULL)",
)


@pytest.mark.slow
def test_small_batches_carry_any_value_through_the_holder(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """The holder reads a small batch's rows as COPY text in UTF-8 and one psql writes them
    (cutover/adapters/pgapply_small.py): tabs, newlines, backslashes, the end-of-data mark,
    non-ASCII text, bytea, floats and times arrive as they are."""
    world = world_factory(schema=ODD)
    world.heroku.execute(
        "INSERT INTO odd VALUES (2, E'tab\\there\\nline\\\\slash\\r', '\\x00ff5c0a'::bytea, "
        '\'{"k": "v\\u00e9\\n"}\', 0.1::float8 + 0.2::float8, '
        "'2024-02-29 23:59:59.123456+05:30')",
        "INSERT INTO odd VALUES (3, E'\\\\.', '', '[]', 'NaN', 'infinity')",
        "INSERT INTO odd VALUES (4, 'ünï ☃ 𝄞', NULL, 'null', -0.0, '0001-01-01 BC')",
        "UPDATE odd SET t = NULL WHERE id = 1",
    )
    result = world.apply(world.since)
    assert result.upserted == 4
    # As text (psycopg loads no 'infinity' timestamp), b and j also as hex / jsonb equality.
    sql = (
        "SELECT id, encode(convert_to(t, 'UTF8'), 'hex'), encode(b, 'hex'), j::text, f::text, "
        "ts::text FROM odd ORDER BY id;"
    )
    target = pgcapture.query(world.pg, world.target, sql)
    assert target == pgcapture.query(world.pg, world.source, sql)
    assert len(target) == 4
    assert target[1][4] == "0.30000000000000004"
    argvs = read_argv_log(world.argv_log)  # through the holder and one psql, no pipe
    assert sum(a[3:4] == ["cutover-apply"] for a in argvs) == 0
    assert sum(a[-3:] == ["-At", "-f", "-"] for a in argvs) == 1


WIDE_ROWS = (
    "CREATE TABLE fat (id int PRIMARY KEY, v text)",
    "CREATE TABLE thin (id int PRIMARY KEY, v text)",
    "INSERT INTO fat SELECT g, 'f' FROM generate_series(1, 3) g",
    "INSERT INTO thin SELECT g, 't' FROM generate_series(1, 3) g",
)


@pytest.mark.slow
def test_a_small_batch_with_a_row_over_the_limit_goes_through_a_pipe(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """pgapply_small.MAX_ROW_BYTES: the holder asks each small batch's size first; one holding
    a row wider than that is streamed through a pipe (the holder keeps rows in memory, and its
    reader stops on a line over 64 MiB), the others are written by the one psql."""
    world = world_factory(schema=WIDE_ROWS)
    wide = pgapply_small.MAX_ROW_BYTES + 1000
    world.heroku.execute(
        f"UPDATE fat SET v = repeat('w', {wide}) WHERE id = 2",
        "UPDATE thin SET v = 'changed' WHERE id < 3",
    )
    result = world.apply(world.since)
    assert result.upserted == 3
    sql = "SELECT id, length(v), md5(v) FROM {} ORDER BY id;"
    for table in ("fat", "thin"):
        target = pgcapture.query(world.pg, world.target, sql.format(table))
        assert target == pgcapture.query(world.pg, world.source, sql.format(table))
    argvs = read_argv_log(world.argv_log)
    pipes = [a for a in argvs if a[3:4] == ["cutover-apply"]]
    assert len(pipes) == 1 and "public.fat" in " ".join(pipes[0][4:])
    assert sum(a[-3:] == ["-At", "-f", "-"] for a in argvs) == 1


# A foreign key declared on a partitioned table: each partition holds a copy inherited from it
# (pg_constraint.conparentid), which cannot be dropped alone.
PARTITIONED_FK = (
    "CREATE TABLE accounts (id int PRIMARY KEY, v text)",
    "CREATE TABLE events (id int, d date, account_id int REFERENCES accounts (id), "
    "PRIMARY KEY (id, d)) PARTITION BY RANGE (d)",
    "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE notes (id int PRIMARY KEY, body text)",
    "INSERT INTO accounts SELECT g, 'a' FROM generate_series(1, 5) g",
    "INSERT INTO events SELECT g, '2024-03-01', 1 + g % 5 FROM generate_series(1, 10) g",
    "INSERT INTO notes SELECT g, 'n' FROM generate_series(1, 5) g",
)


@pytest.mark.slow
def test_inherited_foreign_keys_refuse_only_a_round_whose_tables_they_touch(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """A role that may not replicate (the fallback drops the foreign keys touching a batch's
    table): the round is refused, before any write, only when one of ITS tables is touched by
    an inherited foreign key; the target's documents are read for every captured table."""
    world = world_factory(superuser=False, schema=PARTITIONED_FK)
    world.heroku.execute("UPDATE notes SET body = 'changed' WHERE id < 3")
    first = world.apply(world.since)
    assert first.tables == ("public.notes",)
    assert world.rows(world.target, "notes", "id") == world.rows(world.source, "notes", "id")
    before = pgstaging.read_marker(world.pg, world.target)
    world.heroku.execute("UPDATE accounts SET v = 'changed' WHERE id = 2")
    with pytest.raises(CutoverError, match="inherited from partitioned tables") as caught:
        world.apply(first.position)
    assert "events_2024" in caught.value.details
    # Refused before its first write: the marker (and the positions) as they were.
    assert pgstaging.read_marker(world.pg, world.target) == before
    assert world.rows(world.target, "accounts", "id") != world.rows(world.source, "accounts", "id")


@pytest.mark.slow
def test_a_table_of_key_columns_only_gets_its_inserts_and_deletes(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """In place with nothing to update (every column is in the key): present keys stay, new
    ones are inserted, gone ones deleted."""
    world = world_factory(
        schema=(
            "CREATE TABLE tags (name text, lang text, PRIMARY KEY (name, lang))",
            "INSERT INTO tags SELECT 't' || g, 'en' FROM generate_series(1, 20) g",
        )
    )
    world.heroku.execute(
        "DELETE FROM tags WHERE name IN ('t1', 't2')",
        "INSERT INTO tags VALUES ('new', 'fr'), ('t3', 'de')",
        "UPDATE tags SET lang = 'it' WHERE name = 't4'",
    )
    result = world.apply(world.since)
    order = "name, lang"
    assert world.rows(world.target, "tags", order) == world.rows(world.source, "tags", order)
    assert result.deleted == 3 and result.upserted == 3


@pytest.mark.slow
@pytest.mark.parametrize("how", ["terminated", "idle too long"])
def test_the_finish_runs_in_a_fresh_psql_when_the_round_session_cannot_be_trusted(
    world_factory: Callable[..., World],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """pgapply_target.finish: the round's target session carries the last script unless its
    connection is gone (a tunnel dropped it) or it sat idle too long; the round still lands,
    its marker written once."""
    world = world_factory()
    original = pgapply.finish  # type: ignore[attr-defined]

    def finish(pg: object, target: object, convox: object, prepared: float, script: str) -> object:
        if how == "terminated":
            pgcapture.query(
                world.pg, world.target,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend';",
            )  # fmt: skip
        return original(pg, target, convox, prepared, script)  # type: ignore[arg-type]

    monkeypatch.setattr(pgapply, "finish", finish)
    if how == "idle too long":
        monkeypatch.setattr(pgapply_target, "SESSION_IDLE", 0.0)
    world.heroku.execute("UPDATE items SET payload = 'x' WHERE id < 5")
    result = world.apply(world.since)
    # ... by a psql of its own, the round's last child (pgcapture.query's argv)
    last = read_argv_log(world.argv_log)[-1]
    assert last[0].endswith("psql") and last[-4:] == ["-F", "\t", "-f", "-"]
    world.assert_equal("items")
    assert result.marker.endswith(f" capture={result.position}")
    assert pgstaging.read_marker(world.pg, world.target)[2] == result.marker


@pytest.mark.slow
def test_the_finish_goes_through_the_round_session(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory()
    world.heroku.execute("UPDATE items SET payload = 'x' WHERE id < 5")
    result = world.apply(world.since)
    # the two sessions (the holder, the target's), then the batches: no psql after them
    argvs = read_argv_log(world.argv_log)
    sessions = [i for i, a in enumerate(argvs) if a[-1] == "ON_ERROR_STOP=1"]
    assert len(sessions) == 2
    assert not any(a[-4:] == ["-F", "\t", "-f", "-"] for a in argvs[sessions[-1] :])
    world.assert_equal("items")
    assert pgstaging.read_marker(world.pg, world.target)[2] == result.marker
