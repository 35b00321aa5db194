"""The target side of a full sync that never leaves the Convox database worse (issue 10).

* Staging and swap: every full sync restores into ``<db>__cutover_next`` (created fresh), then
  swaps it in from a session on the ``postgres`` maintenance database: no connections to
  ``<db>``, its other sessions terminated, ``<db>`` renamed to ``<db>__cutover_prev``, the staging
  database renamed to ``<db>``, then the previous copy dropped. A failure before the swap leaves
  ``<db>`` untouched; :func:`recover_swap` finishes a swap that was interrupted half-way.
* The guard marker in the database COMMENT (``cutover:synced <time> writes=<N>`` after each sync,
  ``cutover:live <time>`` from switch-dns): :func:`guard` refuses a sync into a live database, one
  that has taken writes since the last sync, or one holding tables cutover did not put there.
* Settings carried (pg_db_role_setting): the source database's settings and the source role's
  (in that database and global) applied to the target as ``ALTER DATABASE ... SET`` and
  ``ALTER ROLE CURRENT_USER IN DATABASE ... SET`` (Heroku tells users to put ``heroku_ext`` on
  the role's search_path; without it the app's triggers stop finding uuid_generate_v4()).

Comments on databases live in pg_shdescription and settings in pg_db_role_setting, both keyed by
the database's oid, so the rename carries them with the database (PostgreSQL docs: COMMENT,
ALTER DATABASE, ALTER ROLE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError, UnexpectedOutput

NEXT_SUFFIX = "__cutover_next"
PREV_SUFFIX = "__cutover_prev"
NAMEDATALEN = 63  # PostgreSQL truncates identifiers to 63 bytes
MARKER_SYNCED = "cutover:synced"
MARKER_LIVE = "cutover:live"
MARKER_SYNCING = "cutover:syncing"  # a changed-tables sync writing in place, not finished
_MARKER = re.compile(r"^cutover:(synced|live|syncing) (\S+)(?: writes=(\d+))?")
# GUCs whose value is a list (guc.c GUC_LIST_QUOTE): each element is quoted on its own, as
# pg_dump's makeAlterConfigCommand does; any other value is one literal.
_LIST_GUCS = {
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
}

USER_TABLES_SQL = """
SELECT count(*) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e');
"""
WRITES_SQL = (
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint "
    "FROM pg_catalog.pg_stat_user_tables;"
)


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def names(dbname: str) -> tuple[str, str]:
    """(staging, previous) database names for ``dbname``."""
    if len((dbname + NEXT_SUFFIX).encode()) > NAMEDATALEN:
        raise CutoverError(
            f"the database name {dbname!r} is too long for a staging copy beside it "
            f"({dbname}{NEXT_SUFFIX} exceeds PostgreSQL's {NAMEDATALEN} bytes)",
            resolution="Use a Convox resource whose database name is at most 48 bytes.",
        )
    return dbname + NEXT_SUFFIX, dbname + PREV_SUFFIX


def maintenance(conn: ConnInfo) -> ConnInfo:
    return replace(conn, dbname="postgres")


# -- staging, swap, recovery ------------------------------------------------------------------
def _databases(pg: PostgresAdapter, conn: ConnInfo) -> dict[str, bool]:
    """{name: allows connections} of ``conn.dbname`` and its staging/previous databases."""
    wanted = [conn.dbname, *names(conn.dbname)]
    in_list = ", ".join(literal(n) for n in wanted)
    rows = pg.psql(
        maintenance(conn),
        "SELECT datname, datallowconn FROM pg_catalog.pg_database "  # noqa: S608
        f"WHERE datname IN ({in_list});",
    )
    return {row[0]: row[1] == "t" for row in rows if len(row) == 2}


def recover_swap(
    pg: PostgresAdapter, conn: ConnInfo, have: dict[str, bool] | None = None
) -> str | None:
    """Finish or undo a swap an interrupted run left half-done; say what was done (or None).
    ``have``: the databases as just read (cutover/adapters/pglook.py), else read here.

    The swap starts only after the staging copy is complete and marked, so a staging database
    beside a missing ``<db>`` is a finished copy: it is put in place."""
    db = conn.dbname
    nxt, prev = names(db)
    have = _databases(pg, conn) if have is None else have
    sql: list[str] = []
    did = None
    if db not in have and prev in have:
        source = nxt if nxt in have else prev
        sql.append(f"ALTER DATABASE {ident(source)} RENAME TO {ident(db)};")
        sql.append(f"ALTER DATABASE {ident(db)} WITH ALLOW_CONNECTIONS true;")
        did = f"finished an interrupted swap: {source} is now {db}"
        have = {db: True, **({prev: False} if source == nxt else {})}
    elif db in have and not have[db]:
        sql.append(f"ALTER DATABASE {ident(db)} WITH ALLOW_CONNECTIONS true;")
        did = f"allowed connections to {db} again (an interrupted swap had closed it)"
    if prev in have:
        sql.append(f"DROP DATABASE IF EXISTS {ident(prev)} WITH (FORCE);")
        did = did or f"dropped {prev}, left by an interrupted swap"
    if sql:
        pg.psql(maintenance(conn), "\n".join(sql))
    return did


def create_staging(pg: PostgresAdapter, conn: ConnInfo) -> ConnInfo:
    """Drop any leftover staging database and create it fresh (owned by the connecting role,
    from template0 with ``<db>``'s encoding and locale when it exists); its connection info.
    One psql: the CREATE statement is built by the server from the catalog (``\\gset``) and run
    after the DROP (neither may run inside a transaction block)."""
    db = conn.dbname
    nxt, _ = names(db)
    # format(): %I quotes an identifier, %L a literal (PostgreSQL docs, "format").
    pg.psql(
        maintenance(conn),
        "SELECT pg_catalog.format('CREATE DATABASE %I TEMPLATE template0%s', "  # noqa: S608
        f"{literal(nxt)}, coalesce((SELECT pg_catalog.format("
        "' ENCODING %L LC_COLLATE %L LC_CTYPE %L', "
        "pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype) "
        f"FROM pg_catalog.pg_database WHERE datname = {literal(db)}), '')) "
        "AS cutover_create \\gset\n"
        f"DROP DATABASE IF EXISTS {ident(nxt)} WITH (FORCE);\n"
        ":cutover_create;\n",
    )
    return replace(conn, dbname=nxt)


def drop_staging(pg: PostgresAdapter, conn: ConnInfo) -> None:
    nxt, _ = names(conn.dbname)
    pg.psql(maintenance(conn), f"DROP DATABASE IF EXISTS {ident(nxt)} WITH (FORCE);")


def swap(pg: PostgresAdapter, conn: ConnInfo, timeout: float = 120) -> None:
    """Put the staging database in place of ``<db>`` and drop the previous copy. On a failure,
    ``<db>`` is put back as it was (its old copy, open to connections) and a CutoverError says
    what stopped the swap; the staging copy stays for the next run to recreate."""
    db = conn.dbname
    nxt, prev = names(db)
    exists = db in _databases(pg, conn)
    sql = []
    if exists:
        # pg_terminate_backend is asynchronous: wait (bounded) until the sessions are gone,
        # else the rename fails with "database is being accessed by other users". Inside one
        # statement pg_stat_activity is read once and kept (backend_status.c
        # pgstat_read_current_status; pg_stat_clear_snapshot() discards it): without the clear,
        # a session still ending at the first look kept the loop waiting its whole bound.
        others = (
            "SELECT 1 FROM pg_catalog.pg_stat_activity "  # noqa: S608
            f"WHERE datname = {literal(db)} AND pid <> pg_catalog.pg_backend_pid()"
        )
        sql += [
            f"ALTER DATABASE {ident(db)} WITH ALLOW_CONNECTIONS false;",
            "SELECT count(pg_catalog.pg_terminate_backend(pid)) "  # noqa: S608
            "FROM pg_catalog.pg_stat_activity "
            f"WHERE datname = {literal(db)} AND pid <> pg_catalog.pg_backend_pid();",
            "DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM pg_catalog.pg_stat_clear_snapshot(); "
            f"EXIT WHEN NOT EXISTS ({others}); PERFORM pg_catalog.pg_sleep(0.1); END LOOP; "
            f"IF EXISTS ({others}) THEN RAISE EXCEPTION 'sessions on % did not end within "
            f"30s of pg_terminate_backend', {literal(db)}; END IF; END $$;",
            f"ALTER DATABASE {ident(db)} RENAME TO {ident(prev)};",
        ]
    sql.append(f"ALTER DATABASE {ident(nxt)} RENAME TO {ident(db)};")
    if exists:
        sql.append(f"DROP DATABASE {ident(prev)} WITH (FORCE);")
    try:
        pg.psql(maintenance(conn), "\n".join(sql), timeout=timeout)
    except CommandError as exc:
        undone = _undo_swap(pg, conn)
        why = [ln for ln in exc.stderr_tail.strip().splitlines() if "ERROR" in ln][-1:]
        raise CutoverError(
            f"could not swap the new copy in as {db}: "
            + (why[0].split("ERROR:", 1)[-1].strip() if why else exc.brief),
            details=undone,
            resolution="A session cutover may not end (another role's, or a superuser's) holds "
            f"{db}: close it (pg_stat_activity shows it), then run `cutover run` again.",
        ) from None


def _undo_swap(pg: PostgresAdapter, conn: ConnInfo) -> str:
    """After a failed swap: ``<db>`` back in place (its previous copy, if the first rename was
    done) and open to connections. Says what it found and did."""
    db = conn.dbname
    _, prev = names(db)
    try:
        have = _databases(pg, conn)
        sql = []
        if db not in have and prev in have:
            sql.append(f"ALTER DATABASE {ident(prev)} RENAME TO {ident(db)};")
            have[db] = have.pop(prev)
        if db in have and not have[db]:
            sql.append(f"ALTER DATABASE {ident(db)} WITH ALLOW_CONNECTIONS true;")
        if sql:
            pg.psql(maintenance(conn), "\n".join(sql))
    except CommandError as exc:
        return (
            f"{db} may be closed to connections or renamed to {prev}: putting it back failed "
            f"too ({exc.brief}); `cutover run` does it first thing"
        )
    if db in have:
        return f"{db} is unchanged and accepts connections again"
    return f"{db} did not exist before the swap and still does not"


# -- the guard marker -------------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    kind: str  # "synced", "syncing" or "live"
    at: str
    writes: int | None


def read_marker(pg: PostgresAdapter, conn: ConnInfo) -> tuple[bool, Marker | None, str]:
    """(database exists, its cutover marker or None, the raw comment)."""
    rows = pg.psql(
        maintenance(conn),
        # Prefixed: psql prints an empty comment as an empty line, which reads as no row.
        "SELECT 'comment:' || coalesce(pg_catalog.shobj_description(oid, 'pg_database'), '') "  # noqa: S608
        f"FROM pg_catalog.pg_database WHERE datname = {literal(conn.dbname)};",
    )
    if not rows:
        return False, None, ""
    comment = "\t".join(rows[0]).removeprefix("comment:")
    return True, parse_marker(comment), comment


def parse_marker(comment: str) -> Marker | None:
    """The cutover marker a database comment starts with, or None."""
    match = _MARKER.match(comment)
    if not match:
        return None
    writes = int(match.group(3)) if match.group(3) else None
    return Marker(match.group(1), match.group(2), writes)


def write_count(pg: PostgresAdapter, conn: ConnInfo) -> int:
    """Rows inserted, updated and deleted in ``conn.dbname`` per its statistics."""
    rows = pg.psql(conn, WRITES_SQL)
    return int(rows[0][0]) if rows and rows[0] else 0


def user_tables(pg: PostgresAdapter, conn: ConnInfo) -> int:
    rows = pg.psql(conn, USER_TABLES_SQL)
    return int(rows[0][0]) if rows and rows[0] else 0


def mark(pg: PostgresAdapter, conn: ConnInfo, dbname: str, text: str) -> None:
    pg.psql(maintenance(conn), f"COMMENT ON DATABASE {ident(dbname)} IS {literal(text)};")


def mark_synced(pg: PostgresAdapter, conn: ConnInfo, extra: str = "") -> str:
    """Write ``cutover:synced <time> writes=<N>`` on ``conn.dbname`` (N read from it now), in one
    psql connected to it: on PostgreSQL 15+ with no other client connected (the copy's sessions
    gone, waited for up to 0.2 s) one read of N is final; else N once two reads 0.3 s apart agree
    (a backend reports its counters as it exits, just after its client has gone:
    pgapply_target.finish_script says more). Returns the
    marker text."""
    from cutover.adapters.pgapply_target import finish_script  # noqa: PLC0415 - it imports us

    # The copy carries Heroku's database settings, which may hold default_transaction_read_only
    # = on (Heroku frozen by freeze-writes, in a state that no longer knows it): this session
    # connects to the copy, so it turns that off for itself (USERSET) before the COMMENT.
    script = "SET default_transaction_read_only = off;\n" + finish_script([], conn.dbname, extra)
    rows = pg.psql(conn, script)
    marker = next((r[1] for r in rows if len(r) == 2 and r[0] == "marker"), None)
    if marker is None or not marker.startswith(f"{MARKER_SYNCED} "):
        raise UnexpectedOutput(f"psql wrote no synced marker on {conn.dbname}")
    return marker


def mark_syncing(pg: PostgresAdapter, conn: ConnInfo) -> str:
    """Write ``cutover:syncing <time>`` on ``conn.dbname`` before a sync writes to it in place
    (changed-tables): the writes that follow are cutover's own, and the guard lets the next
    sync go ahead (it replaces them) where it would refuse writes after ``synced``."""
    text = f"{MARKER_SYNCING} {now_iso()}"
    mark(pg, conn, conn.dbname, text)
    return text


def mark_live(pg: PostgresAdapter, conn: ConnInfo) -> str:
    text = f"{MARKER_LIVE} {now_iso()}"
    mark(pg, conn, conn.dbname, text)
    return text


def guard(
    pg: PostgresAdapter,
    conn: ConnInfo,
    *,
    force: bool,
    seen: tuple[bool, Marker | None, str] | None = None,
    writes: int | None = None,
    tables: int | None = None,
) -> str | None:
    """Refuse (CutoverError) a sync into ``conn.dbname`` when it is live, has taken writes since
    the last sync, or holds tables cutover did not put there; with ``force``, return what would
    have been refused (for a finding) instead. None when the sync may go ahead. ``seen``: what
    :func:`read_marker` just returned (not read again); ``writes``, ``tables``: its row writes
    and user tables read with it (cutover/adapters/pglook.py), else read here when needed."""
    exists, marker, comment = seen if seen is not None else read_marker(pg, conn)
    if not exists:
        return None
    db = conn.dbname
    reason = None
    if marker is not None and marker.kind == "live":
        reason = f"the Convox database {db} is live (marker '{comment}')"
    elif marker is not None and marker.kind == "syncing":
        reason = None  # cutover's own in-place sync stopped halfway: finishing it is safe
    elif marker is not None:
        now = write_count(pg, conn) if writes is None else writes
        if marker.writes is not None and now > marker.writes:
            reason = (
                f"the Convox database {db} has taken writes since the last sync "
                f"({now} row writes now, {marker.writes} when cutover synced it at {marker.at})"
            )
        elif marker.writes is not None and now < marker.writes:
            # Counters only grow, unless reset (pg_stat_reset, a crash or failover: PostgreSQL
            # 15 discards them in crash recovery) or tables were dropped: the writes since the
            # sync can no longer be told.
            reason = (
                f"the Convox database {db}'s statistics were reset or tables dropped since the "
                f"last sync ({now} row writes now, {marker.writes} when cutover synced it at "
                f"{marker.at}): cutover cannot tell whether it has taken writes since"
            )
    else:
        tables = user_tables(pg, conn) if tables is None else tables
        if tables:
            reason = (
                f"the Convox database {db} holds {tables} table(s) that cutover did not put "
                "there (no cutover marker in its comment)"
            )
    if reason is None:
        return None
    if force:
        return reason
    raise CutoverError(
        f"refusing to sync: {reason}",
        details="A sync replaces the whole database; cutover records on the database itself "
        "when it synced it and when it went live, whatever the state file says.",
        resolution="If its data may really be replaced by Heroku's, run again with "
        "`cutover run --force-data` (asks at a gate).",
    )


# -- settings ---------------------------------------------------------------------------------
SETTINGS_SQL = """
SELECT CASE WHEN s.setrole = 0 THEN 'database' ELSE 'role' END,
       CASE WHEN s.setdatabase = 0 THEN 0 ELSE 1 END, unnest(s.setconfig)
FROM pg_catalog.pg_db_role_setting s
WHERE (s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                        WHERE datname = pg_catalog.current_database())
       AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)))
   OR (s.setdatabase = 0
       AND s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user))
