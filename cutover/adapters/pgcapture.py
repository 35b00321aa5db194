"""Row-level change capture on Heroku's database, for ``database.final_sync: changed-rows``.

Heroku grants no replication and no superuser: no logical decoding, no event triggers. The
capture is plain PostgreSQL owned by the database owner, all of it in the schema ``_cutover``
but the triggers:

* per captured table a log ``_cutover.log_<relid>`` of (the table's key columns, same names and
  types; ``cutover_seq`` from the sequence ``_cutover.seq``; ``cutover_xid`` =
  ``pg_current_xact_id()``, the writing transaction's top-level id), filled by four
  statement-level AFTER triggers ``cutover_capture_ins/_upd/_del`` (transition tables: one
  event each, as PostgreSQL requires) and ``cutover_capture_trunc`` (into
  ``_cutover.truncates``); an UPDATE logs the old and the new keys (a key update is a delete
  plus an upsert);
* ``_cutover.tables``: one row per user table with its key (``{}`` when not captured), its log
  and a fingerprint of its definition (:func:`schema_changes`).

Correctness, in short: a *position* is a snapshot (``pg_current_snapshot()::text``); an entry is
after position P iff ``NOT pg_visible_in_snapshot(entry.xid, P)``, which follows commit order (a
sequence number does not: a lower number can commit later). Applying a key copies the source's
row as of a snapshot at or after the round's (or deletes it): idempotent, so any recorded
position at or before the truth is safe (cutover/adapters/pgapply.py).

Captured: plain tables (not a partition, not in an inheritance tree) with a primary key, else a
unique index on NOT NULL columns (not partial, no expression). Keyless plain tables are listed
and captured too (``CapturePlan.logged``): their log holds each inserted row as text, and an
UPDATE/DELETE/TRUNCATE marks them for a whole copy (pgcapture_sql.rows_log_sql; applied
exactly once by cutover/adapters/pgapply_rows.py); partitioned and inheritance tables are
listed as unsupported (the final sync is then a full one).

Limits: the log is never pruned (it grows with the writes until ``cutover cleanup``); the
triggers are SECURITY INVOKER, so the schema, the sequence and each log are open to INSERT by
PUBLIC (any role that writes a table must be able to log it; a spurious entry only makes a key
be applied again); a session with session_replication_role = replica on Heroku (superuser only,
which Heroku grants nobody) would write without firing them.

Install and uninstall each run in ONE transaction ``BEGIN READ WRITE`` (freeze-writes may have
set default_transaction_read_only) with ``lock_timeout = 5s``: CREATE TRIGGER takes SHARE ROW
EXCLUSIVE on each table, and cutover must not queue the app behind it for long.
"""

# SQL is built from catalog names (quote_ident'ed by the server), oids, and positions checked
# against a strict pattern; text values go through literal(). No operator input reaches it.
# ruff: noqa: S608
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cutover.adapters.pgcapture_filters import is_capture_schema_header, is_capture_toc_line
from cutover.adapters.pgcapture_sql import (
    CAPTURE_SCHEMA,
    EVENTS,
    FINGERPRINT_SELECT,
    FINGERPRINT_SQL,
    FORGET_SQL,
    INSPECT_SQL,
    INSTALL_HEAD,
    INSTALLED_SQL,
    LEFTOVERS_SQL,
    RECORDED_SQL,
    ROW_TEXT_SETTINGS,
    STATUS_SQL,
    TRIGGER_PREFIX,
    UNINSTALL_SQL,
    rows_function_body,
    rows_log_sql,
)
from cutover.adapters.pgcapture_sql import after as after_position
from cutover.adapters.postgres import STABLE_TEXT, ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError, UnexpectedOutput

__all__ = [
    "CAPTURE_SCHEMA",
    "TRIGGER_PREFIX",
    "CapturePlan",
    "CaptureStatus",
    "CaptureTable",
    "Pending",
    "inspect",
    "install",
    "install_statements",
    "is_capture_schema_header",
    "is_capture_toc_line",
    "leftovers",
    "pending",
    "position",
    "schema_changes",
    "status",
    "uninstall",
]

LOCK_TIMEOUT = "5s"
# pg_current_snapshot()::text: xmin:xmax:xip,... (PostgreSQL docs, "Snapshot Information").
_POSITION = re.compile(r"^\d+:\d+:(\d+(,\d+)*)?$")
# psql names the script line of a failing statement: "psql:<stdin>:12: ERROR:  ..."
_FAILED_LINE = re.compile(r"psql:<stdin>:(\d+): ERROR:\s+(.*)")


