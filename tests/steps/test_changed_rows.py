"""database.final_sync: changed-rows (issue 13): capture-changes, initial-sync and final-sync
against two real PostgreSQL clusters, with the World of test_data_sync.py (the Heroku and Convox
adapters reduced to the answers the steps ask of them; every psql, pg_dump and pg_restore real).

The source's role is the database owner without superuser, as on Heroku (support/herokudb.py):
the capture must install with that alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.herokudb import assert_works_like, heroku_shaped, query, rds_target

from cutover.adapters import pgcapture
from cutover.adapters.pgapply_rows import APPLIED_SQL
from cutover.adapters.pgrestore import filter_list
from cutover.adapters.postgres import ConnInfo
from cutover.errors import CutoverError
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.state import Status
from cutover.steps.base import Context
from cutover.steps.capture import CaptureChanges, CaptureOutputs
from cutover.steps.data import FinalSync, FinalSyncOutputs, InitialSync, InitialSyncOutputs
from cutover.steps.inrack_script import build_script
from cutover.steps.verify import compare
from steps.test_data_sync import World

pytestmark = pytest.mark.slow

ROWS = "changed-rows"
# A table without a usable key (its inserted rows logged) and one holding a unique key on
# NOT NULL columns instead of a primary key.
EXTRA = (
    "CREATE TABLE events (at timestamptz NOT NULL DEFAULT now(), what text)",
    "INSERT INTO events (what) SELECT 'e' || g FROM generate_series(1, 20) g",
    "CREATE TABLE tags (a int NOT NULL, b text NOT NULL, note text, UNIQUE (a, b))",
    "INSERT INTO tags SELECT g, 't' || g, 'n' FROM generate_series(1, 30) g",
)


@pytest.fixture
def world(tmp_path: Path, pg_source: PgCluster, pg_target: PgCluster) -> World:
    w = World(tmp_path, heroku_shaped(pg_source), rds_target(pg_target))
    w.source.execute(*EXTRA)
    return w


def may_replicate(world: World) -> None:
    """What the Convox resource's own (superuser) role may do, granted to the RDS-like role
    (PostgreSQL 15 GRANT SET ON PARAMETER): the apply sets session_replication_role."""
    with pgcluster.connect(world.target.cluster) as conn:
        conn.execute(f'GRANT SET ON PARAMETER session_replication_role TO "{world.target.owner}"')


def _final(ctx: Context) -> FinalSyncOutputs:
    out = FinalSync().apply(ctx)
    assert isinstance(out, FinalSyncOutputs)
    return out


def _initial(ctx: Context) -> InitialSyncOutputs:
    out = InitialSync().apply(ctx)
    assert isinstance(out, InitialSyncOutputs)
    return out


def _ctx(world: World, method: str = "direct") -> tuple[Context, list[str]]:
    ctx, notes = world.context(method, final_sync=ROWS)
    return ctx, notes.lines


def _done(ctx: Context, step_id: str, outputs: dict[str, object]) -> None:
    st = ctx.state.step(step_id)
    st.outputs.update(outputs)
    st.status = Status.DONE


def _source(world: World) -> ConnInfo:
    return ConnInfo.from_url(world.source.url() + "?sslmode=disable")


def _capture_objects(world: World, db: str = "target") -> list[tuple[str, ...]]:
    """Every cutover object on a side, read from the catalog by psycopg (not by cutover)."""
    side = world.target if db == "target" else world.source
    return [
        tuple(str(c) for c in row)
        for row in query(
            side,
            "SELECT 'schema', nspname FROM pg_namespace WHERE nspname = '_cutover' "
            "UNION ALL SELECT 'trigger', tgname FROM pg_trigger "
            "WHERE tgname LIKE 'cutover\\_capture%' "
            "UNION ALL SELECT 'function', proname FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = '_cutover'",
        )
    ]


def _installed(world: World, method: str = "direct") -> tuple[Context, list[str]]:
    ctx, notes = _ctx(world, method)
    out = CaptureChanges().apply(ctx)
    _done(ctx, "capture-changes", out.model_dump(mode="json"))
    return ctx, notes


# -- capture-changes ------------------------------------------------------------------------
def test_capture_gate_names_the_tables_the_keyless_and_the_unsupported(world: World) -> None:
    world.source.execute(
        "CREATE TABLE measures (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at)",
        "CREATE TABLE measures_2026 PARTITION OF measures "
        "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    )
    ctx, _ = _ctx(world)
    step = CaptureChanges()
    assert step.applies(ctx.model) is None
    question = step.gate_question(ctx)
    assert question is not None
    assert "Install change capture on Heroku's DATABASE" in question
    assert "schema _cutover" in question and "4 triggers" in question
    assert "trigger-write-overhead" in question
    for table in ("public.authors", "public.books", "public.tags"):
        assert table in question
    # keyless: captured too (its inserted rows logged), counted among the triggered tables
    assert "copied whole in the window" not in question
    assert "inserted rows logged" in question and "public.events" in question
    plan = pgcapture.inspect(ctx.postgres, _source(world))
    assert f"4 triggers on each of {len(plan.tables) + len(plan.logged)} table(s)" in question
    assert "on each table with a key" not in step.gate_text(ctx)
    assert "final sync will be a full copy" in question and "measures" in question
    assert _capture_objects(world, "source") == []  # asking installs nothing


def test_capture_plan_lists_the_sql(world: World) -> None:
    ctx, _ = _ctx(world)
    text = "\n".join(CaptureChanges().describe(ctx))
    assert "BEGIN READ WRITE" in text and "lock_timeout" in text
    assert "_cutover" in text and "cutover_capture" in text
    assert "CREATE TRIGGER" in text.upper()
    assert world.source.password not in text
    assert "public.authors" not in text  # the plan connects to nothing: an example table
    step = CaptureChanges()
    step.gate_question(ctx)  # reads Heroku's tables (read-only) ...
    real = "\n".join(step.describe(ctx))  # ... and the SQL then names them
    assert "ON public.authors" in real and "ON public.tags" in real
    assert "ON public.events" in real  # keyless: its inserted rows are logged (pgapply_rows)
    assert _capture_objects(world, "source") == []


def test_capture_is_found_applied_on_resume_and_skipped_for_other_final_syncs(
    world: World,
) -> None:
    ctx, notes = _ctx(world)
    step = CaptureChanges()
    assert step.check(ctx) is None
    out = step.apply(ctx)
    assert isinstance(out, CaptureOutputs)
    assert "public.authors" in out.tables and "public.tags" in out.tables
    assert out.keyless == ["public.events"]
    assert any(line.startswith("change capture: captured") for line in notes)
    again, _ = _ctx(world)
    found = step.check(again)
    assert found is not None and found.model_dump() == out.model_dump()
    full, _ = world.context("direct", final_sync="full")
    assert step.applies(full.model) == "database.final_sync is full, not changed-rows"


def test_capture_installed_without_row_logs_is_installed_again(world: World) -> None:
    """A capture from before keyless tables had a row log (none, no triggers, recorded with
    log ''): check() does not find it applied, so the step installs again (idempotent)."""
    _installed(world)
    relid = query(world.source, "SELECT 'events'::regclass::oid")[0][0]
    world.source.execute(
        *(f"DROP TRIGGER cutover_capture_{e} ON events" for e in ("ins", "upd", "del", "trunc")),
        f"DROP TABLE _cutover.log_{relid}",
        f"UPDATE _cutover.tables SET log = '' WHERE relid = {relid}",
    )
    step = CaptureChanges()
    assert step.check(_ctx(world)[0]) is None
    step.apply(_ctx(world)[0])
    assert step.check(_ctx(world)[0]) is not None
    assert ("trigger", "cutover_capture_ins") in _capture_objects(world, "source")
    assert query(world.source, f"SELECT log <> '' FROM _cutover.tables WHERE relid = {relid}") == [
        (True,)
    ]


def test_rollback_undo_removes_the_capture_and_reads_it_back(world: World) -> None:
    ctx, notes = _installed(world)
    step = CaptureChanges()
    reason = step.undo_needed(ctx)
    assert reason and "cutover object(s) on Heroku" in reason
    assert step.undo_describe(ctx)
    step.undo(ctx)
    assert _capture_objects(world, "source") == []
    assert step.undo_needed(_ctx(world)[0]) is None  # nothing left: the rollback skips it
    assert any("none remain" in line for line in notes)


# -- initial-sync ---------------------------------------------------------------------------
def test_initial_sync_refuses_without_the_capture(world: World) -> None:
    ctx, _ = _ctx(world)
    with pytest.raises(CutoverError) as refused:
        InitialSync().apply(ctx)
    assert "change capture on Heroku is not installed" in refused.value.brief
    assert "cutover run --until capture-changes" in refused.value.resolution
    assert world.databases() == [world.target.dbname]  # nothing created
    assert query(world.target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (0,)
    ]


@pytest.mark.parametrize("method", ["backup", "direct"])
def test_the_copy_carries_no_capture_and_records_the_position(world: World, method: str) -> None:
    ctx, notes = _installed(world, method)
    out = _initial(ctx)
    assert out.capture_position
    assert world.comment().startswith("cutover:synced ")
    assert world.comment().endswith(f" capture={out.capture_position}")
    assert _capture_objects(world, "target") == []
    assert _capture_objects(world, "source") != []  # still capturing on Heroku
    assert any("read before the copy starts" in line for line in notes)
    # verify-data leaves Heroku's _cutover schema and capture triggers out of its comparison
    assert compare(ctx).problems == []
    assert_works_like(world.source, world.target)  # (it writes a row on Convox)
    world.assert_no_password_in_argv()


def test_in_rack_list_filter_drops_what_filter_list_drops(world: World) -> None:
    """The in-rack script filters ``pg_restore -l`` with awk in the pod; the backup and direct
    methods with pgrestore.filter_list: on a real dump holding the capture, the same lines."""
    _installed(world)
    dump = world.tmp / "with-capture.dump"
    env = pgcluster.client_env(world.source.libpq_env())
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump)], env=env, check=True)
    listing = subprocess.run(
        ["pg_restore", "-l", str(dump)], check=True, capture_output=True, text=True
    ).stdout
    ours = filter_list(listing, [])
    dropped = {ln[1:] for ln in ours.splitlines() if ln.startswith(";") and ln[1:2].isdigit()}
    assert any("TRIGGER" in ln and "cutover_capture" in ln for ln in dropped)
    assert any("SCHEMA - _cutover" in ln for ln in dropped)
    assert not any("public authors " in ln and "TABLE DATA" in ln for ln in dropped)
    script = build_script("DATABASE", "app", [])
    program = script.split("awk -v skip=")[1].split("'")[1]
    toc = world.tmp / "toc.txt"
    toc.write_text(listing, encoding="utf-8")
    out = world.tmp / "list.txt"
    subprocess.run(
        ["awk", "-v", "skip=", "-v", f"out={out}", program, str(toc)], check=True, text=True
    )
    awk_dropped = {
        ln[1:]
        for ln in out.read_text(encoding="utf-8").splitlines()
        if ln.startswith(";") and ln[1:2].isdigit()
    }
    assert awk_dropped == dropped


# -- final-sync -----------------------------------------------------------------------------
def _synced(world: World, method: str = "direct") -> tuple[Context, object]:
    ctx, _ = _installed(world, method)
    first = InitialSync().apply(ctx)
    return ctx, first


def _final_ctx(world: World, ctx: Context, first: object) -> tuple[Context, list[str]]:
    final, notes = _ctx(world)
    _done(final, "capture-changes", ctx.state.step("capture-changes").outputs)
    _done(final, "initial-sync", first.model_dump(mode="json"))  # type: ignore[attr-defined]
    return final, notes


def _workload(world: World) -> None:
    """Inserts, updates (one of a primary key), deletes, a TRUNCATE, a keyless table's insert
    and a unique-key table's update, after the copy."""
    world.source.execute(
        "INSERT INTO authors (name) VALUES ('late author')",
        "UPDATE books SET title = 'retitled' WHERE id % 7 = 0",
        "UPDATE books SET author_id = 1 WHERE author_id = 49",
        "UPDATE authors SET id = 2000 WHERE id = 49",
        "DELETE FROM books WHERE id BETWEEN 100 AND 120",
        "INSERT INTO empty_table VALUES (1, 'one'), (2, 'two')",
        "TRUNCATE empty_table",
        "INSERT INTO empty_table VALUES (3, 'three')",
        "INSERT INTO events (what) VALUES ('late event')",
        "UPDATE tags SET note = 'changed' WHERE a < 5",
        "DELETE FROM tags WHERE a = 30",
    )


