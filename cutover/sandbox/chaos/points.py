"""The kill points of ``make chaos``: where, in a run or a rollback, cutover gets SIGKILL.

Built from the reference run's own audit log (``.cutover/events.jsonl``: engine/run.py writes
``step-start`` and ``step-finish`` with the step's ``duration``; engine/rollback.py the same as
``rollback-step-start`` / ``rollback-step-finish``):

* a boundary after every step the reference finished: the kill comes as soon as the log shows
  that step finished (its checkpoint may or may not be written yet);
* inside each long step (deploy, initial-sync, final-sync, verify-data, verify-dns) at fractions
  of the reference's duration after the log shows it started;
* the same inside ``cutover rollback``: after each undo step, and in the middle of the longest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LONG_STEPS = ("deploy", "initial-sync", "final-sync", "verify-data", "verify-dns")
FRACTIONS = (0.2, 0.5, 0.8)
ROLLBACK_INSIDE = 2  # the longest undo steps get a kill in their middle
RUN, ROLLBACK = "run", "rollback"
START = {RUN: "step-start", ROLLBACK: "rollback-step-start"}
FINISH = {RUN: "step-finish", ROLLBACK: "rollback-step-finish"}


@dataclass(frozen=True)
class Point:
    phase: str  # RUN or ROLLBACK
    step: str
    fraction: float | None = None  # None: at the boundary after the step
    delay: float = 0.0  # seconds after the step started (inside a step)

    @property
    def label(self) -> str:
        where = (
            f"after {self.step}"
            if self.fraction is None
            else f"inside {self.step} at {self.fraction:.0%} ({self.delay:.1f}s)"
        )
        return where if self.phase == RUN else f"rollback {where}"


def durations(events: Iterable[dict[str, Any]], phase: str) -> dict[str, float]:
    """Each step the reference finished, in order, with its duration in seconds."""
    out: dict[str, float] = {}
    for event in events:
        if event.get("kind") == FINISH[phase] and event.get("step"):
            out[str(event["step"])] = float(event.get("duration") or 0.0)
    return out


def all_points(run: dict[str, float], rollback: dict[str, float]) -> list[Point]:
    """Every kill point, in the order a run meets them (run, then rollback)."""
    points: list[Point] = []
    for step, seconds in run.items():
        if step in LONG_STEPS:
            points += [Point(RUN, step, f, round(seconds * f, 2)) for f in FRACTIONS]
        points.append(Point(RUN, step))
    longest = sorted(rollback, key=lambda s: -rollback[s])[:ROLLBACK_INSIDE]
    for step, seconds in rollback.items():
        if step in longest and seconds > 0:
            points.append(Point(ROLLBACK, step, 0.5, round(seconds * 0.5, 2)))
        points.append(Point(ROLLBACK, step))
    return points


def pick(points: list[Point], count: str | int) -> list[Point]:
    """``count`` points spread evenly over ``points`` (first and last included), or all of them
    for ``"all"``. A count that is not a positive whole number raises ValueError."""
    if count == "all":
        return list(points)
    n = int(count)
    if n < 1:
        raise ValueError("CHAOS_POINTS must be a positive whole number or 'all'")
    if n >= len(points):
        return list(points)
    if n == 1:
        return [points[len(points) // 2]]
    return [points[round(i * (len(points) - 1) / (n - 1))] for i in range(n)]
