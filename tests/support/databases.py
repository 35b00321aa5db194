"""Databases on the test PostgreSQL clusters (tests/conftest.py starts the clusters)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster

# The table the Heroku app's database holds in the emulator tests (adapters and sandbox).
WIDGETS_SQL = (
    "CREATE TABLE widgets (id int PRIMARY KEY, label text)",
    "INSERT INTO widgets VALUES (1, 'one'), (2, 'two')",
)


@dataclass(frozen=True)
class AppDatabase:
    """A database on a test cluster and the login role owning it."""

    cluster: PgCluster
    dbname: str
    owner: str
    password: str = field(repr=False)

    def url(self) -> str:
        """postgresql:// URL for the owner."""
        return self.cluster.url(self.dbname, self.owner, self.password)

    def libpq_env(self) -> dict[str, str]:
        """PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE for the owner."""
        return self.cluster.libpq_env(self.dbname, self.owner, self.password)

    def execute(self, *statements: str) -> None:
        """Run ``statements`` as the owner, in one transaction."""
        with pgcluster.connect(self.cluster, self.dbname, self.owner, self.password) as conn:
            for statement in statements:
                conn.execute(statement)


def make_database(
    cluster: PgCluster, prefix: str = "app", *, password: str | None = None
) -> AppDatabase:
    """A new login role and a database it owns, both uniquely named after ``prefix``.

    Without ``password`` the role's password needs URL quoting on purpose."""
    suffix = secrets.token_hex(4)
    database = AppDatabase(
        cluster,
        f"{prefix}_{suffix}",
        f"{prefix}_owner_{suffix}",
        password if password is not None else "pw:" + secrets.token_urlsafe(12) + "@/",
    )
    pgcluster.create_role_and_db(cluster, database.dbname, database.owner, database.password)
    return database


def backing_database(
    cluster: PgCluster, prefix: str, user_prefix: str, *statements: str
) -> dict[str, str | int]:
    """A new database ``<prefix>_<hex>`` owned by ``<user_prefix>_<hex>`` holding what
    ``statements`` make, as the emulator's state describes a backing database."""
    suffix = secrets.token_hex(4)
    database = AppDatabase(
        cluster, f"{prefix}_{suffix}", f"{user_prefix}_{suffix}", "pw:" + secrets.token_urlsafe(12)
    )
    pgcluster.create_role_and_db(cluster, database.dbname, database.owner, database.password)
    database.execute(*statements)
    return {
        "host": "127.0.0.1",
        "port": cluster.port,
        "dbname": database.dbname,
        "user": database.owner,
        "password": database.password,
    }
