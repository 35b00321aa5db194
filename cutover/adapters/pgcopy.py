"""The ``direct`` copy: Heroku's database straight into the (staging) Convox database, in parallel,
snapshot-consistent, with no data on this machine's disk.

1. One psql session on the source holds ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
   SELECT pg_export_snapshot();`` open for the whole copy (PostgreSQL docs, "Snapshot
   Synchronization Functions"); every other reader imports that snapshot.
2. ``pg_dump --schema-only -Fc --snapshot=<id>`` to a 0600 file in a 0700 folder (schema only),
   ``pg_restore --list`` filtered (extensions the target may not create are left out), then
   ``pg_restore --section=pre-data --use-list`` into the target: tables without indexes,
   constraints or triggers (pg_dump puts those in post-data).
3. Per table (or page range of a large one), largest first, ``jobs`` at once: ``psql -c 'COPY t
   TO STDOUT'`` in the snapshot, piped by the kernel into ``psql -c 'COPY t FROM STDIN'``
   (Runner.pipe: no Python in the data path), in COPY's binary format when both servers run
   one major version and the table's columns are of built-in types (pgparts.BINARY), else in
   text; tables under 8 MB share at most ``jobs`` pipes (bundles, cutover/adapters/pgparts.py).
   Large objects travel beside them when there are any (``pg_dump -Fc --data-only -b
   --snapshot`` with every table's data excluded, streamed into ``pg_restore --data-only``).
4. As soon as a table's last part is in, its indexes and keys are built beside the other copies
   (cutover/adapters/pgindexes.py); sequences get ``setval`` from pg_sequences read in the
   snapshot.
5. ``pg_restore --section=post-data --jobs N`` for the rest (foreign keys, triggers, ...).
   Index builds run with ``maintenance_work_mem=128MB`` and ``synchronous_commit=off``
   (:data:`POST_DATA_OPTIONS`).

Always ``--no-owner --no-acl`` (a Heroku role's grants mean nothing on Convox).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from cutover.adapters.pgindexes import INDEXES_SQL, IndexBuilds, split_post_data
from cutover.adapters.pgparts import (
    BUNDLE_MAX_BYTES,
    COPY_IN_OPTIONS,
    SOURCE_SETTINGS,
    SPLIT_MIN_BYTES,
    Part,
    consumer,
    plan_parts,
    plan_work,
    producer,
)
from cutover.adapters.pgrestore import (
    extensions_to_skip,
    private_dir,
    private_file,
    restore_argv,
    restore_list,
)
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError, UnexpectedOutput
from cutover.runner import Runner
from cutover.runpipes import Session
from cutover.secrets import SecretMasker

SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")

# The post-data pass (indexes, constraints) builds into the staging database, which is swapped in
# only after success: a larger sort memory per session, and no WAL flush wait per commit. Both
# are user-settable per session (PostgreSQL docs, "Resource Consumption" and "Write Ahead Log":
# context "user"; a managed server such as RDS takes them in PGOPTIONS like any client's), and
# pg_restore runs ``--jobs`` such sessions at once: 128 MB each stays well inside a small
# resource's memory.
POST_DATA_OPTIONS = "-c maintenance_work_mem=128MB -c synchronous_commit=off"

# Built-in types a table's rows never travel in binary (pgparts.BINARY), by their fixed OIDs
# (src/include/catalog/pg_type.dat): the reg* types, whose binary form is the raw OID of the
# object they name (regclasssend is oidsend) where their text names it and is looked up again
# on the target (regproc 24, regprocedure 2202, regoper 2203, regoperator 2204, regclass 2205,
# regtype 2206, regconfig 3734, regdictionary 3769, regnamespace 4089, regrole 4096,
# regcollation 4191); and aclitem (1033), which has no binary form at all. Arrays of them too
# (through pg_type.typelem).
NOT_BINARY = (24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191, 1033)

TABLES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_catalog.pg_relation_size(c.oid)
         + coalesce(pg_catalog.pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0),
       pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::bigint,
       coalesce((SELECT string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated = ''), ''),
       NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                   JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attgenerated = ''
                     AND (a.atttypid >= 10000 OR ty.typtype NOT IN ('b', 'r', 'm')
                          OR ty.typsend = 0 OR ty.typreceive = 0
                          OR ty.oid IN (__NOT_BINARY__) OR ty.typelem IN (__NOT_BINARY__)))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_cutover')  -- (changed-rows' log)
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
ORDER BY 2 DESC, 1;
""".replace("__NOT_BINARY__", ", ".join(str(oid) for oid in NOT_BINARY))  # (pgparts.BINARY)

