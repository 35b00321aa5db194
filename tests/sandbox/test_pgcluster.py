"""Tests for sandbox PostgreSQL clusters, the seed data and table fingerprints."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cutover.sandbox import pgcluster, procs, seed
from cutover.sandbox.pgcluster import PgCluster, PgClusterError

AS_ROOT = os.geteuid() == 0
MakeDatabase = Callable[..., Any]


@contextlib.contextmanager
def _occupied(port: int) -> Iterator[None]:
    """Hold 127.0.0.1:port so that a server cannot bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


# --- no server needed ---------------------------------------------------------------------


def test_url_percent_encodes_every_part() -> None:
    cluster = PgCluster(Path("/nowhere"), 5433, "postgres", "p@ss:w/rd %?#")
    assert (
        cluster.url("app") == "postgresql://postgres:p%40ss%3Aw%2Frd%20%25%3F%23@127.0.0.1:5433/app"
    )
    assert (
        cluster.url("my db", "app user", "é")
        == "postgresql://app%20user:%C3%A9@127.0.0.1:5433/my%20db"
    )


def test_another_user_needs_a_password() -> None:
    cluster = PgCluster(Path("/nowhere"), 5433, "postgres", "pw")
    with pytest.raises(ValueError, match="'app'"):
        cluster.url("db", "app")
    with pytest.raises(ValueError, match="'app'"):
        cluster.libpq_env("db", "app")


def test_libpq_env_and_repr() -> None:
    cluster = PgCluster(Path("/nowhere"), 5433, "postgres", "sekret-pw")
    assert cluster.libpq_env("app") == {
        "PGHOST": "127.0.0.1",
        "PGPORT": "5433",
        "PGUSER": "postgres",
        "PGPASSWORD": "sekret-pw",
        "PGDATABASE": "app",
    }
    assert cluster.libpq_env("app", "owner", "pw2")["PGPASSWORD"] == "pw2"
    assert "sekret-pw" not in repr(cluster)


def test_client_env_drops_inherited_pg_variables() -> None:
    env = pgcluster.client_env({"PGHOST": "127.0.0.1"}, {"PGSSLMODE": "require", "HOME": "/h"})
    assert env == {"PGHOST": "127.0.0.1", "HOME": "/h"}


