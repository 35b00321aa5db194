"""Which tables changed on Heroku since a point in time, from PostgreSQL's own statistics.

``take_stats`` reads, in one query on the Heroku database, everything the detection needs;
``changed_tables(before, after)`` compares two snapshots. ``before`` is taken BEFORE the initial
sync starts copying, ``after`` in the window once Heroku's dynos are stopped (see
:func:`take_quiet_stats`).

The detection is conservative: when in doubt a table is copied, and when in doubt about the
database as a whole, ``everything`` is set (the final sync must then be a full one):

* a table is copied when any of its counters changed (``pg_stat_user_tables``: n_tup_ins,
  n_tup_upd, n_tup_del, n_live_tup; a counter that went down means its statistics were reset)
  or its file node changed (``pg_relation_filenode``: TRUNCATE, VACUUM FULL, CLUSTER and
  rewriting ALTER TABLEs give the table a new file, TRUNCATE without touching the counters);
* everything, when the database's statistics were reset (``pg_stat_database.stats_reset``) or
  the server restarted (``pg_postmaster_start_time()``: a crash discards the statistics);
* everything, when a table's definition changed (columns, defaults, constraints, indexes,
  triggers) or any other DDL did (schemas, functions, types, views, sequences' definitions,
  extensions, the database's and role's settings but freeze-writes' default_transaction_read_only),
  or a table was added or dropped: a per-table
  copy keeps the target's definitions, only a full sync carries DDL;
* everything, when large objects changed (``pg_largeobject`` / ``pg_largeobject_metadata``
  counters and file nodes): they are not tables a role can COPY into;
* everything for a changed partition, inheritance child or materialized view (refreshed: new
  file node): the per-table copy handles plain tables only.

* everything, when the ``after`` snapshot saw another session that may still hold counters it
  has not flushed (active, idle in a transaction, or idle for less than SETTLED_AFTER), or
  track_counts was off: the counters cannot be trusted to be complete.

Statistics counters count rolled-back writes too (more copying, never less). PostgreSQL 15 keeps
them in shared memory, flushed by each session at the latest when it exits or has been idle for
PGSTAT_IDLE_INTERVAL (10 s; src/backend/utils/activity/pgstat.c): :func:`take_quiet_stats`
waits until every other session has exited or been idle that long (bounded) before reading them,
and a snapshot that still saw one means everything. Writes are counted when their transaction
ends, so a transaction open at ``before`` is counted by ``after`` once it ends. HOT updates are
in n_tup_upd; COPY FROM in n_tup_ins; a TRUNCATE, even followed by the same number of inserts,
gives a new file node. Sequences are not tracked: the final sync copies every one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from cutover.errors import UnexpectedOutput

if TYPE_CHECKING:
    from cutover.adapters.postgres import ConnInfo, PostgresAdapter

# src/backend/utils/activity/pgstat.c (PostgreSQL 15): a session with pending statistics flushes
# them within this many seconds of going idle, and always when it exits.
PGSTAT_IDLE_INTERVAL = 10.0

# A session idle this long has flushed its counters: going idle arms a timeout of at most
# PGSTAT_IDLE_INTERVAL after which pgstat_report_stat(force=true) runs (src/backend/tcop/postgres.c,
# IDLE_STATS_UPDATE_TIMEOUT; src/backend/utils/activity/pgstat.c). A busy session may keep them
# pending up to PGSTAT_MAX_INTERVAL (60 s) or until its current statement ends.
SETTLED_AFTER = PGSTAT_IDLE_INTERVAL + 1.0

# One query, one JSON document (psql -At prints it on one line: JSON escapes every newline).
STATS_SQL = r"""
WITH rel AS (
  SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, c.relkind,
         c.relispartition OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                                     WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) AS part
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
), tdef AS (
  SELECT rel.oid, md5(concat_ws(E'\n',
    rel.relkind::text,
    (SELECT string_agg(concat_ws(' ', a.attnum, quote_ident(a.attname),
                                 pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                 a.attisdropped, a.attgenerated, a.attidentity, a.attcollation,
                                 pg_catalog.pg_get_expr(d.adbin, d.adrelid)), E'\n'
                       ORDER BY a.attnum)
     FROM pg_catalog.pg_attribute a
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = rel.oid AND a.attnum > 0),
    (SELECT string_agg(co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid), E'\n'
                       ORDER BY co.conname)
     FROM pg_catalog.pg_constraint co WHERE co.conrelid = rel.oid),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS x
       FROM pg_catalog.pg_index i WHERE i.indrelid = rel.oid) s),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT pg_catalog.pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text AS x
       FROM pg_catalog.pg_trigger t WHERE t.tgrelid = rel.oid AND NOT t.tgisinternal) s),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT r.rulename || ' ' || pg_catalog.pg_get_ruledef(r.oid) AS x
       FROM pg_catalog.pg_rewrite r WHERE r.ev_class = rel.oid) s),
    (SELECT concat_ws(' ', array_to_string(c.reloptions, ','), c.relpersistence,
                      c.relrowsecurity, c.relforcerowsecurity, c.relreplident)
     FROM pg_catalog.pg_class c WHERE c.oid = rel.oid))) AS def
  FROM rel
), ddl AS (
  -- Each part sorted by its own text (an aggregate's ORDER BY 1 sorts by the constant 1, i.e.
  -- not at all: the catalog's scan order, which a TRUNCATE's pg_class update changes).
  SELECT md5(concat_ws(E'\n',
    (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_catalog.pg_namespace
     WHERE nspname NOT LIKE 'pg\_%'),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT concat_ws(' ', c.relnamespace::regnamespace::text, c.relname, c.relkind,
                        CASE WHEN c.relkind = 'v' THEN pg_catalog.pg_get_viewdef(c.oid) END) AS x
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
         AND n.nspname NOT LIKE 'pg\_%' AND c.relkind NOT IN ('t', 'i', 'I')) s),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT concat_ws(' ', p.pronamespace::regnamespace::text, p.proname,
                        pg_catalog.pg_get_function_identity_arguments(p.oid),
                        p.prorettype::regtype::text, md5(p.prosrc),
                        array_to_string(p.proconfig, ',')) AS x
       FROM pg_catalog.pg_proc p
       WHERE p.pronamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema')
         AND p.pronamespace::regnamespace::text NOT LIKE 'pg\_%') s),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT concat_ws(' ', t.typnamespace::regnamespace::text, t.typname, t.typtype,
                        (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                         FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid)) AS x
       FROM pg_catalog.pg_type t
       WHERE t.typnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema')
         AND t.typnamespace::regnamespace::text NOT LIKE 'pg\_%'
         AND t.typtype IN ('e', 'd', 'r', 'm', 'b')) s),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT concat_ws(' ', s.seqrelid::regclass::text, s.seqtypid, s.seqstart,
                        s.seqincrement, s.seqmax, s.seqmin, s.seqcycle) AS x
       FROM pg_catalog.pg_sequence s) s),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       SELECT concat_ws(' ', e.extname, e.extversion, e.extnamespace::regnamespace::text) AS x
       FROM pg_catalog.pg_extension e) s),
    (SELECT string_agg(x, E'\n' ORDER BY x) FROM (
       -- default_transaction_read_only is left out (and a row holding nothing else): freeze-
       -- writes sets it on Heroku between initial-sync and final-sync (steps/freeze.py), and a
       -- sync never carries the freeze's value.
       SELECT concat_ws(' ', r.setrole, r.cfg) AS x FROM (
         SELECT s.setrole, array_to_string(ARRAY(
                  SELECT c FROM unnest(s.setconfig) AS c
                  WHERE c NOT LIKE 'default\_transaction\_read\_only=%'), ',') AS cfg
         FROM pg_catalog.pg_db_role_setting s
         WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                      WHERE datname = current_database()))
           AND (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_catalog.pg_roles
                                               WHERE rolname = current_user))) r
       WHERE r.cfg <> '') s))) AS hash
)
SELECT json_build_object(
  'database', current_database(),
  'taken_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'server_started', pg_catalog.pg_postmaster_start_time()::text,
  'stats_reset', (SELECT stats_reset::text FROM pg_catalog.pg_stat_database
                  WHERE datname = current_database()),
  'other_sessions', (SELECT count(*) FROM pg_catalog.pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_catalog.pg_backend_pid()
                       AND backend_type = 'client backend'),
  'unsettled_sessions', (SELECT count(*) FROM pg_catalog.pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_catalog.pg_backend_pid()
        AND backend_type NOT IN ('autovacuum worker', 'parallel worker')
        AND (state IS DISTINCT FROM 'idle'
             OR state_change > now() - make_interval(secs => {settle}))),
  'track_counts', current_setting('track_counts'),
  'ddl', (SELECT hash FROM ddl),
  'tables', coalesce((SELECT json_object_agg(rel.name, json_build_object(
      'kind', rel.relkind, 'part', rel.part,
      'filenode', coalesce(pg_catalog.pg_relation_filenode(rel.oid), 0),
      'ins', coalesce(s.n_tup_ins, 0), 'upd', coalesce(s.n_tup_upd, 0),
      'del', coalesce(s.n_tup_del, 0), 'live', coalesce(s.n_live_tup, 0),
      'bytes', pg_catalog.pg_total_relation_size(rel.oid),
      'def', tdef.def))
    FROM rel JOIN tdef ON tdef.oid = rel.oid
    LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = rel.oid), '{}'::json),
  'large_objects', (SELECT json_object_agg(s.relname, concat_ws(' ',
      pg_catalog.pg_relation_filenode(s.relid), s.n_tup_ins, s.n_tup_upd, s.n_tup_del,
      s.n_live_tup))
    FROM pg_catalog.pg_stat_all_tables s
    WHERE s.schemaname = 'pg_catalog'
      AND s.relname IN ('pg_largeobject', 'pg_largeobject_metadata')));
