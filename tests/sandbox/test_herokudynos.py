"""The sandbox Heroku's worker dynos run as real processes and follow the formation
(cutover/sandbox/herokudynos.py): scaling to 0 stops them with SIGTERM; maintenance does not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.databases import AppDatabase

from cutover.sandbox.herokudynos import wanted
from cutover.sandbox.pgcluster import PgCluster

pytestmark = pytest.mark.slow

QUEUE = "CREATE TABLE sandbox_jobs (id serial PRIMARY KEY, done_at timestamptz, done_by text)"


def state_with(quantity: int, maintenance: bool = False) -> dict[str, Any]:
    return {
        "apps": {
            "demo": {
                "maintenance": maintenance,
                "formation": [
                    {"type": "web", "quantity": 2, "command": "puma"},
                    {"type": "worker", "quantity": quantity, "command": "sidekiq"},
                ],
                "releases": [{"version": 7, "current": True}, {"version": 6}],
            }
        }
    }


def write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_wanted_reads_non_web_types_and_the_current_release() -> None:
    assert wanted(state_with(3), "demo") == ({"worker": 3}, "v7")
    assert wanted({"apps": {}}, "demo") == ({}, "")


@pytest.fixture
def database(pg_source: PgCluster, pg_database: Callable[..., AppDatabase]) -> AppDatabase:
    return pg_database(pg_source, prefix="dynos")


@pytest.fixture
def supervisor(
    tmp_path: Path, database: AppDatabase
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    state = tmp_path / "state.json"
    write_state(state, state_with(2))
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database.url(),
        "WORKER_INTERVAL": "0.2",
        "APP": "demo",
    }
    log = tmp_path / "dynos.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cutover.sandbox.herokudynos",
                "--state",
                str(state),
                "--app",
                "demo",
                "--log-dir",
                str(tmp_path),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, state
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_workers_follow_the_formation_and_keep_writing_in_maintenance(
    supervisor: tuple[subprocess.Popen[bytes], Path], database: AppDatabase, tmp_path: Path
) -> None:
    proc, state = supervisor
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute(QUEUE)
        conn.execute("INSERT INTO sandbox_jobs SELECT FROM generate_series(1, 5)")
    wait_for(lambda: len(children(proc.pid)) == 2, "two worker processes")

    def undone() -> int:
        with psycopg.connect(database.url(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM sandbox_jobs WHERE done_at IS NULL").fetchone()
        return int(row[0]) if row else -1

    wait_for(lambda: undone() == 0, "the jobs done by the Heroku workers")
    with psycopg.connect(database.url(), autocommit=True) as conn:
        row = conn.execute("SELECT DISTINCT done_by FROM sandbox_jobs").fetchall()
    assert row == [("v7",)]

    # Maintenance mode stops web traffic only: the workers keep working.
    write_state(state, state_with(2, maintenance=True))
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("INSERT INTO sandbox_jobs DEFAULT VALUES")
    wait_for(lambda: undone() == 0, "a job done while the app is in maintenance")
    assert len(children(proc.pid)) == 2

    # Scaling to 0: every worker gets SIGTERM and exits; new jobs stay queued.
    write_state(state, state_with(0, maintenance=True))
    wait_for(lambda: children(proc.pid) == [], "the workers to stop")
    log = (tmp_path / "dynos.log").read_text()
    assert "SIGTERM to worker.1" in log and "SIGTERM to worker.2" in log
    assert database.password not in log
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("INSERT INTO sandbox_jobs DEFAULT VALUES")
    time.sleep(1.0)  # five worker intervals: a worker still running would have taken it
    assert undone() == 1

    # SIGTERM to the supervisor stops it cleanly (the workers it runs with it).
    write_state(state, state_with(1, maintenance=True))
    wait_for(lambda: len(children(proc.pid)) == 1, "one worker again")
    worker = children(proc.pid)[0]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert (
        not Path(f"/proc/{worker}").exists()
        or "zombie" in Path(f"/proc/{worker}/status").read_text()
    )
