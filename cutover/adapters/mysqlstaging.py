"""A MySQL sync never leaves the Convox database worse: staging, guard, marker, swap (issue 14).

The same rules as Postgres (cutover/adapters/pgstaging.py), in MySQL's terms:

* the copy goes into ``<db>__cutover_next`` (Convox's mysql resource logs in as ``root``,
  provider/k8s/template/resource/mysql.yml.tmpl, so it may create databases). A user that may not
  (an rds-mysql master user limited by the operator) makes the step fail before anything in
  ``<db>`` changes, naming the refusal;
* the marker is a table cutover owns in ``<db>``, ``_cutover_sync`` (MySQL has no database
  COMMENT; MariaDB's 10.5+ one is not in MySQL): ``state`` (synced / live), ``at``, and
  ``fingerprint``: ``CHECKSUM TABLE`` of every base table right after the copy. CHECKSUM TABLE
  differs between servers and row formats, but here it is compared on the same server, before and
  after: a difference means the database took writes since cutover's copy;
* the guard refuses a database that is live, took writes since the last sync, or holds tables
  and no marker (not cutover's), unless ``--force-data`` (after a gate);
* the swap is one ``RENAME TABLE <db>.t TO <db>__cutover_prev.t, ..., next.t TO <db>.t, ...``
  statement, atomic in MySQL and MariaDB (MySQL 8.0 manual 13.1.36 "RENAME TABLE Statement":
  "the entire rename operation is done atomically"). Triggers and views cannot cross databases
  (errors 1435 "Trigger in wrong schema" and 1450, measured on MariaDB 10.11): the old copy's
  triggers, views, routines and events are saved to a file, dropped just before the rename, and
  put back if the rename fails; the new ones are loaded after it. ``<db>`` then takes Heroku's
  default character set and collation (a table the app creates later takes them).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cutover.adapters.mysql import MyConn, MysqlAdapter, ident, literal
from cutover.errors import CutoverError

MARKER_TABLE = "_cutover_sync"
NEXT_SUFFIX = "__cutover_next"
PREV_SUFFIX = "__cutover_prev"
FORCE_HINT = "cutover run --force-data (after a gate) replaces it anyway"


def base_tables(my: MysqlAdapter, conn: MyConn) -> list[str]:
    rows = my.query(
        conn,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
    )
    return [r[0] for r in rows if r[0] != MARKER_TABLE]


def views(my: MysqlAdapter, conn: MyConn) -> list[str]:
    rows = my.query(
        conn,
        "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() "
        "ORDER BY TABLE_NAME",
    )
    return [r[0] for r in rows]


def fingerprint(my: MysqlAdapter, conn: MyConn, tables: list[str]) -> dict[str, str]:
    if not tables:
        return {}
    rows = my.query(conn, "CHECKSUM TABLE " + ", ".join(ident(t) for t in tables))
    prefix = conn.database + "."
    return {r[0].removeprefix(prefix): r[1] for r in rows}


def read_marker(my: MysqlAdapter, conn: MyConn) -> dict[str, str] | None:
    rows = my.query(
        conn,
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "  # noqa: S608 - quoted by literal()
        f"AND TABLE_NAME = {literal(MARKER_TABLE)}",
    )
    if rows[0][0] == "0":
        return None
    sql = f"SELECT k, v FROM {ident(MARKER_TABLE)}"  # noqa: S608 - a quoted identifier
    return {r[0]: r[1] for r in my.query(conn, sql)}


def guard(my: MysqlAdapter, conn: MyConn, *, force: bool) -> str | None:
    """None when cutover may replace ``conn``'s data; with ``force``, why it normally may not;
    without, CutoverError saying why."""
    tables = base_tables(my, conn)
    marker = read_marker(my, conn)
    reason: str | None = None
    if marker is None:
        if tables:
            reason = (
                f"{conn.database} holds {len(tables)} table(s) cutover did not put there "
                f"(no {MARKER_TABLE} marker), e.g. {tables[0]}"
            )
    elif marker.get("state") == "live":
        reason = f"{conn.database} went live at {marker.get('at')} (traffic moved to Convox)"
    else:
        saved = json.loads(marker.get("fingerprint") or "{}")
        now = fingerprint(my, conn, tables)
        changed = sorted(t for t in set(saved) | set(now) if saved.get(t) != now.get(t))
        if changed:
            reason = (
                f"{conn.database} took writes since cutover's copy of {marker.get('at')} "
                f"(changed: {', '.join(changed[:5])})"
            )
    if reason is None or force:
        return reason
    raise CutoverError(
        f"refusing to sync into the Convox MySQL database: {reason}", resolution=FORCE_HINT
    )


def schema_charset(my: MysqlAdapter, conn: MyConn) -> tuple[str, str]:
    row = my.query(
        conn,
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema."
        "SCHEMATA WHERE SCHEMA_NAME = DATABASE()",
    )[0]
    return row[0], row[1]


def create_staging(my: MysqlAdapter, conn: MyConn, charset: tuple[str, str]) -> MyConn:
    """``<db>__cutover_next``, created fresh with the source database's defaults."""
    staging = conn.on(conn.database + NEXT_SUFFIX)
    my.execute(
        conn,
        f"DROP DATABASE IF EXISTS {ident(staging.database)};\n"
        f"CREATE DATABASE {ident(staging.database)} CHARACTER SET {charset[0]} "
        f"COLLATE {charset[1]};",
    )
    return staging


