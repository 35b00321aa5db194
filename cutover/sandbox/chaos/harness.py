"""``python -m cutover.sandbox.chaos`` (``make chaos``): kill -9 cutover everywhere, resume,
compare the world with an uninterrupted run's.

1. The reference: a fresh sandbox, ``cutover run -f playbooks/sandbox.yml --yes`` uninterrupted,
   the world read (world.py), then an uninterrupted ``cutover rollback --yes`` and its world.
   The step durations come from that run's events.jsonl (points.py).
2. For each chosen kill point, a fresh world: ``sandbox down`` then ``sandbox up`` (a few
   seconds each, measured and printed: restoring a saved copy of a fresh sandbox would have to
   restart every daemon the same way, and the run itself takes two minutes), ``cutover run``
   killed with SIGKILL at the point, then ``cutover run`` again until it exits 0 (at most
   drive.RESUME_TRIES times), then the world compared with the reference and the processes the
   killed run left checked (procs.py). A rollback point runs on the world a run point just
   finished (or on a fresh uninterrupted run when there is none), kills ``cutover rollback``,
   resumes it, and compares with the reference rollback's world.
3. One line per point, then ``chaos: K/N kill points recovered`` (exit 1 when K < N).

``CHAOS_POINTS=N`` picks N points spread over the whole list (default DEFAULT_POINTS, sized for
15 minutes on an idle 2-core machine); ``CHAOS_POINTS=all`` runs every point. ``CHAOS_ONLY=TEXT``
keeps the points whose label holds TEXT (``CHAOS_ONLY=deploy CHAOS_POINTS=all``: every point in
and after deploy).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cutover.engine.audit import read_events
from cutover.sandbox import manager
from cutover.sandbox.chaos import drive, procs, world
from cutover.sandbox.chaos.points import ROLLBACK, RUN, Point, all_points, durations, pick

DEFAULT_POINTS = 5
ROWS = 400
TEMPLATE = Path(__file__).resolve().parents[3] / "playbooks" / "sandbox.yml"

Say = Callable[[str], None]


@dataclass
class Outcome:
    point: Point
    recovered: bool
    line: str


@contextlib.contextmanager
def fresh_world(
    base: Path, say: Say, rack_timings: dict[str, float] | None = None
) -> Iterator[drive.Trial]:
    """A sandbox just up and a work folder with the playbook; always stopped afterwards."""
    # Directly under the temp folder (as tests/e2e/conftest.py): the postgres system user must
    # traverse every parent of the clusters, and mkdtemp makes its folders 0700.
    sandbox = Path(tempfile.mkdtemp(prefix="cutover-chaos-sandbox-"))
    work = Path(tempfile.mkdtemp(prefix="work-", dir=base))
    token = secrets.token_hex(8)
    started = time.monotonic()
    try:
        manager.up(sandbox, rows=ROWS, say=lambda m: None, rack_timings=rack_timings)
        say(f"  (fresh sandbox up in {time.monotonic() - started:.1f}s)")
        yield drive.Trial(sandbox, work, token, drive.write_playbook(work, sandbox, TEMPLATE))
    finally:
        procs.kill_all(token)
        stopping = time.monotonic()
        manager.down(sandbox, say=lambda m: None)
        shutil.rmtree(sandbox, ignore_errors=True)
        say(f"  (sandbox down in {time.monotonic() - stopping:.1f}s)")


def settle(trial: drive.Trial) -> world.World:
    """The world once the run is over: content, plus what is still running of it."""
    left = procs.leftovers(trial.token)
    found = world.snapshot(trial.sandbox, trial.state_folder)
    found["leftover_processes"] = sorted(left.values())
    return found


@dataclass
class Reference:
    run: world.World
    rollback: world.World
    points: list[Point]
    seconds: float


def reference(base: Path, say: Say, rack_timings: dict[str, float] | None = None) -> Reference:
    with fresh_world(base, say, rack_timings) as trial:
        started = time.monotonic()
        code = trial.run(RUN)
        if code != 0:
            raise SystemExit(f"chaos: the reference run failed (exit {code}): {trial.last_log()}")
        run_seconds = time.monotonic() - started
        run_world = settle(trial)
        code = trial.run(ROLLBACK)
        if code != 0:
            raise SystemExit(f"chaos: the reference rollback failed (exit {code})")
        rollback_world = settle(trial)
        events = list(read_events(trial.events))
    points = all_points(durations(events, RUN), durations(events, ROLLBACK))
    say(f"reference: run {run_seconds:.0f}s, {len(points)} kill points")
    for name, found in (("run", run_world), ("rollback", rollback_world)):
        if found["leftover_processes"] or found["lock"] != "free":
            raise SystemExit(f"chaos: the reference {name} left {found['leftover_processes']}")
    return Reference(run_world, rollback_world, points, run_seconds)


def try_point(trial: drive.Trial, point: Point, expected: world.World) -> Outcome:
    """Kill at ``point``, resume, compare; the trial's run is complete before a rollback point."""
    started = time.monotonic()
    what = drive.kill_at(trial, point)
    codes = drive.resume(trial, point.phase)
    found = settle(trial)
    procs.kill_all(trial.token)
    diffs = world.differences(expected, found)
    seconds = time.monotonic() - started
    resumed = ",".join(str(c) for c in codes)
    head = f"{point.label}: {what}; resume exit {resumed}; {seconds:.0f}s"
    shown = "; ".join(diffs[:4]) + (f"; +{len(diffs) - 4} more" if len(diffs) > 4 else "")
    if codes[-1] != 0:
        return Outcome(point, False, f"{head}: NOT recovered ({trial.last_log(2)}) {shown}")
    if diffs:
        return Outcome(point, False, f"{head}: NOT recovered: {shown}")
    return Outcome(point, True, f"{head}: recovered")


