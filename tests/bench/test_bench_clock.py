"""Cutover's own time (cutover/bench/clock.py): the union of the children's lifetimes, measured
by wrapping the one function that starts every child (cutover.runner._spawn)."""

from __future__ import annotations

import sys
from pathlib import Path

import cutover.runner as runner_module
from cutover.bench.clock import ExternalClock, install, is_helper, label, own_seconds
from cutover.runner import Runner
from cutover.runpipes import Session
from cutover.secrets import SecretMasker


class FakeNow:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_overlapping_children_count_once() -> None:
    now = FakeNow()
    clock = ExternalClock(now)
    clock.enter()  # child 1 at 100
    now.t = 102.0
    clock.enter()  # child 2 at 102, overlapping
    now.t = 105.0
    clock.leave()  # child 1 ends
    now.t = 107.0
    clock.leave()  # child 2 ends: one interval, 100..107
    now.t = 110.0
    clock.enter()
    now.t = 111.5
    clock.leave()
    assert clock.seconds() == 8.5
    assert clock.children == 3


def test_a_running_child_counts_up_to_now_and_extra_leaves_are_ignored() -> None:
    now = FakeNow()
    clock = ExternalClock(now)
    clock.leave()
    clock.enter()
    now.t = 103.0
    assert clock.seconds() == 3.0


def test_own_seconds_is_wall_minus_external_never_negative() -> None:
    assert own_seconds(10.0, 7.5) == 2.5
    assert own_seconds(1.0, 1.0000001) == 0.0


def test_the_proxy_tunnel_is_not_counted_as_work() -> None:
    assert is_helper(["convox", "resources", "proxy", "database", "--port", "5000"])
    assert is_helper(["convox", "--rack", "sandbox", "resources", "proxy", "database"])
    assert not is_helper(["convox", "resources", "url", "database"])
    assert not is_helper(["pg_restore", "--dbname", "proxy"])


def test_install_counts_real_children_of_the_runner_and_restores_spawn() -> None:
    original = runner_module._spawn
    clock = ExternalClock()
    restore = install(clock)
    try:
        runner = Runner(SecretMasker())
        runner.run([sys.executable, "-c", "import time; time.sleep(0.2)"])
        runner.run([sys.executable, "-c", "pass"])
    finally:
        restore()
    assert runner_module._spawn is original
    assert clock.children == 2
    # seconds per program: both children were this Python, the first slept 0.2 s
    assert list(clock.by_tool) == [Path(sys.executable).name]
    assert clock.by_tool[Path(sys.executable).name] >= 0.2
    # Both children ended: nothing is running, the total no longer grows.
    first = clock.seconds()
    assert first > 0
    assert clock.seconds() == first
    # the trace (CUTOVER_BENCH_TRACE): each child in the order it ended, its argv's start
    (tool, start, end, label), second = clock.trace
    assert tool == Path(sys.executable).name and end - start >= 0.2 and start >= 0
    assert label == "-c import time; time.sleep(0.2)" and second[3] == "-c pass"


def test_a_session_is_in_the_trace_but_not_counted() -> None:
    clock = ExternalClock()
    restore = install(clock)
    try:
        runner = Runner(SecretMasker())
        with runner.session(["cat"]) as session:
            session.write("hello\n")
            assert session.readline(10) == "hello"
            session.close()
    finally:
        restore()
    assert runner_module.Session is Session  # type: ignore[attr-defined]
    assert clock.children == 0 and clock.seconds() == 0
    assert [t[0] for t in clock.trace] == ["session:cat"]


def test_a_trace_label_is_one_line_cut_at_its_width() -> None:
    assert label(["psql", "-c", "SELECT 1\n  FROM t"]) == "-c SELECT 1 FROM t"
    assert len(label(["bash", "x" * 500])) == 160