def drop_staging(my: MysqlAdapter, conn: MyConn) -> None:
    my.execute(conn, f"DROP DATABASE IF EXISTS {ident(conn.database + NEXT_SUFFIX)};")


def mark_synced(my: MysqlAdapter, staging: MyConn, clock: Callable[[], float] = time.time) -> str:
    """The marker in the staging copy (it moves with the swap); the marker's words."""
    at = datetime.fromtimestamp(clock(), UTC).isoformat(timespec="seconds")
    tables = base_tables(my, staging)
    prints = json.dumps(fingerprint(my, staging, tables), sort_keys=True)
    my.execute(
        staging,
        f"CREATE TABLE IF NOT EXISTS {ident(MARKER_TABLE)} (k VARCHAR(32) PRIMARY KEY, "
        "v LONGTEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
        f"REPLACE INTO {ident(MARKER_TABLE)} VALUES ('state', 'synced'), ('at', {literal(at)}), "
        f"('fingerprint', {literal(prints)});",
    )
    return f"cutover:synced {at} tables={len(tables)}"


def mark_live(my: MysqlAdapter, conn: MyConn, clock: Callable[[], float] = time.time) -> str:
    at = datetime.fromtimestamp(clock(), UTC).isoformat(timespec="seconds")
    my.execute(
        conn,
        f"CREATE TABLE IF NOT EXISTS {ident(MARKER_TABLE)} (k VARCHAR(32) PRIMARY KEY, "
        "v LONGTEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
        f"REPLACE INTO {ident(MARKER_TABLE)} VALUES ('state', 'live'), ('at', {literal(at)});",
    )
    return f"cutover:live {at}"


def drop_objects_sql(my: MysqlAdapter, conn: MyConn) -> str:
    """DROP statements for every trigger, view, routine and event of ``conn``'s database."""
    parts: list[str] = []
    for (name,) in my.query(
        conn,
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()",
    ):
        parts.append(f"DROP TRIGGER IF EXISTS {ident(name)};")
    for name in views(my, conn):
        parts.append(f"DROP VIEW IF EXISTS {ident(name)};")
    for kind, name in my.query(
        conn,
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = DATABASE()",
    ):
        parts.append(f"DROP {kind} IF EXISTS {ident(name)};")
    for (name,) in my.query(
        conn, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()"
    ):
        parts.append(f"DROP EVENT IF EXISTS {ident(name)};")
    return "\n".join(parts)


def dump_objects(my: MysqlAdapter, conn: MyConn, folder: Path, name: str, timeout: float) -> Path:
    """Triggers, routines, events, then views of ``conn`` in one 0600 file (definers rewritten);
    views last: a view may use a function."""
    objects = folder / f"{name}.objects.sql"
    my.dump(my.objects_dump_argv(conn, objects), conn, objects, timeout)
    names = views(my, conn)
    if names:
        view_file = folder / f"{name}.views.sql"
        my.dump(my.views_dump_argv(conn, names, view_file), conn, view_file, timeout)
        with objects.open("a", encoding="utf-8", errors="surrogateescape") as out:
            out.write(view_file.read_text(encoding="utf-8", errors="surrogateescape"))
        view_file.unlink()
    return objects