@dataclass(frozen=True)
class CaptureTable:
    name: str  # quoted "schema.table", as pgtables/pgchanges print names
    relid: int
    key: tuple[str, ...]  # quoted column names
    key_source: str  # "primary key" or "unique index <name>"

    @property
    def log(self) -> str:
        return f"{CAPTURE_SCHEMA}.log_{self.relid}"


@dataclass(frozen=True)
class CapturePlan:
    tables: tuple[CaptureTable, ...]
    keyless: tuple[str, ...]  # no key: copied whole, or (when in ``logged``) their inserts
    unsupported: tuple[str, ...]  # "name: why" -> the final sync is a full one
    # The keyless tables whose inserted rows are logged (key ()): pgcapture_sql.rows_log_sql
    logged: tuple[CaptureTable, ...] = ()


@dataclass(frozen=True)
class CaptureStatus:
    installed: bool
    tables: tuple[CaptureTable, ...]  # as recorded in _cutover.tables
    missing_triggers: tuple[str, ...]  # captured tables lacking one of the 4 triggers


@dataclass(frozen=True)
class Pending:
    entries: int  # log rows after `since` (incl. truncates)
    tables: dict[str, int] = field(default_factory=dict)  # name -> entries
    truncated: tuple[str, ...] = ()


def query(pg: PostgresAdapter, conn: ConnInfo, sql: str, timeout: float = 120) -> list[list[str]]:
    """Rows of ``sql`` (psql -At, tab-separated, quiet: no command tags among the rows)."""
    pg.masker.add(conn.password)
    result = pg.runner.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-f", "-"],
        env={**conn.env(), "PGOPTIONS": STABLE_TEXT},
        input=sql,
        timeout=timeout,
    )
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def text_array(items: tuple[str, ...] | list[str]) -> str:
    if not items:
        return "'{}'::text[]"
    return "ARRAY[" + ", ".join(literal(i) for i in items) + "]::text[]"


def check_position(since: str) -> str:
    if not _POSITION.match(since):
        raise CutoverError(
            f"not a capture position: {since[:60]!r} (expected a PostgreSQL snapshot such as "
            "'1203:1210:1204,1207')",
            resolution="Re-run the initial sync (`cutover run --from initial-sync`): it records "
            "a new position.",
        )
    return since


# -- inspect ----------------------------------------------------------------------------------
# Key column names the capture cannot carry: the log's own columns, and the row number of the
# batch boundaries (cutover/adapters/pgapply_sql.py). Such a table is copied whole instead.
_RESERVED_KEYS = {"cutover_seq", "cutover_xid", "cutover_n"}


def plan_from_docs(docs: list[dict[str, Any]]) -> CapturePlan:
    tables: list[CaptureTable] = []
    keyless: list[str] = []
    logged: list[CaptureTable] = []
    unsupported: list[str] = []
    for doc in docs:
        name = doc["name"]
        if doc["relkind"] == "p":
            unsupported.append(f"{name}: partitioned table")
        elif doc["partition"]:
            unsupported.append(f"{name}: partition of a partitioned table")
        elif doc["inherits"]:
            unsupported.append(f"{name}: in an inheritance tree")
        elif doc["key"] is None or set(doc["key"]["columns"]) & _RESERVED_KEYS:
            keyless.append(name)
            logged.append(CaptureTable(name, int(doc["relid"]), (), "none: rows logged"))
        else:
            key = doc["key"]
            tables.append(
                CaptureTable(name, int(doc["relid"]), tuple(key["columns"]), key["source"])
            )
    return CapturePlan(tuple(tables), tuple(keyless), tuple(unsupported), tuple(logged))


def inspect(pg: PostgresAdapter, conn: ConnInfo) -> CapturePlan:
    """Which tables can be captured, which are keyless, which unsupported (read-only)."""
    return plan_from_docs([json.loads(r[0]) for r in query(pg, conn, INSPECT_SQL)])


# -- install ----------------------------------------------------------------------------------
def _function(table: CaptureTable, event: str) -> str:
    keys = ", ".join(table.key)
    body = (
        rows_function_body(table.relid, table.log, event)
        if not table.key
        else {
            "ins": f"INSERT INTO {table.log} ({keys}) SELECT {keys} FROM cutover_new;",
            "upd": f"INSERT INTO {table.log} ({keys}) SELECT {keys} FROM cutover_old "
            f"UNION SELECT {keys} FROM cutover_new;",
            "del": f"INSERT INTO {table.log} ({keys}) SELECT {keys} FROM cutover_old;",
            "trunc": f"INSERT INTO {CAPTURE_SCHEMA}.truncates (relid) VALUES ({table.relid}::oid);",
        }[event]
    )
    return (
        f"CREATE OR REPLACE FUNCTION {CAPTURE_SCHEMA}.capture_{table.relid}_{event}() "
        "RETURNS trigger LANGUAGE plpgsql SECURITY INVOKER "
        "SET search_path = pg_catalog, pg_temp "
        + ("" if table.key else ROW_TEXT_SETTINGS)
        + "AS "
        + dollar_quoted(f"BEGIN\n  {body}\n  RETURN NULL;\nEND")
    )


