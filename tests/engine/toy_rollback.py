"""A cutover whose steps are small toys, for the rollback engine's real-process tests.

Run as ``python toy_rollback.py <cutover args>`` in a project folder holding ``cutover.yml`` and
``toy.json`` (the toy world). It replaces the real steps by the toys below (in every module that
imported the list) and runs cutover's real command line, so the lock, state file, audit log,
gates, exit codes and signals are the real ones; only the effects are toys, written to
``toy.json`` (each under an flock, as the fakes do).

The toys mirror the window's shape (issue 11's order): maintenance-on, scale-down (records the
formation it stopped), freeze-writes, final-sync (no undo), switch-dns (moves traffic), verify
(fails while the world says so), start-workers. Each effect is appended to ``effects``.

Environment: ``TOY_KILL=step:before|after;...`` SIGKILLs this process before or after the
effect of that step's undo (each spec fires once: counts live in the world); ``TOY_HANG=step``
makes that undo wait until the world's ``release`` is true (the world's ``verify_hangs``, the
forward verify); ``TOY_FAIL_UNDO=step`` makes that
undo fail (CutoverError) while the world's ``undo_fails`` is true.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cutover.engine.plan as plan_module
import cutover.engine.rollback as rollback_module
import cutover.engine.run as run_module
import cutover.steps as steps_module
from cutover.cli import main
from cutover.errors import CutoverError
from cutover.steps.base import Context, Progress, Step, StepOutputs

WORLD = Path("toy.json")


@contextlib.contextmanager
def world() -> Iterator[dict[str, Any]]:
    with open(str(WORLD) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(WORLD.read_text())
        yield data
        tmp = WORLD.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, WORLD)


def look() -> dict[str, Any]:
    with world() as data:
        return dict(data)


def effect(name: str, **changes: Any) -> None:
    with world() as data:
        data.update(changes)
        data.setdefault("effects", []).append(name)


def hook(step: str, moment: str) -> None:
    spec = f"{step}:{moment}"
    if spec not in os.environ.get("TOY_KILL", "").split(";"):
        return
    with world() as data:
        fired = data.setdefault("fired", [])
        if spec in fired:
            return
        fired.append(spec)
    os.kill(os.getpid(), signal.SIGKILL)


def undo_effect(step: str, name: str, **changes: Any) -> None:
    if step == os.environ.get("TOY_FAIL_UNDO") and look().get("undo_fails"):
        raise CutoverError(f"toy {step} undo refused", resolution="Set undo_fails to false.")
    if step == os.environ.get("TOY_HANG"):
        with world() as data:
            data["hanging"] = True
        while not look().get("release"):
            time.sleep(0.05)
    hook(step, "before")
    effect(name, **changes)
    hook(step, "after")


class Done(StepOutputs):
    pass


class MaintenanceDone(StepOutputs):
    step_id = "maintenance-on"
    at: float  # the real contract (steps/window.py MaintenanceOnOutputs): the window's start


class Formation(Progress):
    stopped: dict[str, int] | None = None


class Toy(Step):
    outputs: ClassVar[type[StepOutputs]] = Done

    def apply(self, ctx: Context) -> StepOutputs:
        return Done()


class Prep(Toy):
    id = "prep"
    title = "Toy preparation (before the window)"


class Maintenance(Toy):
    id = "maintenance-on"
    title = "Toy maintenance on"
    undo_title = "Toy maintenance off"
    outputs = MaintenanceDone

    def apply(self, ctx: Context) -> StepOutputs:
        effect("maintenance on", maintenance=True)
        return MaintenanceDone(at=ctx.clock())

    def undo_needed(self, ctx: Context) -> str | None:
        return "maintenance is on" if look()["maintenance"] else None

    def undo_describe(self, ctx: Context) -> list[str]:
        return ["toy maintenance:off"]

    def undo(self, ctx: Context) -> None:
        undo_effect(self.id, "maintenance off", maintenance=False)


class ScaleDown(Toy):
    id = "scale-down"
    title = "Toy scale down"
    in_window = True
    undo_title = "Toy workers back"

    def apply(self, ctx: Context) -> StepOutputs:
        stopped = {"worker": look()["workers"]}
        ctx.save(Formation(stopped=stopped))  # before the effect, as the real one records it
        effect("workers 0", workers=0)
        return Done()

    def undo_needed(self, ctx: Context) -> str | None:
        wanted = self.remembered(ctx, Formation).stopped or {}
        now = look()["workers"]
        return f"workers {now}, recorded {wanted['worker']}" if now != wanted["worker"] else None

    def undo(self, ctx: Context) -> None:
        wanted = self.remembered(ctx, Formation).stopped or {}
        undo_effect(self.id, f"workers {wanted['worker']}", workers=wanted["worker"])


class Freeze(Toy):
    id = "freeze-writes"
    title = "Toy freeze"
    in_window = True
    undo_title = "Toy unfreeze"

    def apply(self, ctx: Context) -> StepOutputs:
        effect("freeze", frozen=True)
        return Done()

    def undo_needed(self, ctx: Context) -> str | None:
        return "writes are frozen" if look()["frozen"] else None

    def undo(self, ctx: Context) -> None:
        undo_effect(self.id, "unfreeze", frozen=False)


class FinalSync(Toy):
    id = "final-sync"
    title = "Toy sync (no undo)"
    in_window = True


class Switch(Toy):
    id = "switch-dns"
    title = "Toy switch"
    in_window = True
    moves_traffic = True
    undo_title = "Toy switch back"

    def apply(self, ctx: Context) -> StepOutputs:
        effect("dns convox", dns="convox")
        return Done()

    def undo_needed(self, ctx: Context) -> str | None:
        return "traffic on convox" if look()["dns"] == "convox" else None

    def undo(self, ctx: Context) -> None:
        undo_effect(self.id, "dns heroku", dns="heroku")


class Verify(Toy):
    id = "verify"
    title = "Toy verify"
    in_window = True

    def apply(self, ctx: Context) -> StepOutputs:
        if look().get("verify_fails"):
            raise CutoverError("toy verify failed")
        if look().get("verify_hangs"):  # until the world's ``release`` (or a signal)
            with world() as data:
                data["hanging"] = True
            while not look().get("release"):
                time.sleep(0.05)
        return Done()


class StartWorkers(Toy):
    id = "start-workers"
    title = "Toy start workers on convox"
    in_window = True
    undo_title = "Toy convox workers to 0"

    def apply(self, ctx: Context) -> StepOutputs:
        effect("convox workers 2", convox_workers=2)
        return Done()

    def undo_needed(self, ctx: Context) -> str | None:
        return "convox workers run" if look()["convox_workers"] else None

    def undo(self, ctx: Context) -> None:
        undo_effect(self.id, "convox workers 0", convox_workers=0)


TOYS: list[Step] = [
    Prep(),
    Maintenance(),
    ScaleDown(),
    Freeze(),
    FinalSync(),
    Switch(),
    Verify(),
    StartWorkers(),
]
INITIAL = {
    "maintenance": False,
    "workers": 2,
    "frozen": False,
    "dns": "heroku",
    "convox_workers": 0,
}


def install() -> None:
    """Replace the steps everywhere the engine imported them by name."""
    ids = [s.id for s in TOYS]
    by_id = {s.id: s for s in TOYS}
    for module in (steps_module, plan_module, run_module, rollback_module):
        for name, value in (("STEPS", TOYS), ("STEP_IDS", ids), ("BY_ID", by_id)):
            if hasattr(module, name):
                setattr(module, name, value)


if __name__ == "__main__":
    install()
    sys.argv[0] = "cutover"
    main()
