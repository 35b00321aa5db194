"""A workload that keeps writing to the sandbox's Heroku database while a cutover runs.

Three writers, as on a real app: users through the Heroku app (``POST /api/orders``, refused
with 503 once the app is in maintenance), a second client attached to the same database with
the app's credentials (a persistent session inserting an order and a job every ``interval``
seconds; it reconnects when its session is ended), and the Heroku worker dynos the sandbox runs
(cutover/sandbox/herokudynos.py), which mark the jobs done until scale-down stops them.

Every acknowledged write (201 from the app, a committed insert) is recorded with its reference,
so a test can check that each one reached the Convox database; every refused one is recorded
with its reason (the SQLSTATE for the database, e.g. 25006 read_only_sql_transaction).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cutover.sandbox import heroku_api, manager

QUEUE = (
    "CREATE TABLE IF NOT EXISTS sandbox_jobs "
    "(id bigserial PRIMARY KEY, done_at timestamptz, done_by text)"
)
ORDER = (
    "INSERT INTO orders (account_id, reference, created_at, updated_at) "
    "SELECT min(id), %s, now(), now() FROM accounts"
)


def heroku_database_url(sandbox: Path) -> str:
    """The Heroku app's DATABASE_URL (the credentials every attachment shares)."""
    app = heroku_api.load_state(sandbox / "heroku" / "state.json")["apps"][manager.HEROKU_APP]
    return str(app["config_vars"]["DATABASE_URL"])


@dataclass
class Writes:
    acked: list[tuple[float, str]] = field(default_factory=list)
    refused: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, reference: str) -> None:
        with self.lock:
            self.acked.append((time.time(), reference))

    def refuse(self, reason: str) -> None:
        with self.lock:
            self.refused.append((time.time(), reason))


class Workload:
    def __init__(self, sandbox: Path, interval: float = 0.1) -> None:
        self.sandbox = sandbox
        self.interval = interval
        self.url = heroku_database_url(sandbox)
        self.app = Writes()
        self.client = Writes()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._app_writer, name="app-writer", daemon=True),
            threading.Thread(target=self._client_writer, name="client-writer", daemon=True),
        ]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(QUEUE)

    def __enter__(self) -> Workload:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _app_writer(self) -> None:
        env = json.loads((self.sandbox / "env.json").read_text())
        host, port = env["resolve"][manager.HEROKU_HOSTNAME].split(":")
        trust = ssl.create_default_context(cafile=env["ca_file"])
        n = 0
        with httpx.Client(verify=trust, timeout=10) as http:
            while not self._stop.is_set():
                n += 1
                reference = f"app-{n}"
                try:
                    response = http.post(
                        f"https://{host}:{port}/api/orders",
                        params={"reference": reference},
                        headers={"Host": manager.HEROKU_HOSTNAME},
                        extensions={"sni_hostname": manager.HEROKU_HOSTNAME},
                    )
                    if response.status_code == 201:
                        self.app.ack(reference)
                    else:
                        self.app.refuse(f"HTTP {response.status_code}")
                except httpx.HTTPError as exc:
                    self.app.refuse(type(exc).__name__)
                self._stop.wait(self.interval)

    def _client_writer(self) -> None:
        n = 0
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            n += 1
            reference = f"client-{n}"
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                with conn.transaction():
                    conn.execute(ORDER, (reference,))
                    conn.execute("INSERT INTO sandbox_jobs DEFAULT VALUES")
                self.client.ack(reference)
            except psycopg.Error as exc:
                self.client.refuse(exc.sqlstate or type(exc).__name__)
                if conn is not None and conn.broken:
                    conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()


def references(url: str) -> set[str]:
    """Every order reference in the database at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT reference FROM orders").fetchall()}


def jobs(url: str) -> dict[int, str | None]:
    """Job id -> done_by of every job in ``sandbox_jobs`` at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            int(r[0]): r[1] for r in conn.execute("SELECT id, done_by FROM sandbox_jobs").fetchall()
        }