def swap(my: MysqlAdapter, conn: MyConn, new_objects: Path, folder: Path, timeout: float) -> None:
    """Put ``<db>__cutover_next``'s tables in place of ``<db>``'s in one RENAME, then load the
    new triggers, views, routines and events. A failed rename leaves ``<db>`` as it was (its own
    objects put back)."""
    staging = conn.on(conn.database + NEXT_SUFFIX)
    prev = conn.database + PREV_SUFFIX
    old_tables = [*base_tables(my, conn)]
    if read_marker(my, conn) is not None:
        old_tables.append(MARKER_TABLE)
    new_tables = [*base_tables(my, staging), MARKER_TABLE]
    old_objects = dump_objects(my, conn, folder, "previous", timeout)
    try:
        drops = drop_objects_sql(my, conn)
        renames = [
            f"{ident(conn.database)}.{ident(t)} TO {ident(prev)}.{ident(t)}" for t in old_tables
        ]
        renames += [
            f"{ident(staging.database)}.{ident(t)} TO {ident(conn.database)}.{ident(t)}"
            for t in new_tables
        ]
        my.execute(
            conn,
            f"DROP DATABASE IF EXISTS {ident(prev)};\nCREATE DATABASE {ident(prev)};\n"
            f"{drops}\nRENAME TABLE {', '.join(renames)};",
        )
    except BaseException:
        with contextlib.suppress(Exception):
            _restore_objects(my, conn, old_objects, timeout)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            old_objects.unlink()
    # Heroku's default character set and collation (the staging database was made with them):
    # a table the app creates later without one takes it; Convox's mysql:5.7.23 starts latin1.
    charset, collation = schema_charset(my, staging)
    my.execute(
        conn, f"ALTER DATABASE {ident(conn.database)} CHARACTER SET {charset} COLLATE {collation};"
    )
    my.execute(conn, drop_objects_sql(my, conn))  # none should be left; a rerun finds none
    my.load(conn, new_objects, timeout)
    my.execute(
        conn,
        f"DROP DATABASE IF EXISTS {ident(prev)};\nDROP DATABASE IF EXISTS "
        f"{ident(staging.database)};",
    )


def _restore_objects(my: MysqlAdapter, conn: MyConn, objects: Path, timeout: float) -> None:
    """After a failed rename: ``<db>`` still holds its old tables; put their objects back."""
    my.execute(conn, drop_objects_sql(my, conn))
    my.load(conn, objects, timeout)


@dataclass(frozen=True)
class SyncResult:
    tables: int
    bytes: int
    definers: int  # DEFINER clauses rewritten to CURRENT_USER
    marker: str
    seconds: float


def sync(
    my: MysqlAdapter,
    source: MyConn,
    target: MyConn,
    folder: Path,
    timeout: float,
    note: Callable[[str], None] = lambda _: None,
) -> SyncResult:
    """Heroku's database into ``<db>__cutover_next``, marked, swapped in as ``<db>`` (the guard
    is the caller's, before this). A failure before the swap leaves ``<db>`` untouched."""
    started = time.monotonic()
    tables = base_tables(my, source)
    staging = create_staging(my, target, schema_charset(my, source))
    data = folder / "mysql-data.sql"
    objects = folder / "mysql-objects.sql"
    try:
        definers = my.dump(my.data_dump_argv(source, tables, data), source, data, timeout)
        size = data.stat().st_size
        note(f"dumped {len(tables)} tables ({size} bytes); loading into {staging.database}")
        my.load(staging, data, timeout)
        definers += _count(dump_objects(my, source, folder, "mysql-source", timeout), objects)
        marker = mark_synced(my, staging)
    except BaseException:
        with contextlib.suppress(Exception):
            drop_staging(my, target)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            data.unlink()
    try:
        swap(my, target, objects, folder, timeout)
    finally:
        with contextlib.suppress(FileNotFoundError):
            objects.unlink()
    return SyncResult(len(tables), size, definers, marker, time.monotonic() - started)


def _count(made: Path, objects: Path) -> int:
    made.replace(objects)
    text = objects.read_text(encoding="utf-8", errors="surrogateescape")
    return text.count("DEFINER=CURRENT_USER")