ORDER BY 1, 2;
"""


@dataclass(frozen=True)
class Setting:
    scope: str  # "database" or "role"
    name: str
    value: str


def read_settings(pg: PostgresAdapter, conn: ConnInfo) -> list[Setting]:
    """The database's settings and the connecting role's (in it, then global, where in-database
    wins), as pg_db_role_setting holds them (``name=value``)."""
    merged: dict[tuple[str, str], str] = {}
    for row in pg.psql(conn, SETTINGS_SQL):
        if len(row) != 3 or "=" not in row[2]:
            continue
        name, _, value = row[2].partition("=")
        if "." in name:
            # A custom setting (``app.jwt_secret``) is a common place for an app's secret: its
            # value is masked in everything the runner records, and never shown.
            pg.masker.add(value)
        key = (row[0], name)
        if row[1] == "1" or key not in merged:  # in-database rows come last and win
            merged[key] = value
    return [Setting(scope, name, value) for (scope, name), value in merged.items()]


def _split_list(value: str) -> list[str]:
    """Split a GUC list (``"$user", public, heroku_ext``) like guc.c's SplitIdentifierString."""
    out, cur, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and value[i + 1 : i + 2] == '"':
                cur += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                cur += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur.strip())
    return [item for item in out if item]


def setting_value_sql(name: str, value: str) -> str:
    if name.lower() in _LIST_GUCS:
        items = _split_list(value)
        return ", ".join(literal(item) for item in items) if items else "''"
    return literal(value)


def apply_settings(
    pg: PostgresAdapter, conn: ConnInfo, dbname: str, settings: list[Setting]
) -> list[str]:
    """Apply ``settings`` to ``dbname`` from the maintenance database, one statement each;
    return the ones the target refused (e.g. superuser-only settings), as findings."""
    refused = []
    for s in settings:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", s.name):
            refused.append(f"{s.name}: not a setting name")
            continue
        who = (
            f"DATABASE {ident(dbname)}"
            if s.scope == "database"
            else f"ROLE CURRENT_USER IN DATABASE {ident(dbname)}"
        )
        sql = f"ALTER {who} SET {s.name} = {setting_value_sql(s.name, s.value)};"
        try:
            pg.psql(maintenance(conn), sql)
        except CommandError as exc:
            why = exc.stderr_tail.strip().splitlines()[-1:] or [exc.brief]
            shown = f"{s.name} (value not shown)" if "." in s.name else f"{s.name}={s.value}"
            refused.append(f"{s.scope} setting {shown}: {pg.masker.mask(why[0])}")
    return refused
