"""A step's recorded duration leaves out the time the operator took at its gate prompt (the
window estimate sums durations: engine/timings.py); the wait is recorded beside it. The engine's
clock is replaced, so the numbers are exact and nothing here depends on real time."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

from cutover.engine import run as engine
from cutover.engine.audit import AuditLog, read_events
from cutover.engine.plan import Action, Kind, new_state
from cutover.errors import GateWaiting
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.runner import Runner
from cutover.secrets import SecretMasker
from cutover.state import StateStore, Status
from cutover.steps.base import Context, Step, StepOutputs
from cutover.ui import Ui


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedOutputs(StepOutputs):
    step_id = "gated"
    ok: bool


class Gated(Step):
    id = "gated"
    title = "A step behind a gate"
    outputs = GatedOutputs
    gate: ClassVar[str | None] = "Go ahead?"

    def __init__(self, clock: Clock, work: float) -> None:
        self.clock, self.work = clock, work

    def apply(self, ctx: Context) -> GatedOutputs:
        self.clock.now += self.work  # the step's own work
        return GatedOutputs(ok=True)


def setup(tmp_path: Path) -> tuple[Context, StateStore, AuditLog, Ui]:
    raw: dict[str, Any] = {"heroku": {"app": "acme-shop"}, "convox": {"app": "shop"}}
    pb = LoadedPlaybook(tmp_path / "cutover.yml", Playbook.model_validate(raw), raw)
    masker = SecretMasker()
    ctx = Context.__new__(Context)
    ctx.playbook, ctx.state, ctx.masker = pb, new_state(pb), masker
    ctx.runner = Runner(masker)
    ctx.extras = {}
    store = StateStore(tmp_path / ".cutover", masker)
    audit = AuditLog(tmp_path / ".cutover", masker, ctx.state.run_id)
    ui = Ui(Console(file=io.StringIO()), masker, Console(file=io.StringIO()))
    return ctx, store, audit, ui


def test_the_prompt_wait_is_recorded_apart_from_the_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr("cutover.engine.run.time.monotonic", clock)
    ctx, store, audit, ui = setup(tmp_path)

    def operator_answers_after_a_coffee(*args: Any, **kwargs: Any) -> bool:
        clock.now += 240.0
        return True

    monkeypatch.setattr("cutover.engine.run.Confirm.ask", operator_answers_after_a_coffee)
    step = Gated(clock, work=3.5)
    options = engine.RunOptions(interactive=True)

    engine._run_step(ctx, store, audit, options, ui, Action(step, Kind.RUN, "pending"), 1, 1)

    saved = store.load()
    assert saved is not None
    st = saved.steps["gated"]
    assert st.status == Status.DONE
    assert st.duration == 3.5
    assert st.gate_wait == 240.0
    kinds = [e["kind"] for e in read_events(audit.path)]
    # gate-waiting is audited before the prompt (a webhook can call the operator back).
    assert kinds == ["step-start", "gate-waiting", "gate", "step-finish"]


def test_a_refused_gate_leaves_the_step_pending_with_its_wait_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr("cutover.engine.run.time.monotonic", clock)
    ctx, store, audit, ui = setup(tmp_path)

    def operator_says_no(*args: Any, **kwargs: Any) -> bool:
        clock.now += 30.0
        return False

    monkeypatch.setattr("cutover.engine.run.Confirm.ask", operator_says_no)
    action = Action(Gated(clock, work=1.0), Kind.RUN, "pending")

    with pytest.raises(GateWaiting):
        engine._run_step(ctx, store, audit, engine.RunOptions(interactive=True), ui, action, 1, 1)

    st = ctx.state.steps["gated"]
    assert st.status == Status.PENDING and st.duration is None
    assert st.gate_wait == 30.0
