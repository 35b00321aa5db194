"""One run at a time: the lock names its holder, a live lock cannot be cleared, a dead one can."""

from __future__ import annotations

import getpass
import os
import re
import signal
import socket

import pytest
from fakes.harness import Project

pytestmark = pytest.mark.slow


def test_lock_holder_is_named_then_cleared_after_kill_9(project: Project) -> None:
    # The first run blocks in preflight, in a hanging `heroku apps:info`, holding the lock.
    first = project.start("run", "--yes", env={"FAKE_FAIL": "heroku apps:info:hang"})
    project.wait_for_call(lambda argv: argv[:2] == ["heroku", "apps:info"])
    state_before = project.state_path.read_bytes()
    calls_before = len(project.calls())

    second = project.run("run", "--yes")

    assert second.returncode == 4, second
    assert "Traceback" not in second.output
    assert "another cutover holds the lock" in second.output
    assert f"pid {first.pid} on {socket.gethostname()}" in second.output
    assert f"user {getpass.getuser()}" in second.output
    assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", second.output), second.output
    assert "cutover unlock" in second.output
    assert len(project.calls()) == calls_before, "the refused run must not run anything"

    refused = project.run("unlock")

    assert refused.returncode != 0, refused
    assert "held by a live process" in refused.output
    assert f"pid {first.pid}" in refused.output
    assert (project.state_dir / "lock").exists()
    assert project.state_path.read_bytes() == state_before

    os.kill(first.pid, signal.SIGKILL)
    assert project.finish(first).returncode == -signal.SIGKILL
    cleared = project.run("unlock")

    assert cleared.returncode == 0, cleared
    assert "lock cleared" in cleared.output
    assert f"pid {first.pid}" in cleared.output
    assert not (project.state_dir / "lock").exists()
    assert project.state_path.read_bytes() == state_before

    resumed = project.run("run", "--yes", "--until", "create-app")

    assert resumed.returncode == 0, resumed
    assert "was running when cutover stopped" in resumed.stdout
    steps = project.state()["steps"]
    assert steps["preflight"]["status"] == "done"
    assert steps["preflight"]["attempts"] == 2
    assert steps["create-app"]["status"] == "done"


def test_unlock_without_a_lock_says_so(project: Project) -> None:
    result = project.run("unlock")
    assert result.returncode == 0, result
    assert "no lock is held" in result.output
