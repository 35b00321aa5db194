"""The Convox side of an apply round (cutover/adapters/pgapply.py) outside its batches: ONE
psql session, asked before them and after, where there were up to nine psqls (each a process
and a connection: about 0.1 s apiece on the bench machine, the bulk of a small round's time).

Before (one psql session, started with the snapshot holder): :func:`read_script`, sent at
once and answered while the holder surveys Heroku (read only: the target's view of every
captured table, pgapply_sql.TARGET_SQL; whether its role may use session_replication_role; how
many foreign keys are NOT VALID; the keyless tables' positions, pgapply_rows.APPLIED_MAKE's
table), then, once the round is known and not refused (a role that may not replicate and
foreign keys inherited from a partitioned table: pgapply_survey.refuse_inherited_fks),
:func:`marker_sql`: ``cutover:syncing <time> capture=<since>`` (pgstaging's format, written as
pgstaging.mark does) and the positions' table, the round's first writes. A round refused, or
whose survey failed, has written nothing.

After (:func:`finish_script`): the round's last statements (sequences, the keyless tables'
positions, the drop of ``_cutover``), then the synced marker with the database's row-write
count once two reads 0.3 s apart agree, at most ten reads (a backend reports its counters as
it exits, just after its client has gone), unless nothing else is connected on PostgreSQL 15+
(:data:`_QUIET`); pgstaging.mark_synced runs this same script with no statements. It goes
through the round's session (:func:`finish`) unless that sat idle over :data:`SESSION_IDLE`
seconds or its connection is gone; then a fresh psql runs it (again: it is idempotent).
"""

# SQL is built from catalog names (quote_ident'ed by the server), positions checked against a
# strict pattern, and the marker text through literal(). No operator input reaches it.

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cutover.adapters import pgstaging
from cutover.adapters.pgapply_rows import APPLIED, APPLIED_MAKE
from cutover.adapters.pgapply_sql import TARGET_SQL
from cutover.adapters.pgcapture import check_position, literal, query, text_array
from cutover.adapters.pgcopy import ask
from cutover.adapters.pgtables import SEQUENCES_SQL
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError
from cutover.runpipes import Session

_REPLICA = r"""SELECT pg_catalog.current_setting('server_version_num')::int >= 150000
  AS cutover_v15 \gset
\if :cutover_v15
SELECT pg_catalog.current_setting('is_superuser') = 'on'
  OR pg_catalog.has_parameter_privilege('session_replication_role', 'SET') AS cutover_replica \gset
\else
SELECT pg_catalog.current_setting('is_superuser') = 'on' AS cutover_replica \gset
\endif
SELECT 'replica', :'cutover_replica';
"""
_NOT_VALID = (
    "SELECT 'notvalid', count(*) FROM pg_catalog.pg_constraint "
    "WHERE contype = 'f' AND NOT convalidated;\n"
)
# The keyless tables' positions, when the table is there (pgapply_rows.APPLIED_MAKE makes it).
_APPLIED_READ = r"""SELECT pg_catalog.to_regclass('__T__') IS NOT NULL AS cutover_applied \gset
\if :cutover_applied
SELECT 'applied', name, since, position FROM __T__ ORDER BY name;
\endif
""".replace("__T__", APPLIED)


QUERY_TIMEOUT = 120.0  # seconds for each answer of the round's target session
SESSION_IDLE = 30.0  # seconds after which that session is not trusted for the finish

# No settling when nothing else is connected to the database (PostgreSQL 15+): a backend flushes
# its counters in a before_shmem_exit hook (pgstat.c pgstat_initialize: pgstat_shutdown_hook)
# and leaves pg_stat_activity in an on_shmem_exit one, run after those (backend_status.c
# pgstat_beinit: pgstat_beshutdown_hook; ipc.c shmem_exit), so a backend gone from the view has
# flushed. This session's own writes (the statements above) are flushed as it goes idle, forced
# by pg_stat_force_next_flush() (PostgreSQL 15 docs, "Statistics Functions"). Older servers
# (an asynchronous collector) or another session connected: the reads settle as before.
_QUIET = (
    r"""SELECT coalesce(pg_catalog.has_function_privilege(
    pg_catalog.to_regprocedure('pg_catalog.pg_stat_force_next_flush()'), 'EXECUTE'), false)
  AS cutover_v15 \gset
\if :cutover_v15
SELECT pg_catalog.pg_stat_force_next_flush() AS cutover_f \gset
SELECT false AS cutover_quiet \gset
"""
    + (
        # the batches' backends exit just after their psqls: wait for them up to 0.2 s
        r"""\if :cutover_quiet
\else
SELECT pg_catalog.pg_sleep(0.02) AS cutover_z \gset
SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity
                   WHERE datname = pg_catalog.current_database()
                     AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend')
  AS cutover_quiet \gset
\endif
"""
        * 10
    )
    + r"""\else
SELECT false AS cutover_quiet \gset
\endif"""
)


@dataclass
class Prepared:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    replica: bool = False
    not_valid: int = 0
    applied: list[tuple[str, str, str]] = field(default_factory=list)  # name, since, position


