"""The window's fixed cost (issue 11): everything users wait through but the data.

After the rounds, the bench runs the rest of the cutover once (``cutover run --yes``: lower-ttl
to start-workers, so a whole window from maintenance-on to verify-site) and reads the state and
the audit log it left:

* ``downtime``: maintenance-on to verify-site, as verify-site recorded it;
* ``data``: the durations of the data steps in the window (final-sync, verify-data);
* ``fixed``: the durations of every other window step (the gates, the Heroku and Convox calls,
  the DNS change and checks), which no database size changes;
* the heroku CLI calls inside the window: how many, and their summed seconds (each pays the
  CLI's start-up, 1-2 s on the machines we measured).

One run, not a median: the window changes the world (maintenance, DNS), so it ends the bench.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cutover.engine.timings import WINDOW_FIRST, WINDOW_LAST
from cutover.steps import STEP_IDS

DATA_STEPS = ("final-sync", "verify-data")
WINDOW = STEP_IDS[STEP_IDS.index(WINDOW_FIRST) : STEP_IDS.index(WINDOW_LAST) + 1]


class WindowError(Exception):
    """The window run failed or left no measurement (the message says which)."""


@dataclass(frozen=True)
class WindowCost:
    downtime: float
    data: float
    fixed: float
    steps: dict[str, float]  # window step -> seconds (those that ran)
    heroku_calls: int
    heroku_seconds: float

    def lines(self) -> list[str]:
        """``bench: NAME VALUE`` lines (the value is the third word, as report.lines)."""
        share = self.fixed / self.downtime if self.downtime else 0.0
        slowest = sorted(
            ((s, sec) for s, sec in self.steps.items() if s not in DATA_STEPS),
            key=lambda item: -item[1],
        )[:3]
        return [
            f"bench: window-downtime {self.downtime:.1f} (maintenance-on to verify-site, one run)",
            f"bench: window-data {self.data:.1f} (final-sync + verify-data)",
            f"bench: window-fixed {self.fixed:.1f} ({share:.0%} of the window; slowest: "
            + ", ".join(f"{s} {sec:.1f}s" for s, sec in slowest)
            + ")",
            f"bench: window-heroku-calls {self.heroku_calls} ({self.heroku_seconds:.1f} s)",
        ]


def _epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def window_cost(state: dict[str, Any], events: list[dict[str, Any]]) -> WindowCost:
    """The cost of the window a finished run recorded: ``state`` is its state.json, ``events``
    its events.jsonl records. Raises WindowError when the window did not run to its end."""
    steps = state.get("steps", {})
    site = steps.get(WINDOW_LAST, {})
    downtime = (site.get("outputs") or {}).get("downtime_seconds")
    if site.get("status") != "done" or downtime is None:
        raise WindowError(f"{WINDOW_LAST} did not record the downtime")
    ran = {
        sid: float(steps[sid]["duration"])
        for sid in WINDOW
        if steps.get(sid, {}).get("status") == "done" and steps[sid].get("duration") is not None
    }
    data = sum(sec for sid, sec in ran.items() if sid in DATA_STEPS)
    fixed = sum(sec for sid, sec in ran.items() if sid not in DATA_STEPS)
    start = _epoch(steps.get(WINDOW_FIRST, {}).get("started_at"))
    end = _epoch(site.get("finished_at"))

    def in_window(e: dict[str, Any]) -> bool:
        at = _epoch(e.get("ts"))
        return start is None or end is None or at is None or start - 1 <= at <= end + 1

    calls = [
        e
        for e in events
        if e.get("kind") == "command"
        and e.get("step") in WINDOW
        and str((e.get("argv") or [""])[0]).rsplit("/", 1)[-1] == "heroku"
        and in_window(e)
    ]
    seconds = sum(float(e.get("duration") or 0) for e in calls)
    return WindowCost(float(downtime), data, fixed, ran, len(calls), seconds)


def measure_window(playbook: Path) -> WindowCost:
    """Run the rest of the cutover for ``playbook`` (``--yes --accept-changes``: the bench's
    variants share one state folder) and return its window's cost."""
    proc = subprocess.run(
        [sys.executable, "-m", "cutover", "run", "-f", str(playbook), "--yes", "--accept-changes"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = " / ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise WindowError(f"cutover run exited {proc.returncode}: {tail}")
    folder = playbook.parent / ".cutover"
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    events = [
        json.loads(line)
        for line in (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return window_cost(state, events)
