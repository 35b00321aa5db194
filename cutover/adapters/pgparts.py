r"""What the direct copy's pipes carry (cutover/adapters/pgcopy.py): the parts (whole tables, or
page ranges of large ones), small tables bundled into one pipe, and the psql argv of both ends.

A pipe is ``psql`` on Heroku (reading in the exported snapshot) into ``psql`` on Convox. For one
part: ``COPY t (cols) TO STDOUT`` into ``COPY t (cols) FROM STDIN``. Each pipe costs two psql
starts, two connections and a snapshot import (0.15-0.4 s measured on a loaded 2-core machine),
more than a small table's rows: small tables travel as a bundle, for which the producer writes a
psql script (per table ``COPY t (cols) FROM STDIN;``, its rows, the end-of-data line) that the
consumer runs with ``-f -``. psql reads the data of a script's ``COPY ... FROM STDIN`` from the
script itself, up to a line ``\.`` (psql docs, COPY); text-format rows never hold a bare
``\.``: COPY escapes every backslash.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Every session of the copy sets what COPY's text and a long copy depend on, whatever the
# role's or database's own settings (pg_db_role_setting) say, as pg_dump does for itself
# (pg_dump.c setup_connection): no statement, lock or idle-in-transaction timeout (the snapshot
# holder idles in its transaction for the whole copy), ISO dates, postgres intervals, floats
# exact (extra_float_digits=0 would round them), and row_security off: a FORCE ROW LEVEL
# SECURITY policy then fails the copy instead of silently leaving rows out. All USERSET.
SOURCE_SETTINGS = (
    "SET statement_timeout = 0",
    "SET lock_timeout = 0",
    "SET idle_in_transaction_session_timeout = 0",
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET row_security = off",
)
# The consumer's session: the same input styles, no timeout, and no wait for the WAL flush on
# each COPY's commit.
COPY_IN_OPTIONS = (
    "-c synchronous_commit=off -c statement_timeout=0 -c lock_timeout=0 -c TimeZone=UTC "
    "-c DateStyle=ISO -c IntervalStyle=postgres"
)


# COPY's binary format (PostgreSQL docs, COPY, "Binary Format"): each value as its type's
# send/receive functions write it, no text to format on Heroku and parse on Convox. Measured on
# this machine (loopback, one pipe, 2 M rows): 2.0-2.3 s against 3.7-5.1 s in text for a table
# of bigint, numeric, timestamptz and text columns; 5.4-5.9 s against 6.1-6.9 s for
# pgbench_accounts. The docs warn that it is "less portable across machine architectures and
# PostgreSQL versions" and "very data type specific", so a part uses it only when
# * both servers run the same major version (pgcopy.copy_database reads both), and
# * every column's type has an OID below 10000 (FirstGenbkiObjectId, src/include/access/
#   transam.h): a type from the system catalogs' data files, the same OID on every server of a
#   version. An array's binary form names its element type's OID and a record's its columns'
#   (array_recv, record_recv check them), and an extension's, enum's or domain's type OID
#   differs between the two databases: those tables travel as text. So do columns of a
#   composite type (a catalog's row type), of a type without send/receive functions, and of
#   the reg* types and aclitem (pgcopy.NOT_BINARY: a reg* value's binary form is an OID that
#   means another object, or none, on Convox).
# Text values still pass through client_encoding both ways (textsend/textrecv), as in text
# COPY. Bundles stay text: their rows travel inside a psql script.
BINARY = " WITH (FORMAT binary)"

# A table larger than this is copied as up to ``jobs`` parts at once, each a range of its pages
# (``WHERE ctid >= '(a,0)' AND ctid < '(b,0)'``: a TID range scan, PostgreSQL 14+), so one large
# table does not leave the other jobs idle.
SPLIT_MIN_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Part:
    """One COPY: a whole table, or a range of its pages."""

    table: str
    columns: str  # quoted, comma-separated; generated columns left out (COPY skips them too)
    where: str  # "" for the whole table
    size: int  # bytes this part accounts for (progress)
    binary: bool = False  # COPY's binary format on both ends (see BINARY below)

    # Columns always named, on both sides: pg_dump recreates an inheritance child (or a table
    # whose columns were added to its parent later) with another column order than the source's
    # (pg_dump.c dumpTableData_copy names them for the same reason).
    def copy_out(self) -> str:
        cols = f" ({self.columns})" if self.columns else ""
        fmt = BINARY if self.binary else ""
        if not self.where:
            return f"COPY {self.table}{cols} TO STDOUT{fmt}"
        # ONLY: a SELECT from a parent reads its inheritance children too (COPY t TO does not);
        # they are copied as tables of their own. Identifiers come from quote_ident in the
        # source's catalog, the range from integers.
        return (
            f"COPY (SELECT {self.columns} FROM ONLY {self.table} WHERE {self.where}) TO STDOUT{fmt}"  # noqa: S608
        )

    def copy_in(self) -> str:
        cols = f" ({self.columns})" if self.columns else ""
        return f"COPY {self.table}{cols} FROM STDIN{BINARY if self.binary else ''}"


def plan_parts(
    rows: list[list[str]], jobs: int, split_min: int = SPLIT_MIN_BYTES, *, binary: bool = False
) -> list[Part]:
    """Parts to copy, largest first: tables above ``split_min`` bytes split by page ranges.
    ``rows``: pgcopy.TABLES_SQL's (table, bytes, pages, columns, built-in types only: t/f);
    ``binary``: whether the servers allow the binary format (same major version)."""
    parts: list[Part] = []
    for row in rows:
        if len(row) != 5:
            continue
        table, size, pages, columns = row[0], int(row[1]), int(row[2]), row[3]
        use_binary = binary and bool(columns) and row[4] == "t"
        count = min(jobs, size // max(1, split_min), pages) if columns else 1
        if count < 2:
            parts.append(Part(table, columns, "", size, use_binary))
            continue
        step = pages // count
        for i in range(count):
            low = f"ctid >= '({i * step},0)'::tid"
            # The last range is open-ended: it takes whatever lies beyond the size read above.
            high = "" if i == count - 1 else f" AND ctid < '({(i + 1) * step},0)'::tid"
            parts.append(Part(table, columns, low + high, size // count, use_binary))
    parts.sort(key=lambda p: p.size, reverse=True)
    return parts


# Tables below this size are copied several to one pipe (a "bundle"): each pipe costs two psql
# starts, two connections and a snapshot import (0.15-0.4 s measured on a loaded 2-core machine),
# more than copying such a table. Up to ``jobs`` bundles, balanced by size.
BUNDLE_MAX_BYTES = 8 * 1024 * 1024


def plan_work(parts: list[Part], jobs: int, bundle_max: int = BUNDLE_MAX_BYTES) -> list[list[Part]]:
    """The pipes to run, largest first: one per part at or above ``bundle_max`` bytes, and the
    smaller whole tables shared out over at most ``jobs`` bundles (each to the lightest)."""
    single = [[p] for p in parts if p.where or p.size >= bundle_max]
    small = [p for p in parts if not p.where and p.size < bundle_max]
    if len(small) < 2:
        return single + [[p] for p in small]
    small = [replace(p, binary=False) for p in small]  # a bundle's rows are a psql script's text
    bundles: list[list[Part]] = [[] for _ in range(max(1, min(jobs, len(small) // 2)))]
    for part in small:  # largest first (parts are sorted)
        min(bundles, key=lambda b: sum(p.size for p in b)).append(part)
    return single + [b for b in bundles if b]


def _e_literal(text: str) -> str:
    """An escape-string literal (E'...'): read the same whatever standard_conforming_strings is."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _psql(*commands: str) -> list[str]:
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        argv += ["-c", command]
    return argv


