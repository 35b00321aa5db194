"""The chaos harness's parts that need no sandbox: kill points, the world's diff, the marks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cutover.engine.lock import RunLock
from cutover.sandbox.chaos import drive, procs, world
from cutover.sandbox.chaos.points import RUN, Point, all_points, durations, pick

RUN_STEPS = {"preflight": 6.0, "deploy": 10.0, "final-sync": 13.0, "restore-ttl": 1.6}
ROLLBACK_STEPS = {"switch-dns": 1.0, "scale-down": 4.0, "maintenance-on": 2.0}


def test_points_cover_every_boundary_and_the_inside_of_long_steps() -> None:
    points = all_points(RUN_STEPS, ROLLBACK_STEPS)
    labels = [p.label for p in points]
    assert labels[:5] == [
        "after preflight",
        "inside deploy at 20% (2.0s)",
        "inside deploy at 50% (5.0s)",
        "inside deploy at 80% (8.0s)",
        "after deploy",
    ]
    assert "inside final-sync at 50% (6.5s)" in labels
    # Only the two longest undo steps get a kill in their middle (switch-dns is the shortest).
    assert labels[-5:] == [
        "rollback after switch-dns",
        "rollback inside scale-down at 50% (2.0s)",
        "rollback after scale-down",
        "rollback inside maintenance-on at 50% (1.0s)",
        "rollback after maintenance-on",
    ]
    assert sum(1 for p in points if p.fraction is None) == len(RUN_STEPS) + len(ROLLBACK_STEPS)


def test_pick_spreads_evenly_and_all_takes_everything() -> None:
    points = [Point(RUN, f"s{i}") for i in range(11)]
    assert [p.step for p in pick(points, 3)] == ["s0", "s5", "s10"]
    assert pick(points, "all") == points
    assert pick(points, 50) == points
    with pytest.raises(ValueError, match="positive"):
        pick(points, 0)


def test_durations_read_the_audit_log_of_each_phase() -> None:
    events: list[dict[str, Any]] = [
        {"kind": "step-start", "step": "deploy"},
        {"kind": "step-finish", "step": "deploy", "duration": 10.7},
        {"kind": "rollback-step-finish", "step": "switch-dns", "duration": 1.1},
    ]
    assert durations(events, RUN) == {"deploy": 10.7}
    assert durations(events, "rollback") == {"switch-dns": 1.1}


def test_secrets_are_compared_by_name_not_value() -> None:
    one = world.Secrets({"heroku:SECRET_KEY_BASE": "a" * 40, "heroku:SHORT": "ab"})
    two = world.Secrets({"heroku:SECRET_KEY_BASE": "b" * 40})
    assert one.clean_env({"K": "a" * 40}) == two.clean_env({"K": "b" * 40})
    assert one.clean_env({"K": "a" * 40}) != two.clean_env({"K": "a" * 40})


def test_differences_name_the_paths_that_differ() -> None:
    ref = {"dns": {"dns": {"ttl": 3600, "values": ["router."]}}, "lock": "free"}
    got = {"dns": {"dns": {"ttl": 5, "values": ["router."]}}, "lock": "free", "new": 1}
    assert world.differences(ref, got) == ["dns.dns.ttl: 3600 -> 5", 'new: "<absent>" -> 1']
    assert world.differences(ref, json.loads(json.dumps(ref))) == []


def test_lock_state_tells_free_held_and_stale(tmp_path: Path) -> None:
    assert world.lock_state(tmp_path) == "free"
    lock = RunLock(tmp_path, "cutover run")
    lock.acquire()
    assert world.lock_state(tmp_path) == "held"
    lock.release()
    assert world.lock_state(tmp_path) == "free"
    (tmp_path / "lock").write_text('{"pid": 1}')
    assert world.lock_state(tmp_path).startswith("stale: ")


def test_marked_processes_are_found_through_their_environment() -> None:
    token = "t" + os.urandom(4).hex()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, procs.MARK: token},
    )
    try:
        deadline = time.monotonic() + 30
        while child.pid not in procs.marked(token) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "time.sleep(60)" in procs.marked(token)[child.pid]
        assert procs.marked("other" + token) == {}
        procs.kill_all(token)
        child.wait(timeout=30)
        assert procs.leftovers(token, settle=5) == {}
    finally:
        child.kill()
        child.wait()


def test_event_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "old"}\n')
    tail = drive.EventTail(path)
    with path.open("a") as fh:
        fh.write('{"kind": "a"}\n{"kind": ')
    assert tail.new() == [{"kind": "a"}]
    with path.open("a") as fh:
        fh.write('"b"}\n')
    assert tail.new() == [{"kind": "b"}]


def test_leftover_files_list_all_but_the_audit_log(tmp_path: Path) -> None:
    assert world.leftover_files(tmp_path / "absent") == []
    (tmp_path / "work").mkdir()
    for name in ("events.jsonl", "state.json", "lock", "work/final-sync.dump"):
        (tmp_path / name).write_text("x")
    assert world.leftover_files(tmp_path) == ["lock", "state.json", "work/final-sync.dump"]
