"""The cutover window on Heroku: maintenance-on and scale-down, each with its undo (rollback).

Facts relied on (heroku CLI 11.10.0, node_modules/heroku/dist/commands):

* ``maintenance`` prints ``on`` or ``off``; ``maintenance:on``/``:off`` report on stderr only, so
  both are verified by reading them back (adapters/heroku.py ``set_maintenance``).
* ``ps:scale`` without arguments prints the formation (``web=2:Standard-1X worker=1:...``);
  ``ps:scale a=0 b=0`` scales several types in one call (ps/scale.js, ``strict = false``).
* ``ps --json`` lists every dyno with its ``state`` (``starting``, ``up``, ``idle``, ``down``,
  ``crashed``: Platform API reference, "Dyno"); a dyno scaled away stays listed while it stops
  (SIGTERM, up to 30 s, SIGKILL). One-off dynos have type ``run`` (ps/index.js).
* ``ps:stop --dyno-name NAME`` stops one dyno (ps/stop.js).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from pydantic import Field

from cutover.errors import CutoverError
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.preflight import PreflightOutputs

T = TypeVar("T")
U = TypeVar("U")
# Dynos outside the formation: one-off (`heroku run`; ps/index.js: d.type === 'run') and
# Heroku Scheduler jobs (type ``scheduler``, as cutover/translate/facts.py reads them).
ONE_OFF = ("run", "scheduler")


def together(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """Run two independent calls at once (each heroku CLI call costs 1-2 s of start-up)."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only when a step runs

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="window") as pool:
        a, b = pool.submit(first), pool.submit(second)
        return a.result(), b.result()


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
    fields = ("heroku.app",)
    gate = "Put the Heroku app in maintenance mode now? Users will see the maintenance page."
    undo_title = "Turn Heroku's maintenance mode off"

    def describe(self, ctx: Context) -> list[str]:
        return [
            cmd(ctx.heroku.argv("maintenance")),
            cmd(ctx.heroku.argv("maintenance:on")),
            cmd(ctx.heroku.argv("maintenance")) + "   (read back: on)",
        ]

    def check(self, ctx: Context) -> MaintenanceOnOutputs | None:
        if not ctx.heroku.maintenance():
            return None
        # The window started when maintenance went on (saved before the call), not now.
        return MaintenanceOnOutputs(at=self.remembered(ctx, MaintenanceProgress).at or ctx.clock())

    def apply(self, ctx: Context) -> MaintenanceOnOutputs:
        at = ctx.clock()
        ctx.save(MaintenanceProgress(at=at))
        ctx.heroku.set_maintenance(True)  # maintenance:on, then read back
        return MaintenanceOnOutputs(at=at)

    # -- undo ------------------------------------------------------------------------------------
    def undo_needed(self, ctx: Context) -> str | None:
        if self.remembered(ctx, MaintenanceProgress).at is None:
            return None  # cutover never turned it on
        return "Heroku is in maintenance mode" if ctx.heroku.maintenance() else None

    def undo_describe(self, ctx: Context) -> list[str]:
        return [
            cmd(ctx.heroku.argv("maintenance:off")),
            cmd(ctx.heroku.argv("maintenance")) + "   (read back: off)",
        ]

    def undo(self, ctx: Context) -> None:
        ctx.heroku.set_maintenance(False)  # maintenance:off, then read back
        ctx.note(f"Heroku app {ctx.model.heroku.app} is out of maintenance mode")


class ScaleDownProgress(Progress):
    # Saved BEFORE the scale: every process type's quantity as read, and those scaled to 0.
    formation: dict[str, int] | None = None
    stopped: dict[str, int] | None = None
    one_offs_stopped: list[str] | None = None


class ScaleDownOutputs(StepOutputs):
    """``stopped``: the process types scaled to 0 and how many dynos each ran (rollback scales
    them back); ``formation``: every type's quantity as read before; the one-off dynos stopped."""

    step_id = "scale-down"
    stopped: dict[str, int]
    formation: dict[str, int] = Field(default_factory=dict)
    one_offs_stopped: list[str] = Field(default_factory=list)


