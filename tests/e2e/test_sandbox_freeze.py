"""A client that maintenance mode does not stop keeps writing to Heroku's database through the
whole cutover (issue 11): after freeze-writes its writes fail (SQLSTATE 25006); every row it
wrote before is in the Convox database and nothing was written on Heroku after the freeze.

Real parts as in test_sandbox_cutover.py: the heroku CLI against the emulator, two real
PostgreSQL clusters (Heroku's takes TLS only for its app role), the convox stand-in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.waiting import wait_for
from test_sandbox_cutover import write_playbook

from cutover.sandbox import heroku_api, manager, pgcluster

pytestmark = pytest.mark.slow


def heroku_db_url(sandbox: Path) -> str:
    """The app role's URL (the add-on's database facts in the emulator's state)."""
    app = heroku_api.load_state(sandbox / "heroku" / "state.json")["apps"][manager.HEROKU_APP]
    db = next(a["database"] for a in app["addons"] if a.get("database"))
    name = db.get("database") or db.get("dbname")
    return psycopg.conninfo.make_conninfo(
        host=str(db["host"]),
        port=str(db["port"]),
        user=str(db["user"]),
        password=str(db["password"]),
        dbname=str(name),
        sslmode="require",
    )


@dataclass
class Writer:
    """Inserts ``n`` every 0.1 s as the app's role, reconnecting when its session is ended."""

    url: str
    ok: list[tuple[float, int]] = field(default_factory=list)
    refused: list[tuple[float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                conn.execute("INSERT INTO client_writes (n) VALUES (%s)", (n,))
                self.ok.append((time.monotonic(), n))
            except psycopg.Error as exc:
                self.refused.append((time.monotonic(), exc.sqlstate))
                if conn is not None and (conn.closed or exc.sqlstate != "25006"):
                    conn.close()
                    conn = None
            time.sleep(0.1)
        if conn is not None:
            conn.close()


@pytest.fixture(scope="module")
def run_with_writer(
    sandbox: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.CompletedProcess[str], Writer]]:
    url = heroku_db_url(sandbox)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE client_writes (n int PRIMARY KEY, at timestamptz DEFAULT now())")
    writer = Writer(url)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    wait_for(lambda: len(writer.ok) >= 3, "the client's first writes")
    work = tmp_path_factory.mktemp("freeze-run")
    playbook = write_playbook(work, sandbox)
    proc = subprocess.run(
        [sys.executable, "-m", "cutover", "run", "-f", str(playbook), "--yes"],
        cwd=work,
        env={**os.environ, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    ended = time.monotonic()
    wait_for(lambda: any(t > ended for t, _ in writer.refused), "a write after the run")
    writer.stop.set()
    thread.join(timeout=30)
    yield proc, writer


def rows(cluster_file: Path, dbname: str) -> set[int]:
    cluster = pgcluster.load(cluster_file)
    with pgcluster.connect(cluster, dbname) as conn:
        return {int(r[0]) for r in conn.execute("SELECT n FROM client_writes").fetchall()}


def test_the_run_completes_and_says_it_froze_writes(
    run_with_writer: tuple[subprocess.CompletedProcess[str], Writer],
) -> None:
    proc, _ = run_with_writer
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cutover complete" in proc.stdout
    assert "SQLSTATE 25006" in proc.stdout  # the proof, reported


def test_writes_after_the_freeze_fail_and_none_lands(
    run_with_writer: tuple[subprocess.CompletedProcess[str], Writer],
) -> None:
    _, writer = run_with_writer
    refused = [t for t, code in writer.refused if code == "25006"]
    assert refused, writer.refused
    first_refusal = min(refused)
    assert not [n for t, n in writer.ok if t > first_refusal]  # nothing written after it


def test_every_row_written_before_the_freeze_is_on_convox_and_nothing_else_on_heroku(
    sandbox: Path, run_with_writer: tuple[subprocess.CompletedProcess[str], Writer]
) -> None:
    _, writer = run_with_writer
    written = {n for _, n in writer.ok}
    assert len(written) > 10
    assert rows(sandbox / "pg-heroku.json", manager.SOURCE_DB) == written
    assert rows(sandbox / "pg-convox.json", manager.TARGET_DB) == written
