"""verify-mysql: per table the exact row count, a content hash computed the same way on both
servers, and the schema (issue 14).

``CHECKSUM TABLE`` is not comparable across servers: its value depends on the row format and the
server version (MySQL 8.0 manual 13.7.3.3: "the checksum value depends on the table row format
... can change between MySQL versions"). The hash here is a query both servers answer
identically for identical rows: for each row, MD5 of its columns (each as its bytes,
length-prefixed, ``N`` for NULL, so ``NULL`` and ``''`` and column boundaries cannot be
confused), the first 15 hex digits as a number, SUMmed over the table (order-independent; unlike
BIT_XOR, two identical rows of a keyless table do not cancel out), read with the session's
``time_zone`` at UTC on both sides (a TIMESTAMP is shown in the session's zone, by default the
server's: MySQL 8.0 manual 11.2.2). ``CAST(col AS BINARY)`` is the
column's bytes in its own character set: utf8mb3 and utf8mb4 encode the same text alike.
Limits (said by the step): a FLOAT/DOUBLE or JSON column is compared through its text form,
which MySQL and MariaDB may print differently.

The objects: every trigger, view, routine and event by kind and name, on both sides.

The schema: information_schema columns (name, position, type with integer display widths
dropped, since MySQL 8.0.19 no longer shows them, nullability, default, character set,
collation) and indexes (name, uniqueness, columns in order).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cutover.adapters.mysql import MyConn, MysqlAdapter, ident, literal, number
from cutover.adapters.mysqlstaging import MARKER_TABLE, base_tables

_INT_WIDTH = re.compile(r"\b(tinyint|smallint|mediumint|int|bigint)\(\d+\)")


@dataclass(frozen=True)
class TableCheck:
    table: str
    rows: tuple[int, int]  # heroku, convox
    hashes: tuple[str, str] | None  # None: counts only
    schema: tuple[str, str]

    @property
    def problems(self) -> list[str]:
        out = []
        if self.rows[0] != self.rows[1]:
            out.append(f"{self.rows[0]} rows on Heroku, {self.rows[1]} on Convox")
        if self.hashes and self.hashes[0] != self.hashes[1]:
            out.append("content differs (row hash)")
        if self.schema[0] != self.schema[1]:
            out.append("schema differs (columns or indexes)")
        return out


@dataclass(frozen=True)
class VerifyResult:
    tables: list[TableCheck]
    missing: list[str]  # on Heroku, not on Convox
    extra: list[str]  # on Convox, not on Heroku
    # "trigger t", "view v", "function f", "procedure p", "event e" on one side only
    objects_missing: list[str] = field(default_factory=list)
    objects_extra: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[str]:
        out = [f"{t}: missing on Convox" for t in self.missing + self.objects_missing]
        out += [f"{t}: on Convox only" for t in self.extra + self.objects_extra]
        out += [f"{c.table}: {'; '.join(c.problems)}" for c in self.tables if c.problems]
        return out


def columns(my: MysqlAdapter, conn: MyConn, table: str) -> list[list[str]]:
    return my.rows(
        conn,
        "SELECT COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, "  # noqa: S608 - literal()
        "IFNULL(COLUMN_DEFAULT, 'NULL'), IFNULL(CHARACTER_SET_NAME, ''), "
        "IFNULL(COLLATION_NAME, '') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
        f"DATABASE() AND TABLE_NAME = {literal(table)} ORDER BY ORDINAL_POSITION",
        7,
        f"columns of {table}",
    )


OBJECTS_SQL = (
    "SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = "
    "DATABASE() UNION ALL SELECT 'view', TABLE_NAME FROM information_schema.VIEWS WHERE "
    "TABLE_SCHEMA = DATABASE() UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM "
    "information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() UNION ALL SELECT 'event', "
    "EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()"
)


def objects(my: MysqlAdapter, conn: MyConn) -> set[str]:
    """Every trigger, view, routine and event, as "<kind> <name>": the copy loads them after
    the swap, apart from the tables, so a row-perfect copy may still lack one."""
    return {f"{kind} {name}" for kind, name in my.rows(conn, OBJECTS_SQL, 2, "object list")}


def schema_text(my: MysqlAdapter, conn: MyConn, table: str) -> str:
    cols = [
        "|".join([c[0], c[1], _INT_WIDTH.sub(r"\1", c[2]), *c[3:]])
        for c in columns(my, conn, table)
    ]
    indexes = my.query(
        conn,
        "SELECT INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "  # noqa: S608
        "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = "
        f"{literal(table)} GROUP BY INDEX_NAME, NON_UNIQUE ORDER BY INDEX_NAME",
    )
    return "\n".join(cols + ["|".join(i) for i in indexes])


def hash_sql(table: str, names: list[str]) -> str:
    parts = ", ".join(
        f"IFNULL(CONCAT(LENGTH({ident(n)}), ':', CAST({ident(n)} AS BINARY)), 'N')" for n in names
    )
    return (
        "SET time_zone = '+00:00';\n"  # TIMESTAMPs read alike whatever each server's zone
        f"SELECT COUNT(*), IFNULL(SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', {parts})), 15), 16, 10) "
        f"AS UNSIGNED)), 0) FROM {ident(table)}"
    )


def check_table(
    my: MysqlAdapter, conn: MyConn, table: str, checksums: bool
) -> tuple[int, str, str]:
    schema = schema_text(my, conn, table)
    if checksums:
        names = [c[0] for c in columns(my, conn, table)]
        count, digest = my.row(conn, hash_sql(table, names), 2, f"checksum of {table}", 3600)
    else:
        sql = f"SELECT COUNT(*) FROM {ident(table)}"  # noqa: S608
        count, digest = my.row(conn, sql, 1, f"row count of {table}", 3600)[0], ""
    return number(count, f"the row count of {table}"), digest, schema


def verify(
    my: MysqlAdapter,
    source: MyConn,
    target: MyConn,
    *,
    checksums: bool = True,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> VerifyResult:
    """Compare every base table (cutover's marker table left out); both sides at once."""
    here, there = base_tables(my, source), base_tables(my, target)
    common = [t for t in here if t in there]
    out: list[TableCheck] = []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mysql-verify") as pool:
        for i, table in enumerate(common):
            a = pool.submit(check_table, my, source, table, checksums)
            b = pool.submit(check_table, my, target, table, checksums)
            (ca, ha, sa), (cb, hb, sb) = a.result(), b.result()
            out.append(TableCheck(table, (ca, cb), (ha, hb) if checksums else None, (sa, sb)))
            progress(i + 1, len(common))
    ours, theirs = objects(my, source), objects(my, target)
    return VerifyResult(
        out,
        [t for t in here if t not in there],
        [t for t in there if t not in here and t != MARKER_TABLE],
        sorted(ours - theirs),
        sorted(theirs - ours),
    )