def describe_dyno(dyno: dict[str, Any]) -> str:
    name, state = dyno.get("name"), dyno.get("state")
    if dyno.get("type") in ONE_OFF:
        return f"{name} ({state}: {dyno.get('command')})"
    return f"{name} ({state})"


class ScaleDown(Step):
    id = "scale-down"
    title = "Drain and stop Heroku workers"
    in_window = True
    outputs = ScaleDownOutputs
    reads = (PreflightOutputs,)
    fields = ("heroku.app", "window.scale_down", "window.drain_seconds", "window.stop_one_off")
    undo_title = "Scale Heroku's workers back"

    def describe(self, ctx: Context) -> list[str]:
        types = ctx.model.window.scale_down
        what = "TYPE=0 ..." if types is None else " ".join(f"{p}=0" for p in types)
        return [
            cmd(ctx.heroku.argv("ps:scale"))
            + " and "
            + cmd(ctx.heroku.argv("ps", "--json"))
            + "   (at once: record the formation)",
            cmd(ctx.heroku.argv("ps:scale", what))
            + ("   (every type but web)" if types is None else ""),
            cmd(ctx.heroku.argv("ps:stop", "--dyno-name", "run.N"))
            + f"   (one-off dynos matching {ctx.model.window.stop_one_off})"
            if ctx.model.window.stop_one_off
            else "",
            cmd(ctx.heroku.argv("ps", "--json"))
            + "   (until no dyno of those types nor one-off dyno is listed)",
        ]

    # -- the one read of the formation and the dynos per step -----------------------------------
    def _look(self, ctx: Context) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """The formation and the dynos, read at once, ONCE per step: check's read is kept for
        apply (both run in the same attempt, one after the other)."""
        key = f"{self.id}:look"
        seen = ctx.extras.pop(key, None)
        if seen is not None:
            formation, dynos = seen
            return dict(formation), list(dynos)
        formation_list, dynos = together(ctx.heroku.formation, ctx.heroku.dynos)
        formation = {f.type: f.quantity for f in formation_list}
        ctx.extras[key] = (formation, dynos)
        return formation, dynos

    def _types(self, ctx: Context, formation: dict[str, int]) -> list[str]:
        explicit = ctx.model.window.scale_down
        if explicit is not None:
            return list(explicit)
        return sorted(t for t in formation if t != "web")

    @staticmethod
    def _listed(dynos: list[dict[str, Any]], types: set[str]) -> list[dict[str, Any]]:
        """Dynos of ``types`` and one-off dynos still listed, in ANY state."""
        return [d for d in dynos if d.get("type") in types or d.get("type") in ONE_OFF]

    def check(self, ctx: Context) -> ScaleDownOutputs | None:
        formation, dynos = self._look(ctx)
        types = self._types(ctx, formation)
        if any(formation.get(t, 0) > 0 for t in types) or self._listed(dynos, set(types)):
            return None
        ctx.extras.pop(f"{self.id}:look", None)
        saved = self.remembered(ctx, ScaleDownProgress)
        if saved.stopped is not None:
            stopped = saved.stopped
        else:  # found at 0 without having scaled: what preflight saw is all we know
            pre = self.read(ctx, PreflightOutputs)
            known = pre.heroku_formation if pre else {}
            stopped = {t: known[t].quantity if t in known else 0 for t in types}
        return ScaleDownOutputs(
            stopped=stopped,
            formation=saved.formation or formation,
            one_offs_stopped=saved.one_offs_stopped or [],
        )

    def apply(self, ctx: Context) -> ScaleDownOutputs:
        formation, dynos = self._look(ctx)
        ctx.extras.pop(f"{self.id}:look", None)
        types = self._types(ctx, formation)
        saved = self.remembered(ctx, ScaleDownProgress)
        # A resume keeps the first reading: by now the formation may already be at 0.
        recorded = saved.formation if saved.formation is not None else formation
        stopped = saved.stopped or {t: recorded.get(t, 0) for t in types}
        one_offs = [d for d in dynos if d.get("type") in ONE_OFF]
        to_stop = [
            str(d["name"])
            for d in one_offs
            if d.get("state") != "down"
            and any(
                fnmatch.fnmatchcase(str(d.get("name")), pattern)
                or fnmatch.fnmatchcase(str(d.get("command") or ""), pattern)
                for pattern in ctx.model.window.stop_one_off
            )
        ]
        ctx.save(
            ScaleDownProgress(
                formation=recorded,
                stopped=stopped,
                one_offs_stopped=sorted({*(saved.one_offs_stopped or []), *to_stop}),
            )
        )
        to_zero = {t: 0 for t in types if formation.get(t, 0) > 0}
        if to_zero:
            ctx.note(
                "scaling "
                + ", ".join(f"{t} from {formation[t]}" for t in sorted(to_zero))
                + " to 0 (Heroku sends SIGTERM; workers finish their current jobs)"
            )
        for name in to_stop:
            ctx.note(f"stopping one-off dyno {name} (window.stop_one_off)")
        waited = [describe_dyno(d) for d in one_offs if str(d.get("name")) not in to_stop]
        if waited:
            ctx.note(
                "one-off dynos still running, waited for (name them in window.stop_one_off to "
                "stop them): " + ", ".join(waited)
            )
        calls: list[Callable[[], object]] = [partial(ctx.heroku.stop_dyno, n) for n in to_stop]
        if to_zero:
            calls.append(partial(ctx.heroku.scale_many, to_zero))
        if calls:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

            with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="scale") as pool:
                for future in [pool.submit(c) for c in calls]:
                    future.result()
        self._wait(ctx, set(types))
        return ScaleDownOutputs(
            stopped=stopped,
            formation=recorded,
            one_offs_stopped=sorted({*(saved.one_offs_stopped or []), *to_stop}),
        )

    def _wait(self, ctx: Context, types: set[str]) -> None:
        deadline = time.monotonic() + ctx.model.window.drain_seconds + 30
        while True:
            listed = self._listed(ctx.heroku.dynos(), types)
            if not listed:
                return
            names = ", ".join(describe_dyno(d) for d in listed)
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"dynos still listed after the drain time "
                    f"({ctx.model.window.drain_seconds}s + 30s): {names}",
                    resolution="Check `heroku ps`; stop what must not run (`heroku ps:stop "
                    "--dyno-name NAME`, or name one-off dynos in window.stop_one_off), then "
                    "run `cutover run` again.",
                )
            ctx.note(f"waiting for {names} to stop")
            ctx.sleep(2)

    # -- undo ------------------------------------------------------------------------------------
    def _recorded(self, ctx: Context) -> dict[str, int]:
        return {t: q for t, q in (self.remembered(ctx, ScaleDownProgress).stopped or {}).items()}

    def undo_needed(self, ctx: Context) -> str | None:
        recorded = self._recorded(ctx)
        if not any(recorded.values()):
            return None
        current = {f.type: f.quantity for f in ctx.heroku.formation()}
        ctx.extras[f"{self.id}:undo-formation"] = current
        low = [
            f"{t}={current.get(t, 0)} (was {q})"
            for t, q in recorded.items()
            if current.get(t, 0) != q
        ]
        return "Heroku runs " + ", ".join(low) if low else None

    def undo_describe(self, ctx: Context) -> list[str]:
        recorded = self._recorded(ctx)
        changes = [f"{t}={q}" for t, q in sorted(recorded.items())] or ["TYPE=N ..."]
        return [cmd(ctx.heroku.argv("ps:scale", *changes)) + "   (the formation recorded)"]

    def undo(self, ctx: Context) -> None:
        recorded = self._recorded(ctx)
        current = ctx.extras.pop(f"{self.id}:undo-formation", None)
        if current is None:
            current = {f.type: f.quantity for f in ctx.heroku.formation()}
        back = {t: q for t, q in recorded.items() if current.get(t, 0) != q}
        if back:
            ctx.heroku.scale_many(back)  # one call; verified from what the CLI reports
            ctx.note(
                "scaled Heroku back to " + ", ".join(f"{t}={q}" for t, q in sorted(back.items()))
            )
