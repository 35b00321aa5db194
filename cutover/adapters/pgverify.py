"""verify-data's comparison: everything an app depends on, read from both databases at once.

Compared, each mismatch naming its object:

* every user table: exact row count and an order-independent content checksum, the sum of a
  64-bit hash of each row's text: ``hashtextextended(row COLLATE "C", 0)``, which for a
  deterministic collation is ``hash_any_extended`` over the text's bytes (src/backend/utils/
  adt/varlena.c; the hash that places rows in hash partitions). It finds the same accidental
  differences as the 64-bit md5 prefix it replaced and costs a third to a half of it (2 M
  rows: 1.2 s against 3.7 s for pgbench_accounts, 1.8-2.0 s against 3.5-4.5 s for a table of
  bigint, text, timestamptz and numeric); it is no defence against rows crafted to collide,
  which verify-data does not guard against. Its value depends on byte order (src/common/
  hashfn.c): servers of another byte order, or a version that changed the hash, would report
  every table as differing (a false alarm, never a difference passed). Tables above
  ``counts_only_above_mb`` on Heroku: row count only, said in the result. Rows are read as
  text with fixed output settings (postgres.STABLE_TEXT), so the same data reads alike on
  both servers;
* sequences: ``last_value`` and ``is_called`` (what ``nextval`` returns next);
* large objects: their count, and the md5 of each one's content by oid (pg_dump and pg_restore
  keep oids);
* extensions and their schemas (a version difference is a note; an extension in
  ``skip_extensions`` missing on Convox is a note);
* schema definitions, object by object (adapters/pgschema.py);
* the database's encoding (a failure) and locale (a note);
* role and database settings (``pg_db_role_setting``): what a session of the connected role in
  this database gets, i.e. the database's settings, overridden by the role's global ones,
  overridden by the role's in this database (the order PostgreSQL applies them in:
  src/backend/utils/init/postinit.c, ``process_settings``).

Speed: both sides run at the same time (one thread per psql child, all through the Runner), and
the tables of each side are split over ``jobs`` sessions, largest first. The sessions of one side
do not share a snapshot: verify-data runs in the window, while Heroku takes no writes.
Measured (the bench's 914 MB database, both clusters on one shared 2-core machine, medians of 3
interleaved): the whole comparison 8.07 s with jobs=2 (8.27 s with jobs=1) against 20.6 s with
the md5-prefix checksum before; the same checksum query run by psql on both sides at once took
6.5-8.2 s in the same runs (its rounds spread from 6.3 to 9.0 s). On two cores both are
CPU-bound, so more sessions do not help there; on two servers of their own they do. The first
query (md5 of the sorted row md5s) took 36.5 s on both sides at once.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cutover.adapters import pgfreeze, pgschema
from cutover.adapters.postgres import STABLE_TEXT
from cutover.errors import CutoverError, UnexpectedOutput

if TYPE_CHECKING:
    from cutover.adapters.postgres import ConnInfo
    from cutover.runner import Runner
    from cutover.secrets import SecretMasker

MB = 1024 * 1024
CANCEL_TIMEOUT = 20.0  # seconds for the psql that cancels a failed comparison's sessions
T = TypeVar("T")
# Fixed output settings, and row_security off: a table whose policies apply to its owner (FORCE
# ROW LEVEL SECURITY) would otherwise be counted and summed through them, per role (the roles
# differ between the sides; a superuser skips policies), so different rows could compare equal.
# Off, such a query fails naming the table (as pg_dump does, with the same setting) instead.
PGOPTIONS = STABLE_TEXT + " -c row_security=off"
CANCEL_SQL = """SELECT count(pg_catalog.pg_cancel_backend(pid)) FROM pg_catalog.pg_stat_activity
WHERE application_name = '__APP__' AND pid <> pg_catalog.pg_backend_pid();
"""
PSQL = ["psql", "-X", "--no-password", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-f", "-"]

# '_cutover': the change capture's own schema on Heroku (issue 13, adapters/pgcapture.py), never
# copied to Convox, so never compared.
_USER_RELATION = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', '_cutover')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')"""

