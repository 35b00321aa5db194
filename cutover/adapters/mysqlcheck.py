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
  the Convox user (CURRENT_USER), since Heroku's add-on user does not exist there;
* binary logging (error 1419): on a Convox server with binary logging on, a user without SUPER
  cannot create the triggers and stored functions unless log_bin_trust_function_creators=1
  (:func:`binlog_blocker`): a blocker, before the window, naming the fix;
* binary logging (error 1418): with binary logging on and log_bin_trust_function_creators=0, a
  stored function declared none of DETERMINISTIC, NO SQL or READS SQL DATA is refused for every
  user, SUPER or not (:func:`unsafe_functions_blocker`): a blocker too, naming each function.
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


# Error 1419 (ER_BINLOG_CREATE_ROUTINE_NEED_SUPER). MySQL Reference Manual, "Stored Program
# Binary Logging" (8.4: section 27.7, https://dev.mysql.com/doc/refman/8.4/en/
# stored-programs-logging.html; 5.7: 23.7): with binary logging enabled, creating or altering a
# stored function needs the SUPER privilege in addition to CREATE ROUTINE, unless
# log_bin_trust_function_creators=1, and the same holds for triggers; the conditions do not apply
# to stored procedures or events. MariaDB, "Binary Logging of Stored Routines" and
# log_bin_trust_function_creators: "creation of a stored function (or trigger) is allowed only to
# users having the SUPER privilege". Amazon RDS turns binary logging on with automated backups
# (its default) and gives its master user no SUPER: the fix there is a DB parameter group with
# log_bin_trust_function_creators=1. Without this check the copy fails at the objects' load.
BINLOG_KINDS = ("trigger", "function")
BINLOG_SQL = (
    "SELECT @@log_bin, @@log_bin_trust_function_creators, CURRENT_USER(), (SELECT COUNT(*) FROM "
    "information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE = 'SUPER' AND GRANTEE = CONCAT("
    "'''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), "
    "'@', -1), ''''))"
)
BINLOG_RESOLUTION = (
    "On RDS (rds-mysql, rds-mariadb; RDS gives no SUPER): a custom DB parameter group setting "
    "log_bin_trust_function_creators=1 on the instance (a group newly attached applies after a "
    "reboot; the parameter itself is dynamic). On a server you run: SET GLOBAL "
    "log_bin_trust_function_creators = 1 as an admin (or start it with "
    "--log-bin-trust-function-creators=1), or use a user with SUPER. Then "
    "`cutover run` again."
)
# Error 1418 (ER_BINLOG_UNSAFE_ROUTINE). The same manual section: "By default, for a CREATE
# FUNCTION statement to be accepted, at least one of DETERMINISTIC, NO SQL, or READS SQL DATA must
# be specified explicitly. Otherwise an error occurs" (binary logging on, unless
# log_bin_trust_function_creators=1); SUPER does not lift it. Such a function's ROUTINES row has
# IS_DETERMINISTIC = 'NO' and SQL_DATA_ACCESS 'CONTAINS SQL' (the default) or 'MODIFIES SQL DATA'.
# Convox's mysql 8.0 resource (root, binary logging on by default since 8.0) refuses them.
UNSAFE_FUNCTIONS_SQL = (
    "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() AND "
    "ROUTINE_TYPE = 'FUNCTION' AND IS_DETERMINISTIC = 'NO' AND SQL_DATA_ACCESS IN ('CONTAINS "
    "SQL', 'MODIFIES SQL DATA') ORDER BY 1"
)
UNSAFE_FUNCTIONS_RESOLUTION = (
    "Declare each of those functions DETERMINISTIC (if it is) or READS SQL DATA / NO SQL (if it "
    "writes nothing) on Heroku (DROP FUNCTION and CREATE FUNCTION again with the "
    "characteristic), or set log_bin_trust_function_creators=1 on the Convox server (RDS: a "
    "custom DB parameter group; a server you run: SET GLOBAL log_bin_trust_function_creators = "
    "1 as an admin). Then `cutover run` again."
)
COLLATION_RESOLUTION = (
    "Pick a mysql resource version that has them (convox.yml resources.<name>.options.version), "
    "or convert the tables on Heroku first."
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
    resolutions: list[str] = field(default_factory=list)  # what to do, one per kind of blocker


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
        in_tables = sorted({c.split(".", 1)[0] for c in report.utf8mb3})
        more = f" (and {len(report.utf8mb3) - 10} more)" if len(report.utf8mb3) > 10 else ""
        report.findings.append(
            f"{len(report.utf8mb3)} column(s) in utf8mb3 (MySQL's 'utf8': 3 bytes, no emoji), "
            f"kept utf8mb3 on Convox: {', '.join(report.utf8mb3[:10])}{more}; the change to "
            "utf8mb4 is the app's to make, on Heroku before the copy or on Convox after: "
            + "; ".join(
                f"ALTER TABLE {quote_name(t)} CONVERT TO CHARACTER SET utf8mb4"
                for t in in_tables[:10]
            )
            + (f" (and {len(in_tables) - 10} more tables)" if len(in_tables) > 10 else "")
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
        report.resolutions.append(COLLATION_RESOLUTION)
    for kind, name, definer in my.query(source, DEFINERS_SQL):
        report.definers.append(f"{kind} {name} ({definer})")
    if report.definers:
        report.findings.append(
            f"{len(report.definers)} object(s) with a DEFINER: {', '.join(report.definers[:10])}; "
            "the copy makes the Convox user their definer (Heroku's user does not exist there, "
            "and naming another definer needs SUPER / SET USER)"
        )
    blocker = binlog_blocker(
        my, target, [d for d in report.definers if d.split(" ", 1)[0] in BINLOG_KINDS]
    )
    if blocker:
        report.blockers.append(blocker)
        report.resolutions.append(BINLOG_RESOLUTION)
    unsafe = unsafe_functions_blocker(
        my, target, [r[0] for r in my.query(source, UNSAFE_FUNCTIONS_SQL)]
    )
    if unsafe:
        report.blockers.append(unsafe)
        report.resolutions.append(UNSAFE_FUNCTIONS_RESOLUTION)
    events = [d for d in report.definers if d.startswith("event ")]
    if events:
        report.findings.append(
            f"{len(events)} event(s) copied: they run on Convox when its event_scheduler is ON"
        )
    return report


def binlog_blocker(my: MysqlAdapter, target: MyConn, objects: list[str]) -> str | None:
    """Why the Convox user cannot create ``objects`` (triggers and stored functions, "kind name
    (definer)"), or None: binary logging off, log_bin_trust_function_creators on, or SUPER."""
    if not objects:
        return None
    log_bin, trusted, user, has_super = my.row(
        target, BINLOG_SQL, 4, "binary logging settings and the SUPER privilege"
    )
    if log_bin != "1" or trusted == "1" or has_super != "0":
        return None
    names = ", ".join(o.split(" (", 1)[0] for o in objects[:10])
    return (
        f"{len(objects)} trigger(s) or stored function(s) ({names}) cannot be created on the "
        "Convox server: binary logging is on, log_bin_trust_function_creators is 0 and the "
        f"Convox user {user} has no SUPER privilege, so the copy would stop with error 1419 "
        "(ER_BINLOG_CREATE_ROUTINE_NEED_SUPER)"
    )


def unsafe_functions_blocker(my: MysqlAdapter, target: MyConn, functions: list[str]) -> str | None:
    """Why the Convox server refuses ``functions`` (stored functions declared none of
    DETERMINISTIC, NO SQL, READS SQL DATA) with error 1418, or None: binary logging off or
    log_bin_trust_function_creators on. SUPER does not matter."""
    if not functions:
        return None
    log_bin, trusted, user, _ = my.row(
        target, BINLOG_SQL, 4, "binary logging settings and the SUPER privilege"
    )
    if log_bin != "1" or trusted == "1":
        return None
    return (
        f"{len(functions)} stored function(s) declared none of DETERMINISTIC, NO SQL or READS "
        f"SQL DATA ({', '.join(functions)}) cannot be created on the Convox server: binary "
        "logging is on and log_bin_trust_function_creators is 0, so the copy would stop with "
        "error 1418 (ER_BINLOG_UNSAFE_ROUTINE) for any user, "
        f"{user} included, SUPER or not"
    )


def quote_name(name: str) -> str:
    """``name`` as a MySQL quoted identifier (a backtick in it doubled)."""
    return "`" + name.replace("`", "``") + "`"