def _in_snapshot(snapshot: str, *commands: str) -> list[str]:
    return _psql(
        *SOURCE_SETTINGS,
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        f"SET TRANSACTION SNAPSHOT '{snapshot}'",
        *commands,
        "COMMIT",
    )


# A copy waits at most this long for its table's lock (see :func:`producer`).
TABLE_LOCK_WAIT = "10s"


def producer(snapshot: str, work: list[Part]) -> list[str]:
    """psql reading ``work`` in the snapshot: one part's rows, or a bundle's script (above);
    -At prints the script's header and end lines bare."""
    # Bounded: an ALTER/TRUNCATE on Heroku waiting for the holder's lock queues this COPY
    # behind it, a wait no deadlock detector sees (the holder waits on cutover). pg_dump's
    # workers lock NOWAIT for the same reason (pg_dump.c lockTableForWorker); a short wait lets
    # a DDL with its own lock_timeout give up first.
    tables = ", ".join(dict.fromkeys(p.table for p in work))
    lock = (
        f"SET LOCAL lock_timeout = '{TABLE_LOCK_WAIT}'",
        f"LOCK TABLE {tables} IN ACCESS SHARE MODE",
    )
    if len(work) == 1:
        return _in_snapshot(snapshot, *lock, work[0].copy_out())
    script: list[str] = []
    for part in work:
        script += [f"SELECT {_e_literal(part.copy_in() + ';')}", part.copy_out(), "SELECT E'\\\\.'"]
    argv = _in_snapshot(snapshot, *lock, *script)
    return [argv[0], "-At", *argv[1:]]


def consumer(work: list[Part]) -> list[str]:
    if len(work) == 1:
        return _psql(work[0].copy_in())
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]
