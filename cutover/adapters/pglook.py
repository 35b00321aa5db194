"""One look at the Convox database before a sync writes anything: what the resource wait, the
swap recovery, the marker read and the guard (cutover/adapters/pgstaging.py) each asked in a
psql of their own, four in a row, asked by two psql started together.

* On the ``postgres`` maintenance database: ``server_version_num`` (the server answers: the
  resource accepts connections), which of ``<db>``, ``<db>__cutover_next`` and
  ``<db>__cutover_prev`` exist and allow connections (pgstaging.recover_swap), and ``<db>``'s
  comment (the guard marker), hex-encoded so that any comment reads back whole on one line.
* On ``<db>`` itself, at the same time: its row writes (pg_stat_user_tables) and user tables,
  which the guard compares with the marker. This one fails when ``<db>`` does not exist or
  refuses connections (a swap interrupted half-way): the guard then reads them itself after the
  recovery, as before.

Each psql costs a process start, a connection through ``convox resources proxy`` and, on a
loaded two-core machine, 60-80 ms; before a changed-rows final sync the four were 0.3 s of the
window (cutover/bench, issue 13).
"""

# SQL is built from the database's name, quoted as a literal (pgstaging.literal). No other
# input reaches it.
# ruff: noqa: S608

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cutover.adapters.pgstaging import (
    USER_TABLES_SQL,
    WRITES_SQL,
    Marker,
    literal,
    maintenance,
    names,
    parse_marker,
)
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, UnexpectedOutput


@dataclass(frozen=True)
class Look:
    """What one look saw. ``writes``/``tables``: None when ``<db>`` could not be read."""

    major: int  # server_version_num // 10000
    databases: dict[str, bool]  # {name: allows connections} of <db> and its staging/previous
    seen: tuple[bool, Marker | None, str]  # as pgstaging.read_marker returns it
    writes: int | None
    tables: int | None


def _maintenance_sql(db: str) -> str:
    wanted = ", ".join(literal(n) for n in [db, *names(db)])
    return (
        "SELECT 'version', current_setting('server_version_num');\n"
        "SELECT 'database', datname, datallowconn FROM pg_catalog.pg_database "
        f"WHERE datname IN ({wanted});\n"
        "SELECT 'comment', pg_catalog.encode(pg_catalog.convert_to(coalesce("
        "pg_catalog.shobj_description(oid, 'pg_database'), ''), 'UTF8'), 'hex') "
        f"FROM pg_catalog.pg_database WHERE datname = {literal(db)};\n"
    )


def _counts_sql() -> str:
    writes = WRITES_SQL.strip().rstrip(";")
    tables = USER_TABLES_SQL.strip().rstrip(";")
    return f"SELECT 'writes', ({writes});\nSELECT 'tables', ({tables});\n"


Seen = tuple[bool, Marker | None, str]  # as pgstaging.read_marker returns it


def _parse(rows: list[list[str]], db: str) -> tuple[int, dict[str, bool], Seen]:
    version = next((r[1] for r in rows if r[0] == "version" and len(r) == 2), "")
    if not (version.isascii() and version.isdigit() and len(version) <= 9):
        raise UnexpectedOutput(f"psql returned no server_version_num (got {version[:40]!r})")
    databases = {r[1]: r[2] == "t" for r in rows if r[0] == "database" and len(r) == 3}
    hexed = next((r[1] for r in rows if r[0] == "comment" and len(r) == 2), None)
    if hexed is None:
        return int(version) // 10000, databases, (False, None, "")
    try:
        comment = bytes.fromhex(hexed).decode("utf-8", errors="replace")
    except ValueError as exc:
        raise UnexpectedOutput(f"{db}: its comment did not read back as hex") from exc
    return int(version) // 10000, databases, (True, parse_marker(comment), comment)


def _counts(pg: PostgresAdapter, conn: ConnInfo) -> tuple[int | None, int | None]:
    try:
        rows = pg.psql(conn, _counts_sql(), timeout=30)
    except CommandError:
        return None, None  # <db> missing or closed: the guard reads them after the recovery
    found = {r[0]: r[1] for r in rows if len(r) == 2 and r[1].isascii() and r[1].isdigit()}
    writes, tables = found.get("writes"), found.get("tables")
    return (int(writes) if writes else None), (int(tables) if tables else None)


def look(
    pg: PostgresAdapter,
    conn: ConnInfo,
    *,
    wait: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> Look:
    """Look at ``conn`` (its ``dbname`` is ``<db>``), retrying every 2 s for up to ``wait``
    seconds while the server does not answer (a Convox postgres resource's pod still starting:
    PostgresAdapter.wait_accepting). CutoverError naming ``what`` after ``wait``."""
    deadline = time.monotonic() + wait
    db = conn.dbname
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="convox-counts") as pool:
        while True:
            counts = pool.submit(_counts, pg, conn)
            try:
                rows = pg.psql(maintenance(conn), _maintenance_sql(db), timeout=30)
            except CommandError as exc:
                last = exc.stderr_tail.strip().splitlines()[:1]
                counts.result()
            else:
                major, databases, seen = _parse(rows, db)
                writes, tables = counts.result()
                return Look(major, databases, seen, writes, tables)
            if time.monotonic() > deadline:
                raise pg.not_accepting(what, wait, last)
            sleep(2.0)
