"""The executor: lock, load state, check the playbook, then check-then-apply each step.

The checkpoint discipline: a step is saved as ``running`` before its first side effect and as
``done`` (with its outputs) after it; every save is atomic, and a failed save stops the run.
"""

from __future__ import annotations

import getpass
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.prompt import Confirm

from cutover.engine.audit import AuditLog
from cutover.engine.lock import RunLock
from cutover.engine.plan import (
    Action,
    Kind,
    affected_text,
    build_plan,
    check_identity,
    has_started,
    new_state,
    plan_rerun,
    playbook_changes,
    reset_from,
    reset_steps,
    step_inputs,
    steps_with_changed_inputs,
    validate_step,
)
from cutover.errors import (
    CutoverError,
    GateWaiting,
    Interrupted,
    InvalidInput,
    NotYet,
    StepFailed,
)
from cutover.playbook import DEFAULT_PLAYBOOK, LoadedPlaybook, load_playbook
from cutover.secrets import SecretMasker
from cutover.state import RunState, StateStore, Status, now_iso
from cutover.steps import BY_ID, STEP_IDS, STEPS, Context, Step
from cutover.steps.base import PROGRESS_KEY, StepOutputs, dump, read_outputs
from cutover.steps.confirm import ConfirmWindowOutputs
from cutover.steps.site import VerifySiteOutputs
from cutover.steps.window import MaintenanceOnOutputs
from cutover.ui import Ui


@dataclass
class RunOptions:
    until: str | None = None
    from_step: str | None = None
    yes: bool = False
    accept_changes: bool = False
    interactive: bool = False
    # Sync into a Convox database the guard would refuse (live, written since the last sync,
    # holding foreign tables), after a gate (steps/data.py; the guard: adapters/pgstaging.py).
    force_data: bool = False


def resume_command(playbook: LoadedPlaybook, extra: str = "") -> str:
    default = (Path.cwd() / DEFAULT_PLAYBOOK).resolve()
    where = "" if playbook.path == default else f" -f {playbook.path}"
    return f"cutover run{where}{extra}"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a dropped ssh session) stop a run like Ctrl-C: the child is
    stopped in stages and the step recorded as interrupted."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def load_state(playbook: LoadedPlaybook, masker: SecretMasker) -> tuple[StateStore, RunState]:
    store = StateStore(playbook.state_dir, masker)
    return store, store.load() or new_state(playbook)


def run(playbook_path: Path, options: RunOptions, ui: Ui) -> int:
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only for a run or plan

    validate_step(options.until, "--until")
    validate_step(options.from_step, "--from")
    playbook = load_playbook(playbook_path)
    masker = ui.masker
    with RunLock(playbook.state_dir, "cutover run") as lock, sigterm_as_interrupt():
        store, state = load_state(playbook, masker)
        check_identity(playbook, state)  # another app is refused before anything else
        from cutover.engine.rollback import refuse_run_during_rollback  # noqa: PLC0415 - cycle

        refuse_run_during_rollback(playbook, state)
        audit = AuditLog(playbook.state_dir, masker, state.run_id)
        if lock.took_over is not None:
            audit.event("lock-taken-over", previous=lock.took_over.describe())
        changes = playbook_changes(playbook, state)
        affected = steps_with_changed_inputs(playbook, state) if changes else []
        if changes and has_started(state) and not options.accept_changes:
            raise InvalidInput(
                f"{playbook.path} changed since this run started",
                details="changed: " + ", ".join(changes) + "\n" + affected_text(affected),
                resolution="Check that the change is intended, then run again with "
                "--accept-changes: it re-runs the steps named above (and the later ones that "
                "read their outputs).",
            )
        if changes:
            audit.event(
                "playbook-changed", fields=changes, accepted=options.accept_changes, steps=affected
            )
            ui.info("playbook changed (accepted): " + ", ".join(changes), "yellow")
            _accept(playbook, state, affected, audit, ui)
        state.playbook.fingerprint = playbook.fingerprint()
        state.playbook.fields = playbook.flat()
        if options.from_step:
            refuse_resync_after_switch(state, options.from_step)
            cleared = reset_from(state, options.from_step)
            audit.event("rerun-from", step=options.from_step, cleared=cleared)
        store.save(state)
        audit.event(
            "run-start",
            playbook=str(playbook.path),
            user=_user(),
            until=options.until,
            from_step=options.from_step,
        )
        ctx = build_context(playbook, state, masker=masker, audit=audit, reporter=ui)
        ctx.extras["force_data"] = options.force_data
        try:
            return _execute(ctx, store, audit, options, ui)
        finally:
            ctx.convox.close()  # the proxies held for the run (steps/freeze.py prefetch)


