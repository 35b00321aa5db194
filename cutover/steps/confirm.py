"""confirm-window: the last look before the window starts (wait-ttl, just before it, waited for
caches to drop the old TTL): the checklist of what stops and in which order, and the predicted
downtime (engine/timings.py), recorded in its outputs so the end of the run can show it next to
the measured downtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from cutover.steps.app import SmokeTestOutputs
from cutover.steps.base import Context, Step, StepOutputs

if TYPE_CHECKING:
    from cutover.engine.timings import Estimate


class ConfirmWindowOutputs(StepOutputs):
    step_id = "confirm-window"
    window_started_at: float
    # Seconds from maintenance-on to verify-site (None: no step of it measured), and the window's
    # steps left out of it for want of a measurement.
    predicted_downtime_seconds: float | None = None
    unpredicted_steps: list[str] = Field(default_factory=list)


class ConfirmWindow(Step):
    id = "confirm-window"
    title = "Check the window can start"
    outputs = ConfirmWindowOutputs
    reads = (SmokeTestOutputs,)

    def describe(self, ctx: Context) -> list[str]:
        return [
            "show the window's checklist (what stops, in which order) and the predicted "
            "downtime (measured timings, window.rehearsal)",
        ]

    def apply(self, ctx: Context) -> ConfirmWindowOutputs:
        # Imported here: the engine's estimate reads the step list, which imports this module.
        from cutover.engine.timings import estimate  # noqa: PLC0415
        from cutover.steps import STEPS  # noqa: PLC0415

        # Not declared in ``reads``: the estimate is advice (like check-data's), not an input.
        predicted = estimate(ctx.playbook, ctx.state, STEPS)
        smoke = self.read(ctx, SmokeTestOutputs)
        if smoke:
            ctx.note(f"Convox smoke test passed on {smoke.domain}")
        for line in checklist(ctx, STEPS, predicted):
            ctx.note(line)
        return ConfirmWindowOutputs(
            window_started_at=ctx.clock(),
            predicted_downtime_seconds=predicted.window_seconds,
            unpredicted_steps=predicted.unknown,
        )


def checklist(ctx: Context, steps: Sequence[Step], predicted: Estimate) -> list[str]:
    """What happens next, in order: every step after this one up to verify-site (the
    playbook's skipped ones left out), the window's marked, each with its estimate."""
    from cutover.engine.timings import WINDOW_FIRST, WINDOW_LAST, window_steps  # noqa: PLC0415

    ids = [s.id for s in steps]
    window = {s.id for s in window_steps(steps)}
    upcoming = steps[ids.index(ConfirmWindow.id) + 1 : ids.index(WINDOW_LAST) + 1]
    lines = ["checklist for the window (in this order):"]
    number = 0
    for step in upcoming:
        if step.applies(ctx.model) is not None:
            continue
        if step.id == WINDOW_FIRST:
            lines.append("  -- the window starts: users see Heroku's maintenance page --")
        number += 1
        found = predicted.of(step.id)
        gate = "  [gate]" if step.gate else ""
        when = f"  ~{found.text()}" if found is not None and step.id in window else ""
        lines.append(f"  {number:>2}. {step.id}: {step.title}{gate}{when}")
    lines.extend(predicted.total_lines())
    if predicted.window_seconds is not None:
        lines.append(
            f"predicted downtime: {predicted.window_seconds:.1f}s (users see Heroku's "
            "maintenance page from maintenance-on until verify-site)"
        )
    return lines
