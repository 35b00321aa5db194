"""Real MariaDB servers on loopback for the sandbox and the tests (issue 14).

Debian's ``mariadb-server`` (10.11) started by hand: ``mariadb-install-db`` into a 0700 data
folder, then ``mariadbd`` on 127.0.0.1 with real users and passwords (never
``--skip-grant-tables``). The users are made by an ``--init-file`` (0600, run by the server at
every start, before it accepts connections): an admin ``root@127.0.0.1`` with a password, then
whatever :func:`create_user_and_db` adds over TCP. Passwords reach the client tools through
``MYSQL_PWD`` in the child's environment only, never argv.

mariadbd refuses to run as root unless told ``--user=root`` (the server's own check,
sql/mysqld.cc "Please consult the Knowledge Base to find out how to run mysqld as root!"); the
sandbox runs as root on CI, so the flag is given when the effective uid is 0.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

from cutover.fsutil import ensure_private_dir
from cutover.sandbox import procs

START_TIMEOUT = 60.0
ADMIN_USER = "root"


class MysqlBoxError(RuntimeError):
    """The server could not be set up or started (the message names what and where)."""


@dataclass
class MysqlBox:
    """One MariaDB server: its folder, port, admin password and pid (when started)."""

    root: Path
    port: int
    admin_password: str = field(repr=False)
    pid: int | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        # A Unix socket path is limited to 107 bytes; deep sandbox folders would exceed it, so
        # the socket (unused by cutover, which connects over TCP) goes to /tmp, named by port.
        return Path("/tmp") / f"cutover-mariadb-{self.port}.sock"  # noqa: S108

    @property
    def tmpdir(self) -> Path:
        # Its own temporary folder (0700): the server's default is /tmp, where two bootstraps at
        # once (parallel tests) were seen to trip over each other's '#sql-temptable-*' files.
        return self.root / "tmp"

    @property
    def log_path(self) -> Path:
        return self.root / "mariadbd.log"

    def client_env(self, password: str | None = None) -> dict[str, str]:
        """The environment a client tool needs for the admin (or ``password``'s user)."""
        return {"MYSQL_PWD": self.admin_password if password is None else password}

    def url(self, user: str, password: str, database: str) -> str:
        return (
            f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/"
            f"{database}"
        )


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _init_sql(box: MysqlBox) -> str:
    pw = _sql_string(box.admin_password)
    return (
        f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY {pw};\n"
        f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY {pw};\n"
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
    )


def init_box(root: Path, port: int | None = None) -> MysqlBox:
    """A new data folder under ``root`` (0700) initialised by mariadb-install-db."""
    tool = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if tool is None:
        raise MysqlBoxError(
            "mariadb-install-db is not installed (Debian: apt-get install mariadb-server)"
        )
    ensure_private_dir(root)
    box = MysqlBox(root, port or procs.free_port(), "adm:" + secrets.token_urlsafe(12))
    ensure_private_dir(box.datadir)
    ensure_private_dir(box.tmpdir)
    argv = [
        tool,
        "--no-defaults",
        f"--datadir={box.datadir}",
        f"--tmpdir={box.tmpdir}",  # passed on to the bootstrapping server
        "--auth-root-authentication-method=socket",
        "--skip-test-db",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MysqlBoxError(
            f"mariadb-install-db failed in {box.datadir}: {done.stderr.strip()[-800:]}"
        )
    procs.write_private(root / "init.sql", _init_sql(box))
    save(box)
    return box


def save(box: MysqlBox) -> None:
    data = asdict(box)
    data["root"] = str(box.root)
    procs.write_private(box.root / "box.json", json.dumps(data))


def load(root: Path) -> MysqlBox:
    data = json.loads((root / "box.json").read_text())
    data["root"] = Path(data["root"])
    return MysqlBox(**data)


def server_argv(box: MysqlBox, extra: Sequence[str] = ()) -> list[str]:
    """mariadbd's argv; ``extra`` options come last, so they win over the defaults (the tests
    start one as RDS runs it: --log-bin --log-bin-trust-function-creators=0)."""
    daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    argv = [
        daemon,
        "--no-defaults",
        f"--datadir={box.datadir}",
        f"--socket={box.socket}",
        f"--tmpdir={box.tmpdir}",
        f"--pid-file={box.root / 'mariadbd.pid'}",
        "--bind-address=127.0.0.1",
        f"--port={box.port}",
        "--skip-name-resolve",
        f"--init-file={box.root / 'init.sql'}",
        # Throwaway servers: durability off, small buffers (two or three run on a 2-core CI box).
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=32M",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        "--log-bin-trust-function-creators=1",
        "--event-scheduler=OFF",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")
    return [*argv, *extra]


def admin(box: MysqlBox, sql: str, database: str | None = None, timeout: float = 60) -> str:
    """Run ``sql`` as the admin over TCP with the mariadb client; its tab-separated output."""
    argv = ["mariadb", "--no-defaults", "--default-character-set=utf8mb4", "-h", "127.0.0.1"]
    argv += ["-P", str(box.port), "-u", ADMIN_USER]
    argv += ["--batch", "--skip-column-names"]
    if database:
        argv += ["-D", database]
    env = {**os.environ, **box.client_env()}
    done = subprocess.run(
        argv, input=sql, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise MysqlBoxError(f"mariadb on 127.0.0.1:{box.port}: {done.stderr.strip()[-800:]}")
    return done.stdout


def is_running(box: MysqlBox) -> bool:
    return box.pid is not None and procs.pid_alive(box.pid)


def start(box: MysqlBox, timeout: float = START_TIMEOUT, extra: Sequence[str] = ()) -> int:
    """Start the server (no-op when it runs); wait until the admin can log in. ``extra``:
    :func:`server_argv`."""
    if is_running(box):
        assert box.pid is not None
        return box.pid
    pid = procs.spawn_daemon(server_argv(box, extra), log_path=box.log_path)
    box.pid = pid
    save(box)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        if not procs.pid_alive(pid):
            raise MysqlBoxError(
                f"mariadbd exited while starting (log {box.log_path}):\n"
                + procs.log_tail(box.log_path)
            )
        try:
            admin(box, "SELECT 1", timeout=10)
            return pid
        except (MysqlBoxError, subprocess.TimeoutExpired) as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            procs.stop_pid(pid)
            raise MysqlBoxError(f"mariadbd on port {box.port} did not accept logins: {last}")
        time.sleep(0.2)


def stop(box: MysqlBox, timeout: float = 30.0) -> None:
    if box.pid is not None:
        procs.stop_pid(box.pid, timeout)
        box.pid = None
        save(box)


def create_user_and_db(box: MysqlBox, user: str, password: str, database: str) -> None:
    """A database and a user with every privilege on it only (not SUPER, not on others): what a
    hosted MySQL add-on such as ClearDB gives an app."""
    pw = _sql_string(password)
    admin(
        box,
        f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4;\n"
        f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY {pw};\n"
        f"ALTER USER '{user}'@'%' IDENTIFIED BY {pw};\n"
        f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%';\n",
    )


def server_version(box: MysqlBox) -> str:
    return admin(box, "SELECT VERSION()").strip()


# -- the sandbox (cutover sandbox up): a "Heroku ClearDB" server and the Convox mysql backend --
SANDBOX_DIR = "mysql"
CLEARDB_FILE = "cleardb.json"


def sandbox_start(folder: Path, data: dict[str, object], say: object, rows: int = 20_000) -> None:
    """Start the sandbox's two MariaDB servers (pids and ports into ``data``, so ``sandbox
    down`` and ``status`` see them), and the ClearDB-like database, seeded
    (cutover/sandbox/mysqlseed.py). Its facts go to ``<folder>/mysql/cleardb.json`` (0600) for
    the Heroku emulator's second app (heroku_api/seed_mysql.py)."""
    root = ensure_private_dir(folder / SANDBOX_DIR)
    pids = data["pids"]
    ports = data["ports"]
    assert isinstance(pids, dict) and isinstance(ports, dict)
    boxes = {}
    for side in ("heroku", "convox"):
        box = init_box(root / side)
        if callable(say):
            say(f"MariaDB for the {side.capitalize()} MySQL side on 127.0.0.1:{box.port}")
        pids[f"mysql_{side}"] = start(box)
        ports[f"mysql_{side}"] = box.port
        boxes[side] = box
    heroku = boxes["heroku"]
    # ClearDB names: user b<14 hex>, database heroku_<16 hex> (Heroku Dev Center, "ClearDB MySQL")
    user, database = f"b{secrets.token_hex(7)}", f"heroku_{secrets.token_hex(8)}"
    password = secrets.token_hex(12)
    create_user_and_db(heroku, user, password, database)
    seed_as(heroku, user, password, database, rows)
    procs.write_private(
        root / CLEARDB_FILE,
        json.dumps({"url": heroku.url(user, password, database) + "?reconnect=true"}),
    )


def seed_as(box: MysqlBox, user: str, password: str, database: str, rows: int) -> None:
    from cutover.sandbox.mysqlseed import seed_sql  # noqa: PLC0415

    argv = ["mariadb", "--no-defaults", "--default-character-set=utf8mb4", "-h", "127.0.0.1"]
    argv += ["-P", str(box.port), "-u", user, "-D", database]
    done = subprocess.run(
        argv,
        input=seed_sql(rows),
        capture_output=True,
        text=True,
        env={**os.environ, "MYSQL_PWD": password},
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise MysqlBoxError(f"seeding {database}: {done.stderr.strip()[-800:]}")


def cleardb_url(folder: Path) -> str | None:
    """The sandbox ClearDB database's URL, when ``sandbox up`` made one."""
    path = folder / SANDBOX_DIR / CLEARDB_FILE
    if not path.exists():
        return None
    return str(json.loads(path.read_text())["url"])


def convox_backend(folder: Path) -> MysqlBox | None:
    path = folder / SANDBOX_DIR / "convox"
    return load(path) if (path / "box.json").exists() else None