"""


class TableStats(BaseModel):
    """One table's counters (pg_stat_all_tables), file node and definition hash."""

    kind: str  # pg_class.relkind: r (table), p (partitioned), m (materialized view)
    part: bool  # a partition, an inheritance parent or child
    filenode: int
    ins: int
    upd: int
    dele: int = Field(alias="del")
    live: int
    bytes: int
    definition: str = Field(alias="def")

    model_config = {"populate_by_name": True}


class StatsSnapshot(BaseModel):
    """What :func:`take_stats` read (JSON-able; no secrets: names, numbers and hashes)."""

    database: str
    taken_at: str
    server_started: str
    stats_reset: str | None = None
    other_sessions: int = 0
    # Other sessions on the database that may hold counters not yet in the shared statistics:
    # active, idle in a transaction, or idle for less than SETTLED_AFTER (state NULL, as a role
    # without pg_read_all_stats sees other roles' sessions, counts too).
    unsettled_sessions: int = 0
    track_counts: str = "on"
    ddl: str
    tables: dict[str, TableStats]
    large_objects: dict[str, str] = Field(default_factory=dict)


class ChangeSet(BaseModel):
    """What the final sync must copy: ``everything`` (with ``reasons``), else ``tables``."""

    everything: bool = False
    reasons: list[str] = Field(default_factory=list)
    tables: dict[str, str] = Field(default_factory=dict)  # table -> why it is copied
    unchanged: list[str] = Field(default_factory=list)

    def bytes_of(self, after: StatsSnapshot) -> int:
        """On-disk size (on Heroku, at ``after``) of the tables to copy."""
        return sum(after.tables[t].bytes for t in self.tables if t in after.tables)

    def summary(self) -> str:
        if self.everything:
            return "everything must be copied: " + "; ".join(self.reasons)
        if not self.tables:
            return f"no table changed ({len(self.unchanged)} unchanged); sequences are copied"
        return (
            f"{len(self.tables)} table(s) changed, {len(self.unchanged)} unchanged: "
            + "; ".join(f"{t} ({why})" for t, why in sorted(self.tables.items()))
        )


