"""Contract tests of cutover.adapters.postgres.PostgresAdapter through the real Runner.

The version checks are fast; everything that talks to a server uses the real session clusters
(``pg_source``/``pg_target`` from conftest.py) and is ``slow``. Passwords must reach psql,
pg_dump and pg_restore through PGPASSWORD only: every test checks the runner's argv log.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from adapter_support import (
    ARGV_LOG_ENV,
    ListAudit,
    assert_argv_clean,
    read_argv_log,
)
from support.databases import AppDatabase, make_database

from cutover.adapters import postgres as postgres_mod
from cutover.adapters.postgres import ConnInfo, PostgresAdapter, fingerprint_sql
from cutover.errors import CommandError, CutoverError, ToolMissing, UnexpectedOutput
from cutover.runner import Runner
from cutover.sandbox import pgcluster, seed
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import MASK, SecretMasker

SEED_ROWS = 200


@dataclass
class Pg:
    runner: Runner
    masker: SecretMasker
    audit: ListAudit
    adapter: PostgresAdapter
    argv_log: Path
    passwords: list[str]

    def conn(self, db: AppDatabase) -> ConnInfo:
        self.passwords.append(db.password)
        return ConnInfo.from_url(db.url())


@pytest.fixture
def pg(audit: ListAudit, argv_log: Path) -> Iterator[Pg]:
    masker = SecretMasker()
    runner = Runner(masker, audit=audit, base_env={ARGV_LOG_ENV: str(argv_log)})
    harness = Pg(runner, masker, audit, PostgresAdapter(runner, masker), argv_log, [])
    yield harness
    assert_argv_clean(argv_log, harness.passwords)
    text = audit.text()
    assert not [p for p in harness.passwords if p in text], "a password reached the audit log"


# --------------------------------------------------------------------------------------------
# Fast


def test_client_major(pg: Pg) -> None:
    out = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=True)
    expected = int(out.stdout.split("(PostgreSQL)")[1].split()[0].split(".")[0])
    assert pg.adapter.client_major() == expected
    assert pg.adapter.client_major("pg_restore") == expected
    assert pg.adapter.client_major("psql") == expected
    assert read_argv_log(pg.argv_log) == [
        ["pg_dump", "--version"],
        ["pg_restore", "--version"],
        ["psql", "--version"],
    ]


def test_client_major_missing_tool(audit: ListAudit) -> None:
    masker = SecretMasker()
    adapter = PostgresAdapter(Runner(masker, audit=audit, base_env={"PATH": ""}), masker)
    with pytest.raises(ToolMissing) as caught:
        adapter.client_major()
    assert caught.value.resolution == postgres_mod.INSTALL_HINT
    assert "pg_dump is not installed" in caught.value.brief


def test_client_major_unreadable_version(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (EnterpriseDB) fifteen'\n")
    fake.chmod(0o755)
    masker = SecretMasker()
    adapter = PostgresAdapter(Runner(masker, path_prefix=[str(bin_dir)]), masker)
    with pytest.raises(UnexpectedOutput, match="cannot read the version of pg_dump"):
        adapter.client_major()


def test_conninfo_from_url_and_env() -> None:
    conn = ConnInfo.from_url(
        "postgres://u%40x:p%40ss%20w%27rd@db.example:6543/name?sslmode=require"
    )
    assert (conn.host, conn.port, conn.user, conn.dbname) == ("db.example", 6543, "u@x", "name")
    assert conn.password == "p@ss w'rd" and conn.sslmode == "require"
    assert "p@ss" not in repr(conn)
    env = conn.env()
    assert env["PGPASSWORD"] == "p@ss w'rd" and env["PGSSLMODE"] == "require"
    proxied = conn.via("127.0.0.1", 15432)
    assert (proxied.host, proxied.port, proxied.password) == ("127.0.0.1", 15432, conn.password)
    with pytest.raises(CutoverError, match="not a PostgreSQL URL"):
        ConnInfo.from_url("mysql://u:p@h/db")


def test_restore_argv_carries_no_password(tmp_path: Path) -> None:
    masker = SecretMasker()
    conn = ConnInfo("127.0.0.1", 5432, "owner", "app", password="hunter2-secret")
    argv = PostgresAdapter(Runner(masker), masker).restore_argv(tmp_path / "x.dump", conn, 4)
    assert "hunter2-secret" not in " ".join(argv)
    assert argv[:5] == ["pg_restore", "--clean", "--if-exists", "--no-acl", "--no-owner"]
    assert "--exit-on-error" in argv and argv[argv.index("--jobs") + 1] == "4"


def test_fingerprint_sql_quotes_table_names() -> None:
    sql = fingerprint_sql(['public."it\'s"'], checksums=True)
    assert "SELECT 'public.\"it''s\"', count(*)" in sql
    assert 'FROM public."it\'s" t' in sql


# --------------------------------------------------------------------------------------------
# Real clusters (slow)


def pg_dump_file(db: AppDatabase, dest: Path) -> Path:
    """``pg_dump -Fc`` of ``db`` (password through PGPASSWORD), like Heroku's backups."""
    with dest.open("wb") as out:
        subprocess.run(
            ["pg_dump", "-Fc", "--no-owner", "--no-acl"],
            env=pgcluster.client_env(db.libpq_env()),
            stdout=out,
            stderr=subprocess.PIPE,
            check=True,
            timeout=120,
        )
    return dest


