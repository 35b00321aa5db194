"""The keyless tables of an apply round (cutover/adapters/pgapply.py): their logged inserts
applied exactly once, or the table replaced whole, in the round's snapshot.

A keyless table has no key to fetch a row by, so re-applying is not the identity: inserting a
logged row twice leaves two rows. What makes it exactly-once is a position per table ON THE
TARGET, written in the same transaction as the table's rows: ``_cutover.applied`` on the Convox
database holds (table, since, position): the table equals the source's as of ``position``; it
was written by a round that started from ``since``. A round from position P:

* reads the target's rows first; a table's position counts only if it is P (written by the
  round that ended at P) or its ``since`` is P (a round from P that was killed after that
  table's transaction committed). Anything else (no row, a row left by an older copy) counts as
  unknown;
* in its snapshot S (the holder's), checks that the table's capture is in place (its log and
  its four triggers firing: pgcapture_sql.rows_log_sql), and counts what was logged after the
  table's position and is visible in S: inserted rows, and rewrites (an UPDATE or DELETE that
  touched a row, or a TRUNCATE, in _cutover.truncates);
* a table whose position is unknown, or that was rewritten, is replaced whole by its rows in S
  (TRUNCATE or DELETE, then COPY); one with only inserts gets the logged rows inserted; one
  with neither just has its position moved to S. Each table is ONE target transaction that
  first checks the table's position row is still the one the round read (FOR UPDATE) and
  ends by writing S. Killed before COMMIT: nothing of it happened; after: the next round reads
  S and inserts only what came after S.

The transactions that wrote a keyless table and are visible in S but not in its position are
exactly those whose log entries are read (the log is written in the writing transaction
itself; snapshots are monotonic), so the target ends as the source was in S.

A capture installed before this (no row log) or a log without its triggers: the table is
copied whole in the final round as before (pgtables.copy_tables), and nothing in a catch-up.
The final round drops ``_cutover`` from the Convox database before its synced marker (a later
round, finding no position, replaces the tables whole).
"""

# SQL is built from catalog names (quote_ident'ed by the server), oids and positions checked
# against a strict pattern (pgcapture.check_position). No operator input reaches it.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cutover.adapters.pgapply_sql import _ENABLE, _fk_statements
from cutover.adapters.pgcapture import (
    CaptureTable,
    check_position,
    dollar_quoted,
    literal,
)
from cutover.adapters.pgcapture_sql import EVENTS, TRIGGER_PREFIX, after
from cutover.adapters.pgcopy import ask
from cutover.runpipes import Session

APPLIED = "_cutover.applied"
# On the target: created when missing (with the round's marker, its first writes there; an
# empty table in cutover's own schema changes no data and verify-data never compares it).
APPLIED_MAKE = f"""CREATE SCHEMA IF NOT EXISTS _cutover;
CREATE TABLE IF NOT EXISTS {APPLIED} (name text PRIMARY KEY, since text NOT NULL,
  position text NOT NULL);
"""
APPLIED_SQL = APPLIED_MAKE + f"SELECT name, since, position FROM {APPLIED} ORDER BY name;\n"
DROP_SQL = "DROP SCHEMA IF EXISTS _cutover CASCADE;"


@dataclass(frozen=True)
class RowsJob:
    table: CaptureTable
    applied: str | None  # the table's position on the target (None: unknown)
    rows: int  # logged inserts to apply (0 when replaced)
    replace: bool  # copied whole in the round's snapshot
    # the table's row on the target as the round read it, whether it counts or not (a stale
    # one, left by a round from another start): what its transaction checks is still there
    found: str | None = None


@dataclass(frozen=True)
class RowsSurvey:
    jobs: tuple[RowsJob, ...]  # tables with something to write
    idle: tuple[tuple[str, str], ...]  # (table, its position): nothing after it, moved to S
    uncaptured: tuple[str, ...]  # no row log or a trigger missing: the old whole copy


def valid_positions(rows: Sequence[tuple[str, str, str]], since: str) -> dict[str, str]:
    """The target's table positions (name, since, position) that count for a round from
    ``since`` (module docstring)."""
    return {name: check_position(pos) for name, row_since, pos in rows if since in (pos, row_since)}


def _captured_sql(tables: Sequence[CaptureTable]) -> str:
    names = "ARRAY[" + ", ".join(f"'{TRIGGER_PREFIX}_{e}'" for e in EVENTS) + "]"
    return (
        "\nUNION ALL\n".join(
            f"SELECT {t.relid}, pg_catalog.to_regclass('{t.log}') IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = "
            f"pg_catalog.to_regclass('{t.log}') AND a.attname = 'cutover_row') "
            "AND (SELECT count(*) FROM pg_catalog.pg_trigger g "
            f"WHERE g.tgrelid = {t.relid}::oid AND g.tgname = ANY ({names}) "
            "AND g.tgenabled IN ('O', 'A')) = 4"
            for t in tables
        )
        + ";"
    )


def _counts_sql(tables: Sequence[tuple[CaptureTable, str]]) -> str:
    return (
        "\nUNION ALL\n".join(
            f"SELECT {t.relid}, (SELECT count(*) FROM {t.log} WHERE {after(p)}), "
            f"(SELECT count(*) FROM _cutover.truncates WHERE relid = {t.relid}::oid "
            f"AND {after(p)})"
            for t, p in tables
        )
        + ";"
    )


