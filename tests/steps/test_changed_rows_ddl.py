"""changed-rows final-sync after a schema change on Heroku (issue 13): only the affected tables
are copied whole, with their new definition, the others applied from the log; verify-data (its
schema comparison included) passes. Two real PostgreSQL clusters and the World of
tests/steps/test_data_sync.py, the Convox role NOSUPERUSER like RDS (support/herokudb.py).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from support.herokudb import assert_works_like, heroku_shaped, query, rds_target

from cutover.adapters import pgapply, pgstaging
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.steps.data import FinalSync
from cutover.steps.verify import compare
from steps.test_changed_rows import (
    EXTRA,
    ROWS,
    _final,
    _final_ctx,
    _synced,
    may_replicate,
)
from steps.test_data_sync import World

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path: Path, pg_source: PgCluster, pg_target: PgCluster) -> World:
    w = World(tmp_path, heroku_shaped(pg_source), rds_target(pg_target))
    w.source.execute(*EXTRA)
    return w


def test_a_column_added_copies_only_that_table_whole_and_verify_passes(world: World) -> None:
    may_replicate(world)
    world.source.execute("CREATE VIEW author_names AS SELECT id, name FROM authors")
    ctx, first = _synced(world)
    books_node = query(world.target, "SELECT pg_relation_filenode('books')")
    world.source.execute(
        "ALTER TABLE authors ADD COLUMN born int",
        "UPDATE authors SET born = 1900 WHERE id < 10",
        "UPDATE books SET title = 'retitled' WHERE id % 7 = 0",
        "INSERT INTO authors (name, born) VALUES ('late author', 2001)",
    )
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == ROWS
    assert out.schema_changed == ["public.authors: column added (born)"]
    assert out.whole is not None and "public.authors" in out.whole
    assert "public.books" not in out.whole  # applied from the log, in place
    assert query(world.target, "SELECT pg_relation_filenode('books')") == books_node
    assert out.upserted and out.upserted >= 400 // 7
    said = [n for n in notes if "schema changed" in n]
    assert said and said[0].startswith(
        "changed-rows: Heroku's schema changed since the capture (public.authors: column added "
        "(born)); those 1 table(s) are copied whole, the other "
    )
    assert said[0].endswith(" applied from the log")
    assert not any(n.startswith("changed-rows: the final sync copies everything") for n in notes)
    assert query(world.target, "SELECT count(*) FROM authors WHERE born = 1900") == [(9,)]
    assert compare(final).problems == []  # verify-data: schema and rows
    assert any("re-created the view(s) public.author_names" in n for n in notes)
    assert_works_like(world.source, world.target)
    world.assert_no_password_in_argv()


def test_a_materialized_view_on_the_changed_table_copies_everything_and_names_it(
    world: World,
) -> None:
    ctx, first = _synced(world)
    world.source.execute(
        "CREATE MATERIALIZED VIEW author_names AS SELECT name FROM authors",
        "ALTER TABLE authors ADD COLUMN born int",
    )
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == "direct"  # the whole database
    assert any(
        n.startswith("changed-rows: the final sync copies everything")
        and "materialized view public.author_names (on public.authors)" in n
        for n in notes
    ), notes
    assert compare(final).problems == []


def _final_in_child(world: World, ctx: object, first: object) -> None:
    final, _ = _final_ctx(world, ctx, first)  # type: ignore[arg-type]
    FinalSync().apply(final)


def _target_sessions(world: World, pattern: str) -> list[tuple[object, ...]]:
    return query(
        world.target,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        f"AND pid <> pg_backend_pid() AND query LIKE '{pattern}'",
    )


def test_kill_9_while_replacing_a_table_then_again_converges(world: World) -> None:
    """The final sync is killed (SIGKILL, and its sessions on Convox cut, as a dead machine's
    would be) while the changed table's rows stream in: its one transaction rolls back, the
    marker still says syncing from the same position; the next run replaces it and applies."""
    may_replicate(world)
    ctx, first = _synced(world)
    since = pgapply.applied_position(
        PostgresAdapter(Runner(SecretMasker()), SecretMasker()),
        ConnInfo.from_url(world.target.url() + "?sslmode=disable"),
    )
    world.source.execute(
        "ALTER TABLE authors ADD COLUMN bio text",
        "INSERT INTO authors (name, bio) SELECT 'bulk ' || g, repeat('b', 300) "
        "FROM generate_series(1, 400000) g",
        "UPDATE books SET title = 'moved' WHERE id < 50",
    )
    child = multiprocessing.get_context("fork").Process(
        target=_final_in_child, args=(world, ctx, first)
    )
    child.start()
    deadline = time.monotonic() + 180
    copying: list[tuple[object, ...]] = []
    try:
        while time.monotonic() < deadline and child.is_alive():
            copying = _target_sessions(world, "%COPY public.authors%FROM STDIN%")
            if copying:
                break
            time.sleep(0.05)
        os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(30)
    assert copying, "the replacement's COPY never showed on Convox"
    assert child.exitcode == -signal.SIGKILL
    with pgcluster.connect(world.target.cluster) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (world.target.dbname,),
        )
    # Rolled back: the old definition, the old rows; the marker names where to start again.
    columns = query(
        world.target,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'authors' "
        "AND column_name = 'bio'",
    )
    assert columns == [(0,)]
    assert query(world.target, "SELECT count(*) FROM authors") == [(50,)]
    assert world.comment().startswith(pgstaging.MARKER_SYNCING)
    assert since and world.comment().endswith(f" capture={since}")
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == ROWS
    assert out.whole is not None and "public.authors" in out.whole
    assert query(world.target, "SELECT count(*) FROM authors") == [(400_050,)]
    assert compare(final).problems == []
    assert any("replaced 1 table(s)" in n for n in notes)


def test_a_function_only_heroku_has_makes_the_final_sync_full_naming_it_beforehand(
    world: World,
) -> None:
    """The new definition calls a function only Heroku has (new objects other than tables are
    not in the fingerprints, and pg_dump -t does not bring it): named before any write, and in
    the window the full copy follows, into staging."""
    ctx, first = _synced(world)
    world.source.execute(
        "CREATE FUNCTION heroku_only() RETURNS text LANGUAGE sql AS $$SELECT 'x'$$",
        "ALTER TABLE authors ADD COLUMN tag text DEFAULT heroku_only()",
    )
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == "direct"
    assert any(
        n.startswith("changed-rows: the final sync copies everything: Heroku's schema changed")
        and n.endswith(
            "only a whole copy is right: function public.heroku_only() (used by "
            "public.authors) is not on the Convox database"
        )
        for n in notes
    ), notes
    assert compare(final).problems == []


def test_a_replacement_convox_refuses_makes_the_final_sync_full_and_says_so(
    world: World,
) -> None:
    """The new index's name is taken on Convox (a table of that name there): the replacement's
    one transaction rolls back, and in the window the full copy follows, into staging, with the
    reason in a note."""
    ctx, first = _synced(world)
    world.source.execute(
        "ALTER TABLE authors ADD COLUMN tag text", "CREATE INDEX authors_tag ON authors (tag)"
    )
    world.target.execute("CREATE TABLE authors_tag (x int)")
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == "direct"
    assert any(
        n.startswith(
            "changed-rows: the final sync copies everything: replacing the changed "
            "tables failed: could not replace the tables"
        )
        and 'relation "authors_tag" already exists' in n
        for n in notes
    ), notes
    assert compare(final).problems == []


def test_the_schema_note_counts_the_keyless_tables_among_the_others() -> None:
    """The keyless tables are applied from the log too (their logged inserts,
    cutover/adapters/pgapply_rows.py), or copied whole without a row log: counted, not left
    out of "the other N"."""
    from cutover.adapters.pgcapture import CapturePlan, CaptureTable  # noqa: PLC0415
    from cutover.adapters.pgcapture_ddl import SchemaChanges, TableChange  # noqa: PLC0415
    from cutover.steps.datarows import schema_note  # noqa: PLC0415

    keyed = [CaptureTable(f"public.t{i}", i, ("id",), "primary key") for i in range(3)]
    bag = CaptureTable("public.bag", 10, (), "")
    plan = CapturePlan(tuple(keyed), ("public.bag", "public.old_bag"), (), (bag,))
    ddl = SchemaChanges((TableChange("public.t0", "changed", "column added (x)"),))
    assert schema_note(ddl, plan) == (
        "changed-rows: Heroku's schema changed since the capture (public.t0: column added (x)); "
        "those 1 table(s) are copied whole, the other 3 applied from the log, 1 keyless without "
        "a row log copied whole"
    )
