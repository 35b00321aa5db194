"""Adapter for pg_dump, pg_restore and psql.

Passwords reach them only through the child's environment (PGPASSWORD); argv carries host, port,
user and database name at most. Data files are created 0600 in the private work folder.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cutover.errors import CommandError, CutoverError, ToolMissing, UnexpectedOutput
from cutover.runner import Runner
from cutover.secrets import SecretMasker

INSTALL_HINT = "Install the PostgreSQL client tools, e.g. `apt-get install postgresql-client`."
_MAJOR = re.compile(r"\(PostgreSQL\)\s+(\d+)")


@dataclass(frozen=True)
class ConnInfo:
    host: str
    port: int
    user: str
    dbname: str
    password: str = field(default="", repr=False)
    sslmode: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ConnInfo:
        # The URL is never shown in these errors: it holds the password.
        try:
            parts = urlsplit(url)
        except ValueError:  # urllib.parse: "Invalid IPv6 URL", a bracketed host not an address
            raise CutoverError("not a PostgreSQL URL: its host is not valid") from None
        if parts.scheme not in ("postgres", "postgresql"):
            raise CutoverError(f"not a PostgreSQL URL (scheme {parts.scheme[:20]!r})")
        try:
            port = parts.port  # ValueError: not a number, or out of 0-65535 (urllib.parse)
        except ValueError:
            raise CutoverError(
                "not a PostgreSQL URL: its port is not a number in 0-65535"
            ) from None
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname or "localhost",
            port=port or 5432,
            user=unquote(parts.username or ""),
            dbname=unquote(parts.path.lstrip("/")) or unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            sslmode=next(iter(query.get("sslmode", [])), None),
        )

    def via(self, host: str, port: int) -> ConnInfo:
        """The same credentials through a local proxy."""
        return ConnInfo(host, port, self.user, self.dbname, self.password, self.sslmode)

    def env(self) -> dict[str, str]:
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGPASSWORD": self.password,
            "PGCONNECT_TIMEOUT": "15",
            "PGAPPNAME": "cutover",
        }
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


# Row count and an order-independent content checksum of every user table, plus every
# sequence's position. One query, so source and target are read the same way.
TABLES_SQL = """
SELECT quote_ident(schemaname) || '.' || quote_ident(tablename)
FROM pg_catalog.pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
  AND schemaname NOT LIKE 'pg_toast%'
ORDER BY 1
"""
_SEQUENCES_SQL = """
SELECT 'sequence:' || quote_ident(schemaname) || '.' || quote_ident(sequencename),
       0, coalesce(last_value::text, 'unset')
