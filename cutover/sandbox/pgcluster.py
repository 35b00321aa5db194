"""Real PostgreSQL clusters on loopback for the sandbox and the tests.

A cluster listens on 127.0.0.1 only, with scram-sha-256 password authentication and no Unix
socket at all (``unix_socket_directories = ''``): every client connects over TCP with a password,
and deep sandbox paths cannot hit the 107-byte socket path limit. Durability is off (``fsync``,
``synchronous_commit``, ``full_page_writes``) because these clusters are throwaway.

PostgreSQL refuses to run as root. When the effective uid is 0, initdb and the server run as the
``postgres`` system user, the data directory is owned by that user, and every folder above it
must let that user traverse. Folders at or below ``traverse_root`` (by default the data
directory's parent) that do not are given one POSIX ACL entry, ``user:postgres:--x``: search
only, for that user only, with no change to the mode bits the owner and group see. Folders above
``traverse_root`` are never changed; if one blocks the way, :func:`init_cluster` says which.
Passwords reach clients only through the environment (``PGPASSWORD``) or in-process
connection parameters, never through argv.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from cutover.sandbox import procs
from cutover.sandbox.pgaccess import SERVER_USER, PgClusterError, ensure_reachable, run_as
from cutover.sandbox.pgaccess import server_account as _server_account
from cutover.sandbox.pgaccess import server_env as _server_env

__all__ = [
    "SERVER_USER",
    "PgCluster",
    "PgClusterError",
    "client_env",
    "connect",
    "create_role_and_db",
    "enable_ssl",
    "init_cluster",
    "is_running",
    "load",
    "pg_bindir",
    "postmaster_pid",
    "save",
    "server_version_num",
    "start",
    "stop",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 60.0

_SETTINGS = """
# --- cutover sandbox (appended by cutover.sandbox.pgcluster) ---
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 40
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
"""


@dataclass
class PgCluster:
    """A PostgreSQL cluster in ``datadir`` serving 127.0.0.1:``port``."""

    datadir: Path
    port: int
    superuser: str
    password: str = field(repr=False)

    def _credentials(self, user: str | None, password: str | None) -> tuple[str, str]:
        if user is None or user == self.superuser:
            return self.superuser, self.password if password is None else password
        if password is None:
            raise ValueError(f"a password is needed to connect as {user!r}")
        return user, password

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        """``postgresql://user:password@127.0.0.1:port/dbname``, parts percent-encoded."""
        login, secret = self._credentials(user, password)
        return (
            f"postgresql://{quote(login, safe='')}:{quote(secret, safe='')}"
            f"@{HOST}:{self.port}/{quote(dbname, safe='')}"
        )

    def libpq_env(
        self, dbname: str, user: str | None = None, password: str | None = None
    ) -> dict[str, str]:
        """The PG* variables a libpq client (psql, pg_dump, ...) needs to connect."""
        login, secret = self._credentials(user, password)
        return {
            "PGHOST": HOST,
            "PGPORT": str(self.port),
            "PGUSER": login,
            "PGPASSWORD": secret,
            "PGDATABASE": dbname,
        }


