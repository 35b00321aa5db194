"""The cutover window: maintenance-on, scale-down."""

from __future__ import annotations

import time

from cutover.errors import CutoverError
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.preflight import PreflightOutputs


class MaintenanceProgress(Progress):
    at: float | None = None  # saved before `heroku maintenance:on`


class MaintenanceOnOutputs(StepOutputs):
    """``at``: when maintenance went on (the window's start; rollback and downtime use it)."""

    step_id = "maintenance-on"
    at: float


class MaintenanceOn(Step):
    id = "maintenance-on"
    title = "Put Heroku in maintenance mode"
    outputs = MaintenanceOnOutputs
    reads = (PreflightOutputs,)
    fields = ("heroku.app",)
    gate = "Put the Heroku app in maintenance mode now? Users will see the maintenance page."

    def gate_text(self, ctx: Context) -> str:
        text = self.gate or ""
        pre = self.read(ctx, PreflightOutputs)
        if pre is not None and pre.scheduler:
            text = (
                "Heroku Scheduler is attached: disable its jobs in the dashboard first "
                "(no CLI can do it). " + text
            )
        return text

    def describe(self, ctx: Context) -> list[str]:
        return [cmd(ctx.heroku.argv("maintenance")), cmd(ctx.heroku.argv("maintenance:on"))]

    def check(self, ctx: Context) -> MaintenanceOnOutputs | None:
        if not ctx.heroku.maintenance():
            return None
        # The window started when maintenance went on (saved before the call), not now.
        return MaintenanceOnOutputs(at=self.remembered(ctx, MaintenanceProgress).at or ctx.clock())

    def apply(self, ctx: Context) -> MaintenanceOnOutputs:
        at = ctx.clock()
        ctx.save(MaintenanceProgress(at=at))
        ctx.heroku.set_maintenance(True)
        return MaintenanceOnOutputs(at=at)


class ScaleDownOutputs(StepOutputs):
    """The process types stopped and how many dynos each ran (rollback scales them back)."""

    step_id = "scale-down"
    stopped: dict[str, int]


class ScaleDown(Step):
    id = "scale-down"
    title = "Drain and stop Heroku workers"
    in_window = True
    outputs = ScaleDownOutputs
    reads = (PreflightOutputs,)
    fields = ("heroku.app", "window.scale_down", "window.drain_seconds")

    def _original(self, ctx: Context, process: str) -> int:
        pre = self.read(ctx, PreflightOutputs)
        dynos = pre.heroku_formation.get(process) if pre else None
        return dynos.quantity if dynos else 0

    def describe(self, ctx: Context) -> list[str]:
        return (
            [cmd(ctx.heroku.argv("ps:scale"))]
            + [cmd(ctx.heroku.argv("ps:scale", f"{p}=0")) for p in ctx.model.window.scale_down]
            + [cmd(ctx.heroku.argv("ps", "--json")) + "   (until the dynos are gone)"]
        )

    def check(self, ctx: Context) -> ScaleDownOutputs | None:
        current = {f.type: f.quantity for f in ctx.heroku.formation()}
        if all(current.get(p, 0) == 0 for p in ctx.model.window.scale_down):
            if self._running(ctx, set(ctx.model.window.scale_down)):
                return None  # scaled to 0 but still draining: apply waits for them
            return ScaleDownOutputs(
                stopped={p: self._original(ctx, p) for p in ctx.model.window.scale_down}
            )
        return None

    def apply(self, ctx: Context) -> ScaleDownOutputs:
        current = {f.type: f.quantity for f in ctx.heroku.formation()}
        stopped = {}
        for process in ctx.model.window.scale_down:
            if current.get(process, 0) > 0:
                ctx.note(
                    f"scaling {process} from {current[process]} to 0 "
                    "(Heroku sends SIGTERM; workers finish their current jobs)"
                )
                ctx.heroku.scale(process, 0)
            stopped[process] = current.get(process, 0) or self._original(ctx, process)
        deadline = time.monotonic() + ctx.model.window.drain_seconds + 30
        while True:
            running = self._running(ctx, set(stopped))
            if not running:
                break
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"dynos still listed after the drain time: {', '.join(running)}",
                    resolution="Check `heroku ps`, then run `cutover run` again.",
                )
            ctx.note(f"waiting for {', '.join(running)} to stop")
            ctx.sleep(2)
        return ScaleDownOutputs(stopped=stopped)

    @staticmethod
    def _running(ctx: Context, types: set[str]) -> list[str]:
        """Dynos of ``types`` still listed, in any state (starting, up, idle, down, crashed):
        after a scale to 0 Heroku stops them over a while (SIGTERM, up to 30 s, SIGKILL)."""
        return [
            f"{d.get('name')} ({d.get('state')})"
            for d in ctx.heroku.dynos()
            if d.get("type") in types
        ]