# One setval per sequence from its own row (last_value, is_called): pg_sequences shows a NULL
# last_value when is_called is false (ALTER SEQUENCE ... RESTART WITH, setval(s, v, false);
# PostgreSQL 15 pg_sequence_last_value), and pg_dump's CREATE SEQUENCE carries only START. psql's
# \gexec runs each generated SELECT (psql docs); sequences the role may not read are left out
# (pg_sequences hides them too). Sequences are not MVCC: each is read as it is now, never behind
# the snapshot's rows.
SEQUENCES_SQL = r"""
SELECT format($q$SELECT format('SELECT pg_catalog.setval(%%L, %%s, %%s);', %L, last_value, is_called::text) FROM %s$q$,
              s.name, s.name)
FROM (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_cutover')
        AND n.nspname NOT LIKE 'pg_temp%'
        AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
        AND pg_catalog.has_table_privilege(c.oid, 'SELECT')  -- (has_sequence_privilege errors on a table row)
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
      ORDER BY 1) s
\gexec"""  # noqa: E501
LARGE_OBJECTS_SQL = "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata;"


@dataclass(frozen=True)
class CopyProgress:
    tables_done: int
    tables_total: int
    bytes_done: int  # on-disk size of the tables copied so far (heap + TOAST, at the snapshot)
    bytes_total: int = 0  # on-disk size of all of them


@dataclass(frozen=True)
class CopyResult:
    tables: int
    bytes: int
    seconds: float
    skipped_extensions: tuple[str, ...] = field(default=())
    binary_tables: int = 0  # tables whose rows went in COPY's binary format (pgparts.BINARY)


# -- the direct copy --------------------------------------------------------------------------

END_MARK = "--cutover-end--"


def ask(holder: Session, sql: str, timeout: float = 300) -> list[list[str]]:
    """Rows of ``sql`` read by the snapshot-holding session itself (so: in the snapshot)."""
    send(holder, sql)
    return answer(holder, timeout)


def send(session: Session, sql: str) -> None:
    """Send ``sql`` to a psql session (``-At -F '\t'``) and the line that ends its answer; the
    rows come with :func:`answer` (the session works meanwhile)."""
    session.write(f"{sql}\n\\echo {END_MARK}\n")


def answer(session: Session, timeout: float = 300) -> list[list[str]]:
    """The rows printed for what :func:`send` sent (tab-separated), up to its end line."""
    rows = []
    while (line := session.readline(timeout)) != END_MARK:
        rows.append(line.split("\t"))
    return rows


# pg_dump's own locks wait at most this long (pg_dump --lock-wait-timeout, milliseconds): the
# same queue behind a DDL that waits for the holder.
LOCK_WAIT = "--lock-wait-timeout=60000"
# LOCK ... NOWAIT refused (lmgr.c: could not obtain lock on relation "t"), or pg_dump's lock wait
# timed out (pg_dump.c: could not obtain lock on relation "t"; canceling ... lock timeout).
_LOCK_REFUSED = re.compile(
    r'could not obtain lock on relation "?([^"\n]*)"?|canceling statement due to lock timeout'
)

_LOCKING = re.compile(r"LOCK TABLE (.+?) IN ACCESS SHARE MODE")


def _ddl_waiting(table: str) -> CutoverError:
    return CutoverError(
        "a schema change on Heroku is waiting for the copy's locks"
        + (f" on {table}" if table else "")
        + "; the copy stopped rather than wait behind it",
        details="The copy holds ACCESS SHARE on every table it copies (as pg_dump does), so an "
        "ALTER, TRUNCATE or DROP waits for it, and the copy cannot go on behind that. The "
        "Convox database is unchanged.",
        resolution="Let the migration (or whatever ran the DDL) finish, or stop it, then run "
        "`cutover run` again.",
    )


def _holder_alive(holder: Session) -> bool:
    """Whether the snapshot holder still answers (psql learns that the server ended its idle
    session only when it next sends a query)."""
    if holder.proc.poll() is not None:
        return False
    try:
        return ask(holder, "SELECT 1;", timeout=30) == [["1"]]
    except CommandError:
        return False


def _holder_ended(holder: Session) -> CutoverError:
    """The error for a copy whose snapshot-holding session ended: every reader that had not yet
    imported the snapshot fails with "invalid snapshot identifier", which says nothing of why."""
    why = [ln.strip() for ln in holder.stderr_tail().splitlines() if ln.strip()][:2]
    return CutoverError(
        "the Heroku session holding the copy's snapshot ended during the copy"
        + (f": {' '.join(why)}" if why else ""),
        details="The copy went into the staging database only; the Convox database is unchanged.",
        resolution="Check Heroku's database (`heroku pg:info`: maintenance, a failover, a "
        "session killed by an admin), then run `cutover run` again.",
    )