def client_env(libpq: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default os.environ) without any inherited PG* variable, plus ``libpq``."""
    source = os.environ if base is None else base
    env = {key: value for key, value in source.items() if not key.startswith("PG")}
    env.update(libpq)
    return env


def pg_bindir() -> Path:
    """The folder holding initdb and postgres.

    ``CUTOVER_PG_BINDIR`` if set, else the newest ``/usr/lib/postgresql/*/bin`` (Debian), else
    the folder of ``postgres`` on PATH.
    """
    configured = os.environ.get("CUTOVER_PG_BINDIR")
    if configured:
        return Path(configured)
    candidates = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        if (folder / "postgres").exists() and folder.parent.name.isdigit():
            candidates.append((int(folder.parent.name), folder))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    raise PgClusterError(
        "PostgreSQL server binaries not found: install postgresql or set CUTOVER_PG_BINDIR"
    )


# --- lifecycle -----------------------------------------------------------------------------


def init_cluster(
    datadir: Path,
    port: int,
    *,
    superuser: str = "postgres",
    password: str,
    traverse_root: Path | None = None,
) -> PgCluster:
    """Create a new cluster in ``datadir`` (which must not exist or be empty).

    The superuser password goes to initdb through a 0600 --pwfile beside the data directory,
    deleted afterwards. See the module docstring for what happens when running as root.
    """
    if not password or "\n" in password or "\r" in password:
        raise ValueError("the superuser password must be non-empty and on one line")
    datadir = datadir.absolute()
    if datadir.exists() and any(datadir.iterdir()):
        raise PgClusterError(f"{datadir} is not empty: refusing to initialise a cluster there")
    account = _server_account()
    parent = datadir.parent
    for folder in [*reversed(parent.parents), parent]:
        if not folder.exists():
            folder.mkdir(mode=0o700)  # missing folders start private, whatever the umask
            folder.chmod(0o700)
    if account is not None:
        root = (traverse_root or parent).absolute()
        if not parent.is_relative_to(root):
            raise PgClusterError(f"traverse_root {root} is not above {datadir}")
        ensure_reachable(parent, account, root)
    datadir.mkdir(mode=0o700, exist_ok=True)
    datadir.chmod(0o700)
    if account is not None:
        os.chown(datadir, account.pw_uid, account.pw_gid)

    pwfile = parent / f".{datadir.name}.pwfile"
    with contextlib.suppress(FileNotFoundError):
        pwfile.unlink()
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if account is not None:
                os.fchown(handle.fileno(), account.pw_uid, account.pw_gid)
            handle.write(password + "\n")
        argv = [
            str(pg_bindir() / "initdb"),
            f"--pgdata={datadir}",
            f"--username={superuser}",
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]
        result = run_as(argv, account, cwd=datadir, timeout=120)
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise PgClusterError(
            f"initdb failed for {datadir} (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}".rstrip()
        )
    with (datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(_SETTINGS.format(port=int(port)))
    return PgCluster(datadir=datadir, port=port, superuser=superuser, password=password)


def enable_ssl(
    cluster: PgCluster, cert_file: Path, key_file: Path, *, require: bool = False
) -> None:
    """Serve TLS with ``cert_file``/``key_file`` (copied into the data directory, the key 0600
    and owned by the server's account, as postgres insists: be-secure-openssl.c). ``require``
    rejects every connection without TLS but the superuser's (pg_hba.conf is read top-down: a
    ``hostnossl`` line for the superuser, then ``hostnossl all all all reject``). Takes effect at
    the next start."""
    account = _server_account()
    for source, name, mode in ((cert_file, "server.crt", 0o644), (key_file, "server.key", 0o600)):
        target = cluster.datadir / name
        target.write_bytes(Path(source).read_bytes())
        target.chmod(mode)
        if account is not None:
            os.chown(target, account.pw_uid, account.pw_gid)
    with (cluster.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    if require:
        hba = cluster.datadir / "pg_hba.conf"
        first = (
            f"hostnossl all {cluster.superuser} 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all all reject\n"
        )
        hba.write_text(first + hba.read_text(encoding="utf-8"))


def _read_postmaster_pid(cluster: PgCluster) -> list[str]:
    try:
        return (cluster.datadir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _is_postmaster_of(cluster: PgCluster, pid: int) -> bool:
    """True if ``pid`` is a postmaster started on this data directory (not a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return procs.pid_alive(pid)  # no /proc: trust postmaster.pid
    return (
        bool(argv)
        and Path(os.fsdecode(argv[0])).name in ("postgres", "postmaster")
        and (os.fsencode(cluster.datadir) in argv)
    )


def postmaster_pid(cluster: PgCluster) -> int | None:
    """The pid of the cluster's running postmaster (from postmaster.pid), else None."""
    lines = _read_postmaster_pid(cluster)
    if not lines or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    if procs.pid_alive(pid) and _is_postmaster_of(cluster, pid):
        return pid
    return None


def is_running(cluster: PgCluster) -> bool:
    """Return True if the cluster's postmaster is running."""
    return postmaster_pid(cluster) is not None


def start(cluster: PgCluster, log_path: Path, timeout: float = START_TIMEOUT) -> int:
    """Start the server (as postgres when root), wait until it accepts connections, return pid.

    The postmaster is a child of this process (not daemonised by pg_ctl), so :func:`stop` can
    reap it. Already running: its pid is returned and ``log_path`` is not used.
    """
    running = postmaster_pid(cluster)
    if running is not None:
        return running
    account = _server_account()
    pid = procs.spawn_daemon(
        [str(pg_bindir() / "postgres"), "-D", str(cluster.datadir)],
        log_path=log_path,
        env=_server_env(account),
        cwd=cluster.datadir,
        user=account.pw_name if account else None,
    )
    deadline = time.monotonic() + timeout
    while True:
        lines = _read_postmaster_pid(cluster)
        # Line 8 of postmaster.pid is the status: "starting", "ready" or "stopping".
        if len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready":
            return pid
        if not procs.pid_alive(pid):
            raise PgClusterError(
                f"PostgreSQL in {cluster.datadir} exited during start; end of {log_path}:\n"
                f"{procs.log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            procs.stop_pid(pid)
            raise PgClusterError(
                f"PostgreSQL in {cluster.datadir} was not ready within {timeout:.0f}s; "
                f"end of {log_path}:\n{procs.log_tail(log_path)}"
            )
        time.sleep(0.05)


def stop(cluster: PgCluster, timeout: float = 30.0) -> None:
    """Fast shutdown (SIGINT to the postmaster), then SIGTERM/SIGKILL to its group if needed."""
    pid = postmaster_pid(cluster)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    if not procs.wait_for_exit(pid, timeout):
        log.warning("PostgreSQL %s ignored fast shutdown for %.0fs; killing it", pid, timeout)
    # Also reaps the postmaster and waits for any process left in its group.
    procs.stop_pid(pid, timeout=5.0)


def save(cluster: PgCluster, path: Path) -> None:
    """Write the cluster's description (password included) to a 0600 JSON file."""
    data = {
        "datadir": str(cluster.datadir),
        "port": cluster.port,
        "superuser": cluster.superuser,
        "password": cluster.password,
    }
    procs.write_private(path, json.dumps(data, indent=2) + "\n")


def load(path: Path) -> PgCluster:
    """Read a cluster written by :func:`save`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return PgCluster(
        datadir=Path(data["datadir"]),
        port=int(data["port"]),
        superuser=str(data["superuser"]),
        password=str(data["password"]),
    )


# --- SQL -----------------------------------------------------------------------------------


def connect(
    cluster: PgCluster,
    dbname: str = "postgres",
    user: str | None = None,
    password: str | None = None,
    *,
    autocommit: bool = True,
) -> psycopg.Connection[TupleRow]:
    """Open a psycopg connection over TCP (password passed in-process, never in argv)."""
    login, secret = cluster._credentials(user, password)
    try:
        return psycopg.connect(
            host=HOST,
            port=cluster.port,
            user=login,
            password=secret,
            dbname=dbname,
            sslmode="disable",
            connect_timeout=10,
            autocommit=autocommit,
        )
    except psycopg.OperationalError as exc:
        raise PgClusterError(
            f"cannot connect to {dbname} on {HOST}:{cluster.port} as {login}: {exc}"
        ) from None


def create_role_and_db(cluster: PgCluster, dbname: str, owner: str, owner_password: str) -> None:
    """Create (or update the password of) login role ``owner`` and database ``dbname`` it owns.

    The password is turned into a SCRAM verifier on the client (libpq's PQencryptPasswordConn),
    so the plain text never reaches the server or its log.
    """
    with connect(cluster) as conn:
        verifier = conn.pgconn.encrypt_password(
            owner_password.encode(), owner.encode(), b"scram-sha-256"
        ).decode("ascii")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
        verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
        conn.execute(
            sql.SQL("{} {} LOGIN PASSWORD {}").format(
                verb, sql.Identifier(owner), sql.Literal(verifier)
            )
        )
        has_db = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not has_db:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                    sql.Identifier(dbname), sql.Identifier(owner)
                )
            )


def server_version_num(cluster: PgCluster) -> int:
    """The server's ``server_version_num`` (e.g. 150008)."""
    with connect(cluster) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    if row is None or not isinstance(row[0], int):
        raise PgClusterError("server_version_num returned nothing")
    return row[0]
