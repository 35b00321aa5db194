"""The data steps' side of ``database.final_sync: changed-rows`` (issue 13; the capture itself is
cutover/steps/capture.py, its objects cutover/adapters/pgcapture.py, the apply pgapply.py).

initial-sync: refuses without the capture (installed by capture-changes), installs it again
when Heroku's schema changed since (a refresh: new tables captured, fingerprints renewed, since
the copy that follows carries the new schema), and reads the capture position BEFORE the copy
starts. Applying is idempotent (a key's row is copied as of a later snapshot, or deleted), so a
position at or before the copy's snapshot is safe: changes already in the copy are applied again
by the first round. The position is written on the copy itself (its marker ``capture=<S>``) and in
initial-sync's outputs.

final-sync: applies the log since the target's recorded position (else initial-sync's), with
``final=True`` (keyless tables copied whole, every sequence set); it falls back to a full sync,
saying why, when the capture is missing, a table is not capturable, no position is known, or the
apply fails (e.g. the Convox role may not set session_replication_role while foreign keys link
changed tables). A schema change on Heroku since the install (cutover/adapters/pgcapture_ddl.py:
a table changed, new or dropped, or its capture trigger missing) is scoped to those tables:
they are replaced whole with Heroku's new definition and rows, in one transaction
(cutover/adapters/pgreplace.py), and the log is applied to the others; only when something
outside them depends on one (a materialized view...), or their new definition uses what Convox
lacks (an enum type added with a column...), is the whole database copied, naming it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from cutover.errors import CutoverError, Interrupted

if TYPE_CHECKING:
    from cutover.adapters.pgapply import ApplyResult
    from cutover.adapters.pgcapture import CapturePlan
    from cutover.adapters.pgcapture_ddl import SchemaChanges
    from cutover.adapters.postgres import ConnInfo, PostgresAdapter
    from cutover.state import RunState
    from cutover.steps.base import Context

CHANGED_ROWS = "changed-rows"
FALLBACK = "changed-rows: the final sync copies everything"
GUARD_MARKER = "guard_marker"  # ctx.extras: the Convox marker the step's guard just read
CAPTURE_READS = "capture_reads"  # ctx.extras: a Future of pgcapture_ddl.read_all (final-sync)


def wanted(ctx: Context) -> bool:
    db = ctx.model.database
    return db is not None and db.final_sync == CHANGED_ROWS


def describe(ctx: Context, step_id: str) -> list[str]:
    """The changed-rows lines of the data steps' plans (none for other final syncs)."""
    if not wanted(ctx):
        return []
    if step_id == "initial-sync":
        return [
            "changed-rows, before the copy: psql (Heroku) the capture's status (refused without "
            "it: cutover run --until capture-changes), its schema fingerprints (installed "
            "again after a change), then SELECT pg_current_snapshot() (the capture position); "
            "the copy leaves out schema _cutover and the cutover_capture* triggers",
        ]
    return [
        "changed-rows, after the guard and instead of the copy below: the capture's status, "
        "tables and schema fingerprints on Heroku (any doubt: the full copy below, with a note "
        "why); tables whose definition changed on Heroku since the capture (or new, dropped, or "
        "a capture trigger missing): replaced whole with the new definition in ONE transaction "
        "on Convox (psql (Heroku) pg_export_snapshot(); pg_dump --schema-only "
        "--section=pre-data/post-data --snapshot=<id> -t <table>; DROP TABLE ... CASCADE, "
        "psql COPY (Heroku, in the snapshot) | psql COPY (Convox), foreign keys re-created NOT "
        "VALID), the log applied to the others; a materialized view or other object depending "
        "on one, or a type or function their new definition uses that Convox lacks: the "
        "full copy below; the position from the Convox marker's capture=<S> (else "
        "initial-sync's); per "
        "table with logged changes, keys in order in batches: psql COPY (Heroku, one exported "
        "snapshot) | psql (Convox: one transaction per batch, delete the keys, insert the rows); "
        "keyless and truncated tables copied whole; every sequence set; marker capture=<S>",
    ]


def installed_after_copy(state: RunState) -> str | None:
    """Why initial-sync's copy (and any position recorded on it) predates the capture, or None.

    capture-changes finished after initial-sync started: the capture was installed again (after
    ``cutover cleanup`` or a rollback removed it, with ``--from capture-changes``) without a new
    copy, so writes made while it was absent are in no log and "the changes since the copy's
    position" would miss them. Normal runs finish capture-changes before initial-sync starts.
    """
    capture, initial = state.step("capture-changes"), state.step("initial-sync")
    if not capture.finished_at or not initial.started_at:
        return None
    if datetime.fromisoformat(capture.finished_at) <= datetime.fromisoformat(initial.started_at):
        return None
    return (
        f"the change capture was installed again ({capture.finished_at}) after initial-sync's "
        f"copy started ({initial.started_at}): writes made while it was absent are in no log"
    )