def copy_database(
    runner: Runner,
    masker: SecretMasker,
    source: ConnInfo,
    target: ConnInfo,
    *,
    jobs: int,
    skip_extensions: Sequence[str],
    timeout: float,
    progress: Callable[[CopyProgress], None] | None,
    split_min_bytes: int = SPLIT_MIN_BYTES,
    bundle_max_bytes: int = BUNDLE_MAX_BYTES,
) -> CopyResult:
    """Copy ``source`` into the empty database ``target`` (see the module docstring)."""
    started = time.monotonic()
    masker.add(source.password)
    masker.add(target.password)
    pg = PostgresAdapter(runner, masker)
    folder = private_dir("cutover-direct-")
    post_env: dict[str, str | None] = {**target.env(), "PGOPTIONS": POST_DATA_OPTIONS}
    builds: IndexBuilds | None = None
    target_version = _version_beside(pg, target)  # (the binary format) while the snapshot is taken
    try:
        with runner.session(
            ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"], env=source.env()
        ) as holder:
            holder.write(
                "".join(f"{sql};\n" for sql in SOURCE_SETTINGS)
                + "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
            )
            snapshot = ask(holder, "SELECT pg_catalog.pg_export_snapshot();")[0][0]
            if not SNAPSHOT_ID.match(snapshot):
                raise UnexpectedOutput(f"pg_export_snapshot() returned {snapshot[:40]!r}")
            try:
                installed = [
                    r[0] for r in ask(holder, "SELECT extname FROM pg_catalog.pg_extension;")
                ]
                rows = ask(holder, TABLES_SQL)
                tables = {row[0]: int(row[1]) for row in rows if len(row) == 5}
                if tables:
                    # Held until the copy ends, as pg_dump does (pg_dump.c getTables): TRUNCATE is
                    # not MVCC-safe (a table truncated after the snapshot reads as empty in it), and
                    # an ALTER or DROP would change what the schema dump said; they wait instead.
                    ask(holder, f"LOCK TABLE {', '.join(tables)} IN ACCESS SHARE MODE;")
                skipped = extensions_to_skip(pg, source, target, skip_extensions, installed)
                schema, listfile = _schema(
                    runner, source, target, snapshot, skipped, timeout, folder
                )
                binary = _binary_allowed(holder, target_version)
                # Large objects (when there are any) travel beside the tables' copies, not after
                # them: they are read in the same snapshot and touch no table.
                extra: list[Callable[[threading.Event], None]] = []
                if ask(holder, LARGE_OBJECTS_SQL)[0][0] != "0":
                    extra.append(
                        lambda abort: _copy_large_objects(
                            runner, source, target, snapshot, timeout, abort
                        )
                    )
                work = plan_work(
                    plan_parts(rows, max(1, jobs), split_min_bytes, binary=binary),
                    max(1, jobs),
                    bundle_max_bytes,
                )
                builds = IndexBuilds(
                    runner,
                    split_post_data(listfile.read_text(encoding="utf-8"), ask(holder, INDEXES_SQL)),
                    schema,
                    target.dbname,
                    jobs=jobs,
                    env=post_env,
                    timeout=timeout,
                )
                _copy_parts(
                    runner, source, target, snapshot, work, jobs, timeout, progress, extra,
                    builds.tables_done,
                )  # fmt: skip
                setvals = [r[0] for r in ask(holder, SEQUENCES_SQL) if r]
                if setvals:
                    pg.psql(target, "\n".join(setvals), timeout=timeout)
            except CommandError as exc:
                blocked = _LOCK_REFUSED.search(exc.stderr_tail)
                if blocked:
                    table = _LOCKING.search(" ".join(exc.argv_masked))
                    raise _ddl_waiting(
                        blocked.group(1) or (table.group(1) if table else "")
                    ) from exc
                # (After a timeout the holder may still be answering the question before.)
                if exc.timed_out or _holder_alive(holder):
                    raise
                raise _holder_ended(holder) from exc
            holder.close("COMMIT;\n")
        builds.wait()
        rest = private_file(folder / "post.list", builds.post.rest())
        runner.run(
            restore_argv(schema, rest, target.dbname, jobs, "--section=post-data"),
            env=post_env,
            timeout=timeout,
        )
    finally:
        if builds is not None:
            builds.close()
        shutil.rmtree(folder, ignore_errors=True)
    return CopyResult(
        tables=len(tables),
        bytes=sum(tables.values()),
        seconds=time.monotonic() - started,
        skipped_extensions=tuple(skipped),
        binary_tables=len({p.table for parts in work for p in parts if p.binary}),
    )


def _version_beside(pg: PostgresAdapter, conn: ConnInfo) -> Future[str]:
    """``server_version_num`` of ``conn`` ("" when psql printed none), read in a thread."""

    def read() -> str:
        rows = pg.psql(conn, "SHOW server_version_num;")
        return rows[0][0] if rows else ""

    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-version")
    version = reader.submit(read)
    reader.shutdown(wait=False)
    return version