def survey(
    holder: Session,
    tables: Sequence[CaptureTable],
    found: Sequence[tuple[str, str, str]],
    since: str,
) -> RowsSurvey:
    """What each logged keyless table needs, read in the holder's snapshot, for a round from
    ``since``; ``found``: the target's position rows (name, since, position) as read."""
    applied = valid_positions(found, since)
    read = {name: position for name, _, position in found}
    if not tables:
        return RowsSurvey((), (), ())
    ok = {int(r[0]) for r in ask(holder, _captured_sql(tables)) if r[1] == "t"}
    captured = [t for t in tables if t.relid in ok]
    known = [(t, applied[t.name]) for t in captured if t.name in applied]
    rows = ask(holder, _counts_sql(known), 3600) if known else []
    counts = {int(r[0]): (int(r[1]), int(r[2])) for r in rows}
    jobs, idle = [], []
    for table in captured:
        position = applied.get(table.name)
        inserted, rewrites = counts.get(table.relid, (0, 0))
        if position is None or rewrites:
            jobs.append(RowsJob(table, position, 0, True, read.get(table.name)))
        elif inserted:
            jobs.append(RowsJob(table, position, inserted, False, read.get(table.name)))
        else:
            idle.append((table.name, position))
    uncaptured = tuple(t.name for t in tables if t.relid not in ok)
    return RowsSurvey(tuple(jobs), tuple(idle), uncaptured)


def source_sql(job: RowsJob, columns: list[str]) -> str:
    """The source's ``COPY ... TO STDOUT`` of the job (run in the round's snapshot): the table
    whole, or the logged rows after its position (read back through the table's row type)."""
    table = job.table
    if job.replace or job.applied is None:
        return f"COPY (SELECT {', '.join(columns)} FROM ONLY {table.name}) TO STDOUT"
    cols = ", ".join(f"(x.cutover_r).{c}" for c in columns)
    return (
        f"COPY (SELECT {cols} FROM (SELECT l.cutover_row::{table.name} AS cutover_r "
        f"FROM {table.log} l WHERE {after(job.applied, 'l.cutover_xid')}) x) TO STDOUT"
    )


def target_scripts(
    job: RowsJob,
    doc: dict[str, Any],
    replica: bool,
    since: str,
    position: str,
) -> tuple[str, str]:
    """The target's script before the COPY's rows and after them (up to COMMIT and the
    ``cutover-batch N 0`` line): see the module docstring. Triggers and foreign keys as a keyed
    batch's (pgapply_sql.batch_target_scripts)."""
    name = job.table.name
    fks: Sequence[dict[str, Any]] = () if replica else doc["fks"]
    fire = ("A", "R") if replica else ("O", "A")
    off = [t for t in doc["triggers"] if t["mode"] in fire]
    drop_fks, add_fks = _fk_statements(fks)
    linked = sorted({name} | {f["table"] for f in fks} | {f["other"] for f in fks})
    check = (
        f"IF (SELECT a.position FROM {APPLIED} a WHERE a.name = {literal(name)} FOR UPDATE) "
        f"IS DISTINCT FROM {literal(job.found) if job.found else 'NULL'} THEN\n"
        f"  RAISE EXCEPTION 'cutover: the applied position of % moved', {literal(name)};\n"
        "END IF;"
    )
    # A table a foreign key still references (replica mode keeps them) refuses TRUNCATE.
    empty = f"DELETE FROM ONLY {name}" if doc["fks"] and replica else f"TRUNCATE ONLY {name}"
    before = [
        "BEGIN",
        *(["SET LOCAL session_replication_role = replica"] if replica else []),
        "DO " + dollar_quoted(f"BEGIN\n{check}\nEND"),
        *([f"LOCK TABLE {', '.join(linked)} IN ACCESS EXCLUSIVE MODE"] if fks else []),
        *drop_fks,
        *(f"ALTER TABLE {name} DISABLE TRIGGER {t['name']}" for t in off),
        *([empty] if job.replace else []),
        # (a table with no columns at all takes no column list)
        f"COPY {name}{' (' + ', '.join(doc['columns']) + ')' if doc['columns'] else ''} FROM STDIN",
    ]
    after_rows = [
        f"INSERT INTO {APPLIED} (name, since, position) VALUES "
        f"({literal(name)}, {literal(since)}, {literal(position)}) ON CONFLICT (name) DO "
        "UPDATE SET since = EXCLUDED.since, position = EXCLUDED.position",
        *add_fks,
        *(f"ALTER TABLE {name} {_ENABLE[t['mode']]} TRIGGER {t['name']}" for t in off),
    ]
    return (
        "".join(f"{s};\n" for s in before).rstrip("\n"),
        "\\set cutover_up :ROW_COUNT\n"
        + "".join(f"{s};\n" for s in after_rows)
        + "COMMIT;\n\\echo cutover-batch :cutover_up 0",
    )


def advance_statements(idle: Sequence[tuple[str, str]], since: str, position: str) -> list[str]:
    """Move the positions of the tables nothing was logged for to the round's (in the round's
    last transaction; a table whose position moved meanwhile is left as it is)."""
    return [
        f"UPDATE {APPLIED} SET since = {literal(since)}, position = {literal(position)} "
        f"WHERE name = {literal(name)} AND position = {literal(old)}"
        for name, old in idle
    ]