# One psql script per side: tagged rows (kind, name, a, b). Sequences are read by a generated
# query (\gexec), since their position lives in each sequence relation.
CATALOG_SQL = """
SELECT 'table', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_catalog.pg_table_size(c.oid)::text, ''
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND __USER_RELATION__;
SELECT 'extension', e.extname, n.nspname, e.extversion
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace;
SELECT 'setting', CASE WHEN s.setrole = 0 THEN '1 database'
                       WHEN s.setdatabase = 0 THEN '2 role' ELSE '3 role in database' END,
       cfg, ''
FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg
WHERE (s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                        WHERE datname = current_database()) AND s.setrole = 0)
   OR (s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                 WHERE datname = current_database())));
SELECT 'database', k, v, ''
FROM pg_catalog.pg_database d,
     LATERAL (VALUES ('encoding', pg_catalog.pg_encoding_to_char(d.encoding)),
                     ('LC_COLLATE', d.datcollate), ('LC_CTYPE', d.datctype)) AS p(k, v)
WHERE d.datname = current_database();
SELECT 'large object', m.oid::text, md5(pg_catalog.lo_get(m.oid)), ''
FROM pg_catalog.pg_largeobject_metadata m;
SELECT format('SELECT %L, %L, last_value::text, is_called::text FROM %s',
              'sequence', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
              quote_ident(n.nspname) || '.' || quote_ident(c.relname))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND __USER_RELATION__
\\gexec
""".replace("__USER_RELATION__", _USER_RELATION)


def table_checksum_sql(table: str, checksum: bool) -> str:
    """Row count and content checksum of one table (a name quoted by quote_ident): the query
    the benchmark runs with psql on both sides as verify-data's baseline."""
    # (t.*), not t: a bare ``t`` means a column of that name when the table has one, and only
    # that column would be summed; ``t.*`` names the row (transformColumnRef, parse_expr.c).
    # sum(bigint) adds in a 128-bit accumulator and returns numeric: no overflow, exact.
    digest = """coalesce(sum(pg_catalog.hashtextextended((t.*)::text COLLATE "C", 0)), 0)::text"""
    literal = table.replace("'", "''")
    # Table names come from pg_class through quote_ident: no user input reaches the SQL.
    value = digest if checksum else "''"
    return f"SELECT '{literal}', count(*), {value} FROM {table} t"  # noqa: S608


def checksum_sql(tables: Sequence[str], checksums: Callable[[str], bool]) -> str:
    return "\n".join(table_checksum_sql(t, checksums(t)) + ";" for t in tables) + "\n"


@dataclass
class Catalog:
    """What one side's catalog script returned."""

    tables: dict[str, int] = field(default_factory=dict)  # name -> bytes
    sequences: dict[str, str] = field(default_factory=dict)  # name -> "last_value is_called"
    extensions: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> schema, ver
    settings: dict[str, str] = field(default_factory=dict)  # effective name -> value
    large_objects: dict[str, str] = field(default_factory=dict)  # oid -> md5
    database: dict[str, str] = field(default_factory=dict)  # encoding, LC_COLLATE, LC_CTYPE


def parse_catalog(rows: list[list[str]]) -> Catalog:
    cat = Catalog()
    scoped: list[tuple[str, str]] = []
    for row in rows:
        if len(row) != 4:
            raise UnexpectedOutput(f"unexpected catalog row from psql: {row!r}")
        kind, name, a, b = row
        if kind == "table":
            cat.tables[name] = int(a)
        elif kind == "sequence":
            cat.sequences[name] = f"last_value={a} is_called={b}"
        elif kind == "extension":
            cat.extensions[name] = (a, b)
        elif kind == "setting":
            scoped.append((name, a))
        elif kind == "large object":
            cat.large_objects[name] = a
        elif kind == "database":
            cat.database[name] = a
        else:
            raise UnexpectedOutput(f"unexpected catalog row from psql: {row!r}")
    for _scope, cfg in sorted(scoped):  # database, then role, then role in database
        key, _, value = cfg.partition("=")
        cat.settings[key] = value
    return cat


