"""confirm-window: the last look before the window starts (the TTL wait)."""

from __future__ import annotations

from datetime import UTC, datetime

from cutover.errors import CutoverError
from cutover.steps.app import SmokeTestOutputs
from cutover.steps.base import Context, Step, StepOutputs
from cutover.steps.records import LowerTtlOutputs


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class ConfirmWindowOutputs(StepOutputs):
    step_id = "confirm-window"
    window_started_at: float


class ConfirmWindow(Step):
    id = "confirm-window"
    title = "Check the window can start"
    outputs = ConfirmWindowOutputs
    fields = ("window.ttl_wait_max",)
    reads = (LowerTtlOutputs, SmokeTestOutputs)

    def describe(self, ctx: Context) -> list[str]:
        return ["wait until DNS caches have dropped the old TTL (lower-ttl outputs)"]

    def apply(self, ctx: Context) -> ConfirmWindowOutputs:
        lowered = self.read(ctx, LowerTtlOutputs)
        if lowered is not None:
            ready = lowered.lowered_at + lowered.original.ttl
            remaining = ready - ctx.clock()
            if remaining > ctx.model.window.ttl_wait_max:
                raise CutoverError(
                    f"resolvers may cache the old TTL ({lowered.original.ttl}s) until "
                    f"{_iso(ready)}; the window should start after that",
                    resolution="Run `cutover run` again after that time "
                    "(or raise window.ttl_wait_max to wait here).",
                )
            while remaining > 0:
                ctx.note(f"waiting {remaining:.0f}s for caches to drop the old TTL")
                ctx.sleep(min(remaining, 10.0))
                remaining = ready - ctx.clock()
        smoke = self.read(ctx, SmokeTestOutputs)
        if smoke:
            ctx.note(f"Convox smoke test passed on {smoke.domain}")
        return ConfirmWindowOutputs(window_started_at=ctx.clock())