FROM pg_catalog.pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
"""


# Session settings that make row text identical on both servers whatever their defaults, so
# checksums compare data, not configuration.
STABLE_TEXT = (
    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres "
    "-c extra_float_digits=3 -c bytea_output=hex"
)


def fingerprint_sql(tables: list[str], checksums: bool) -> str:
    parts = []
    for table in tables:
        digest = (
            "coalesce(md5(string_agg(md5((t.*)::text), '' ORDER BY md5((t.*)::text))), '')"
            if checksums
            else "''"
        )
        literal = table.replace("'", "''")
        # Table names come from pg_tables through quote_ident: no user input reaches the SQL.
        parts.append(f"SELECT '{literal}', count(*), {digest} FROM {table} t")  # noqa: S608
    parts.append(_SEQUENCES_SQL.strip())
    return "\nUNION ALL\n".join(f"({p})" for p in parts) + "\nORDER BY 1"


class PostgresAdapter:
    def __init__(self, runner: Runner, masker: SecretMasker) -> None:
        self.runner = runner
        self.masker = masker

    def client_major(self, tool: str = "pg_dump") -> int:
        try:
            out = self.runner.run([tool, "--version"], timeout=30).stdout
        except ToolMissing:
            raise ToolMissing(f"{tool} is not installed", resolution=INSTALL_HINT) from None
        match = _MAJOR.search(out)
        if not match:
            raise UnexpectedOutput(f"cannot read the version of {tool}: {out.strip()[:80]!r}")
        return int(match.group(1))

    def psql(self, conn: ConnInfo, sql: str, timeout: float = 120) -> list[list[str]]:
        self.masker.add(conn.password)
        result = self.runner.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-f", "-"],
            env={**conn.env(), "PGOPTIONS": STABLE_TEXT},
            input=sql,
            timeout=timeout,
        )
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def wait_accepting(
        self, conn: ConnInfo, timeout: float, what: str, sleep: Callable[[float], None] = time.sleep
    ) -> int:
        """Poll ``SHOW server_version_num`` until the server answers; return its major.

        A Convox postgres resource is created empty at the app's first promote and its pod takes
        a while to start (provider/k8s/template/resource/postgres.yml.tmpl): until then the
        proxy accepts and the server side closes the connection. Bounded by ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.server_major(conn, timeout=30)
            except CommandError as exc:
                last = exc.stderr_tail.strip().splitlines()[:1]
            if time.monotonic() > deadline:
                raise self.not_accepting(what, timeout, last)
            sleep(2.0)

    def not_accepting(self, what: str, timeout: float, last: list[str]) -> CutoverError:
        """The error of a wait for a server that never answered (``last``: its last error's
        first line, masked here)."""
        return CutoverError(
            f"{what} did not accept a connection within {timeout:g}s",
            details="last error: " + self.masker.mask(last[0] if last else "(none)"),
            resolution="Check the resource with `convox resources` and "
            "`convox ps` (its pod may still be starting), then run `cutover run` again.",
        )

    def extensions(self, conn: ConnInfo) -> list[str]:
        """The extensions installed in the database (``pg_extension``)."""
        rows = self.psql(conn, "SELECT extname FROM pg_catalog.pg_extension ORDER BY 1;")
        return [row[0] for row in rows if row]

    def server_major(self, conn: ConnInfo, timeout: float = 120) -> int:
        rows = self.psql(conn, "SHOW server_version_num;", timeout=timeout)
        value = rows[0][0].strip() if rows and rows[0] else ""
        # server_version_num is an integer like 160004 (ASCII digits only: int() would also take
        # other scripts' digits, a sign or underscores).
        if not (value.isascii() and value.isdigit() and len(value) <= 9):
            raise UnexpectedOutput(
                f"psql returned no server_version_num (got {value[:40]!r})"
                if value
                else "psql returned no server_version_num"
            )
        return int(value) // 10000

    def list_dump(self, dump: Path) -> int:
        """Validate a custom-format dump with ``pg_restore --list``; return its entry count."""
        out = self.runner.run(["pg_restore", "--list", str(dump)], timeout=300).stdout
        entries = [ln for ln in out.splitlines() if ln and not ln.startswith(";")]
        if not entries:
            raise CutoverError(f"the dump {dump.name} holds no objects")
        return len(entries)

    def restore_argv(self, dump: Path, conn: ConnInfo, jobs: int) -> list[str]:
        return [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-acl",
            "--no-owner",
            "--exit-on-error",
            "--jobs",
            str(jobs),
            "--dbname",
            conn.dbname,
            str(dump),
        ]

    def restore(self, dump: Path, conn: ConnInfo, jobs: int, timeout: float) -> None:
        self.masker.add(conn.password)
        self.runner.run(self.restore_argv(dump, conn, jobs), env=conn.env(), timeout=timeout)

    def fingerprints(
        self, conn: ConnInfo, checksums: bool = True, timeout: float = 1800
    ) -> dict[str, tuple[int, str]]:
        tables = [row[0] for row in self.psql(conn, TABLES_SQL)]
        rows = self.psql(conn, fingerprint_sql(tables, checksums), timeout=timeout)
        out: dict[str, tuple[int, str]] = {}
        for row in rows:
            if len(row) != 3 or not (row[1].isascii() and row[1].isdigit()):
                raise UnexpectedOutput(f"unexpected fingerprint row from psql: {row!r:.200}")
            out[row[0]] = (int(row[1]), row[2])
        return out