@dataclass
class Side:
    """One database and how to reach it."""

    label: str  # "Heroku" or "Convox"
    conn: ConnInfo


@dataclass
class Outcome:
    """The comparison. ``problems`` fail verify-data; ``notes`` are findings."""

    compared: str
    tables: int = 0
    rows: int = 0
    sequences: int = 0
    large_objects: int = 0
    extensions: int = 0
    schema_objects: int = 0
    settings: int = 0
    counted_only: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


Progress = Callable[[int, int, int, int], None]  # tables done, total, bytes done, bytes total


@dataclass
class Verifier:
    runner: Runner
    masker: SecretMasker
    jobs: int = 2
    timeout: float = 3600
    checksums: bool = True
    counts_only_above_mb: int | None = None
    skip_extensions: Sequence[str] = ()
    # Heroku settings that are cutover's own during the window, with the app's value (None: not
    # set): freeze-writes' default_transaction_read_only (steps/freeze.py settings_before_freeze).
    source_settings: Mapping[str, str | None] = field(default_factory=dict)
    _app: str = field(default_factory=lambda: "cutover-verify-" + secrets.token_hex(6))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- one psql child -----------------------------------------------------------------------
    def _env(self, conn: ConnInfo) -> dict[str, str]:
        """libpq settings of every session of this comparison: one application_name, so a
        failure can cancel the sessions still running (:meth:`_cancel`)."""
        self.masker.add(conn.password)
        return {**conn.env(), "PGAPPNAME": self._app}

    def _psql(self, conn: ConnInfo, sql: str, timeout: float | None = None) -> list[list[str]]:
        result = self.runner.run(
            PSQL,
            env={**self._env(conn), "PGOPTIONS": PGOPTIONS},
            input=sql,
            timeout=self.timeout if timeout is None else timeout,
        )
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def _cancel(self, sides: Sequence[Side]) -> None:
        """Cancel this comparison's sessions still running on each side (its own role may:
        pg_cancel_backend), so their psql and pg_dump children end now and the process does
        not wait for them at exit (a pool's threads are joined then). Best effort: a side
        that cannot be reached has nothing running either."""
        sql = CANCEL_SQL.replace("__APP__", self._app)  # our own hex token: nothing to quote
        for side in sides:
            with contextlib.suppress(CutoverError):
                self._psql(side.conn, sql, timeout=CANCEL_TIMEOUT)

    # -- the whole comparison -----------------------------------------------------------------
    def compare(self, source: Side, target: Side, progress: Progress | None = None) -> Outcome:
        started = time.monotonic()
        out = Outcome(compared="checksums" if self.checksums else "counts")
        pool = ThreadPoolExecutor(max_workers=2 * self.jobs + 2, thread_name_prefix="verify")
        try:
            dumps = [
                pool.submit(
                    pgschema.schema_dump, self.runner, self.masker, self._env(s.conn), self.timeout
                )
                for s in (source, target)
            ]
            cats = [pool.submit(self._psql, s.conn, CATALOG_SQL) for s in (source, target)]
            src, dst = (parse_catalog(rows) for rows in _results(cats, *dumps))
            self._tables(pool, source, target, src, dst, out, progress)
            src_schema, dst_schema = (
                pgschema.split_objects(text, self.skip_extensions) for text in _results(dumps)
            )
        except BaseException:
            # A failure or Ctrl-C: start no further session, cancel those running (else the
            # process would wait for them at exit), the error goes up at once.
            pool.shutdown(wait=False, cancel_futures=True)
            self._cancel((source, target))
            raise
        pool.shutdown(wait=True)
        out.problems += pgschema.compare_objects(src_schema, dst_schema)
        out.schema_objects = len(src_schema)
        self._sequences(src, dst, out)
        self._large_objects(src, dst, out)
        self._extensions(src, dst, out)
        self._settings(src, dst, out)
        self._database(src, dst, out)
        out.seconds = round(time.monotonic() - started, 3)
        return out

    def _counts_only(self, size: int) -> bool:
        if not self.checksums:
            return True
        limit = self.counts_only_above_mb
        return limit is not None and size > limit * MB

    def _tables(
        self,
        pool: ThreadPoolExecutor,
        source: Side,
        target: Side,
        src: Catalog,
        dst: Catalog,
        out: Outcome,
        progress: Progress | None,
    ) -> None:
        for name in sorted(set(src.tables) - set(dst.tables)):
            out.problems.append(f"table {name}: missing on Convox")
        for name in sorted(set(dst.tables) - set(src.tables)):
            out.problems.append(f"table {name}: only on Convox")
        common = sorted(set(src.tables) & set(dst.tables), key=lambda t: (-src.tables[t], t))
        sizes = {t: src.tables[t] for t in common}
        out.counted_only = sorted(
            t for t in common if self.checksums and self._counts_only(sizes[t])
        )
        groups = _groups(common, sizes, self.jobs)
        total_bytes = sum(sizes.values())
        results: dict[tuple[str, int], dict[str, list[str]]] = {}
        finished = [0, 0]  # tables, bytes (a group counts when both sides have read it)
        # The pool is shared by both sides; each side keeps at most ``jobs`` sessions open.
        slots = {s.label: threading.Semaphore(self.jobs) for s in (source, target)}

        def one(side: Side, index: int) -> None:
            group = groups[index]
            sql = checksum_sql(group, lambda t: not self._counts_only(sizes[t]))
            with slots[side.label]:
                rows = self._psql(side.conn, sql)
            with self._lock:
                results[side.label, index] = {r[0]: r for r in rows}
                other = target.label if side is source else source.label
                if (other, index) in results and progress is not None:
                    finished[0] += len(group)
                    finished[1] += sum(sizes[t] for t in group)
                    progress(finished[0], len(common), finished[1], total_bytes)

        if progress is not None:
            progress(0, len(common), 0, total_bytes)
        futures: list[Future[None]] = []
        for index in range(len(groups)):  # largest first, both sides interleaved
            futures += [pool.submit(one, source, index), pool.submit(one, target, index)]
        _results(futures)
        for index, group in enumerate(groups):
            a, b = results[source.label, index], results[target.label, index]
            for name in group:
                if name not in a or name not in b or len(a[name]) != 3 or len(b[name]) != 3:
                    raise UnexpectedOutput(f"psql returned no checksum row for table {name}")
                (_, rows_a, sum_a), (_, rows_b, sum_b) = a[name], b[name]
                out.rows += int(rows_a)
                if rows_a != rows_b:
                    out.problems.append(
                        f"table {name}: {rows_a} rows on Heroku vs {rows_b} on Convox"
                    )
                elif sum_a != sum_b:
                    out.problems.append(f"table {name}: content differs ({rows_a} rows)")
        out.tables = len(common)

    def _sequences(self, src: Catalog, dst: Catalog, out: Outcome) -> None:
        out.sequences = len(src.sequences)
        for name in sorted(set(src.sequences) | set(dst.sequences)):
            a, b = src.sequences.get(name), dst.sequences.get(name)
            if b is None:
                out.problems.append(f"sequence {name}: missing on Convox")
            elif a is None:
                out.problems.append(f"sequence {name}: only on Convox")
            elif a != b:
                out.problems.append(f"sequence {name}: {a} on Heroku vs {b} on Convox")

    def _large_objects(self, src: Catalog, dst: Catalog, out: Outcome) -> None:
        a, b = src.large_objects, dst.large_objects
        out.large_objects = len(a)
        if len(a) != len(b):
            out.problems.append(f"large objects: {len(a)} on Heroku vs {len(b)} on Convox")
        for oid in sorted(set(a) | set(b), key=int):
            if oid not in b:
                out.problems.append(f"large object {oid}: missing on Convox")
            elif oid not in a:
                out.problems.append(f"large object {oid}: only on Convox")
            elif a[oid] != b[oid]:
                out.problems.append(f"large object {oid}: content differs (md5)")

    def _extensions(self, src: Catalog, dst: Catalog, out: Outcome) -> None:
        out.extensions = len(src.extensions)
        for name in sorted(set(src.extensions) | set(dst.extensions)):
            a, b = src.extensions.get(name), dst.extensions.get(name)
            if a is None:
                out.notes.append(f"extension {name}: only on Convox")
            elif b is None:
                if name in self.skip_extensions:
                    out.notes.append(f"extension {name}: not on Convox (in skip_extensions)")
                else:
                    out.problems.append(f"extension {name}: missing on Convox")
            elif a[0] != b[0]:
                out.problems.append(
                    f"extension {name}: in schema {a[0]} on Heroku vs {b[0]} on Convox"
                )
            elif a[1] != b[1]:
                out.notes.append(f"extension {name}: version {a[1]} on Heroku, {b[1]} on Convox")

    def _settings(self, src: Catalog, dst: Catalog, out: Outcome) -> None:
        for name, value in self.source_settings.items():
            if value is None:
                src.settings.pop(name, None)
            else:
                src.settings[name] = value
        out.settings = len(src.settings)
        for name in sorted(set(src.settings) | set(dst.settings)):
            a, b = src.settings.get(name), dst.settings.get(name)
            if name == pgfreeze.PARAMETER and b is None and pgfreeze.reads_on(a):
                # Not carried by a sync (steps/data.py app_settings): a read-only default that
                # is not this run's freeze (unknown to the state, or the "previous" value it
                # recorded) would make Convox refuse the app's writes.
                out.notes.append(
                    f"setting {name}: {a!r} on Heroku, not carried to Convox (writes allowed)"
                )
                continue
            if a != b:
                out.problems.append(
                    f"setting {name}: {_setting(name, a)} on Heroku vs "
                    f"{_setting(name, b)} on Convox"
                )

    def _database(self, src: Catalog, dst: Catalog, out: Outcome) -> None:
        """The database's encoding (another one changes what text it can hold: a failure) and
        locale (Convox's resource decides it: a note, since the same rows then sort, and
        compare under ``<``, differently in the app's queries)."""
        for name in sorted(set(src.database) & set(dst.database)):
            a, b = src.database[name], dst.database[name]
            if a == b:
                continue
            line = f"database {name}: {a!r} on Heroku vs {b!r} on Convox"
            if name == "encoding":
                out.problems.append(line)
            else:
                out.notes.append(line + " (text sorts and compares differently)")


