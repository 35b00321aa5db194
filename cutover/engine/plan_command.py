"""`cutover plan`: every step, what is done, the gates, the estimates and the exact commands.

Runs and writes nothing (the state is read, never saved; the lock is not taken).
"""

from __future__ import annotations

from pathlib import Path

from cutover.engine.plan import (
    Kind,
    affected_text,
    build_plan,
    check_identity,
    new_state,
    playbook_changes,
    reset_from,
    steps_with_changed_inputs,
    validate_step,
)
from cutover.engine.run import RunOptions
from cutover.engine.timings import downtime_text, estimate
from cutover.playbook import load_playbook
from cutover.state import StateStore
from cutover.steps import STEPS
from cutover.ui import Ui


def plan(playbook_path: Path, options: RunOptions, ui: Ui) -> int:
    """Print every step, what is done, the gates and the exact commands. Runs and writes nothing."""
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only for a run or plan

    validate_step(options.until, "--until")
    validate_step(options.from_step, "--from")
    playbook = load_playbook(playbook_path)
    masker = ui.masker
    store = StateStore(playbook.state_dir, masker)
    state = store.load() or new_state(playbook)
    check_identity(playbook, state)  # in memory only
    if options.from_step:
        reset_from(state, options.from_step)  # in memory only
    ctx = build_context(
        playbook, state, masker=masker, audit=None, reporter=ui, sandbox_optional=True
    )
    changes = playbook_changes(playbook, state) if store.exists() else []
    predicted = estimate(playbook, state, STEPS)  # refuses an unreadable window.rehearsal
    ui.heading(f"Plan for {playbook.path} (nothing is executed; nothing is written)")
    if changes:
        ui.info(
            "playbook changed since the run started: "
            + ", ".join(changes)
            + ("  (run needs --accept-changes)" if not options.accept_changes else ""),
            "yellow",
        )
        ui.info(affected_text(steps_with_changed_inputs(playbook, state)), "yellow")
    actions = build_plan(playbook, state, options.until)
    for index, action in enumerate(actions, 1):
        step = action.step
        gate = "  [gate]" if step.gate else ""
        label = {
            Kind.RUN: "will run",
            Kind.RESUME: "will resume",
            Kind.DONE: "done",
            Kind.SKIP: "skip",
            Kind.LATER: "not in this run",
        }[action.kind]
        ui.info(f"[{index:>2}/{len(actions)}] {step.id}: {step.title}{gate}", "bold")
        ui.info(f"        {label}: {action.reason}")
        guess = predicted.of(step.id)
        # An unknown matters in the window (its total leaves the step out), not elsewhere.
        if guess is not None and (guess.seconds is not None or step.id in predicted.window):
            ui.info(f"        estimate: {guess.text()}")
        if action.will_run:
            if step.gate:
                ui.info(f"        gate: {step.gate_text(ctx)}", "yellow")
            for line in step.describe(ctx):
                if line:
                    ui.info(f"        $ {line}")
    for line in predicted.total_lines():
        ui.info(line, "bold")
    if (done := downtime_text(state)) is not None:
        ui.info(done)
    return 0