def dollar_quoted(body: str) -> str:
    """``body`` between dollar quotes whose tag it does not hold: a quoted identifier may hold
    ``$cutover$`` (identifiers may contain ``$``), which would end a fixed tag's string early."""
    tag, n = "$cutover$", 0
    while tag in body:
        n += 1
        tag = f"$cutover{n}$"
    return f"{tag}\n{body}\n{tag}"


_TRIGGER_EVENT = {
    "ins": "AFTER INSERT ON {t} REFERENCING NEW TABLE AS cutover_new",
    "upd": "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS cutover_old NEW TABLE AS cutover_new",
    "del": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS cutover_old",
    "trunc": "AFTER TRUNCATE ON {t}",
}


def _triggers(table: CaptureTable) -> str:
    """One DO block: create each missing trigger, enable each one that does not fire for the
    app (disabled, or ENABLE REPLICA); no lock is taken on a table whose four triggers fire."""
    lines = ["BEGIN"]
    for event in EVENTS:
        trigger = f"{TRIGGER_PREFIX}_{event}"
        where = f"g.tgrelid = {table.relid}::oid AND g.tgname = '{trigger}'"
        lines += [
            f"  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE {where}) THEN",
            f"    CREATE TRIGGER {trigger} {_TRIGGER_EVENT[event].format(t=table.name)}",
            f"      FOR EACH STATEMENT EXECUTE FUNCTION "
            f"{CAPTURE_SCHEMA}.capture_{table.relid}_{event}();",
            f"  ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE {where} "
            "AND g.tgenabled NOT IN ('O', 'A')) THEN",
            f"    ALTER TABLE {table.name} ENABLE TRIGGER {trigger};",
            "  END IF;",
        ]
    return "DO " + dollar_quoted("\n".join([*lines, "END"]))


def table_statements(table: CaptureTable) -> list[str]:
    """The log, functions and triggers of one table (idempotent). A log in place is left alone:
    altering it would wait for every writer of the table (its trigger writes the log)."""
    keys = ", ".join(table.key)
    index = f"log_{table.relid}_xid"
    if not table.key:  # a keyless table: its inserted rows are logged
        return [
            "DO " + dollar_quoted(rows_log_sql(table.relid, table.log)),
            *(_function(table, event) for event in EVENTS),
            _triggers(table),
        ]
    return [
        "DO "
        + dollar_quoted(
            "BEGIN\n"
            # A log whose key columns no longer match (the key changed) is rebuilt empty: the
            # install that changes it comes before a new initial sync's position.
            # (a table that had no key has a log of rows: dropped as well)
            "  IF EXISTS (SELECT 1 FROM _cutover.tables t WHERE t.relid = "
            f"{table.relid}::oid AND t.key <> {text_array(table.key)}) THEN\n"
            f"    DROP TABLE IF EXISTS {table.log};\n  END IF;\n"
            f"  IF pg_catalog.to_regclass('{table.log}') IS NULL THEN\n"
            # Same column names, types and collations as the table's key (joined without casts).
            f"    CREATE TABLE {table.log} AS SELECT {keys} FROM {table.name} WITH NO DATA;\n"
            f"    ALTER TABLE {table.log} "
            "ADD COLUMN cutover_seq bigint NOT NULL DEFAULT nextval('_cutover.seq'), "
            "ADD COLUMN cutover_xid xid8 NOT NULL DEFAULT pg_current_xact_id();\n"
            f"    CREATE INDEX {index} ON {table.log} (cutover_xid);\n"
            f"    GRANT INSERT ON {table.log} TO PUBLIC;\n"
            "  END IF;\nEND"
        ),
        *(_function(table, event) for event in EVENTS),
        _triggers(table),
    ]