def test_save_and_load_through_a_private_file(tmp_path: Path) -> None:
    cluster = PgCluster(tmp_path / "data", 5433, "postgres", "pw")
    path = tmp_path / "pg.json"
    pgcluster.save(cluster, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["password"] == "pw"
    assert pgcluster.load(path) == cluster


def test_init_cluster_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(PgClusterError, match="not empty"):
        pgcluster.init_cluster(tmp_path / "data", 5433, password="pw")
    with pytest.raises(ValueError, match="one line"):
        pgcluster.init_cluster(tmp_path / "other", 5433, password="a\nb")


@pytest.mark.skipif(not AS_ROOT, reason="only root must hand the cluster to postgres")
def test_init_cluster_never_widens_folders_above_traverse_root() -> None:
    # Not under tmp_path: pytest's own 0700 base folder would be the one blocking.
    outer = Path(tempfile.mkdtemp(prefix="cutover-acl-test-"))
    request_cleanup = contextlib.ExitStack()
    request_cleanup.callback(shutil.rmtree, outer, True)
    with request_cleanup:
        _check_traverse_root(outer)


def _check_traverse_root(outer: Path) -> None:
    with pytest.raises(PgClusterError, match=rf"{outer} does not let it traverse"):
        pgcluster.init_cluster(
            outer / "sandbox" / "pg" / "x", 5433, password="pw", traverse_root=outer / "sandbox"
        )
    assert stat.S_IMODE(outer.stat().st_mode) == 0o700
    with pytest.raises(OSError):
        os.getxattr(outer, "system.posix_acl_access")
    # Inside traverse_root the folders get one ACL entry; the mode bits others see stay shut.
    cluster = pgcluster.init_cluster(
        outer / "sandbox" / "pg" / "x", 5433, password="pw", traverse_root=outer
    )
    for folder in (outer, outer / "sandbox", outer / "sandbox" / "pg"):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o007 == 0
        assert os.getxattr(folder, "system.posix_acl_access")
    assert not list(cluster.datadir.parent.glob(".*pwfile"))


def test_fingerprint_script_filters_schemas_safely() -> None:
    script = seed.fingerprint_script(["public", "o'hara"])
    assert "n.nspname IN ('public', 'o''hara')" in script
    assert "\\gexec" in script
    assert "REPEATABLE READ READ ONLY" in script


def test_parse_fingerprints() -> None:
    output = (
        '["public", "users", 3, "abc"]\n\n["s", "t\\nx", 0, "d41d8cd98f00b204e9800998ecf8427e"]\n'
    )
    assert seed.parse_fingerprints(output) == {
        "public.users": (3, "abc"),
        "s.t\nx": (0, "d41d8cd98f00b204e9800998ecf8427e"),
    }
    with pytest.raises(seed.SeedError, match="unexpected line"):
        seed.parse_fingerprints("ERROR: nope")


# --- real clusters ------------------------------------------------------------------------


@pytest.mark.slow
def test_cluster_runs_as_postgres_on_loopback_with_scram(pg_source: PgCluster) -> None:
    pid = pgcluster.postmaster_pid(pg_source)
    assert pid is not None
    assert pgcluster.is_running(pg_source)
    if AS_ROOT:
        postgres = pwd.getpwnam("postgres")
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert set(uid_line.split()[1:]) == {str(postgres.pw_uid)}
        assert pg_source.datadir.stat().st_uid == postgres.pw_uid
    assert stat.S_IMODE(pg_source.datadir.stat().st_mode) == 0o700
    assert pgcluster.server_version_num(pg_source) >= 100000
    with pgcluster.connect(pg_source) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'unix_socket_directories', 'password_encryption')"
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "password_encryption": "scram-sha-256",
    }
    hba = (pg_source.datadir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)
    with pytest.raises(PgClusterError, match="password authentication failed"):
        pgcluster.connect(pg_source, password="wrong")


@pytest.mark.slow
def test_create_role_and_db_is_idempotent_and_keeps_the_password_off_the_server(
    pg_source: PgCluster,
) -> None:
    name = f"idem_{secrets.token_hex(4)}"
    pgcluster.create_role_and_db(pg_source, name, name, "first pw")
    pgcluster.create_role_and_db(pg_source, name, name, "second pw")
    with pgcluster.connect(pg_source, name, name, "second pw") as conn:
        row = conn.execute(
            "SELECT current_user, d.datdba::regrole::text FROM pg_database d "
            "WHERE d.datname = current_database()"
        ).fetchone()
    assert row == (name, name)
    with pgcluster.connect(pg_source) as conn:
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)
        ).fetchone()
    assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")