def _accept(
    playbook: LoadedPlaybook, state: RunState, affected: list[str], audit: AuditLog, ui: Ui
) -> None:
    """--accept-changes: re-run exactly the steps whose inputs changed and the later ones
    that read their outputs; say which are kept and why."""
    decision = plan_rerun(affected, state)
    for sid, why in decision.kept.items():
        ui.info(f"not re-running {sid}: {why}", "yellow")
        # Accepted as it is: its inputs are the new playbook's from now on.
        state.steps[sid].inputs = step_inputs(BY_ID[sid], playbook.flat(), state)
    if decision.rerun:
        ui.info("re-running (inputs changed): " + ", ".join(decision.rerun), "yellow")
    reset_steps(state, decision.rerun)
    audit.event("rerun-changed", steps=decision.rerun, kept=decision.kept)


def refuse_resync_after_switch(state: RunState, from_step: str) -> None:
    """Once traffic is on Convox, re-running a data sync would copy Heroku's (stale) data over
    the live Convox database: --from a step at or before a step that overwrites the Convox
    data is refused then (the flags are declared on the steps)."""
    moved = [
        s
        for s in STEPS
        if s.moves_traffic
        and (st := state.steps.get(s.id)) is not None
        and st.status == Status.DONE
    ]
    if not moved:
        return
    switched = state.steps[moved[0].id]
    cleared = STEPS[STEP_IDS.index(from_step) :]
    if any(s.overwrites_target_data for s in cleared):
        raise InvalidInput(
            f"--from {from_step} would run the data sync again, but traffic moved to Convox "
            f"at {switched.finished_at} ({moved[0].id} is done)",
            details="A sync now would replace the live Convox database with Heroku's older "
            "copy and lose every write since the switch.",
            resolution="Re-run only later steps (e.g. --from verify-dns). To start a new "
            "migration on purpose, move the .cutover folder aside first.",
        )


def _execute(ctx: Context, store: StateStore, audit: AuditLog, options: RunOptions, ui: Ui) -> int:
    state, playbook = ctx.state, ctx.playbook
    actions = build_plan(playbook, state, options.until)
    total = len(actions)
    for index, action in enumerate(actions, 1):
        step = action.step
        if action.kind == Kind.DONE:
            continue
        if action.kind == Kind.SKIP:
            st = state.step(step.id)
            if st.status != Status.SKIPPED:
                st.status = Status.SKIPPED
                st.error = None
                store.save(state)
            ui.step_skipped(index, total, step.id, f"skipped: {action.reason}")
            continue
        if action.kind == Kind.LATER:
            break
        _run_step(ctx, store, audit, options, ui, action, index, total)
    ui.summary(state, STEP_IDS)
    remaining = [a.step.id for a in build_plan(playbook, state) if a.will_run]
    if remaining:
        ui.info(
            f"stopped after {options.until} as asked ({ui.elapsed()}). "
            f"Continue with: {resume_command(playbook)}",
            "bold",
        )
        audit.event("run-paused", until=options.until)
    else:
        site = read_outputs(state, VerifySiteOutputs)
        downtime = site.downtime_seconds if site else None
        confirmed = read_outputs(state, ConfirmWindowOutputs)
        predicted = confirmed.predicted_downtime_seconds if confirmed else None
        ui.info(
            f"cutover complete in {ui.elapsed()}"
            + (
                f"; measured downtime {downtime}s (maintenance on to site verified)"
                if downtime is not None
                else ""
            )
            + (f", predicted {predicted}s at confirm-window" if predicted is not None else ""),
            "bold green",
        )
        ui.info(
            "Next: raise the DNS TTL again once you are confident, and keep the Heroku app "
            "(in maintenance) until you no longer need to roll back."
        )
        if state.step("capture-changes").status == Status.DONE:
            cleanup = resume_command(playbook).replace("cutover run", "cutover cleanup", 1)
            ui.info(
                "capture-changes installed a change capture on Heroku's database (schema "
                "_cutover and its triggers); unless cleanup or a rollback removed it, it still "
                f"logs every write: {cleanup} removes it (and says when nothing is left)"
            )
        audit.event("run-complete", downtime_seconds=downtime, predicted_downtime_seconds=predicted)
    return 0