def test_final_sync_applies_only_the_changed_rows_and_verify_data_passes(world: World) -> None:
    may_replicate(world)
    ctx, first = _synced(world)
    books_node = query(world.target, "SELECT pg_relation_filenode('books')")
    _workload(world)
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == ROWS
    assert out.entries and out.entries > 0
    assert out.upserted and out.deleted
    # keyless, no position on Convox yet: replaced in the round's snapshot (pgapply_rows)
    assert out.whole is not None and "public.events" not in out.whole
    assert "public.empty_table" in out.whole  # truncated since: copied whole
    assert out.position and world.comment().endswith(f" capture={out.position}")
    assert query(world.target, "SELECT pg_relation_filenode('books')") == books_node  # in place
    assert query(world.target, "SELECT count(*) FROM authors WHERE id IN (49, 2000)") == [(1,)]
    outcome = compare(final)  # verify-data, which must not see _cutover or the triggers
    assert outcome.problems == []
    assert_works_like(world.source, world.target)  # (it writes a row on Convox)
    assert any(line.startswith("changed-rows: applied ") for line in notes)
    world.assert_no_password_in_argv()


def test_a_column_added_on_heroku_replaces_only_that_table(world: World) -> None:
    """More in tests/steps/test_changed_rows_ddl.py (views, kill -9 while replacing)."""
    ctx, first = _synced(world)
    world.source.execute(
        "ALTER TABLE authors ADD COLUMN born int", "UPDATE authors SET born = 1900"
    )
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == ROWS  # not a full copy: authors replaced whole, the rest applied
    assert out.whole is not None and "public.authors" in out.whole
    assert any(
        line.startswith("changed-rows: Heroku's schema changed since the capture")
        and "authors" in line
        for line in notes
    )
    assert_works_like(world.source, world.target)