def take_stats(postgres: PostgresAdapter, conn: ConnInfo, timeout: float = 300) -> StatsSnapshot:
    """Read the statistics, file nodes and definition hashes of ``conn``'s database."""
    sql = STATS_SQL.replace("{settle}", f"{SETTLED_AFTER:g}")
    rows = postgres.psql(conn, sql, timeout=timeout)
    try:
        return StatsSnapshot.model_validate(json.loads(rows[0][0]))
    except (IndexError, ValueError) as exc:
        raise UnexpectedOutput(f"cannot read the table statistics from psql: {exc}") from None


def take_quiet_stats(
    postgres: PostgresAdapter,
    conn: ConnInfo,
    *,
    wait: float = SETTLED_AFTER + 2,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> StatsSnapshot:
    """:func:`take_stats` once no other session may hold unflushed counters (each has exited
    or been idle for SETTLED_AFTER), waiting at most ``wait`` seconds. A snapshot taken while
    one still may is marked (``unsettled_sessions``): :func:`changed_tables` then copies
    everything."""
    deadline = clock() + wait
    while True:
        snapshot = take_stats(postgres, conn)
        if snapshot.unsettled_sessions == 0 or clock() >= deadline:
            return snapshot
        sleep(1.0)


def _untrusted_counters(before: StatsSnapshot, after: StatsSnapshot) -> list[str]:
    """Why the two snapshots' counters cannot be compared at all (everything is copied)."""
    why: list[str] = []
    if before.database != after.database:
        why.append(
            f"the snapshots are of different databases ({before.database}, {after.database})"
        )
    if before.stats_reset != after.stats_reset:
        why.append(f"the database's statistics were reset ({after.stats_reset})")
    if before.server_started != after.server_started:
        why.append(f"the server restarted ({after.server_started}): statistics may be lost")
    if after.unsettled_sessions:
        why.append(
            f"{after.unsettled_sessions} other session(s) on {after.database} were active or "
            f"idle for less than {SETTLED_AFTER:g}s when the statistics were read: their "
            "latest writes may not be counted yet (stop every client of the database first)"
        )
    for snapshot, when in ((before, "before the initial sync"), (after, "in the window")):
        if snapshot.track_counts != "on":
            why.append(f"track_counts was {snapshot.track_counts} {when}: no counters")
    return why


def changed_tables(before: StatsSnapshot, after: StatsSnapshot) -> ChangeSet:
    """The tables to copy in full (with why), or ``everything`` (with why); see the module."""
    whole = _untrusted_counters(before, after)
    if before.large_objects != after.large_objects:
        whole.append("large objects changed")
    added = sorted(set(after.tables) - set(before.tables))
    dropped = sorted(set(before.tables) - set(after.tables))
    if added:
        whole.append("new table(s): " + ", ".join(added))
    if dropped:
        whole.append("dropped table(s): " + ", ".join(dropped))
    redefined = sorted(
        t
        for t in set(before.tables) & set(after.tables)
        if before.tables[t].definition != after.tables[t].definition
    )
    if redefined:
        whole.append("definition changed: " + ", ".join(redefined))
    if before.ddl != after.ddl:
        whole.append("the schema changed (DDL outside the tables' definitions)")
    out = ChangeSet()
    for name in sorted(set(before.tables) & set(after.tables)):
        why = _table_change(before.tables[name], after.tables[name])
        if why is None:
            out.unchanged.append(name)
            continue
        kind = after.tables[name]
        if kind.kind != "r" or kind.part:
            what = {"p": "partitioned table", "m": "materialized view"}.get(
                kind.kind, "partition or inheritance table"
            )
            whole.append(f"{name} changed ({why}) and is a {what}")
        out.tables[name] = why
    if whole:
        return ChangeSet(everything=True, reasons=whole)
    return out


def _table_change(old: TableStats, new: TableStats) -> str | None:
    if old.filenode != new.filenode:
        return "new file node: TRUNCATE, VACUUM FULL, CLUSTER or a table rewrite"
    deltas = {
        "inserts": new.ins - old.ins,
        "updates": new.upd - old.upd,
        "deletes": new.dele - old.dele,
        "live rows": new.live - old.live,
    }
    if any(d < 0 for k, d in deltas.items() if k != "live rows"):
        return "its statistics counters went down (reset)"
    changed = [f"{d:+d} {k}" for k, d in deltas.items() if d]
    return ", ".join(changed) if changed else None
