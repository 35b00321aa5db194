"""check-mysql's look at both servers (issue 14): versions, character sets and collations,
definers, size. Reads only.

* utf8mb3: MySQL's ``utf8`` is utf8mb3 (3 bytes, no emoji; MySQL 8.0 manual 10.9.2 "The utf8mb3
  Character Set", deprecated). The copy keeps every column's character set as it is (the dump
  names it per table), so each utf8mb3 column is named: it stays utf8mb3 on Convox; converting it
  to utf8mb4 is the app's change to make (ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4);
* collations (of the columns, the tables and the database itself, which the staging database
  and then the Convox one take): a collation the Convox server does not know (MySQL 8's
  utf8mb4_0900_ai_ci on a MariaDB or MySQL 5.7 resource; Convox's default image is mysql:5.7.23,
  provider/k8s/template/resource/mysql.yml.tmpl) makes the load fail: a blocker, before the
  window;
* engines: ``--single-transaction`` is a consistent snapshot of transactional (InnoDB) tables
  only (MySQL 8.0 manual, mysqldump); older ClearDB databases hold MyISAM tables: each one is
  named, with when its copy is consistent (the final copy, nothing writing);
* definers: every trigger, view, routine and event with its DEFINER; the copy rewrites them to
  the Convox user (CURRENT_USER), since Heroku's add-on user does not exist there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cutover.adapters.mysql import MyConn, MysqlAdapter, number

DEFINERS_SQL = (
    "SELECT 'trigger', TRIGGER_NAME, DEFINER FROM information_schema.TRIGGERS WHERE "
    "TRIGGER_SCHEMA = DATABASE() UNION ALL SELECT 'view', TABLE_NAME, DEFINER FROM "
    "information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() UNION ALL SELECT "
    "LOWER(ROUTINE_TYPE), ROUTINE_NAME, DEFINER FROM information_schema.ROUTINES WHERE "
    "ROUTINE_SCHEMA = DATABASE() UNION ALL SELECT 'event', EVENT_NAME, DEFINER FROM "
    "information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()"
)


@dataclass
class Report:
    heroku_version: str
    convox_version: str
    tables: int
    bytes: int
    utf8mb3: list[str] = field(default_factory=list)
    non_transactional: list[str] = field(default_factory=list)  # "table (MyISAM)"
    definers: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)


def inspect(my: MysqlAdapter, source: MyConn, target: MyConn) -> Report:
    heroku_version = my.row(source, "SELECT VERSION()", 1, "server version")[0]
    convox_version = my.row(target, "SELECT VERSION()", 1, "server version")[0]
    tables, size = my.row(
        source,
        "SELECT COUNT(*), IFNULL(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema."
        "TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
        2,
        "table count and size",
    )
    report = Report(
        heroku_version,
        convox_version,
        number(tables, "the table count"),
        number(size, "the data size"),
    )
    for table, column in my.query(
        source,
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
        "DATABASE() AND CHARACTER_SET_NAME IN ('utf8', 'utf8mb3') ORDER BY 1, 2",
    ):
        report.utf8mb3.append(f"{table}.{column}")
    if report.utf8mb3:
        tables = sorted({c.split(".", 1)[0] for c in report.utf8mb3})
        more = f" (and {len(report.utf8mb3) - 10} more)" if len(report.utf8mb3) > 10 else ""
        report.findings.append(
            f"{len(report.utf8mb3)} column(s) in utf8mb3 (MySQL's 'utf8': 3 bytes, no emoji), "
            f"kept utf8mb3 on Convox: {', '.join(report.utf8mb3[:10])}{more}; the change to "
            "utf8mb4 is the app's to make, on Heroku before the copy or on Convox after: "
            + "; ".join(f"ALTER TABLE `{t}` CONVERT TO CHARACTER SET utf8mb4" for t in tables[:10])
            + " (that converts every text column of the table; ALTER TABLE ... MODIFY changes "
            "one; an index on a long column may then exceed the key length: 4 bytes a character)"
        )
    default = my.row(
        source,
        "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "
        "DATABASE()",
        1,
        "the database's default character set",
    )[0]
    if default in ("utf8", "utf8mb3"):
        report.findings.append(
            f"the Heroku database's default character set is {default} (utf8mb3); the Convox "
            "database is given the same default, so a table the app creates later without "
            "naming one is utf8mb3 too: ALTER DATABASE CHARACTER SET utf8mb4 changes that"
        )
    for table, engine in my.query(
        source,
        "SELECT TABLE_NAME, IFNULL(ENGINE, '') FROM information_schema.TABLES WHERE "
        "TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' AND IFNULL(ENGINE, '') "
        "NOT IN ('InnoDB') ORDER BY 1",
    ):
        report.non_transactional.append(f"{table} ({engine})")
    if report.non_transactional:
        report.findings.append(
            f"{len(report.non_transactional)} table(s) not in InnoDB: "
            f"{', '.join(report.non_transactional[:10])}; the dump's --single-transaction "
            "snapshot does not cover them, so their copy is consistent only while nothing "
            "writes: the final copy in the window (maintenance, dynos stopped) is, the first "
            "one may not be"
        )
    used = {
        r[0]
        for r in my.query(
            source,
            "SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND COLLATION_NAME IS NOT NULL UNION SELECT DISTINCT TABLE_COLLATION "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
            "TABLE_COLLATION IS NOT NULL UNION SELECT DEFAULT_COLLATION_NAME FROM "
            "information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()",
        )
    }
    known = {
        r[0] for r in my.query(target, "SELECT COLLATION_NAME FROM information_schema.COLLATIONS")
    }
    missing = sorted(used - known)
    if missing:
        report.blockers.append(
            f"collation(s) unknown to the Convox server ({convox_version}): {', '.join(missing)}"
        )
    for kind, name, definer in my.query(source, DEFINERS_SQL):
        report.definers.append(f"{kind} {name} ({definer})")
    if report.definers:
        report.findings.append(
            f"{len(report.definers)} object(s) with a DEFINER: {', '.join(report.definers[:10])}; "
            "the copy makes the Convox user their definer (Heroku's user does not exist there, "
            "and naming another definer needs SUPER / SET USER)"
        )
    events = [d for d in report.definers if d.startswith("event ")]
    if events:
        report.findings.append(
            f"{len(events)} event(s) copied: they run on Convox when its event_scheduler is ON"
        )
    return report