def _record(plan: CapturePlan) -> list[str]:
    """Forget tables no longer captured; record every user table's key and fingerprint."""
    captured = [*plan.tables, *plan.logged]
    keep = "ARRAY[" + ", ".join(f"{t.relid}::oid" for t in captured) + "]::oid[]"
    values = (
        "VALUES "
        + ", ".join(f"({t.relid}::oid, {text_array(t.key)}, {literal(t.log)})" for t in captured)
        if captured
        else "SELECT NULL::oid, NULL::text[], NULL::text WHERE false"
    )
    return [
        FORGET_SQL.replace("{keep}", keep),
        f"DELETE FROM _cutover.tables WHERE relid <> ALL ({keep})",
        "INSERT INTO _cutover.tables (relid, name, key, log, def_md5)\n"
        "SELECT f.relid, f.name, coalesce(v.key, '{}'), coalesce(v.log, ''), f.def_md5\n"
        f"FROM ({FINGERPRINT_SELECT}) f\n"
        f"LEFT JOIN ({values}) v(relid, key, log) ON v.relid = f.relid\n"
        "ON CONFLICT (relid) DO UPDATE SET name = EXCLUDED.name, key = EXCLUDED.key, "
        "log = EXCLUDED.log, def_md5 = EXCLUDED.def_md5, installed_at = now()",
    ]


def install_statements(plan: CapturePlan) -> list[str]:
    """Every statement of the install transaction, in order (catalog names only: no secrets)."""
    statements = [
        "BEGIN READ WRITE",
        f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'",
        "SET LOCAL search_path = pg_catalog",
        *INSTALL_HEAD,
    ]
    for table in (*plan.tables, *plan.logged):
        statements += table_statements(table)
    return [*statements, *_record(plan), "COMMIT"]


def _script(statements: list[str]) -> tuple[str, list[int]]:
    """The psql script and the line each statement ends on."""
    text, ends, line = "", [], 0
    for statement in statements:
        chunk = statement + ";\n"
        line += chunk.count("\n")
        ends.append(line)
        text += chunk
    return text, ends


def _failed_statement(exc: CommandError, statements: list[str], ends: list[int]) -> tuple[str, str]:
    """(the failing statement, psql's error) from the script line psql names."""
    for ln in exc.stderr_tail.splitlines():
        match = _FAILED_LINE.search(ln)
        if match:
            number = int(match.group(1))
            for statement, end in zip(statements, ends, strict=True):
                if number <= end:
                    return statement, match.group(2).strip()
            return "", match.group(2).strip()
    return "", exc.brief


def install(pg: PostgresAdapter, conn: ConnInfo, plan: CapturePlan) -> CapturePlan:
    """Install (or refresh) the capture for ``plan`` in one transaction; idempotent."""
    statements = install_statements(plan)
    script, ends = _script(statements)
    try:
        query(pg, conn, script, timeout=600)
    except CommandError as exc:
        statement, error = _failed_statement(exc, statements, ends)
        table = next((t.name for t in plan.tables if t.name in statement), "")
        if "lock timeout" in error:
            raise CutoverError(
                f"could not install the change capture: {table or 'a table'} stayed locked by "
                f"another session for {LOCK_TIMEOUT}",
                details="Creating a trigger takes a SHARE ROW EXCLUSIVE lock on its table; "
                "cutover does not wait longer, so the app is never queued behind it. Nothing "
                "was installed (one transaction).",
                resolution="Find the long transaction on that table (pg_stat_activity on "
                "Heroku, `heroku pg:ps`), let it finish, then run `cutover run` again.",
            ) from exc
        raise CutoverError(
            "could not install the change capture on Heroku's database"
            + (f" ({table})" if table else "")
            + f": {pg.masker.mask(error)}",
            details="Nothing was installed (one transaction).",
            resolution="Fix the cause, then run `cutover run` again.",
        ) from exc
    return plan


# -- reading it back --------------------------------------------------------------------------
def installed(pg: PostgresAdapter, conn: ConnInfo) -> bool:
    return query(pg, conn, INSTALLED_SQL) == [["t"]]


def status(pg: PostgresAdapter, conn: ConnInfo, *, known_installed: bool = False) -> CaptureStatus:
    """``known_installed``: :func:`installed` was just read (True), so it is not read again."""
    if not known_installed and not installed(pg, conn):
        return CaptureStatus(False, (), ())
    return status_from_rows(query(pg, conn, STATUS_SQL))


def status_from_rows(rows: list[list[str]]) -> CaptureStatus:
    """The status of an installed capture from STATUS_SQL's rows."""
    tables: list[CaptureTable] = []
    missing: list[str] = []
    wanted = {f"{TRIGGER_PREFIX}_{e}" for e in EVENTS}
    for row in rows:
        doc = json.loads(row[0])
        tables.append(CaptureTable(doc["name"], int(doc["relid"]), tuple(doc["key"]), "recorded"))
        if doc["exists"] and not wanted <= set(doc["triggers"]):
            missing.append(doc["name"])
    return CaptureStatus(True, tuple(tables), tuple(missing))


