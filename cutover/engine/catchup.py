"""``cutover catch-up``: apply Heroku's logged changes to the Convox database before the window
(``database.final_sync: changed-rows``, issue 13), so the window's final sync holds only what
changed since the last catch-up. Optional and repeatable.

It runs beside ``cutover run`` as ``verify --data`` does: under the run lock, bound to the state's
identity, audited (``catch-up`` events), and it changes no step's entry in the state: the applied
position is recorded on the Convox database itself (its marker's ``capture=<S>``, written by
cutover/adapters/pgapply.py only after the round's writes committed), so a killed catch-up is
simply run again (applying is idempotent: see cutover/steps/capture.py).

Refused: before initial-sync is done, once the window started (freeze-writes, maintenance-on or
any later step began: final-sync applies the rest), into a live Convox database (the guard of
cutover/adapters/pgstaging.py), without the capture, and after a schema change on Heroku (the
final sync will then copy everything; re-running initial-sync gets a short window back).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from cutover.engine.audit import AuditLog
from cutover.engine.lock import RunLock
from cutover.engine.plan import check_identity
from cutover.engine.run import load_state, resume_command
from cutover.errors import CutoverError, InvalidInput, NotYet
from cutover.playbook import LoadedPlaybook, load_playbook
from cutover.state import RunState, Status
from cutover.ui import Ui

if TYPE_CHECKING:
    from cutover.adapters.pgcapture import CapturePlan, Pending
    from cutover.adapters.postgres import ConnInfo
    from cutover.steps.base import Context

CATCHUP_LOCK = "cutover catch-up"


def behind(pending: Pending) -> str:
    """``N change(s) behind`` with the busiest tables."""
    if not pending.entries:
        return "0 changes behind"
    top = sorted(pending.tables.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    text = f"{pending.entries} change(s) behind (" + ", ".join(f"{n} {k}" for k, n in top)
    if len(pending.tables) > len(top):
        text += ", ..."
    text += ")"
    if pending.truncated:
        text += f"; truncated since: {', '.join(pending.truncated)} (copied whole)"
    return text


def refuse_outside(playbook: LoadedPlaybook, state: RunState) -> str:
    """The capture position initial-sync recorded; CutoverError when catch-up may not run now."""
    from cutover.engine.rollback import window_started  # noqa: PLC0415 - rollback imports run
    from cutover.steps.base import read_outputs  # noqa: PLC0415
    from cutover.steps.data import InitialSyncOutputs  # noqa: PLC0415
    from cutover.steps.datarows import installed_after_copy  # noqa: PLC0415

    db = playbook.model.database
    if db is None:
        raise InvalidInput(f"{playbook.path}: no database section, so nothing to catch up")
    if db.final_sync != "changed-rows":
        raise InvalidInput(
            f"{playbook.path}: database.final_sync is {db.final_sync}; catch-up applies the "
            "change log of final_sync: changed-rows",
            resolution="Set database.final_sync: changed-rows, then "
            f"{resume_command(playbook, ' --until capture-changes')} and --until initial-sync.",
        )
    if state.step("final-sync").status == Status.DONE:
        raise CutoverError(
            "the final sync is done: the Convox database took the rest of the change log in "
            "the window, so there is nothing to catch up",
            resolution="When you no longer need to roll back, remove the change capture from "
            "Heroku: cutover cleanup" + resume_command(playbook).removeprefix("cutover run"),
        )
    started = window_started(state)
    if started is not None:
        raise CutoverError(
            f"the cutover window has started ({started}): the final sync applies the rest of "
            "the change log, so catch-up is for before the window",
            resolution=f"Continue the window: {resume_command(playbook)}",
        )
    initial = read_outputs(state, InitialSyncOutputs)
    if initial is None:
        raise NotYet(
            "initial-sync is not done: there is no copy on Convox to catch up",
            resolution=resume_command(playbook, " --until initial-sync"),
        )
    if not initial.capture_position:
        raise CutoverError(
            "initial-sync recorded no capture position (it ran before final_sync was "
            "changed-rows): the copy's place in the change log is unknown",
            resolution="Copy again with the capture in place: "
            + resume_command(playbook, " --from initial-sync --until initial-sync"),
        )
    stale = installed_after_copy(state)
    if stale is not None:
        raise CutoverError(
            f"{stale}, so the copy's capture position cannot be trusted",
            resolution="Copy again with the capture in place: "
            + resume_command(playbook, " --from initial-sync --until initial-sync"),
        )
    return initial.capture_position


def check_capture(ctx: Context, source: ConnInfo, target: ConnInfo | None = None) -> CapturePlan:
    """The capture plan, or CutoverError when the capture cannot be trusted for a round. With
    ``target`` (the Convox database, through the proxy) a schema change is judged against it
    too, as the final sync will (pgcapture_ddl.detect: a type or function the new definition
    uses that Convox lacks means a whole copy), so the refusal says what the window will do."""
    from cutover.adapters import pgcapture, pgcapture_ddl  # noqa: PLC0415 - adapters load when a command runs

    pg = ctx.postgres
    status = pgcapture.status(pg, source)
    if not status.installed:
        raise CutoverError(
            "the change capture is not installed on Heroku",
            resolution="Install it: "
            + resume_command(ctx.playbook, " --from capture-changes --until capture-changes")
            + ", then copy again: "
            + resume_command(ctx.playbook, " --from initial-sync --until initial-sync"),
        )
    if status.missing_triggers:
        raise CutoverError(
            "capture triggers are missing on Heroku: " + ", ".join(status.missing_triggers),
            resolution="Install them again and copy again: "
            + resume_command(ctx.playbook, " --from capture-changes --until initial-sync"),
        )
    ddl = pgcapture_ddl.detect(pg, source, target)
    if ddl.tables or ddl.whole:
        # Still refused (the logged keys cannot be written into the old definitions), but the
        # window is not lost: the final sync replaces only the affected tables (steps/datarows).
        if ddl.whole:
            brief = (
                "Heroku's schema changed since the change capture was installed, so the final "
                "sync will be full (it copies everything: " + "; ".join(ddl.whole) + ") and "
                "catching up would not shorten it"
            )
        else:
            names = ", ".join([*ddl.replaced, *ddl.dropped])
            brief = (
                "Heroku's schema changed since the change capture was installed: the final "
                f"sync will copy only the affected tables whole ({names}) and apply the log to "
                "the others; catching up cannot write their logged rows into the old definitions"
            )
        raise CutoverError(
            brief,
            details="\n".join([*(t.line() for t in ddl.tables), *ddl.whole]),
            resolution="Nothing is needed before the window (the final sync handles it). To "
            "catch up again, copy again (the capture is refreshed first): "
            + resume_command(ctx.playbook, " --from initial-sync --until initial-sync"),
        )
    plan = pgcapture.inspect(pg, source)
    if plan.unsupported:
        raise CutoverError(
            "some tables cannot be captured, so the final sync will be full and catching up "
            "would not shorten it",
            details="\n".join(plan.unsupported),
            resolution="Set database.final_sync: full (or changed-tables).",
        )
    return plan


def catch_up(playbook_path: Path, ui: Ui, *, dry_run: bool = False) -> int:
    playbook = load_playbook(playbook_path)
    with RunLock(playbook.state_dir, CATCHUP_LOCK):
        _store, state = load_state(playbook, ui.masker)
        check_identity(playbook, state)  # in memory only: nothing is written to the state
        initial_position = refuse_outside(playbook, state)
        # Adapters load only once the command may act (start-up time).
        from cutover.adapters import pgapply, pgcapture, pgstaging  # noqa: PLC0415
        from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415
        from cutover.engine import context  # noqa: PLC0415
        from cutover.runner import step_scope  # noqa: PLC0415
        from cutover.steps.data import heroku_source, wait_for_resource  # noqa: PLC0415
        from cutover.steps.datarows import apply_round  # noqa: PLC0415

        db = playbook.model.database
        assert db
        audit = AuditLog(playbook.state_dir, ui.masker, state.run_id)
        ctx = context.build_context(playbook, state, masker=ui.masker, audit=audit, reporter=ui)
        ui.heading(
            f"catch-up for {playbook.path}" + (" (dry run: nothing written)" if dry_run else "")
        )
        with step_scope(ctx.runner, "catch-up"):
            source = heroku_source(ctx)
            target = ConnInfo.from_url(ctx.convox.resource_url(db.resource))
            ctx.masker.add(target.password)
            with ctx.convox.proxy(db.resource, speaks="postgres") as port:
                conn = target.via("127.0.0.1", port)
                wait_for_resource(ctx, conn)
                plan = check_capture(ctx, source, conn)
                pgstaging.guard(ctx.postgres, conn, force=False)  # refuses a live database
                since = pgapply.applied_position(ctx.postgres, conn) or initial_position
                before = pgcapture.pending(ctx.postgres, source, since)
                ui.note(f"Convox is {behind(before)} (since capture position {since})")
                if dry_run:
                    audit.event("catch-up", dry_run=True, since=since, behind=before.entries)
                    return 0
                audit.event("catch-up-start", since=since, behind=before.entries)
                started = time.monotonic()
                try:
                    result = apply_round(ctx, source, conn, since, plan, final=False)
                except CutoverError as exc:
                    audit.event("catch-up-failed", since=since, error=exc.brief)
                    exc.resolution = exc.resolution or (
                        "Run it again (what committed stays applied): cutover catch-up"
                    )
                    raise
            after = pgcapture.pending(ctx.postgres, source, result.position)
        seconds = max(time.monotonic() - started, 1e-6)
        rate = result.entries / seconds
        audit.event(
            "catch-up",
            since=since,
            position=result.position,
            entries=result.entries,
            upserted=result.upserted,
            deleted=result.deleted,
            whole=list(result.whole),
            seconds=round(seconds, 3),
            behind=after.entries,
        )
    ui.note(
        f"applied {result.entries} change(s) in {seconds:.1f}s ({rate:,.0f}/s): "
        f"{result.upserted} row(s) written, {result.deleted} deleted"
        + (f", copied whole: {', '.join(result.whole)}" if result.whole else "")
    )
    ui.info(f"now {behind(after)} (capture position {result.position})", "green")
    return 0
