"""The expensive scenarios of the engine tests, as plain functions of a fresh project.

* :func:`finished_run`: one uninterrupted ``cutover run --yes`` (the reference);
* :func:`boundary_chain`: kill -9 before the first command of every step, resume each time;
* :func:`effect_chain`: kill -9 right after every effect, before its checkpoint, resume each time.

A chain arms a kill hook per interruption point at once; every run dies at the next point whose
hook has not fired yet (hook counts live in the world, so they carry over), and is resumed with
the same command until a run finishes. So every point is crossed by a real ``kill -9`` of the
cutover process, and every resume after the first starts from a state an earlier resume wrote.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from subprocess import Popen
from typing import Any

from fakes.harness import (
    Finished,
    Project,
    Result,
    first_call_of_each_step,
    normalized_state,
)

# Interruption points right after an effect, before the step's checkpoint (DNS: see below).
EFFECT_HOOKS = [
    "convox apps create:after",  # create-app
    "convox env set:after",  # set-env
    "convox deploy:after",  # deploy
    "convox deploy@2:after",  # add-domain
    "heroku maintenance:on:after",  # maintenance-on
    "heroku ps:scale worker=0:after",  # scale-down
]
# How long the effect chain waits before resuming after the maintenance:on kill, so a resumed
# run that takes "now" as the start of the window is caught.
PAUSE_AFTER_MAINTENANCE = 2.5


@dataclass
class Chain:
    project: Project
    results: list[Result] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # the state after each kill


def run_chain(
    project: Project,
    env: dict[str, str],
    max_runs: int,
    on_start: Callable[[Popen[str]], None] | None = None,
    after_kill: Callable[[Chain], None] | None = None,
) -> Chain:
    """``cutover run --yes`` again and again while it dies of SIGKILL; the last must succeed."""
    chain = Chain(project)
    for _ in range(max_runs):
        proc = project.start("run", "--yes", env=env)
        if on_start is not None:
            on_start(proc)
        result = project.finish(proc)
        chain.results.append(result)
        if result.returncode == 0:
            return chain
        if result.returncode != -signal.SIGKILL:
            raise AssertionError(f"a chained run neither finished nor was killed:\n{result}")
        chain.snapshots.append(project.state())
        if after_kill is not None:
            after_kill(chain)
    raise AssertionError(f"no run finished in {max_runs} runs; last:\n{chain.results[-1]}")


def finished_run(project: Project) -> Finished:
    result = project.run("run", "--yes")
    if result.returncode != 0:
        raise AssertionError(f"the uninterrupted run failed:\n{result}")
    return Finished(
        project,
        result,
        normalized_state(project.state()),
        project.effect_counts(),
        first_call_of_each_step(project),
    )


def boundary_chain(project: Project, steps: list[str]) -> Chain:
    """Kill before the first command of each of ``steps`` (the steps that run commands)."""
    hooks = ";".join(f"step:{step}:before" for step in steps)
    return run_chain(project, {"FAKE_KILL_PARENT": hooks}, max_runs=len(steps) + 2)


def effect_chain(project: Project) -> Chain:
    """Kill right after each effect; DNS updates through the tap in front of Knot."""
    running: list[Popen[str]] = []

    def kill_after_dns_update(number: int) -> None:
        # Knot applied the update (lower-ttl, switch-dns, restore-ttl); cutover has not seen
        # the answer.
        os.kill(running[-1].pid, signal.SIGKILL)

    def pause_after_maintenance(chain: Chain) -> None:
        if chain.project.world()["kills"][-1]["argv"][:2] == ["heroku", "maintenance:on"]:
            time.sleep(PAUSE_AFTER_MAINTENANCE)

    project.tap.on_update = kill_after_dns_update
    return run_chain(
        project,
        {"FAKE_KILL_PARENT": ";".join(EFFECT_HOOKS)},
        max_runs=12,
        on_start=running.append,
        after_kill=pause_after_maintenance,
    )