@pytest.fixture
def seeded(pg_source: PgCluster) -> AppDatabase:
    db = make_database(pg_source, "src")
    # The plain Rails schema: a restore by a non-superuser cannot create pg_stat_statements.
    seed.seed(
        pg_source,
        db.dbname,
        user=db.owner,
        password=db.password,
        rows=SEED_ROWS,
        heroku_shaped=False,
    )
    return db


@pytest.mark.slow
def test_server_major(pg: Pg, pg_source: PgCluster) -> None:
    db = make_database(pg_source)
    assert pg.adapter.server_major(pg.conn(db)) == pgcluster.server_version_num(pg_source) // 10000
    assert db.password in pg.masker  # psql registers the password it is given
    argv = read_argv_log(pg.argv_log)[-1]
    assert argv[0] == "psql" and "-f" in argv and db.dbname not in argv


@pytest.mark.slow
def test_psql_error_is_command_error_with_masked_details(pg: Pg, pg_source: PgCluster) -> None:
    db = make_database(pg_source)
    conn = pg.conn(db)
    with pytest.raises(CommandError) as caught:
        pg.adapter.psql(conn, f"SELECT '{db.password}'::int;")
    exc = caught.value
    assert exc.returncode != 0 and "invalid input syntax" in exc.stderr_tail
    assert db.password not in str(exc) and MASK in exc.stderr_tail


@pytest.mark.slow
def test_list_dump(pg: Pg, seeded: AppDatabase, tmp_path: Path) -> None:
    dump = pg_dump_file(seeded, tmp_path / "src.dump")
    entries = pg.adapter.list_dump(dump)
    listing = subprocess.run(
        ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    assert "TABLE DATA public users" in listing
    assert entries == len([ln for ln in listing.splitlines() if ln and not ln.startswith(";")])
    assert entries > 20

    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"<html><body>AccessDenied</body></html>\n")
    with pytest.raises(CommandError) as caught:
        pg.adapter.list_dump(garbage)
    assert caught.value.returncode != 0
    assert "does not appear to be a valid archive" in caught.value.stderr_tail


@pytest.mark.slow
def test_restore_fingerprints_and_rerun(
    pg: Pg, seeded: AppDatabase, pg_target: PgCluster, tmp_path: Path
) -> None:
    dump = pg_dump_file(seeded, tmp_path / "src.dump")
    target_db = make_database(pg_target, "dst")
    source, target = pg.conn(seeded), pg.conn(target_db)

    pg.adapter.restore(dump, target, jobs=2, timeout=300)
    before = pg.adapter.fingerprints(source)
    after = pg.adapter.fingerprints(target)
    assert after == before
    assert before["public.users"][0] == SEED_ROWS
    assert before["public.order_items"][0] == 4 * SEED_ROWS
    assert "sequence:public.users_id_seq" in before
    # The adapter's fingerprints agree with the sandbox's own per-table fingerprints on counts.
    sandbox = seed.table_fingerprints(seeded.libpq_env())
    assert {k: v[0] for k, v in sandbox.items()} == {
        k: v[0] for k, v in before.items() if not k.startswith("sequence:")
    }

    # One changed row in the target: exactly that table differs.
    target_db.execute("UPDATE users SET name = name || ' (changed)' WHERE id = 7")
    changed = pg.adapter.fingerprints(target)
    assert {k for k in before if changed.get(k) != before[k]} == {"public.users"}
    assert changed["public.users"][0] == before["public.users"][0]  # same count, other content

    # A second restore over the existing copy (--clean --if-exists) works and repairs it.
    pg.adapter.restore(dump, target, jobs=2, timeout=300)
    assert pg.adapter.fingerprints(target) == before

    restores = [a for a in read_argv_log(pg.argv_log) if a[0] == "pg_restore"]
    assert len(restores) == 2
    assert all(target_db.password not in shlex.join(a) for a in restores)


@pytest.mark.slow
def test_fingerprints_of_an_empty_database(pg: Pg, pg_target: PgCluster) -> None:
    """A fresh target (before a restore) has no tables and no sequences: nothing to compare,
    not a psql syntax error."""
    empty = make_database(pg_target, "empty")
    assert pg.adapter.fingerprints(pg.conn(empty)) == {}


@pytest.mark.slow
def test_fingerprints_without_checksums_count_rows_only(pg: Pg, seeded: AppDatabase) -> None:
    fast = pg.adapter.fingerprints(pg.conn(seeded), checksums=False)
    assert fast["public.users"] == (SEED_ROWS, "")
    assert all(digest == "" for key, (_, digest) in fast.items() if not key.startswith("sequence:"))


@pytest.mark.slow
def test_restore_failure_is_command_error(pg: Pg, pg_target: PgCluster, tmp_path: Path) -> None:
    target_db = make_database(pg_target, "dst")
    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"PGDMP but not really")
    with pytest.raises(CommandError) as caught:
        pg.adapter.restore(garbage, pg.conn(target_db), jobs=1, timeout=60)
    assert caught.value.returncode != 0
    assert target_db.password not in str(caught.value)
