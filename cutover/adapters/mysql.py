"""MySQL / MariaDB through their client tools (issue 14): ClearDB, JawsDB -> Convox mysql.

Every command line is built here once, for ``cutover plan`` and for the run. Passwords reach the
children only through ``MYSQL_PWD`` in their environment (honoured by the mysql and mariadb
clients, "Environment Variables", MariaDB KB mariadb-command-line-client / MySQL 8.0 manual
4.9): never argv. Each URL and password is registered with the masker.

The copy (cutover/adapters/mysqlstaging.py puts it in a staging database and swaps it in):

* ``mariadb-dump`` (or ``mysqldump``) ``--single-transaction`` (one consistent InnoDB snapshot,
  no table locks), ``--quick`` (row by row), ``--hex-blob`` (binary columns as hex literals, so
  no byte depends on the client's character set), ``--no-tablespaces`` (MySQL 8.0.21+'s
  mysqldump needs the PROCESS privilege for tablespace information, which ClearDB's and JawsDB's
  users lack), ``--skip-triggers`` for the base tables (a table with a trigger cannot be renamed
  into another database: "Trigger in wrong schema", error 1435, measured on MariaDB 10.11);
  ``--set-gtid-purged=OFF`` only when the tool has it (MySQL's mysqldump; MariaDB's has no such
  option: ``mariadb-dump --help``), so a GTID source never writes ``SET @@GLOBAL.GTID_PURGED``;
* the objects (triggers, views, routines, events) in a second dump (``--no-data
  --no-create-info --triggers --routines --events``, and the views by name), loaded after the
  swap, their ``DEFINER=`user`@`host``` clauses rewritten to ``DEFINER=CURRENT_USER``: Heroku's
  add-on user does not exist on Convox (a trigger whose definer is missing fails every write:
  "The user specified as a definer does not exist"), and a user without SUPER / SET USER may not
  name another definer at all (error 1227);
* the dump goes to a 0600 file in the run's 0700 folder, is rewritten line by line and loaded
  with the client's ``source`` command, then removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote, urlsplit

from cutover.errors import CutoverError, UnexpectedOutput
from cutover.runner import Runner
from cutover.secrets import SecretMasker

DEFAULT_PORT = 3306
# mysql2:// is what Rails apps are told to use with ClearDB; JawsDB writes mysql://.
SCHEMES = ("mysql", "mysql2", "mariadb")
DEFINER = re.compile(r"DEFINER=`(?:[^`]|``)*`@`(?:[^`]|``)*`")
# Schemas of the server itself: never copied, never compared.
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


@dataclass(frozen=True)
class MyConn:
    host: str
    port: int
    user: str
    database: str
    password: str = field(repr=False)

    @classmethod
    def from_url(cls, url: str, what: str = "the MySQL URL") -> MyConn:
        """ClearDB: ``mysql://<user>:<password>@<host>/heroku_<hex>?reconnect=true`` (Heroku Dev
        Center, "ClearDB MySQL"); JawsDB: ``mysql://<user>:<password>@<host>:3306/<db>``;
        Convox's mysql resource: ``mysql://root:<password>@<host>:3306/app``
        (provider/k8s/template/resource/mysql.yml.tmpl). The query string is ignored."""
        try:
            parts = urlsplit(url)
        except ValueError:  # urllib.parse: "Invalid IPv6 URL" (the URL is not shown: a secret)
            raise CutoverError(f"{what} is not a MySQL URL: its host is not valid") from None
        if parts.scheme not in SCHEMES or not parts.hostname or not parts.path.strip("/"):
            raise CutoverError(
                f"{what} is not a MySQL URL (mysql://user:password@host:port/database)"
            )
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise CutoverError(f"{what} has an invalid port") from None
        return cls(
            parts.hostname,
            port,
            unquote(parts.username or ""),
            unquote(parts.path.strip("/")),
            unquote(parts.password or ""),
        )

    def via(self, host: str, port: int) -> MyConn:
        return MyConn(host, port, self.user, self.database, self.password)

    def on(self, database: str) -> MyConn:
        return MyConn(self.host, self.port, self.user, database, self.password)

    def env(self) -> dict[str, str | None]:
        return {"MYSQL_PWD": self.password}

    def login(self) -> list[str]:
        """Connection options (no password): TCP, host, port, user."""
        return ["--protocol=tcp", "-h", self.host, "-P", str(self.port), "-u", self.user]

    def client_login(self) -> list[str]:
        return ["--default-character-set=utf8mb4", *self.login()]


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def strip_definers(line: str) -> tuple[str, int]:
    """``DEFINER=`u`@`h``` -> ``DEFINER=CURRENT_USER`` on a DDL line of a dump (an INSERT line is
    data and is left as it is); the line and how many were rewritten."""
    if line.startswith("INSERT INTO"):
        return line, 0
    return DEFINER.subn("DEFINER=CURRENT_USER", line)


class MysqlAdapter:
    """The mysql client tools, run through the one runner."""

    def __init__(self, runner: Runner, masker: SecretMasker) -> None:
        self.runner = runner
        self.masker = masker
        self._help: dict[str, str] = {}

    # -- tools -------------------------------------------------------------------------------
    def client(self) -> str:
        return "mariadb" if self.runner.which("mariadb") else "mysql"

    def dumper(self) -> str:
        return "mariadb-dump" if self.runner.which("mariadb-dump") else "mysqldump"

    def _supports(self, tool: str, option: str) -> bool:
        if tool not in self._help:
            if self.runner.which(tool) is None:
                return False
            self._help[tool] = self.runner.run([tool, "--help"], check=False, timeout=30).stdout
        return option in self._help[tool]

    def register(self, conn: MyConn) -> None:
        self.masker.add(conn.password)

    # -- queries -----------------------------------------------------------------------------
    def query_argv(self, conn: MyConn) -> list[str]:
        argv = [self.client(), *conn.client_login(), "--batch", "--skip-column-names"]
        return [*argv, "-D", conn.database]

    def query(self, conn: MyConn, sql: str, timeout: float = 300) -> list[list[str]]:
        """Rows of ``sql``'s last result, tab-separated fields (the client's batch escaping:
        \\t, \\n and \\\\ inside values; NULL as the word NULL)."""
        self.register(conn)
        done = self.runner.run(self.query_argv(conn), env=conn.env(), input=sql, timeout=timeout)
        return [line.split("\t") for line in done.stdout.splitlines()]

    def rows(
        self, conn: MyConn, sql: str, width: int, what: str, timeout: float = 300
    ) -> list[list[str]]:
        """The rows of ``sql``, each of ``width`` fields; UnexpectedOutput naming ``what`` if
        the client printed anything else (a warning line, a wrapper's text)."""
        rows = self.query(conn, sql, timeout=timeout)
        for found in rows:
            if len(found) != width:
                raise UnexpectedOutput(
                    f"the mysql client returned no {what} (expected {width} fields, got "
                    f"{repr(found)[:200]})"
                )
        return rows

    def row(self, conn: MyConn, sql: str, width: int, what: str, timeout: float = 300) -> list[str]:
        """The first row of :meth:`rows`; UnexpectedOutput for an empty result."""
        rows = self.rows(conn, sql, width, what, timeout)
        if not rows:
            raise UnexpectedOutput(
                f"the mysql client returned no {what} (expected {width} fields, got nothing)"
            )
        return rows[0]

    def execute(self, conn: MyConn, sql: str, timeout: float = 300) -> None:
        self.register(conn)
        self.runner.run(self.query_argv(conn), env=conn.env(), input=sql, timeout=timeout)

    def wait_accepting(
        self, conn: MyConn, timeout: float, what: str, sleep: Callable[[float], None] = time.sleep
    ) -> str:
        """The server's version once it accepts a login (a new resource's pod may be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.query(conn, "SELECT VERSION()", timeout=30)[0][0]
            except CutoverError as exc:
                if time.monotonic() > deadline:
                    raise CutoverError(
                        f"{what} did not accept connections within {timeout:g}s",
                        details=self.masker.mask(str(exc)),
                    ) from None
            sleep(1.0)

    # -- dumps -------------------------------------------------------------------------------
    def _dump_common(self, conn: MyConn) -> list[str]:
        tool = self.dumper()
        argv = [tool, *conn.login(), "--single-transaction", "--quick", "--hex-blob"]
        argv += ["--no-tablespaces", "--default-character-set=utf8mb4"]
        if self._supports(tool, "--set-gtid-purged"):
            argv.append("--set-gtid-purged=OFF")
        return argv

    def data_dump_argv(self, conn: MyConn, tables: list[str], out: Path | str) -> list[str]:
        """The base tables and their rows (no triggers: see the module docstring)."""
        return [
            *self._dump_common(conn),
            "--skip-triggers",
            "--no-create-db",
            f"--result-file={out}",
            conn.database,
            *tables,
        ]

    def objects_dump_argv(self, conn: MyConn, out: Path | str) -> list[str]:
        """Triggers, routines and events (no table, no row)."""
        return [
            *self._dump_common(conn),
            "--no-data",
            "--no-create-info",
            "--no-create-db",
            "--triggers",
            "--routines",
            "--events",
            f"--result-file={out}",
            conn.database,
        ]

    def views_dump_argv(self, conn: MyConn, views: list[str], out: Path | str) -> list[str]:
        return [
            *self._dump_common(conn),
            "--no-data",
            "--skip-triggers",
            "--no-create-db",
            f"--result-file={out}",
            conn.database,
            *views,
        ]

    def load_argv(self, conn: MyConn, path: Path | str) -> list[str]:
        """``source`` of a dump. Without ``--abort-source-on-error`` (``mariadb --help``) the
        client goes on past a failing statement and exits 0 (measured on MariaDB 10.11): a
        rejected INSERT would be rows lost, a rejected CREATE TRIGGER a missing trigger, with the
        step done. Oracle's ``mysql`` lacks the option: cutover uses ``mariadb`` when installed."""
        client = self.client()
        abort = (
            ["--abort-source-on-error"] if self._supports(client, "--abort-source-on-error") else []
        )
        return [
            client,
            *conn.client_login(),
            "--batch",
            *abort,
            "-D",
            conn.database,
            "-e",
            f"source {path}",
        ]

    def dump(self, argv: list[str], conn: MyConn, out: Path, timeout: float) -> int:
        """Run a dump into ``out`` (0600); rewrite its definers in place; the count rewritten.
        A routine whose collation differs from its database's default is wrapped in ``ALTER
        DATABASE `<db>` CHARACTER SET ...`` lines (mariadb-dump, measured on 10.11) naming
        Heroku's database: the name is dropped, so they apply to the load's default database
        ("ALTER DATABASE": "If the database name is omitted, the statement applies to the
        default database", MySQL 8.0 manual 15.1.2)."""
        self.register(conn)
        out.touch(mode=0o600)
        out.chmod(0o600)
        self.runner.run(argv, env=conn.env(), timeout=timeout)
        return _rewrite_definers(out, f"ALTER DATABASE {ident(conn.database)} ")

    def load(self, conn: MyConn, path: Path, timeout: float) -> None:
        self.register(conn)
        self.runner.run(self.load_argv(conn, path), env=conn.env(), timeout=timeout)


def _rewrite_definers(path: Path, alter_database: str) -> int:
    rewritten = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with (
        path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as src,
        _private(tmp) as dst,
    ):
        for line in src:
            if line.startswith(alter_database):
                line = "ALTER DATABASE " + line.removeprefix(alter_database)  # noqa: PLW2901
            new, n = strip_definers(line)
            rewritten += n
            dst.write(new)
    tmp.replace(path)
    return rewritten


@contextlib.contextmanager
def _private(path: Path) -> Iterator[TextIO]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        yield f


def number(value: str, what: str) -> int:
    """A count the mysql client printed: ASCII digits only (int() would take a sign, spaces,
    underscores and other scripts' digits)."""
    if not (value.isascii() and value.isdigit()):
        raise UnexpectedOutput(f"the mysql client returned {value[:40]!r} for {what}, not a count")
    return int(value)