def read_script(tables: Sequence[str], keyless: bool) -> str:
    """What the round reads on the target before its first write (read only): the docs of
    ``tables``, its role's replication right, its NOT VALID foreign keys and, with
    ``keyless``, the keyless tables' positions (which it creates when missing)."""
    parts = [
        TARGET_SQL.replace("{tables}", text_array(list(tables))) if tables else "",
        _REPLICA,
        _NOT_VALID,
    ]
    if keyless:
        parts.append(_APPLIED_READ)
    return "".join(parts)


def marker_sql(dbname: str, since: str, keyless: bool) -> str:
    """The ``cutover:syncing <time> capture=<since>`` marker (pgstaging's format, written as
    pgstaging.mark does), and with ``keyless`` the keyless tables' positions table, made when
    missing (pgapply_rows.APPLIED_MAKE): the round's first writes."""
    marker = f"{pgstaging.MARKER_SYNCING} {pgstaging.now_iso()} capture={check_position(since)}"
    make = APPLIED_MAKE if keyless else ""
    return f"{make}COMMENT ON DATABASE {pgstaging.ident(dbname)} IS {literal(marker)};"


def parse_prepared(rows: list[list[str]]) -> Prepared:
    out = Prepared()
    for row in rows:
        if row[0].startswith("{"):
            doc = json.loads("\t".join(row))
            out.docs[doc["name"]] = doc
        elif row[0] == "replica":
            out.replica = row[1] == "t"
        elif row[0] == "notvalid":
            out.not_valid = int(row[1])
        elif row[0] == "applied":
            out.applied.append((row[1], row[2], row[3]))
    return out


def setval_statements(values: Sequence[Sequence[str]]) -> list[str]:
    """``setval`` of each (name, last_value, is_called) read on the source (as
    pgtables.TableCopier.copy_sequences sets them)."""
    return [
        f"SELECT pg_catalog.setval({literal(name)}::regclass, {int(value)}, "
        f"{'true' if called == 't' else 'false'}) AS cutover_s \\gset"
        for name, value, called in values
    ]


def finish_script(statements: Sequence[str], dbname: str, extra: str, reads: int = 10) -> str:
    """``statements`` in one transaction, then the synced marker (module docstring)."""
    writes = pgstaging.WRITES_SQL.strip().rstrip(";")
    lines = ["BEGIN;", *(s if s.endswith("\\gset") else s + ";" for s in statements), "COMMIT;"]
    lines += [_QUIET, f"SELECT ({writes}) AS cutover_w \\gset", "\\if :cutover_quiet", "\\else"]
    for _ in range(reads - 1):
        lines += [
            "SELECT pg_catalog.pg_sleep(0.3) AS cutover_z \\gset",
            f"SELECT ({writes}) AS cutover_n \\gset",
            "SELECT :cutover_n = :cutover_w AS cutover_same \\gset",
            "\\set cutover_w :cutover_n",
            "\\if :cutover_same",
            "\\else",
        ]
    lines += ["\\endif"] * reads
    head = f"{pgstaging.MARKER_SYNCED} {pgstaging.now_iso()} writes="
    lines += [
        f"SELECT {literal(head)} || :'cutover_w' || {literal(extra)} AS cutover_marker \\gset",
        f"COMMENT ON DATABASE {pgstaging.ident(dbname)} IS :'cutover_marker';",
        "SELECT 'marker', :'cutover_marker';",
    ]
    return "\n".join(lines) + "\n"


def finish(
    pg: PostgresAdapter, target: ConnInfo, convox: Session, prepared: float, script: str
) -> list[list[str]]:
    """The round's last script (pgapply_target.finish_script) on the target: through the
    round's own session (no new psql and connection: about 50 ms through the proxy) unless it
    sat idle for over :data:`SESSION_IDLE` seconds (a tunnel may drop an idle connection) or
    failed; then by a fresh psql. Running the script again is harmless: its statements set
    values (sequences, positions where they still are) and drop what exists."""
    if time.monotonic() - prepared < SESSION_IDLE:
        try:
            return ask(convox, script, QUERY_TIMEOUT)
        except CommandError:
            pass  # the session's connection is gone (or its script failed): a fresh psql
    convox.close()  # not left connected: the marker's write count settles faster alone
    return query(pg, target, script)


def sequence_values(holder: Session) -> list[list[str]]:
    """(name, last_value, is_called) of every sequence on the source, read by the holder (as
    pgtables.TableCopier.copy_sequences reads them)."""
    names = [r[0] for r in ask(holder, SEQUENCES_SQL.strip())]
    if not names:
        return []
    reads = "\nUNION ALL\n".join(
        # Names come from pg_sequences through quote_ident: no user input reaches the SQL.
        f"SELECT {literal(n)}, last_value, is_called FROM {n}"  # noqa: S608
        for n in names
    )
    return ask(holder, reads + ";", 600)


class Phases:
    """Seconds per phase of a round (pgapply.ApplyResult.phases)."""

    def __init__(self, started: float) -> None:
        self.last = started
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append((name, now - self.last))
        self.last = now