def initial_position(ctx: Context, source: ConnInfo) -> str | None:
    """changed-rows: the capture position read before the copy (None for other final syncs).
    Refuses (CutoverError) when the capture is not installed on Heroku."""
    from cutover.adapters import pgcapture  # noqa: PLC0415 - adapters load when a step runs

    if not wanted(ctx):
        return None
    pg = ctx.postgres
    status = pgcapture.status(pg, source)
    if not status.installed or status.missing_triggers:
        what = (
            "is not installed"
            if not status.installed
            else "lacks triggers on " + ", ".join(status.missing_triggers)
        )
        raise CutoverError(
            f"database.final_sync is changed-rows but the change capture on Heroku {what}: "
            "a copy taken now could miss the changes made while it runs",
            resolution="Install it first: cutover run --until capture-changes (or set "
            "database.final_sync: full).",
        )
    changes = pgcapture.schema_changes(pg, source)
    if changes:
        ctx.note(
            "changed-rows: Heroku's schema changed since the capture was installed ("
            + "; ".join(changes)
            + "); installing it again before this copy, which carries the new schema"
        )
        pgcapture.install(pg, source, pgcapture.inspect(pg, source))
    position = pgcapture.position(pg, source)
    ctx.note(f"changed-rows: capture position {position}, read before the copy starts")
    return position


def mark_synced(pg: PostgresAdapter, conn: ConnInfo, position: str | None) -> str:
    """The ``cutover:synced`` marker, with `` capture=<position>`` (what
    pgapply.applied_position reads) when there is one."""
    from cutover.adapters import pgstaging  # noqa: PLC0415

    return pgstaging.mark_synced(pg, conn, f" capture={position}" if position else "")


class Decision(NamedTuple):
    """fallback_reason's answer: why a whole-database copy (or None), the capture plan, the
    position to apply from, and Heroku's schema changes scoped to tables (replaced whole)."""

    why: str | None
    plan: CapturePlan | None = None
    since: str | None = None
    ddl: SchemaChanges | None = None


def read_capture_early(ctx: Context, credentials: Future[str]) -> None:
    """final-sync: start reading Heroku's capture (pgcapture_ddl.read_all: one psql) as soon as
    Heroku's URL is known (in the window: read before it, freeze.prefetch), while the Convox
    side is proxied, looked at and guarded; :func:`fallback_reason` takes the result. Only
    Heroku is read."""
    from cutover.adapters import pgcapture_ddl  # noqa: PLC0415
    from cutover.steps.data import heroku_source  # noqa: PLC0415 - data imports us

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-reads")
    ctx.extras[CAPTURE_READS] = pool.submit(
        lambda: pgcapture_ddl.read_all(ctx.postgres, heroku_source(ctx, credentials.result()))
    )
    pool.shutdown(wait=False)


def fallback_reason(
    ctx: Context, source: ConnInfo, conn: ConnInfo, initial_position: str | None
) -> Decision:
    """Why a changed-rows sync cannot be trusted at all (a whole-database copy), or None with
    the plan, the position since, and the tables a schema change on Heroku affects
    (cutover/adapters/pgcapture_ddl.py: changed, new, dropped, or a capture trigger missing;
    final_sync replaces those whole, with their new definition)."""
    from cutover.adapters import pgapply, pgcapture_ddl  # noqa: PLC0415

    pg = ctx.postgres
    # The marker as the step's guard read it (nothing wrote it since), else read here, while
    # Heroku's side is read: every read is independent (each psql start paid once at a time
    # otherwise: nine in a row were about 1.3 s of a small window).
    seen = ctx.extras.pop(GUARD_MARKER, None)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="convox-marker") as pool:
        applied = pool.submit(pgapply.applied_position, pg, conn, seen)
        early: Future[pgcapture_ddl.Reads | None] | None = ctx.extras.pop(CAPTURE_READS, None)
        reads = early.result() if early is not None else pgcapture_ddl.read_all(pg, source)
        if reads is None:
            return Decision(
                "the change capture is not installed on Heroku (cutover cleanup or rollback "
                "removes it; before the window, `cutover run --from capture-changes` installs "
                "it and copies again)"
            )
        plan = reads.plan
        if plan.unsupported:
            return Decision("tables the capture cannot cover: " + "; ".join(plan.unsupported))
        ddl = pgcapture_ddl.detect(pg, source, conn, reads)
        if ddl.whole:
            return Decision(
                "Heroku's schema changed since the capture ("
                + ddl.summary()
                + "), and only a whole copy is right: "
                + "; ".join(ddl.whole)
            )
        since = applied.result() or initial_position
    if since is None:
        return Decision(
            "no capture position is recorded (initial-sync ran before final_sync was changed-rows)"
        )
    return Decision(None, plan, since, ddl)


def schema_note(ddl: SchemaChanges, plan: CapturePlan) -> str:
    """The note of a final sync that replaces the tables a schema change affects."""
    left = ddl.unaffected(plan)
    dropped = f"; {len(ddl.dropped)} dropped there, dropped on Convox too" if ddl.dropped else ""
    # keyless tables whose inserts are logged are applied from the log too; the others (no
    # row log) are copied whole by the final round, as without a schema change
    logged = {t.name for t in left.logged}
    unlogged = [k for k in left.keyless if k not in logged]
    whole = f", {len(unlogged)} keyless without a row log copied whole" if unlogged else ""
    return (
        f"changed-rows: Heroku's schema changed since the capture ({ddl.summary()}); those "
        f"{len(ddl.replaced)} table(s) are copied whole{dropped}, the other "
        f"{len(left.tables) + len(logged)} applied from the log{whole}"
    )