def test_without_the_capture_the_final_sync_is_full_and_says_why(world: World) -> None:
    ctx, first = _synced(world)
    pgcapture.uninstall(ctx.postgres, _source(world))
    world.source.execute("DELETE FROM books WHERE id > 390")
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == "direct"
    assert any("the change capture is not installed" in line for line in notes)
    assert query(world.target, "SELECT count(*) FROM books") == [(390,)]


def test_without_session_replication_role_the_apply_still_converges(world: World) -> None:
    """The RDS-like role may not set session_replication_role: pgapply's own fallback (no
    refusal) still brings the changed rows over, foreign keys and the app's triggers intact."""
    ctx, first = _synced(world)
    _workload(world)
    final, _ = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == ROWS
    assert compare(final).problems == []


def test_an_apply_the_target_refuses_makes_the_final_sync_full(world: World) -> None:
    """A batch Convox refuses (here a CHECK constraint only the Convox copy has) fails the apply:
    in the window a full copy follows, into staging, with the reason in a note."""
    may_replicate(world)
    ctx, first = _synced(world)
    with pgcluster.connect(world.target.cluster, world.target.dbname) as conn:
        conn.execute("ALTER TABLE books ADD CONSTRAINT not_late CHECK (title <> 'late')")
    world.source.execute("UPDATE books SET title = 'late' WHERE id < 5")
    final, notes = _final_ctx(world, ctx, first)
    out = _final(final)
    assert out.method == "direct"
    assert any("applying the changed rows failed" in line for line in notes)
    assert query(world.target, "SELECT count(*) FROM books WHERE title = 'late'") == [(4,)]
    assert compare(final).problems == []  # the full copy carries Heroku's schema, not the CHECK