def schedule(points: list[Point]) -> list[tuple[Point | None, Point | None]]:
    """Trials: each run point, with a rollback point on the world it leaves when one is left."""
    runs = [p for p in points if p.phase == RUN]
    rollbacks = [p for p in points if p.phase == ROLLBACK]
    trials: list[tuple[Point | None, Point | None]] = []
    for index in range(max(len(runs), len(rollbacks))):
        trials.append(
            (
                runs[index] if index < len(runs) else None,
                rollbacks[index] if index < len(rollbacks) else None,
            )
        )
    return trials


def _say(line: str) -> None:
    print(line, flush=True)  # one line per point as it comes, also into a pipe or a file


def main(count: str | None = None, say: Say = _say) -> int:
    spec = count or os.environ.get("CHAOS_POINTS") or str(DEFAULT_POINTS)
    if spec != "all" and not (spec.isdigit() and int(spec) > 0):
        say(f"chaos: CHAOS_POINTS={spec!r}: a positive whole number or 'all'")
        return 2
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="cutover-chaos-"))
    outcomes: list[Outcome] = []
    try:
        ref = reference(base, say)
        only = os.environ.get("CHAOS_ONLY", "")
        listed = [p for p in ref.points if only in p.label]
        if not listed:
            say(f"chaos: CHAOS_ONLY={only!r} matches no kill point")
            return 2
        chosen = pick(listed, spec)
        say(f"{len(chosen)} of {len(ref.points)} points: " + ", ".join(p.label for p in chosen))
        for run_point, rollback_point in schedule(chosen):
            with fresh_world(base, say) as trial:
                if run_point is not None:
                    outcomes.append(try_point(trial, run_point, ref.run))
                    say(f"[{len(outcomes)}/{len(chosen)}] {outcomes[-1].line}")
                if rollback_point is not None:
                    if run_point is None and trial.run(RUN) != 0:
                        outcomes.append(
                            Outcome(rollback_point, False, f"{rollback_point.label}: no run")
                        )
                    else:
                        outcomes.append(try_point(trial, rollback_point, ref.rollback))
                    say(f"[{len(outcomes)}/{len(chosen)}] {outcomes[-1].line}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    recovered = sum(1 for o in outcomes if o.recovered)
    say(f"chaos: {time.monotonic() - began:.0f}s in all")
    say(f"chaos: {recovered}/{len(outcomes)} kill points recovered")
    return 0 if outcomes and recovered == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
