"""Helpers and fixtures for the Heroku API emulator's tests (test_heroku_api*.py): the emulator
as a subprocess and the REAL pinned heroku CLI run against it in an isolated environment.

Fixtures (registered by ``conftest.py``): ``tls_files``, ``start_emulator``, ``cli``,
``backing_db``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.databases import WIDGETS_SQL, backing_database
from support.heroku_emulator import Running, spawn_emulator, stop_emulator
from support.paths import HEROKU_CLI
from support.tls import write_tls_files

from cutover.sandbox.heroku_api import cli_env, prepare_home, save_state
from cutover.sandbox.pgcluster import PgCluster

API_KEY = "test-api-key-0123456789"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA file, server certificate chain, server key) for 127.0.0.1 and localhost."""
    files = write_tls_files(tmp_path_factory.mktemp("tls"))
    return files.ca_file, files.cert_file, files.key_file


EmulatorFactory = Callable[[dict[str, Any]], Running]


@pytest.fixture
def start_emulator(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> Iterator[EmulatorFactory]:
    """Start ``python -m cutover.sandbox.heroku_api`` on free ports; SIGTERM it afterwards."""
    _, cert, key = tls_files
    started: list[Running] = []

    def start(state: dict[str, Any]) -> Running:
        folder = tmp_path / f"emu{len(started)}"
        folder.mkdir(mode=0o700)
        state_path, log_path, pid_file = folder / "state.json", folder / "emu.log", folder / "pid"
        save_state(state_path, state)
        running = spawn_emulator(state_path, cert, key, log_path, pid_file)
        started.append(running)
        assert pid_file.read_text().strip() == str(running.proc.pid)
        return running

    try:
        yield start
    finally:
        for running in started:
            code = stop_emulator(running)
            assert code == 0, running.log()
            assert not running.pid_file.exists()


@dataclass
class CliResult:
    rc: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


CliRunner = Callable[..., CliResult]

_LOOPBACK_BASE = "http://127.0.0.1:"


def assert_isolated(env: dict[str, str]) -> None:
    """Refuse to run the CLI unless every host it could reach is loopback."""
    assert env["HEROKU_HOST"].startswith(_LOOPBACK_BASE)
    assert env["HEROKU_PARTICLEBOARD_URL"].startswith(_LOOPBACK_BASE)
    assert env["HEROKU_DATA_HOST"] == "127.0.0.1"
    assert env["DISABLE_TELEMETRY"] == "true"
    assert env["HEROKU_SKIP_NEW_VERSION_CHECK"] == "true"
    assert env["HEROKU_DISABLE_AUTOUPDATE"] == "1"
    assert env["HEROKU_API_KEY"]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "HEROKU_APP"):
        assert name not in env


@pytest.fixture
def cli(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> CliRunner:
    """``cli(running, *args, key=None)`` runs the real CLI in the isolated environment."""
    ca_file = tls_files[0]

    def run(running: Running, *args: str, key: str = API_KEY) -> CliResult:
        home = tmp_path / f"home-{running.port}"
        prepare_home(home, running.port)
        cwd = tmp_path / "cwd"
        cwd.mkdir(exist_ok=True)
        env = cli_env(running.port, key, home, ca_file)
        assert_isolated(env)
        proc = subprocess.run(
            [str(HEROKU_CLI), *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def backing_db(pg_source: PgCluster) -> dict[str, str | int]:
    """A fresh database with one table in the shared session cluster."""
    return backing_database(pg_source, "app", "u", *WIDGETS_SQL)
