"""The sandbox's sample worker: the app's background process (a Sidekiq stand-in).

Run as ``python -m cutover.sandbox.sampleworker``; configured only by environment variables:

``DATABASE_URL``
    The app database. Without it the worker idles (and says so once).
``WORKER_QUEUE_TABLE``
    The queue it consumes (default ``sandbox_jobs``): every ``WORKER_INTERVAL`` seconds
    (default 2) it marks up to 10 rows whose ``done_at`` is NULL as done (``done_at = now()``,
    ``done_by = <release>``), oldest first, like a job runner working off a queue. It never
    creates the table: where there is no queue it only polls, so the worker's effect on the
    data is visible exactly where a test puts a queue.
``RELEASE``, ``APP``, ``PLATFORM``
    Reported in its log lines and written as ``done_by``.

It keeps running when the database refuses connections (a resource still starting), logging
the failure by exception class only (the URL holds a password). SIGTERM and SIGINT stop it
(exit 0).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

from cutover.sandbox import procs

__all__ = ["main", "work_once"]

DEFAULT_TABLE = "sandbox_jobs"
DEFAULT_INTERVAL = 2.0
BATCH = 10
CONNECT_TIMEOUT = 3


def _log(message: str) -> None:
    print(f"worker: {message}", file=sys.stderr, flush=True)


def work_once(conn: Any, table: str, release: str) -> int:
    """Mark up to :data:`BATCH` queued jobs of ``table`` done; return how many (0 without it)."""
    from psycopg import sql  # noqa: PLC0415 - psycopg is only needed with a database

    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not exists or not exists[0]:
        return 0
    query = sql.SQL(
        "UPDATE {t} SET done_at = now(), done_by = %s WHERE id IN ("
        "SELECT id FROM {t} WHERE done_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    ).format(t=sql.Identifier(*table.split(".")))
    cursor = conn.execute(query, (release, BATCH))
    return int(cursor.rowcount or 0)


def run(env: Mapping[str, str], stop: threading.Event) -> None:
    table = env.get("WORKER_QUEUE_TABLE") or DEFAULT_TABLE
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", table):
        raise ValueError(f"WORKER_QUEUE_TABLE must be a table name, got {table!r}")
    interval = float(env.get("WORKER_INTERVAL") or DEFAULT_INTERVAL)
    url = env.get("DATABASE_URL", "")
    release = env.get("RELEASE", "")
    _log(
        f"started app={env.get('APP', '')} release={release} "
        f"platform={env.get('PLATFORM', '')} queue={table}"
    )
    if not url:
        _log("no DATABASE_URL: idle")
    last_error = ""
    while not stop.is_set():
        if url:
            try:
                import psycopg  # noqa: PLC0415

                with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
                    done = work_once(conn, table, release)
                if done:
                    _log(f"processed {done} job(s)")
                last_error = ""
            except Exception as exc:  # a resource still starting, a dropped table: keep going
                if type(exc).__name__ != last_error:
                    last_error = type(exc).__name__
                    _log(f"database unavailable ({last_error}); retrying")
        stop.wait(interval)
    _log("stopped")


def main() -> int:
    stop = procs.stop_on_signals()
    try:
        run(os.environ, stop)
    except ValueError as exc:
        _log(str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
