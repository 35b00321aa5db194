"""cutover/bench/window.py: the window's fixed cost from the state and audit log a run left."""

from __future__ import annotations

from typing import Any

import pytest

from cutover.bench.window import WINDOW, WindowError, window_cost


def finished(durations: dict[str, float], downtime: float = 30.0) -> dict[str, Any]:
    steps: dict[str, Any] = {
        sid: {"status": "done", "duration": sec} for sid, sec in durations.items()
    }
    steps["maintenance-on"]["started_at"] = "2026-11-30T10:00:00+00:00"
    steps["verify-site"].update(
        finished_at="2026-11-30T10:00:30+00:00", outputs={"downtime_seconds": downtime}
    )
    return {"steps": steps}


def command(step: str, tool: str, ts: str, duration: float) -> dict[str, Any]:
    return {"kind": "command", "step": step, "argv": [tool, "x"], "ts": ts, "duration": duration}


DURATIONS = {
    "maintenance-on": 2.0,
    "scale-down": 4.0,
    "freeze-writes": 6.0,
    "final-sync": 9.0,
    "verify-data": 3.0,
    "switch-dns": 1.0,
    "verify-dns": 2.0,
    "verify-site": 1.5,
}


def test_the_fixed_cost_is_every_window_step_but_the_data() -> None:
    events = [
        command("maintenance-on", "/usr/bin/heroku", "2026-11-30T10:00:01+00:00", 1.5),
        command("scale-down", "heroku", "2026-11-30T10:00:04+00:00", 2.0),
        command("final-sync", "pg_restore", "2026-11-30T10:00:10+00:00", 8.0),
        command("verify-site", "heroku", "2026-11-30T11:00:00+00:00", 9.0),  # a later run
        command("lower-ttl", "heroku", "2026-11-30T10:00:05+00:00", 1.0),  # not a window step
        {"kind": "step-start", "step": "scale-down", "ts": "2026-11-30T10:00:03+00:00"},
    ]
    cost = window_cost(finished(DURATIONS), events)
    assert (cost.downtime, cost.data, cost.fixed) == (30.0, 12.0, 16.5)
    assert (cost.heroku_calls, cost.heroku_seconds) == (2, 3.5)
    assert set(cost.steps) == set(DURATIONS) and set(cost.steps) <= set(WINDOW)
    lines = cost.lines()
    assert [line.split()[1] for line in lines] == [
        "window-downtime",
        "window-data",
        "window-fixed",
        "window-heroku-calls",
    ]
    assert "55% of the window; slowest: freeze-writes 6.0s, scale-down 4.0s" in lines[2]


def test_a_window_that_did_not_end_is_no_measurement() -> None:
    state = finished(DURATIONS)
    state["steps"]["verify-site"]["status"] = "failed"
    with pytest.raises(WindowError, match="verify-site did not record the downtime"):
        window_cost(state, [])