def test_a_capture_installed_again_after_the_copy_makes_the_final_sync_full(world: World) -> None:
    """cleanup (or rollback) removed the capture, Heroku took writes no log saw, then
    ``cutover run --from capture-changes --until capture-changes`` installed it again without a
    new copy: the copy's position predates the log, so applying "the changes since" would miss
    those writes. The state says so (capture-changes finished after initial-sync started)."""
    ctx, first = _synced(world)
    pgcapture.uninstall(ctx.postgres, _source(world))
    world.source.execute("DELETE FROM books WHERE id > 390")  # logged nowhere
    again, _ = _installed(world)
    final, notes = _final_ctx(world, again, first)
    final.state.step("initial-sync").started_at = "2026-01-01T10:00:00+00:00"
    final.state.step("capture-changes").finished_at = "2026-01-01T11:00:00+00:00"
    out = _final(final)
    assert out.method == "direct"  # the full copy
    assert any(
        line.startswith("changed-rows: the final sync copies everything")
        and "installed again" in line
        for line in notes
    ), notes
    assert query(world.target, "SELECT count(*) FROM books") == [(390,)]


def test_verify_data_ignores_the_keyless_positions_a_catch_up_leaves_on_convox(
    world: World,
) -> None:
    """Between a catch-up and the final round, Convox holds ``_cutover.applied`` (the keyless
    tables' positions, pgapply_rows.APPLIED_SQL): verify-data compares no part of it."""
    ctx, first = _synced(world)
    final, _ = _final_ctx(world, ctx, first)
    FinalSync().apply(final)
    world.target.execute(
        *(s for s in APPLIED_SQL.split(";\n") if s.startswith("CREATE")),
        "INSERT INTO _cutover.applied VALUES ('public.events', 'a', 'b')",
    )
    assert query(world.target, "SELECT count(*) FROM _cutover.applied") == [(1,)]
    assert compare(final).problems == []
