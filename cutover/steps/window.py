"""The cutover window: confirm-window, maintenance-on, scale-down."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cutover.errors import CutoverError
from cutover.steps.base import Context, Outputs, Step, cmd


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class ConfirmWindow(Step):
    id = "confirm-window"
    title = "Check the window can start"

    def describe(self, ctx: Context) -> list[str]:
        return ["wait until DNS caches have dropped the old TTL (lower-ttl outputs)"]

    def apply(self, ctx: Context) -> Outputs:
        lowered = ctx.outputs("lower-ttl")
        if lowered.get("lowered_at") and lowered.get("original"):
            ready = float(lowered["lowered_at"]) + int(lowered["original"]["ttl"])
            remaining = ready - ctx.clock()
            if remaining > ctx.model.window.ttl_wait_max:
                raise CutoverError(
                    f"resolvers may cache the old TTL ({lowered['original']['ttl']}s) until "
                    f"{_iso(ready)}; the window should start after that",
                    resolution="Run `cutover run` again after that time "
                    "(or raise window.ttl_wait_max to wait here).")
            while remaining > 0:
                ctx.note(f"waiting {remaining:.0f}s for caches to drop the old TTL")
                ctx.sleep(min(remaining, 10.0))
                remaining = ready - ctx.clock()
        smoke = ctx.outputs("smoke-test")
        if smoke:
            ctx.note(f"Convox smoke test passed on {smoke.get('domain')}")
        return {"window_started_at": ctx.clock()}


class MaintenanceOn(Step):
    id = "maintenance-on"
    title = "Put Heroku in maintenance mode"
    gate = "Put the Heroku app in maintenance mode now? Users will see the maintenance page."

    def gate_text(self, ctx: Context) -> str:
        text = self.gate or ""
        if ctx.outputs("preflight").get("scheduler"):
            text = ("Heroku Scheduler is attached: disable its jobs in the dashboard first "
                    "(no CLI can do it). " + text)
        return text

    def describe(self, ctx: Context) -> list[str]:
        return [cmd(ctx.heroku.argv("maintenance")), cmd(ctx.heroku.argv("maintenance:on"))]

    def check(self, ctx: Context) -> Outputs | None:
        if not ctx.heroku.maintenance():
            return None
        # The window started when maintenance went on (saved before the call), not now.
        return {"at": ctx.state.remembered(self.id, "at") or ctx.clock()}

    def apply(self, ctx: Context) -> Outputs:
        at = ctx.clock()
        ctx.progress({"at": at})
        ctx.heroku.set_maintenance(True)
        return {"at": at}


class ScaleDown(Step):
    id = "scale-down"
    title = "Drain and stop Heroku workers"

    def describe(self, ctx: Context) -> list[str]:
        return [cmd(ctx.heroku.argv("ps:scale"))] + [
            cmd(ctx.heroku.argv("ps:scale", f"{p}=0")) for p in ctx.model.window.scale_down
        ] + [cmd(ctx.heroku.argv("ps", "--json")) + "   (until the dynos are gone)"]

    def check(self, ctx: Context) -> Outputs | None:
        current = {f.type: f.quantity for f in ctx.heroku.formation()}
        if all(current.get(p, 0) == 0 for p in ctx.model.window.scale_down):
            if self._running(ctx, set(ctx.model.window.scale_down)):
                return None  # scaled to 0 but still draining: apply waits for them
            original = ctx.outputs("preflight").get("heroku_formation", {})
            return {"stopped": {p: original.get(p, {}).get("quantity", 0)
                                for p in ctx.model.window.scale_down}}
        return None

    def apply(self, ctx: Context) -> Outputs:
        current = {f.type: f.quantity for f in ctx.heroku.formation()}
        original = ctx.outputs("preflight").get("heroku_formation", {})
        stopped = {}
        for process in ctx.model.window.scale_down:
            if current.get(process, 0) > 0:
                ctx.note(f"scaling {process} from {current[process]} to 0 "
                         "(Heroku sends SIGTERM; workers finish their current jobs)")
                ctx.heroku.scale(process, 0)
            stopped[process] = current.get(process, 0) or original.get(process, {}).get(
                "quantity", 0)
        deadline = time.monotonic() + ctx.model.window.drain_seconds + 30
        while True:
            running = self._running(ctx, set(stopped))
            if not running:
                break
            if time.monotonic() > deadline:
                raise CutoverError(f"dynos still listed after the drain time: "
                                   f"{', '.join(running)}",
                                   resolution="Check `heroku ps`, then run `cutover run` again.")
            ctx.note(f"waiting for {', '.join(running)} to stop")
            ctx.sleep(2)
        return {"stopped": stopped}

    @staticmethod
    def _running(ctx: Context, types: set[str]) -> list[str]:
        """Dynos of ``types`` still listed, in any state (starting, up, idle, down, crashed):
        after a scale to 0 Heroku stops them over a while (SIGTERM, up to 30 s, SIGKILL)."""
        return [f"{d.get('name')} ({d.get('state')})" for d in ctx.heroku.dynos()
                if d.get("type") in types]
