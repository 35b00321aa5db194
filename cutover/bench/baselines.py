"""The plain-tool baselines cutover is measured against (issue 10, "Benchmark"): no heroku CLI,
no cutover runner. The harness gives them the two databases the way an operator's own tools reach
them, as cutover's sync does (:meth:`Endpoint.reached`): Heroku's over TLS (Heroku Postgres
requires it; cutover's sync uses sslmode=require) and Convox's through ``convox resources proxy``
(the guide restores "into the Convox resource over a proxy", seed/migrating-from-heroku.txt).
An :class:`Endpoint` left as loaded (loopback, no TLS, no proxy) measures the tools alone: the
harness prints that once as information (``pgcopydb-clone-loopback``).

Each restores into a fresh database on the Convox cluster (:func:`fresh_database`, owned by the
resource's role), never into the resource's own database: cutover's guard (issue 10, decision 2)
refuses a sync into a database that took writes since its last sync, and a baseline restore is
such a write. Making the empty database is not timed; cutover's staging database is created
inside its timed step.

Passwords reach the tools only through their environment: PGPASSWORD for the PostgreSQL tools,
``PGCOPYDB_SOURCE_PGURI`` / ``PGCOPYDB_TARGET_PGURI`` for pgcopydb (read by pgcopydb 0.10 when
``--source`` / ``--target`` are absent: its ``cli_common.c`` reads both variables; the strings
are in /usr/bin/pgcopydb of Debian's pgcopydb 0.10-1).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster

BASELINE_DB = "bench_baseline"
# Flags of the guide's restore (seed/migrating-from-heroku.txt: pg_restore --verbose --clean
# --no-acl --no-owner), with --if-exists so that --clean on a fresh database does not fail.
RESTORE_FLAGS = ("--clean", "--if-exists", "--no-acl", "--no-owner", "--exit-on-error")


class BaselineError(RuntimeError):
    """A baseline tool failed: its name, exit code and the tail of its stderr."""


@dataclass(frozen=True)
class Endpoint:
    """A database on a sandbox cluster and the login role the tools use."""

    cluster: PgCluster
    dbname: str
    user: str
    password: str = field(repr=False)
    sslmode: str = "disable"  # libpq's sslmode
    port: int | None = None  # a local port in front of the cluster (a proxy), else its own

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        libpq = self.cluster.libpq_env(self.dbname, self.user, self.password)
        libpq["PGSSLMODE"] = self.sslmode
        libpq["PGPORT"] = str(self.port or self.cluster.port)
        return pgcluster.client_env({**libpq, **(extra or {})})

    def url(self) -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port or self.cluster.port}/{quote(self.dbname, safe='')}"
            f"?sslmode={self.sslmode}"
        )

    def other(self, dbname: str) -> Endpoint:
        return replace(self, dbname=dbname)

    def reached(self, *, sslmode: str | None = None, port: int | None = None) -> Endpoint:
        """The same database reached over TLS (``sslmode``) or through a proxy (``port``)."""
        return replace(self, sslmode=sslmode or self.sslmode, port=port or self.port)


def _check(name: str, proc: subprocess.CompletedProcess[bytes]) -> None:
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BaselineError(f"{name} exited {proc.returncode}: {' / '.join(tail)}")


def run_sql(
    endpoint: Endpoint, sql: str, *, timeout: float = 3600, pgoptions: str | None = None
) -> str:
    """psql ``-f -`` with ON_ERROR_STOP; returns stdout (unaligned, tuples only)."""
    proc = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-f", "-"],
        input=sql.encode(),
        env=endpoint.env({"PGOPTIONS": pgoptions} if pgoptions else None),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    _check("psql", proc)
    return proc.stdout.decode()


def warm(endpoint: Endpoint, *, tables_sql: str) -> None:
    """Read every row of every table once (``count(*)``; not measured) before (f)'s pair.

    The first read of a row after a restore sets its hint bits (PostgreSQL's
    ``HeapTupleSatisfiesMVCC`` looks the inserting transaction up and marks the tuple, dirtying
    every page), and autovacuum may still be at the freshly restored tables: whichever of
    verify-data and its psql baseline read the restored database first paid that alone. Both
    are measured after this pass, each on the same warm database."""
    tables = run_sql(endpoint, tables_sql).split()
    if tables:
        # Names come from the catalog through quote_ident.
        run_sql(endpoint, "".join(f"SELECT count(*) FROM {t};\n" for t in tables))  # noqa: S608


def fresh_database(admin: Endpoint, dbname: str = BASELINE_DB) -> Endpoint:
    """Drop ``dbname`` (its sessions too) and create it empty, owned by ``admin``'s role."""
    maintenance = admin.other("postgres")
    run_sql(maintenance, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    run_sql(maintenance, f'CREATE DATABASE "{dbname}"')
    return admin.other(dbname)


def guide_path(source: Endpoint, target: Endpoint, work: Path) -> float:
    """(a) ``pg_dump -Fc`` to a file, then ``pg_restore --clean --if-exists --no-acl
    --no-owner`` from it, one after the other (the guide's path without Heroku's capture)."""
    folder = Path(tempfile.mkdtemp(prefix="guide-", dir=work))
    dump = folder / "latest.dump"
    try:
        started = time.perf_counter()
        _check(
            "pg_dump",
            subprocess.run(
                ["pg_dump", "-Fc", "--no-acl", "--no-owner", "-f", str(dump)],
                env=source.env(),
                capture_output=True,
                check=False,
            ),
        )
        _check(
            "pg_restore",
            subprocess.run(
                ["pg_restore", *RESTORE_FLAGS, "--dbname", target.dbname, str(dump)],
                env=target.env(),
                capture_output=True,
                check=False,
            ),
        )
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def streamed(source: Endpoint, target: Endpoint) -> float:
    """(b) ``pg_dump -Fc | pg_restore``: both at once, the dump never on disk (a custom-format
    archive read from a pipe restores serially: pg_restore --jobs needs a seekable file)."""
    started = time.perf_counter()
    dump = subprocess.Popen(
        ["pg_dump", "-Fc", "--no-acl", "--no-owner"],
        env=source.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert dump.stdout is not None
    restore = subprocess.run(
        ["pg_restore", "--no-acl", "--no-owner", "--exit-on-error", "--dbname", target.dbname],
        stdin=dump.stdout,
        env=target.env(),
        capture_output=True,
        check=False,
    )
    dump.stdout.close()
    dump_err = dump.communicate()[1]
    elapsed = time.perf_counter() - started
    dumped = subprocess.CompletedProcess(dump.args, dump.returncode, b"", dump_err)
    if dump.returncode != -signal.SIGPIPE:
        _check("pg_dump", dumped)  # its own failure: the cause of pg_restore's
    # pg_restore next: when it stops first, pg_dump dies of SIGPIPE, which says nothing.
    _check("pg_restore", restore)
    _check("pg_dump", dumped)
    return elapsed


# pgcopydb 0.10 reads each index's definition with pg_get_indexdef() in its source session and
# replays it on the target (its --verbose log: "CREATE INDEX index_products_on_title_trgm ON
# public.products USING gin (title gin_trgm_ops)"). pg_get_indexdef qualifies a name only when
# the session's search_path does not find it: the Heroku-shaped source's role has heroku_ext on
# its search_path (as Heroku tells its users to set it), so the opclass came out bare and the
# target, whose search_path lacks heroku_ext, refused it ('operator class "gin_trgm_ops" does not
# exist for access method "gin"': the index process exits 12, the clone process 6, pgcopydb 12).
# A user runs it the way pg_dump runs itself (pg_dump.c setup_connection: search_path empty):
# with only pg_catalog on the search_path of both sessions, every definition comes out
# schema-qualified (measured: "USING gin (title heroku_ext.gin_trgm_ops)", clone exit 0).
PGCOPYDB_OPTIONS = "-c search_path=pg_catalog"


def pgcopydb_clone(source: Endpoint, target: Endpoint, work: Path, jobs: int) -> float:
    """(c) ``pgcopydb clone --no-owner --no-acl`` with ``jobs`` table and index jobs (the same
    parallelism cutover's restore gets); URIs (with passwords) in the environment only, and
    :data:`PGCOPYDB_OPTIONS` (why: above)."""
    folder = Path(tempfile.mkdtemp(prefix="pgcopydb-", dir=work))
    env = pgcluster.client_env(
        {
            "PGCOPYDB_SOURCE_PGURI": source.url(),
            "PGCOPYDB_TARGET_PGURI": target.url(),
            "PGOPTIONS": PGCOPYDB_OPTIONS,
        }
    )
    try:
        started = time.perf_counter()
        proc = subprocess.run(
            [
                "pgcopydb",
                "clone",
                "--no-owner",
                "--no-acl",
                "--table-jobs",
                str(jobs),
                "--index-jobs",
                str(jobs),
                "--dir",
                str(folder / "work"),
            ],
            env=env,
            capture_output=True,
            check=False,
            # Its own process group: when one of its sub-processes fails, pgcopydb signals its
            # whole group (kill(0, SIGTERM), seen with strace), which took the bench down with
            # it ("round 1 of 3", exit 143) instead of failing this figure.
            start_new_session=True,
        )
        elapsed = time.perf_counter() - started
        _check("pgcopydb clone", proc)
        return elapsed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def psql_verify(
    source: Endpoint,
    target: Endpoint,
    *,
    tables_sql: str,
    fingerprint: Callable[[list[str]], str],
    pgoptions: str,
) -> float:
    """(f) the checksum query verify-data runs (``tables_sql`` lists the tables, ``fingerprint``
    builds the query from them), by psql on both sides at once, with the same session settings
    (``PGOPTIONS``) cutover's psql gets."""
    errors: list[str] = []

    def side(endpoint: Endpoint) -> None:
        try:
            tables = run_sql(endpoint, tables_sql, pgoptions=pgoptions).split()
            run_sql(endpoint, fingerprint(tables), pgoptions=pgoptions)
        except (BaselineError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))

    started = time.perf_counter()
    threads = [threading.Thread(target=side, args=(e,)) for e in (source, target)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise BaselineError(errors[0])
    return elapsed
