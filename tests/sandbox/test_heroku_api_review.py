"""Review of the Heroku API emulator against heroku CLI 11.10.0 and hostile use.

Each test pins a defect found in review: the emulator's start-up handshake, captures that
outlive an emulator restart or a broken state file, and the dyno list after scaling.
"""

# The fixtures shared with test_heroku_api are imported by name, so pytest finds them; their
# parameters "redefine" the imports as far as ruff can tell.
# ruff: noqa: F811

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_heroku_api import (  # noqa: F401 (fixtures are used by name)
    CliRunner,
    EmulatorFactory,
    backing_db,
    cli,
    start_emulator,
    tls_files,
)
from test_heroku_api_states import state_with

from cutover.sandbox.heroku_api import save_state


@pytest.mark.slow
def test_pid_file_never_read_empty(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    """Callers (tests/adapters/test_heroku_adapter.py, the ``start_emulator`` fixture) poll for
    ``--pid-file`` to exist and then read the pid: it must appear complete, never empty."""
    _, cert, key = tls_files
    state_path = tmp_path / "state.json"
    save_state(state_path, state_with())
    for attempt in range(8):
        pid_file = tmp_path / f"pid{attempt}"
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "cutover.sandbox.heroku_api", "--state", str(state_path),
                "--port", "0", "--backup-port", "0", "--tls-cert", str(cert), "--tls-key",
                str(key), "--pid-file", str(pid_file),
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while True:  # spin, as fast as a caller could
                try:
                    text = pid_file.read_text()
                except FileNotFoundError:
                    assert proc.poll() is None, "the emulator died"
                    continue
                break
            assert text == f"{proc.pid}\n", f"attempt {attempt}: read {text!r}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