def _run_step(
    ctx: Context,
    store: StateStore,
    audit: AuditLog,
    options: RunOptions,
    ui: Ui,
    action: Action,
    index: int,
    total: int,
) -> None:
    step, state = action.step, ctx.state
    st = state.step(step.id)
    ui.step_start(index, total, step.id, step.title, action.reason)
    st.status = Status.RUNNING
    st.attempts += 1
    st.started_at = now_iso()
    st.finished_at = None
    st.error = None
    st.found_applied = False
    st.gate_wait = None
    store.save(state)  # before the first side effect: a crash now is visible on resume
    audit.event("step-start", step=step.id, attempt=st.attempts, reason=action.reason)
    started = time.monotonic()

    def progress(outputs: dict[str, Any]) -> None:
        st.outputs.update(outputs)
        store.save(state)

    ctx.checkpoint = progress
    from cutover.runner import step_scope  # noqa: PLC0415 - sh: only when a step runs

    try:
        with step_scope(ctx.runner, step.id):
            outputs, found = _attempt(ctx, step, options, audit, ui)
    except (GateWaiting, NotYet) as exc:
        _not_started(st, step.id, exc, audit)
        store.save(state)
        raise
    except (KeyboardInterrupt, Interrupted):
        _finish(st, started, Status.INTERRUPTED, error="interrupted by the operator")
        store.save(state)
        audit.event("step-interrupted", step=step.id, duration=round(st.duration or 0, 3))
        back = resume_command(ctx.playbook).replace("cutover run", "cutover rollback", 1)
        raise Interrupted(
            f"interrupted during {step.id}",
            resolution=f"Resume with: {resume_command(ctx.playbook)} "
            "(the step is checked again before it runs)."
            # In the window, the way back too (issue 11: every failure names it).
            + (f"\nOr bring Heroku back with: {back}" if _in_window(step) else ""),
        ) from None
    except CutoverError as exc:
        _fail(
            ctx,
            store,
            audit,
            st,
            step,
            started,
            exc.brief,
            exc.details,
            exc.resolution,
            invalid=isinstance(exc, InvalidInput),
        )
    except Exception as exc:
        audit.event("step-crash", step=step.id, traceback=ctx.masker.mask(traceback.format_exc()))
        _fail(
            ctx,
            store,
            audit,
            st,
            step,
            started,
            f"unexpected error: {type(exc).__name__}: {exc}",
            f"the traceback is in {store.folder / 'events.jsonl'}",
            "",
        )
    assert outputs is not None
    _finish(st, started, Status.DONE)
    st.outputs.pop(PROGRESS_KEY, None)  # Context.progress: for the running step only
    st.outputs.update(dump(outputs))
    st.found_applied = found
    # A check that found nothing for this app to do (outputs ``skipped``: the MySQL steps of an
    # app without a MySQL add-on) costs the same next time: a measurement too.
    if st.duration is not None and (not found or getattr(outputs, "skipped", None)):
        state.timings[step.id] = st.duration  # outlives a rollback or --from (engine/timings.py)
    st.inputs = step_inputs(step, ctx.playbook.flat(), state)
    store.save(state)
    audit.event(
        "step-finish", step=step.id, duration=round(st.duration or 0, 3), found_applied=found
    )
    ui.step_done(st.duration or 0.0, found)


def _not_started(st: Any, step_id: str, exc: CutoverError, audit: AuditLog) -> None:
    """A gate nobody could answer or a step that can only run later: it stays pending, as if
    it had not been started (no attempt counted)."""
    if isinstance(exc, NotYet):
        audit.event("step-not-yet", step=step_id, error=exc.brief)
    st.status = Status.PENDING
    st.attempts -= 1
    st.started_at = None


def _attempt(
    ctx: Context, step: Step, options: RunOptions, audit: AuditLog, ui: Ui
) -> tuple[StepOutputs, bool]:
    """The life of a step (steps/base.py): check looks; recover finishes what an interrupted
    attempt left; else the gate, then apply. Returns the outputs and whether they were found."""
    outputs = step.check(ctx)
    if outputs is None:
        outputs = step.recover(ctx)
    if outputs is not None:
        return outputs, True
    question = step.gate_question(ctx)
    if question:
        asked = time.monotonic()
        try:
            _confirm_gate(ctx, step, question, options, audit, ui)
        finally:  # the prompt's wait is not the step's work (engine/timings.py)
            ctx.state.step(step.id).gate_wait = round(time.monotonic() - asked, 3)
    return step.apply(ctx), False