def _setting(name: str, value: str | None) -> str:
    """A setting's value for a mismatch line (it goes to the output, the state and the audit
    log). Custom settings (a dotted name: ``ALTER DATABASE ... SET "app.jwt_secret" = ...``, a
    common place for an app's secret) show only whether they are set, never their value."""
    if value is None:
        return "(not set)"
    return "(set, value not shown)" if "." in name else repr(value)


def _results(futures: Sequence[Future[T]], *watched: Future[Any]) -> list[T]:
    """The results of ``futures`` in order; the first failure among them and ``watched`` is
    raised as soon as it happens (not once the futures listed before it have finished)."""
    while True:
        for future in (*futures, *watched):
            if future.done() and not future.cancelled() and future.exception() is not None:
                future.result()
        running = [f for f in (*futures, *watched) if not f.done()]
        if all(f.done() for f in futures):
            return [f.result() for f in futures]
        wait(running, return_when=FIRST_COMPLETED)


def _groups(tables: list[str], sizes: dict[str, int], jobs: int) -> list[list[str]]:
    """Tables (largest first) in groups of about total / (4 * jobs) bytes, at most 50 tables
    each: one psql session per group, enough groups to keep ``jobs`` sessions busy, few enough
    that starting psql costs little."""
    target = max(sum(sizes.values()) // (4 * jobs), MB)
    groups: list[list[str]] = []
    current: list[str] = []
    weight = 0
    for table in tables:
        current.append(table)
        weight += sizes[table]
        if weight >= target or len(current) >= 50:
            groups.append(current)
            current, weight = [], 0
    if current:
        groups.append(current)
    return groups