@pytest.mark.slow
def test_seeded_database_survives_dump_and_restore_with_equal_fingerprints(
    pg_source: PgCluster, pg_target: PgCluster, pg_database: MakeDatabase
) -> None:
    source = pg_database(pg_source, "seeded")
    target = pg_database(pg_target, "restored")
    # The plain Rails schema: a restore by a non-superuser cannot create pg_stat_statements.
    seed.seed(
        pg_source,
        source.dbname,
        user=source.owner,
        password=source.password,
        rows=500,
        heroku_shaped=False,
    )

    before = seed.table_fingerprints(
        pg_source, source.dbname, user=source.owner, password=source.password
    )
    assert {name: rows for name, (rows, _) in before.items()} == {
        "public.accounts": 500,
        "public.ar_internal_metadata": 1,
        "public.order_items": 2000,
        "public.orders": 1000,
        "public.products": 50,
        "public.schema_migrations": 4,
        "public.users": 500,
    }

    # Passwords reach pg_dump and pg_restore only through their environment.
    dump = subprocess.Popen(
        ["pg_dump", "--format=custom", "--no-owner", "--no-acl"],
        env=pgcluster.client_env(source.libpq_env()),
        stdout=subprocess.PIPE,
    )
    assert dump.stdout is not None
    try:
        restore = subprocess.run(
            ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--dbname", target.dbname],
            stdin=dump.stdout,
            env=pgcluster.client_env(target.libpq_env()),
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        dump.stdout.close()
        assert dump.wait(60) == 0
    assert restore.returncode == 0, restore.stderr

    # Read from a plain libpq environment, as verify-data will.
    after = seed.table_fingerprints(target.libpq_env())
    assert after == before

    with psycopg.connect(target.url(), autocommit=True) as conn:
        conn.execute("UPDATE users SET name = name || '!' WHERE id = 42")
        view_rows = conn.execute("SELECT count(*) FROM order_totals").fetchone()
        extensions = conn.execute("SELECT extname FROM pg_extension").fetchall()
    assert view_rows == (1000,)
    assert ("citext",) in extensions
    changed = seed.table_fingerprints(target.libpq_env())
    assert changed["public.users"][0] == 500
    assert changed["public.users"][1] != before["public.users"][1]
    assert {k: v for k, v in changed.items() if k != "public.users"} == {
        k: v for k, v in before.items() if k != "public.users"
    }


@pytest.mark.slow
def test_fingerprints_ignore_physical_order_and_skip_extension_tables(
    pg_source: PgCluster, pg_database: MakeDatabase
) -> None:
    first = pg_database(pg_source, "order_a")
    second = pg_database(pg_source, "order_b")
    statements = [
        (first, ["(1, 'ä'), (2, NULL), (3, 'c')", "('b', 'x'), ('a', 'y'), ('B', 'z')"]),
        (second, ["(3, 'c'), (2, NULL), (1, 'ä')", "('B', 'z'), ('a', 'y'), ('b', 'x')"]),
    ]
    for database, (nopk_rows, pk_rows) in statements:
        with psycopg.connect(database.url(), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA other")
            conn.execute("CREATE TABLE nopk (n int, t text)")
            conn.execute("CREATE TABLE pk (code text PRIMARY KEY, v text)")
            conn.execute("CREATE TABLE other.empty (id bigserial PRIMARY KEY)")
            conn.execute(f"INSERT INTO nopk VALUES {nopk_rows}")
            conn.execute(f"INSERT INTO pk VALUES {pk_rows}")
    one = seed.table_fingerprints(first.libpq_env())
    two = seed.table_fingerprints(second.libpq_env())
    assert one == two
    assert set(one) == {"public.nopk", "public.pk", "other.empty"}
    assert one["other.empty"] == (0, "d41d8cd98f00b204e9800998ecf8427e")
    only_other = seed.table_fingerprints(first.libpq_env(), schemas=["other"])
    assert set(only_other) == {"other.empty"}


@pytest.mark.slow
def test_stop_leaves_no_process_and_start_reports_failures(sandbox_base: Path) -> None:
    name = f"stoptest-{secrets.token_hex(3)}"
    cluster = pgcluster.init_cluster(
        sandbox_base / "pg" / name,
        procs.free_port(),
        password=secrets.token_urlsafe(12),
        traverse_root=sandbox_base,
    )
    log = sandbox_base / f"{name}.log"
    try:
        pid = pgcluster.start(cluster, log)
        assert pgcluster.start(cluster, log) == pid  # already running: same postmaster
        backends = _children(pid)
        assert backends, "a running postmaster has auxiliary processes"
        # Stop from the saved description, as `cutover sandbox down` would.
        pgcluster.save(cluster, sandbox_base / f"{name}.json")
        loaded = pgcluster.load(sandbox_base / f"{name}.json")
        pgcluster.stop(loaded)
        assert not procs.pid_alive(pid)
        assert not [child for child in backends if procs.pid_alive(child)]
        assert not pgcluster.is_running(loaded)
        assert not (cluster.datadir / "postmaster.pid").exists()
        pgcluster.stop(loaded)  # stopping a stopped cluster is fine

        # A start that fails says why, with the end of the server log.
        with _occupied(cluster.port), pytest.raises(PgClusterError, match="exited during start"):
            pgcluster.start(cluster, log)
        assert "could not" in log.read_text()
        assert not pgcluster.is_running(cluster)
    finally:
        pgcluster.stop(cluster)