def replace_affected(
    ctx: Context, source: ConnInfo, conn: ConnInfo, since: str, ddl: SchemaChanges
) -> None:
    """Replace the tables Heroku's schema change affects (cutover/adapters/pgreplace.py: one
    transaction), the target marked ``cutover:syncing ... capture=<since>`` first: an
    interruption anywhere resumes from the same position and replaces them again."""
    from cutover.adapters import pgreplace, pgstaging  # noqa: PLC0415

    db = ctx.model.database
    assert db
    pgstaging.mark(
        ctx.postgres,
        conn,
        conn.dbname,
        f"{pgstaging.MARKER_SYNCING} {pgstaging.now_iso()} capture={since}",
    )
    done = pgreplace.replace_tables(
        ctx.runner,
        ctx.masker,
        ctx.postgres,
        source,
        conn,
        replace=ddl.replaced,
        drop=ddl.gone_names,
        timeout=db.timeout,
        views=ddl.views,
    )
    ctx.note(
        f"changed-rows: replaced {len(done.tables)} table(s) with Heroku's definition and rows "
        f"(one transaction, snapshot {done.position})"
        + (f", dropped {', '.join(done.dropped)}" if done.dropped else "")
        + (f", re-created the view(s) {', '.join(done.views)}" if done.views else "")
        + f", {done.foreign_keys} foreign key(s) re-created"
    )


def final_sync(
    ctx: Context, source: ConnInfo, conn: ConnInfo, initial_position: str | None
) -> dict[str, Any] | None:
    """The window's changed-rows sync in place on ``conn``: the outputs' fields, or None (with a
    note saying why) for a full sync."""
    from cutover.adapters import pgstaging  # noqa: PLC0415

    db = ctx.model.database
    assert db
    why = installed_after_copy(ctx.state)
    decision = Decision(why)
    if why is None:
        decision = fallback_reason(ctx, source, conn, initial_position)
    plan, since, ddl = decision.plan, decision.since, decision.ddl
    if decision.why is not None or plan is None or since is None:
        ctx.note(f"{FALLBACK}: {decision.why}")
        return None
    started = time.monotonic()
    replaced: tuple[str, ...] = ()
    stage = "applying the changed rows"
    try:
        if ddl is not None and ddl.tables:
            ctx.note(schema_note(ddl, plan))
            stage = "replacing the changed tables"
            replace_affected(ctx, source, conn, since, ddl)
            stage = "applying the changed rows"
            plan, replaced = ddl.unaffected(plan), ddl.replaced
        result = apply_round(ctx, source, conn, since, plan, final=True)
    except Interrupted:
        raise
    except CutoverError as exc:
        # In the window a full copy is always right: it goes into staging and is swapped in,
        # whatever part of the apply committed (its marker says cutover:syncing, which the
        # guard lets through).
        ctx.note(f"{FALLBACK}: {stage} failed: {exc.brief}")
        return None
    # The marker the apply wrote, as its last psql printed it (not read back: one psql less).
    comment = result.marker or pgstaging.read_marker(ctx.postgres, conn)[2]
    ctx.note(
        f"changed-rows: applied {result.entries} logged change(s) since {since} through "
        f"{result.position}: {result.upserted} row(s) written, {result.deleted} deleted, "
        f"{len(result.whole)} table(s) copied whole, {result.sequences} sequence(s) set"
    )
    return {
        "method": CHANGED_ROWS,
        "bytes": 0,
        "objects": len(result.tables) + len(result.whole) + len(replaced),
        "seconds": round(time.monotonic() - started, 3),
        "marker": comment or None,
        "tables_copied": sorted({*result.tables, *result.whole, *replaced}),
        "entries": result.entries,
        "upserted": result.upserted,
        "deleted": result.deleted,
        "whole": sorted({*result.whole, *replaced}),
        "position": result.position,
        "schema_changed": [t.line() for t in ddl.tables] if ddl and ddl.tables else None,
    }


def apply_round(
    ctx: Context, source: ConnInfo, conn: ConnInfo, since: str, plan: CapturePlan, *, final: bool
) -> ApplyResult:
    """One round of pgapply.apply_changes with the playbook's jobs, timeout and batch size, its
    progress drawn as keys applied of the round's total (rate and ETA from ``ctx.progress``):
    a catch-up (engine/catchup.py) or the window's final apply."""
    from cutover.adapters import pgapply  # noqa: PLC0415 - adapters load when a step runs

    db = ctx.model.database
    assert db
    return pgapply.apply_changes(
        ctx.runner,
        ctx.masker,
        ctx.postgres,
        source,
        conn,
        since,
        plan=plan,
        final=final,
        jobs=db.restore_jobs,
        timeout=db.timeout,
        batch_keys=db.catchup_batch_keys,
        progress=lambda p: ctx.progress(p.keys_done, p.keys_total, unit="keys"),
    )
