"""The Heroku API emulator (``python -m cutover.sandbox.heroku_api``) as a real subprocess on
free loopback ports, for the adapter contract tests and the emulator's own tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.sandbox import procs
from cutover.sandbox.heroku_api import load_state
from support.waiting import wait_for


@dataclass
class Running:
    """A started emulator: its process, ports and files."""

    proc: subprocess.Popen[bytes]
    port: int
    backup_port: int
    state_path: Path
    log_path: Path
    pid_file: Path

    def state(self) -> dict[str, Any]:
        return load_state(self.state_path)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def spawn_emulator(
    state_path: Path, cert: Path, key: Path, log_path: Path, pid_file: Path
) -> Running:
    """Start the emulator on ``state_path`` (TLS ``cert``/``key`` for the backup port) in a new
    session, logging to ``log_path``; return once it has written ``pid_file`` (the caller
    stops it, with :func:`stop_emulator`)."""
    port, backup_port = procs.free_port(), procs.free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "cutover.sandbox.heroku_api",
                "--state", str(state_path),
                "--port", str(port),
                "--backup-port", str(backup_port),
                "--tls-cert", str(cert),
                "--tls-key", str(key),
                "--pid-file", str(pid_file),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    running = Running(proc, port, backup_port, state_path, log_path, pid_file)
    try:
        wait_for(lambda: pid_file.exists() or proc.poll() is not None, "the emulator to start", 30)
        assert proc.poll() is None, f"emulator died:\n{running.log()}"
    except BaseException:
        stop_emulator(running)
        raise
    return running


def stop_emulator(running: Running) -> int | None:
    """SIGTERM the emulator and wait up to 15 s, then SIGKILL it. Return its exit code, or
    None if it had to be killed."""
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGTERM)
    try:
        return running.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        running.proc.kill()
        running.proc.wait()
        return None
