"""Issue 15: a hung Heroku API call, through the REAL heroku CLI: the runner ends the CLI's
whole process group at the call's timeout, says so, and does not try again (a timeout is not
classified transient: the call may still be working on Heroku's side)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.paths import needs_heroku_cli
from test_heroku_adapter import APP, Harness, emulator, hk  # noqa: F401 - fixtures

from cutover.errors import CommandError
from cutover.sandbox.heroku_api import faults

pytestmark = [pytest.mark.slow, needs_heroku_cli]


def cli_processes(home: Path) -> list[int]:
    """Pids of processes started with this harness's HOME (the heroku CLI and its node)."""
    mark = f"HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark in environ:
            found.append(int(proc.name))
    return found


def test_a_hung_api_call_is_ended_at_the_timeout(hk: Harness) -> None:  # noqa: F811
    # The CLI must reach the API before the timeout, or the call ended is node's start, not a
    # hung request: the timeout is four times what the same call takes now, 4 s at least (a
    # loaded 2-core machine took over 4 s to start node once).
    began = time.monotonic()
    hk.adapter._run("config", "--json", timeout=60)
    timeout = max(4.0, 4 * (time.monotonic() - began))
    hk.audit.events.clear()
    hk.emu.add_fault(faults.delay("GET", f"/apps/{APP}/config-vars", 600))
    with pytest.raises(CommandError) as caught:
        hk.adapter._run("config", "--json", timeout=timeout)
    exc = caught.value
    assert exc.timed_out and not exc.transient
    assert f"command timed out: heroku config --json -a {APP}" in str(exc)
    assert hk.audit.of("retry") == []
    assert [e["outcome"] for e in hk.audit.of("command")] == ["timeout"]
    deadline = time.monotonic() + 15
    while cli_processes(hk.home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cli_processes(hk.home) == [], "the heroku CLI outlived its timeout"
    fired = faults.fired(hk.emu.state())
    assert fired == [{"method": "GET", "path": f"/apps/{APP}/config-vars", "kind": "delay"}]
