"""Freeze writes on Heroku's database, reversibly, as its owner (Heroku roles are no superusers).

How (PostgreSQL 15 documentation):

* ``ALTER DATABASE <db> SET default_transaction_read_only = on`` ("ALTER DATABASE": the owner
  may set a database default for a parameter users may set): every NEW session of the database
  starts read-only, so its INSERT/UPDATE/DELETE/DDL fail with SQLSTATE 25006
  ``read_only_sql_transaction``. Sessions already open keep their setting, so they are ended:
* ``pg_terminate_backend(pid)`` of every client session of the database that predates it,
  except our own ("Server Signaling Functions": allowed on sessions of roles the caller is a
  member of; a superuser's sessions cannot be ended by a non-superuser: those are reported).
  The clients reconnect read-only (a Rails/Django pool opens new sessions).
* the previous database-level value comes from ``pg_db_role_setting`` (``setrole = 0``: the
  database's own defaults, readable by every role), so the undo restores it exactly: ``SET``
  it back, or ``RESET`` when there was none.

Limits, said where the freeze is reported: a client that sets ``default_transaction_read_only
= off`` itself (or ``BEGIN READ WRITE``) can still write; sessions of roles the owner cannot
signal are listed, not ended. The statistics wait (``write_count``) catches both.

cutover's own sessions after the freeze only read (final-sync, verify-data: pg_dump, COPY TO,
catalog queries, ``BEGIN ... READ ONLY``); the undo's session sets the parameter off for itself
first, since ALTER DATABASE is refused in a read-only transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import UnexpectedOutput

PARAMETER = "default_transaction_read_only"
READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction (PostgreSQL, Appendix A)
_OWN_SESSION_WRITES = f"SET {PARAMETER} = off;\n"


def reads_on(value: str | None) -> bool:
    """Whether a stored boolean setting's text means on, as PostgreSQL's ``parse_bool`` reads
    it (src/backend/utils/adt/bool.c: case-insensitive; ``on``, ``1``, or a prefix of ``true``
    or ``yes``)."""
    if value is None:
        return False
    text = value.strip().strip("'").lower()
    if text in ("on", "1"):
        return True
    return text != "" and ("true".startswith(text) or "yes".startswith(text))


_SETTING_SQL = """
SELECT coalesce((
  SELECT substr(cfg, length('default_transaction_read_only=') + 1)
  FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg
  WHERE s.setrole = 0
    AND s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                         WHERE datname = current_database())
    AND split_part(cfg, '=', 1) = 'default_transaction_read_only'
), '<none>');
"""

# Client sessions of this database other than ours that predate the statement: ended when the
# role may signal them, else listed ("role: application").
_END_SESSIONS_SQL = """
SELECT CASE WHEN pg_catalog.pg_has_role(a.usesysid, 'MEMBER')
            THEN 'ended' || chr(9) || pg_catalog.pg_terminate_backend(a.pid)::text
            ELSE 'kept' || chr(9) || coalesce(a.usename, '?') || ': '
                 || coalesce(nullif(a.application_name, ''), 'pid ' || a.pid) END
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database()
  AND a.pid <> pg_catalog.pg_backend_pid()
  AND a.usesysid IS NOT NULL
  -- backend_type and backend_start are NULL for sessions of roles we may not see in detail
  -- (PostgreSQL docs, pg_stat_activity, without pg_read_all_stats): listed as kept
  AND coalesce(a.backend_type, 'client backend') = 'client backend'
  AND coalesce(a.backend_start < statement_timestamp(), true);
"""

# Rows written since the statistics were reset. Not xact_commit: read-only transactions (ours,
# the maintenance page's) commit too, so it never stands still while anything reads.
_WRITES_SQL = """
SELECT tup_inserted + tup_updated + tup_deleted
FROM pg_catalog.pg_stat_database WHERE datname = current_database();
"""

# A write that changes nothing even if it succeeded: DDL in a transaction rolled back. CREATE is
# refused in a read-only transaction before any permission check (utility.c,
# PreventCommandIfReadOnly). psql's SQLSTATE variable holds the last command's code (psql 11+).
_PROBE_SQL = """
\\set ON_ERROR_STOP 0
BEGIN;
CREATE TABLE cutover_freeze_probe (id int);
\\echo probe :SQLSTATE
ROLLBACK;
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def database_setting(pg: PostgresAdapter, conn: ConnInfo) -> str | None:
    """The database's own ``default_transaction_read_only`` default, None when it has none."""
    rows = pg.psql(conn, _SETTING_SQL)
    if not rows or not rows[0]:
        raise UnexpectedOutput("psql returned nothing for the database's settings")
    value = rows[0][0]
    return None if value == "<none>" else value


@dataclass(frozen=True)
class Ended:
    ended: int  # sessions ended
    kept: list[str]  # sessions the owner may not end ("role: application")


def freeze(pg: PostgresAdapter, conn: ConnInfo) -> Ended:
    """Set the database read-only for new sessions, then end the sessions that predate it."""
    sql = (
        _OWN_SESSION_WRITES
        + f"ALTER DATABASE {_ident(conn.dbname)} SET {PARAMETER} = on;\n"
        + _END_SESSIONS_SQL
    )
    return _ended(pg.psql(conn, sql))


def restore(pg: PostgresAdapter, conn: ConnInfo, previous: str | None) -> Ended:
    """Put the database's default back: ``previous``, or RESET when it had none; then end the
    sessions opened while frozen (they started read-only and would stay so)."""
    db = _ident(conn.dbname)
    change = (
        f"ALTER DATABASE {db} RESET {PARAMETER};"
        if previous is None
        else f"ALTER DATABASE {db} SET {PARAMETER} = {_literal(previous)};"
    )
    rows = pg.psql(conn, _OWN_SESSION_WRITES + change + "\n" + _END_SESSIONS_SQL)
    return _ended(rows)


def _ended(rows: list[list[str]]) -> Ended:
    ended = sum(1 for r in rows if len(r) > 1 and r[0] == "ended" and r[1] == "true")
    kept = sorted(r[1] for r in rows if len(r) > 1 and r[0] == "kept")
    return Ended(ended, kept)


def probe_write(pg: PostgresAdapter, conn: ConnInfo) -> str:
    """From a fresh session, try a write in a transaction rolled back; its SQLSTATE
    (``00000`` when the write went through: then nothing is frozen)."""
    rows = pg.psql(conn, _PROBE_SQL)
    for row in rows:
        if row and row[0].startswith("probe "):
            return row[0].split(" ", 1)[1].strip()
    raise UnexpectedOutput("psql did not report the write probe's SQLSTATE")


def write_count(pg: PostgresAdapter, conn: ConnInfo) -> int:
    """Rows inserted, updated and deleted in the database (pg_stat_database)."""
    rows = pg.psql(conn, _WRITES_SQL)
    try:
        return int(rows[0][0])
    except (IndexError, ValueError):
        raise UnexpectedOutput("psql returned no write counters from pg_stat_database") from None
