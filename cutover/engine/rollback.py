"""`cutover rollback`: bring Heroku back from any point after the window started.

The steps whose effect must be undone declare ``undo_title`` (steps/base.py); rollback visits
them in reverse order of STEPS (start-workers, switch-dns, freeze-writes, scale-down,
maintenance-on: the last effect first), and undoes each whose ``undo_needed`` gives a reason.
It runs like a forward run: under the same lock, each undo checkpointed in the state's
``rollback`` section (running before its first effect, done after), audited (rollback-start,
rollback-step-start/-finish/-failed, rollback-complete), and resumable: a killed rollback is
re-run with the same command, which skips the undos done and checks the others again.

Before anything is undone while traffic is on Convox (the switch's undo is needed), the Convox
database's writes since the final sync are counted (adapters/pglive.py): they would be lost, so
the rollback refuses unless ``--force``. Moving traffic back is a gate too (``--yes`` or the
prompt). When it completes, the forward steps from the window's first started one on are
cleared (their outputs kept in the history, as ``--from`` does) so ``cutover run`` does the
window again.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.engine.audit import AuditLog
from cutover.engine.lock import RunLock
from cutover.engine.plan import check_identity, reset_from
from cutover.engine.run import (
    _user,
    confirm_gate,
    load_state,
    resume_command,
    sigterm_as_interrupt,
)
from cutover.errors import CutoverError, Interrupted, InvalidInput, StepFailed
from cutover.playbook import LoadedPlaybook, load_playbook
from cutover.state import RollbackState, RunState, StateStore, Status, UndoState, now_iso
from cutover.steps import STEP_IDS, STEPS, Context, Step
from cutover.ui import Ui

ROLLBACK_LOCK = "cutover rollback"
# Where an undo's saved progress is found during the undo (Context.save writes it there too).
UNDO_SAVED = "undo_saved"


@dataclass
class RollbackOptions:
    yes: bool = False
    force: bool = False  # roll back although the Convox database took writes since the sync
    interactive: bool = False


def rollback_command(playbook: LoadedPlaybook, extra: str = "") -> str:
    return resume_command(playbook, extra).replace("cutover run", "cutover rollback", 1)


def undo_order() -> list[Step]:
    """The steps with an undo, last effect first (reverse order of STEPS)."""
    return [s for s in reversed(STEPS) if s.undo_title]


def window_started(state: RunState) -> str | None:
    """The first step of the window that was started (maintenance-on or any in_window step),
    or None when the window has not started."""
    for step in STEPS:
        st = state.steps.get(step.id)
        if (step.in_window or step.id == "maintenance-on") and st and st.status != Status.PENDING:
            return step.id
    return None


def refuse_run_during_rollback(playbook: LoadedPlaybook, state: RunState) -> None:
    """`cutover run` while a rollback is unfinished would take the half-undone window for done
    (switch-dns still recorded done with DNS back on Heroku) and could say "complete"."""
    rb = state.rollback
    if rb is None or rb.status in (Status.DONE, Status.PENDING):
        return
    raise InvalidInput(
        f"a rollback of this cutover is unfinished ({rb.status.value}: {rb.error or '?'})",
        details="Part of the window is undone while the run's state still records it done; "
        "going forward now could report a cutover that is not in place.",
        resolution=f"Finish it first: {rollback_command(playbook)}. When it completes, "
        f"`{resume_command(playbook)}` does the window again.",
    )


def _started(state: RunState, step: Step) -> bool:
    st = state.steps.get(step.id)
    return st is not None and st.status not in (Status.PENDING, Status.SKIPPED)


def _ran(state: RunState, step: Step) -> bool:
    """Started, or cleared by a ``--from`` after it ran (its outputs in the history): what
    _visit undoes, so what the writes check must look at."""
    return _started(state, step) or step.id in state.history


def _moves_traffic_pending(rb: RollbackState) -> list[Step]:
    return [
        s
        for s in undo_order()
        if s.moves_traffic and rb.steps.get(s.id, UndoState()).status != Status.DONE
    ]


# -- the command ----------------------------------------------------------------------------------
def rollback(playbook_path: Path, options: RollbackOptions, ui: Ui) -> int:
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only to act

    playbook = load_playbook(playbook_path)
    with RunLock(playbook.state_dir, ROLLBACK_LOCK) as lock, sigterm_as_interrupt():
        store, state = load_state(playbook, ui.masker)
        check_identity(playbook, state)
        audit = AuditLog(playbook.state_dir, ui.masker, state.run_id)
        if lock.took_over is not None:
            audit.event("lock-taken-over", previous=lock.took_over.describe())
        rb = _current(playbook, state)
        if rb is None:  # the last rollback completed and no window started since: a resume
            done = state.rollback.finished_at if state.rollback else None
            ui.info(f"already rolled back (completed at {done}): nothing to undo", "green")
            audit.event("rollback-already-done", finished_at=done)
            return 0
        ctx = build_context(playbook, state, masker=ui.masker, audit=audit, reporter=ui)
        ui.heading(f"Rollback for {playbook.path}")
        _check_writes(ctx, rb, options, audit, ui)
        todo = [s for s in undo_order() if rb.steps.get(s.id, UndoState()).status != Status.DONE]
        _gate(ctx, rb, todo, options, audit, ui)
        resumed = rb.attempts > 0
        rb.status = Status.RUNNING
        rb.attempts += 1
        rb.started_at = rb.started_at or now_iso()
        rb.error = None
        store.save(state)
        audit.event(
            "rollback-start", user=_user(), attempt=rb.attempts, forced=rb.forced, resumed=resumed
        )
        order = undo_order()
        for index, step in enumerate(order, 1):
            _visit(ctx, store, audit, ui, rb, step, index, len(order))
        return _complete(ctx, store, audit, ui, rb)


def _current(playbook: LoadedPlaybook, state: RunState) -> RollbackState | None:
    """The rollback to resume, or a new one (the last completed one goes to ``rollbacks``);
    None when the last rollback completed and no window started since: running it again is a
    resume of a finished command (a kill after its completion checkpoint, found by `make
    chaos`), not a mistake."""
    rb = state.rollback
    if rb is not None and rb.status != Status.DONE:
        return rb
    started = window_started(state)
    if started is None:
        if rb is not None:
            return None
        raise InvalidInput(
            "nothing to roll back: the cutover window has not started "
            "(maintenance-on has not run).",
            resolution="Rollback undoes the window (DNS, workers, writes, maintenance). Before "
            f"it, nothing needs undoing; go on with: {resume_command(playbook)}",
        )
    if rb is not None:
        state.rollbacks.append(rb)
    state.rollback = RollbackState()
    return state.rollback


def _check_writes(
    ctx: Context, rb: RollbackState, options: RollbackOptions, audit: AuditLog, ui: Ui
) -> None:
    """While traffic is on Convox: refuse (unless --force) when the Convox database took
    writes since the final sync, or when that cannot be told."""
    from cutover.steps.dns import convox_writes_since_sync  # noqa: PLC0415 - adapters

    pending = _moves_traffic_pending(rb)
    moved = [s for s in pending if _ran(ctx.state, s) and s.undo_needed(ctx)]
    if not moved:
        return
    writes, found = convox_writes_since_sync(ctx)
    rb.writes_check = found
    if writes == 0:
        ui.info(f"checked: {found}; nothing written on Convox would be lost")
        audit.event("rollback-writes-check", found=found, writes=0)
        return
    if options.force or rb.forced:
        rb.forced = True
        ui.info(
            f"--force: {found}; they stay in the Convox database but Heroku will not have them",
            "yellow",
        )
        audit.event("rollback-writes-check", found=found, writes=writes, forced=True)
        return
    audit.event("rollback-refused", found=found, writes=writes)
    what = (
        f"{found}" if writes is not None else f"cutover cannot tell whether it took writes: {found}"
    )
    raise CutoverError(
        f"refusing to roll back: {what}",
        details="Traffic is on Convox: rolling back points it at Heroku, whose database does "
        "not have what the app wrote on Convox since the final sync. Those writes would be "
        "lost to the app (they stay in the Convox database, but the next sync replaces it). "
        "Nothing was changed.",
        resolution="Copy what you need from the Convox database first, or accept the loss "
        f"with: {rollback_command(ctx.playbook, ' --force')}",
    )


def _gate(
    ctx: Context,
    rb: RollbackState,
    todo: list[Step],
    options: RollbackOptions,
    audit: AuditLog,
    ui: Ui,
) -> None:
    steps = ", ".join(s.id for s in todo if _ran(ctx.state, s)) or "nothing left"
    traffic = any(s.moves_traffic for s in todo if _ran(ctx.state, s))
    question = f"Roll back the cutover now (undo: {steps})?" + (
        " Traffic goes back to Heroku." if traffic else ""
    )
    confirm_gate(
        ctx,
        "rollback",
        question,
        yes=options.yes,
        interactive=options.interactive,
        audit=audit,
        ui=ui,
        declined=f"Nothing was undone. When ready: {rollback_command(ctx.playbook)}",
        waiting="waiting at the gate before the rollback",
        confirm_command=rollback_command(ctx.playbook, " --yes"),
    )


def _visit(
    ctx: Context,
    store: StateStore,
    audit: AuditLog,
    ui: Ui,
    rb: RollbackState,
    step: Step,
    index: int,
    total: int,
) -> None:
    state = ctx.state
    us = rb.steps.get(step.id)
    if us is not None and us.status in (Status.DONE, Status.SKIPPED):
        ui.step_skipped(index, total, step.id, f"already {_word(us)} ({us.finished_at})")
        return
    if not _ran(state, step):
        ui.step_skipped(index, total, step.id, "never ran: nothing to undo")
        return
    us = rb.step(step.id)
    reason = step.undo_needed(ctx)
    if reason is None:
        # Nothing to undo; after an interrupted attempt, that attempt did it.
        us.found_applied = us.status != Status.PENDING
        us.status = Status.DONE if us.found_applied else Status.SKIPPED
        us.finished_at = now_iso()
        store.save(state)
        audit.event("rollback-step-skip", step=step.id, found_undone=us.found_applied)
        ui.step_skipped(index, total, step.id, f"{_word(us)}: nothing to undo")
        return
    ui.step_start(index, total, step.id, step.undo_title, reason)
    us.status = Status.RUNNING
    us.attempts += 1
    us.started_at = now_iso()
    us.finished_at = None
    us.error = None
    us.reason = ctx.masker.mask(reason)
    store.save(state)  # before the first effect: a crash now is visible on resume
    audit.event("rollback-step-start", step=step.id, attempt=us.attempts, reason=reason)
    started = time.monotonic()

    def checkpoint(outputs: dict[str, Any]) -> None:
        us.outputs.update(outputs)
        store.save(state)

    ctx.checkpoint = checkpoint
    ctx.extras[UNDO_SAVED] = us.outputs
    from cutover.runner import step_scope  # noqa: PLC0415 - sh: only when a step acts

    try:
        with step_scope(ctx.runner, step.id):
            step.undo(ctx)
    except (KeyboardInterrupt, Interrupted):
        _end(us, started, Status.INTERRUPTED, "interrupted by the operator")
        rb.status, rb.error = Status.INTERRUPTED, f"interrupted while undoing {step.id}"
        store.save(state)
        audit.event("rollback-step-interrupted", step=step.id)
        raise Interrupted(
            f"rollback interrupted while undoing {step.id}",
            resolution=f"Resume with: {rollback_command(ctx.playbook)} (the undo is checked "
            "again before it runs).",
        ) from None
    except CutoverError as exc:
        _failed(ctx, store, audit, rb, us, step, started, exc.brief, exc.details, exc.resolution)
    except Exception as exc:
        audit.event("step-crash", step=step.id, traceback=ctx.masker.mask(traceback.format_exc()))
        _failed(
            ctx,
            store,
            audit,
            rb,
            us,
            step,
            started,
            f"unexpected error: {type(exc).__name__}: {exc}",
            f"the traceback is in {store.folder / 'events.jsonl'}",
            "",
        )
    _end(us, started, Status.DONE)
    store.save(state)
    audit.event("rollback-step-finish", step=step.id, duration=us.duration)
    ui.step_done(us.duration or 0.0, False)


def _word(us: UndoState) -> str:
    if us.status == Status.SKIPPED:
        return "not needed"
    return "found undone" if us.found_applied else "undone"


def _end(us: UndoState, started: float, status: Status, error: str | None = None) -> None:
    us.status = status
    us.finished_at = now_iso()
    us.duration = round(time.monotonic() - started, 3)
    us.error = error


def _failed(
    ctx: Context,
    store: StateStore,
    audit: AuditLog,
    rb: RollbackState,
    us: UndoState,
    step: Step,
    started: float,
    brief: str,
    details: str,
    resolution: str,
) -> None:
    message = ctx.masker.mask(brief + (("\n" + details) if details else ""))
    _end(us, started, Status.FAILED, message)
    rb.status, rb.error = Status.FAILED, f"{step.id}: {ctx.masker.mask(brief)}"
    store.save(ctx.state)
    audit.event("rollback-step-failed", step=step.id, error=message, duration=us.duration)
    raise StepFailed(
        f"rollback: undoing {step.id} failed: {ctx.masker.mask(brief)}",
        details=ctx.masker.mask(details),
        resolution=(ctx.masker.mask(resolution) + "\n" if resolution else "")
        + f"Fix the cause, then resume the rollback with: {rollback_command(ctx.playbook)} "
        "(what is undone stays undone).",
    ) from None


def _complete(ctx: Context, store: StateStore, audit: AuditLog, ui: Ui, rb: RollbackState) -> int:
    state = ctx.state
    undone = [s.id for s in STEPS if (u := rb.steps.get(s.id)) and u.status == Status.DONE]
    # From the window's start, not the first undo done: an undo found not needed (maintenance
    # turned off by hand) still means Heroku served traffic and took writes since, so the
    # window (maintenance-on, the final sync, ...) must run again in full.
    first = window_started(state) or (undone[0] if undone else None)
    # An undo before the window (capture-changes: the capture is gone from Heroku) leaves
    # every step after it built on an effect that is no longer there (initial-sync's capture
    # position): the forward run starts again from the earliest step undone.
    before = [sid for sid in undone if first and STEP_IDS.index(sid) < STEP_IDS.index(first)]
    if before:
        first = before[0]
    cleared = reset_from(state, first) if first else []
    rb.reset_from = first
    rb.status = Status.DONE
    rb.finished_at = now_iso()
    store.save(state)
    audit.event("rollback-complete", undone=undone, reset_from=first, cleared=cleared)
    ui.info(
        "rollback complete: "
        + (", ".join(reversed(undone)) + " undone" if undone else "")
        + ("" if undone else "nothing needed undoing"),
        "bold green",
    )
    if first:
        ui.info(
            f"The forward steps from {first} on are reset (their first outputs kept): "
            f"`{resume_command(ctx.playbook)}` does the window again from {first}."
        )
    if before:
        ui.info(
            f"{', '.join(before)} undone before the window started: the next run does "
            f"{first} and every step after it again (for capture-changes: it installs the "
            "capture again, then initial-sync copies again, so the capture covers the copy)."
        )
    if rb.forced and rb.writes_check:
        ui.info(
            f"Rolled back with --force: {rb.writes_check}. They are not on Heroku; the next "
            "final sync refuses to replace them until you run it with --force-data.",
            "yellow",
        )
    return 0


# -- plan -----------------------------------------------------------------------------------------
def rollback_plan(playbook_path: Path, ui: Ui) -> int:
    """What `cutover rollback` would undo, in order, with the commands. Looks (DNS, the Convox
    database's marker) but changes and writes nothing."""
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only to look

    playbook = load_playbook(playbook_path)
    store = StateStore(playbook.state_dir, ui.masker)
    state = store.load()
    if state is None:
        raise InvalidInput(f"no run yet for {playbook.path}: nothing to roll back")
    check_identity(playbook, state)  # in memory only
    ctx = build_context(
        playbook, state, masker=ui.masker, audit=None, reporter=ui, sandbox_optional=True
    )
    rb = state.rollback if state.rollback and state.rollback.status != Status.DONE else None
    ui.heading(f"Rollback plan for {playbook.path} (nothing is executed; nothing is written)")
    if rb is None and window_started(state) is None:
        ui.info("nothing to roll back: the cutover window has not started", "bold")
        return 0
    if rb is not None:
        ui.info(f"a rollback is {rb.status.value} (started {rb.started_at}): it resumes", "yellow")
    rb = rb or RollbackState()
    order = undo_order()
    for index, step in enumerate(order, 1):
        ui.info(f"[{index:>2}/{len(order)}] {step.id}: {step.undo_title}", "bold")
        us = rb.steps.get(step.id)
        if us is not None and us.status in (Status.DONE, Status.SKIPPED):
            ui.info(f"        {_word(us)} ({us.finished_at})")
            continue
        if not _ran(state, step):
            ui.info("        nothing to undo: never ran")
            continue
        try:
            reason = step.undo_needed(ctx)
        except CutoverError as exc:
            ui.info(f"        cannot tell now: {exc.brief}", "yellow")
            reason = "to be checked when the rollback runs"
        if reason is None:
            ui.info("        nothing to undo: its effect is gone")
            continue
        ui.info(f"        will undo: {reason}")
        if step.moves_traffic and ctx.model.database is not None:
            ui.info(
                "        first: count the Convox database's writes since the final sync "
                "(refused unless --force when there are any)",
                "yellow",
            )
        for line in step.undo_describe(ctx):
            if line:
                ui.info(f"        $ {line}")
    ui.info("gate: the rollback asks before it starts (or --yes)", "yellow")
    return 0


def rollback_lines(state: RunState) -> list[str]:
    """The rollback's progress for `cutover status`."""
    rb = state.rollback
    if rb is None:
        return []
    lines = [
        f"rollback: {rb.status.value} (started {rb.started_at}"
        + (f", finished {rb.finished_at}" if rb.finished_at else "")
        + f", attempts {rb.attempts}"
        + (", forced" if rb.forced else "")
        + ")"
    ]
    for step in undo_order():
        us = rb.steps.get(step.id)
        if us is None:
            continue
        what = _word(us) if us.status in (Status.DONE, Status.SKIPPED) else us.status.value
        line = f"  {step.id}: {what}"
        if us.duration is not None and us.status == Status.DONE:
            line += f" in {us.duration:.1f}s"
        if us.error:
            line += f" - {us.error.splitlines()[0]}"
        lines.append(line)
    if rb.error and rb.status != Status.DONE:
        lines.append(f"  stopped: {rb.error}")
    if rb.reset_from:
        lines.append(f"  forward steps reset from {rb.reset_from}")
    return lines