def _finish(st: Any, started: float, status: Status, error: str | None = None) -> None:
    st.status = status
    st.finished_at = now_iso()
    st.duration = round(time.monotonic() - started - (st.gate_wait or 0.0), 3)
    st.error = error


def _fail(
    ctx: Context,
    store: StateStore,
    audit: AuditLog,
    st: Any,
    step: Step,
    started: float,
    brief: str,
    details: str,
    resolution: str,
    *,
    invalid: bool = False,
) -> None:
    message = ctx.masker.mask(brief + (("\n" + details) if details else ""))
    _finish(st, started, Status.FAILED, error=message)
    store.save(state=ctx.state)
    audit.event("step-failed", step=step.id, error=message, duration=round(st.duration or 0, 3))
    back = resume_command(ctx.playbook).replace("cutover run", "cutover rollback", 1)
    hint = (
        _window_note(ctx, step) + f"Fix the cause, then resume with: {resume_command(ctx.playbook)}"
    )
    hint += f"\nOr bring Heroku back with: {back}" if _in_window(step) else ""
    error_type = InvalidInput if invalid else StepFailed  # bad input keeps exit 2
    raise error_type(
        f"step {step.id} failed: {ctx.masker.mask(brief)}",
        details=ctx.masker.mask(details),
        resolution=(ctx.masker.mask(resolution) + "\n" if resolution else "") + hint,
    ) from None


def _in_window(step: Step) -> bool:
    """From maintenance-on on, `cutover rollback` is the way back (engine/rollback.py)."""
    return step.in_window or step.id == "maintenance-on"


def _window_note(ctx: Context, step: Step) -> str:
    """For a step in the window: users see the maintenance page until the run goes on or
    `cutover rollback` brings Heroku back."""
    maintenance = read_outputs(ctx.state, MaintenanceOnOutputs) if _in_window(step) else None
    if maintenance is None:
        return ""
    since = datetime.fromtimestamp(maintenance.at, UTC).isoformat(timespec="seconds")
    return (
        f"Heroku has been in maintenance since {since}: users see its maintenance page "
        "until the cutover goes on, or until `cutover rollback` brings Heroku back (DNS, "
        "writes, workers and maintenance undone in the safe order).\n"
    )


def _confirm_gate(
    ctx: Context, step: Step, question: str, options: RunOptions, audit: AuditLog, ui: Ui
) -> None:
    confirm_gate(
        ctx,
        step.id,
        question,
        yes=options.yes,
        interactive=options.interactive,
        audit=audit,
        ui=ui,
        declined=f"Nothing was changed by {step.id}. When ready: {resume_command(ctx.playbook)}",
        waiting=f"waiting at the gate before {step.id}",
        confirm_command=resume_command(ctx.playbook, " --yes"),
    )


def confirm_gate(
    ctx: Context,
    gate: str,
    question: str,
    *,
    yes: bool,
    interactive: bool,
    audit: AuditLog,
    ui: Ui,
    declined: str,
    waiting: str,
    confirm_command: str,
) -> None:
    """One gate (a step's or the rollback's, named ``gate`` in the audit): confirmed by --yes,
    asked at a prompt, or GateWaiting (exit 3) with ``declined`` / ``waiting`` and the command
    that confirms it in advance. Every answer is audited with who gave it."""
    if yes:
        audit.event(
            "gate", step=gate, question=question, answer="yes", answered_by="--yes", user=_user()
        )
        ui.note(f"gate confirmed in advance (--yes): {question}")
        return
    if interactive:
        # Audited before the prompt, so a webhook (cutover/notify.py) tells who is away.
        audit.event("gate-waiting", step=gate, question=question, prompt=True)
        answer = Confirm.ask(ctx.masker.mask(question), console=ui.console, default=False)
        audit.event(
            "gate",
            step=gate,
            question=question,
            answer="yes" if answer else "no",
            answered_by="prompt",
            user=_user(),
        )
        if answer:
            return
        raise GateWaiting(f"not confirmed: {question}", resolution=declined)
    audit.event("gate-waiting", step=gate, question=question)
    raise GateWaiting(
        f"{waiting}: {question}",
        resolution="Run it in a terminal to answer the prompt, or confirm in advance with: "
        + confirm_command,
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def is_interactive() -> bool:
    """A gate can be answered when stdin is a terminal (stdout may be piped to tee)."""
    return sys.stdin.isatty()