def _binary_allowed(holder: Session, target_version: Future[str]) -> bool:
    """Whether both servers run one major version. The target's version unread (its psql
    failed: the pre-data restore has already reached it, so a lasting fault shows there)
    means text, never a failed copy."""
    try:
        target = target_version.result()
    except CutoverError:
        target = ""
    return same_major(ask(holder, "SHOW server_version_num;")[0][0], target)


def same_major(source: str, target: str) -> bool:
    """Whether two ``server_version_num`` values are of one major version (10 and later: the
    number divided by 10000; before: by 100). Unreadable values: False (text COPY)."""
    if not all(v.isascii() and v.isdigit() for v in (source, target)):
        return False

    def major(num: int) -> int:
        return num // 10000 if num >= 100000 else num // 100

    return major(int(source)) == major(int(target))


def _schema(
    runner: Runner,
    source: ConnInfo,
    target: ConnInfo,
    snapshot: str,
    skipped: Sequence[str],
    timeout: float,
    folder: Path,
) -> tuple[Path, Path]:
    """The schema dump in the snapshot, its filtered list, and its pre-data restored."""
    schema = private_file(folder / "schema.dump")
    runner.run(
        [
            "pg_dump",
            "--schema-only",
            "-Fc",
            f"--snapshot={snapshot}",
            LOCK_WAIT,
            "-f",
            str(schema),
        ],
        env=source.env(),
        timeout=timeout,
    )
    listfile = restore_list(runner, schema, skipped, timeout)
    runner.run(
        restore_argv(schema, listfile, target.dbname, 1, "--section=pre-data"),
        env=target.env(),
        timeout=timeout,
    )
    return schema, listfile


def _copy_parts(
    runner: Runner,
    source: ConnInfo,
    target: ConnInfo,
    snapshot: str,
    work: list[list[Part]],
    jobs: int,
    timeout: float,
    progress: Callable[[CopyProgress], None] | None,
    extra: Sequence[Callable[[threading.Event], None]] = (),
    tables_done: Callable[[list[str]], None] | None = None,
) -> None:
    """Run each pipe of ``work`` (a part, or a bundle of small tables) source -> target, ``jobs``
    at once, largest first, and the ``extra`` tasks beside them (each given the abort event).
    The first failure stops the others (the target is a staging database: it is dropped, never
    used)."""
    abort = threading.Event()
    target_env: dict[str, str | None] = {**target.env(), "PGOPTIONS": COPY_IN_OPTIONS}
    deadline = time.monotonic() + timeout

    def one(parts: list[Part]) -> None:
        runner.pipe(
            producer(snapshot, parts),
            consumer(parts),
            producer_env=dict(source.env()),
            consumer_env=target_env,
            timeout=max(1.0, deadline - time.monotonic()),
            abort=abort,
        )

    left: dict[str, int] = {}
    for p in (p for parts in work for p in parts):
        left[p.table] = left.get(p.table, 0) + 1
    done, bytes_done = 0, 0
    bytes_total = sum(p.size for parts in work for p in parts)
    workers = max(1, jobs) + len(extra)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
        pending: dict[Future[None], list[Part]] = {pool.submit(task, abort): [] for task in extra}
        pending.update({pool.submit(one, parts): parts for parts in work})
        try:
            while pending:
                finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    parts = pending.pop(future)
                    error = future.exception()
                    if error is not None:
                        raise error
                    if not parts:
                        continue
                    finished_tables = []
                    for part in parts:
                        left[part.table] -= 1
                        if not left[part.table]:
                            finished_tables.append(part.table)
                        bytes_done += part.size
                    done += len(finished_tables)
                    if tables_done is not None and finished_tables:
                        tables_done(finished_tables)
                    if progress is not None:
                        progress(CopyProgress(done, len(left), bytes_done, bytes_total))
        except BaseException:
            abort.set()
            for future in pending:
                future.cancel()
            raise


def _copy_large_objects(
    runner: Runner,
    source: ConnInfo,
    target: ConnInfo,
    snapshot: str,
    timeout: float,
    abort: threading.Event | None = None,
) -> None:
    """Large objects (metadata and data) in the snapshot, streamed: pg_dump --data-only dumps
    them (-b is the default without --schema/--table, pg_dump docs) and pg_restore --data-only
    restores "BLOB" entries as data (pg_backup_archiver.c _tocEntryRequired)."""
    runner.pipe(
        [
            "pg_dump",
            "-Fc",
            "--data-only",
            "-b",  # --blobs (spelled --large-objects from PostgreSQL 16)
            "--exclude-table-data=*.*",
            f"--snapshot={snapshot}",
            LOCK_WAIT,
        ],
        [
            "pg_restore",
            "--data-only",
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            "--dbname",
            target.dbname,
        ],
        producer_env=dict(source.env()),
        consumer_env=dict(target.env()),
        timeout=timeout,
        abort=abort,
    )