def position(pg: PostgresAdapter, conn: ConnInfo) -> str:
    rows = query(pg, conn, "SELECT pg_catalog.pg_current_snapshot()::text;")
    if not rows or not _POSITION.match(rows[0][0]):
        raise UnexpectedOutput(f"pg_current_snapshot() returned {rows[:1]!r}")
    return rows[0][0]


def schema_changes(pg: PostgresAdapter, conn: ConnInfo) -> list[str]:
    """What changed in the tables' definitions since the install, and captured tables whose
    capture triggers no longer all fire; empty = safe."""
    if not installed(pg, conn):
        return ["the change capture is not installed"]
    recorded = {int(r[0]): (r[1], r[2]) for r in query(pg, conn, RECORDED_SQL)}
    now = {int(r[0]): (r[1], r[2]) for r in query(pg, conn, FINGERPRINT_SQL)}
    lines = []
    for relid, (name, md5) in sorted(now.items(), key=lambda kv: kv[1][0]):
        if relid not in recorded:
            lines.append(f"{name}: new table, not captured")
        elif recorded[relid][1] != md5:
            lines.append(f"{name}: definition changed since the capture was installed")
    lines += [f"{name}: dropped" for relid, (name, _) in recorded.items() if relid not in now]
    # Writes made while a capture trigger does not fire are in no log (the fingerprint leaves
    # cutover's triggers out: this is where a dropped or disabled one shows).
    lines += [
        f"{name}: a capture trigger is missing or does not fire"
        for name in status(pg, conn).missing_triggers
    ]
    return lines


def pending(pg: PostgresAdapter, conn: ConnInfo, since: str) -> Pending:
    """Log entries committed after ``since`` (what the next apply would consume)."""
    check_position(since)
    current = status(pg, conn)
    if not current.installed:
        raise CutoverError(
            "the change capture is not installed on Heroku's database",
            resolution="Install it: `cutover run --until capture-changes`.",
        )
    captured = current.tables
    after = after_position(since)
    parts = [
        f"SELECT 'k', {literal(t.name)}, count(*) FROM {t.log} WHERE {after}" for t in captured
    ]
    parts.append(
        "SELECT 't', r.name, count(*) FROM _cutover.truncates x "
        f"JOIN _cutover.tables r ON r.relid = x.relid WHERE {after} GROUP BY r.name"
    )
    rows = query(pg, conn, "\nUNION ALL\n".join(parts) + ";", timeout=600)
    tables: dict[str, int] = {}
    truncated = []
    for kind, name, count in rows:
        if int(count):
            tables[name] = tables.get(name, 0) + int(count)
            if kind == "t":
                truncated.append(name)
    return Pending(sum(tables.values()), tables, tuple(sorted(truncated)))


# -- removal ----------------------------------------------------------------------------------
def leftovers(pg: PostgresAdapter, conn: ConnInfo) -> list[str]:
    """Every object of the capture present on the database (what cleanup would remove)."""
    return [r[0] for r in query(pg, conn, LEFTOVERS_SQL)]


def uninstall(pg: PostgresAdapter, conn: ConnInfo) -> list[str]:
    """Remove every trigger ``cutover_capture*`` and the schema ``_cutover``; read the catalog
    back; CutoverError if anything remains. Returns what was removed (empty: nothing was)."""
    before = leftovers(pg, conn)
    if not before:
        return []
    try:
        query(pg, conn, UNINSTALL_SQL, timeout=600)
    except CommandError as exc:
        error = _failed_statement(exc, [], [])[1]
        reason = (
            f"a table stayed locked by another session for {LOCK_TIMEOUT}"
            if "lock timeout" in error
            else pg.masker.mask(error)
        )
        raise CutoverError(
            f"could not remove the change capture from Heroku's database: {reason}",
            details="Nothing was removed (one transaction).",
            resolution="Fix the cause (a long transaction: `heroku pg:ps`), then run "
            "`cutover cleanup` again.",
        ) from exc
    left = leftovers(pg, conn)
    if left:
        raise CutoverError(
            "the change capture was not fully removed from Heroku's database",
            details="Still there:\n" + "\n".join(f"  {item}" for item in left),
            resolution="Run `cutover cleanup` again; if it stays, drop them by hand as the "
            "database owner.",
        )
    return before
