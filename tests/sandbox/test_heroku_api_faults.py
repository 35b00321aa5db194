"""Issue 15: the Heroku API emulator's faults, and what the REAL heroku CLI (11.10.0) makes of
them; the adapter's classifier must agree with each real output.

Facts (node_modules): @heroku-cli/command/lib/api-client.js (HerokuAPIError: a JSON error body
gives "Error ID", exit 2; any other body rethrows http-call's HTTPError, exit 1),
@heroku/http-call/lib/http.js (``_maybeRetry``: an error with a code is retried up to 5 times;
``HTTPError``: "HTTP Error <status> for <METHOD> <url>").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from heroku_support import CliRunner, EmulatorFactory
from support.paths import needs_heroku_cli
from test_heroku_api import APP, make_state

from cutover.adapters import heroku as heroku_adapter
from cutover.runner import Result
from cutover.sandbox.heroku_api import Emulator, faults, load_state, save_state

CONFIG = f"/apps/{APP}/config-vars"


def emulator(tmp_path: Path) -> Emulator:
    path = tmp_path / "state.json"
    save_state(path, make_state())
    return Emulator(path, backup_port=4443)


def test_times_forever_prefix_and_the_record(tmp_path: Path) -> None:
    emu = emulator(tmp_path)
    faults.add(emu.state_path, faults.server_error("GET", "/backups/*", times=-1))
    faults.add(emu.state_path, faults.reset("GET", CONFIG, times=2))
    for _ in range(3):
        answer = emu.apply_fault("GET", "/backups/tok/b001.dump")
        assert answer is not None and answer.status == 503
    assert emu.apply_fault("POST", "/backups/tok/b001.dump") is None  # the method must match
    for _ in range(2):
        answer = emu.apply_fault("GET", CONFIG)
        assert answer is not None and answer.drop
    assert emu.apply_fault("GET", CONFIG) is None  # used up
    fired = faults.fired(load_state(emu.state_path))
    assert [f["kind"] for f in fired] == [503, 503, 503, "reset", "reset"]
    assert faults.remove(emu.state_path, "GET", "/backups/*") == 1
    assert load_state(emu.state_path)["faults"] == []


def test_a_fault_needs_a_method_and_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="method"):
        faults.add(tmp_path / "s.json", {"path": CONFIG, "status": 500})


@pytest.mark.slow
@needs_heroku_cli
def test_the_real_cli_under_each_fault(start_emulator: EmulatorFactory, cli: CliRunner) -> None:
    running = start_emulator(make_state())
    path = running.state_path

    def config(fault: dict[str, object]) -> tuple[int, str, bool]:
        faults.remove(path)
        faults.add(path, fault)
        got = cli(running, "config", "--json", "-a", APP)
        transient = heroku_adapter._transient(Result([], got.rc, got.stdout, got.stderr, 0.0))
        return got.rc, got.stderr, transient

    rc, err, transient = config(faults.server_error("GET", CONFIG))
    assert (rc, transient) == (2, True)
    assert "Error ID: service_unavailable" in err

    rc, err, transient = config(faults.server_error("GET", CONFIG, status=502, html=True))
    assert (rc, transient) == (1, True)
    assert f"HTTP Error 502 for GET http://127.0.0.1{CONFIG}" in err

    # Fewer than 6 resets in a row: http-call's own retries absorb them.
    rc, err, transient = config(faults.reset("GET", CONFIG, times=3))
    assert rc == 0, err
    # Forever: after its 5 retries the CLI fails with the Node code.
    rc, err, transient = config(faults.reset("GET", CONFIG, times=-1))
    assert (rc, transient) == (1, True)
    assert "ECONNRESET" in err
    faults.remove(path)

    kinds = [f["kind"] for f in faults.fired(running.state())]
    assert kinds[:2] == [503, 502]
    assert kinds[2:5] == ["reset"] * 3
    assert kinds[5:] == ["reset"] * 6  # the first try and http-call's 5 retries
