"""The convox stand-in's resources: created empty at the first promote, slow to accept
connections, with the role the resource type gives (real PostgreSQL cluster, so ``slow``).

Facts: provider/k8s/release.go (resources are applied by ReleasePromote; resourceDefaultImages:
postgres 10.5), provider/k8s/template/resource/postgres.yml.tmpl (official image,
POSTGRES_USER: a superuser), rds-postgres.yml.tmpl (RDS master user: rds_superuser, not a
superuser), provider/k8s/resource.go (ResourceGet needs the resource-<name> config map).
"""

from __future__ import annotations

import secrets
import socket

import psycopg
import pytest
from convox_support import Sandbox
from support.waiting import wait_for

from cutover.sandbox import convox_fake as fake
from cutover.sandbox import procs
from cutover.sandbox.pgcluster import PgCluster

pytestmark = pytest.mark.slow

MANIFEST = """\
resources:
  database:
    type: {type}
    options:
      version: "{version}"
services:
  web:
    build: .
    port: 3000
    resources:
      - database
"""


def admin_rack(app: Sandbox, cluster: PgCluster, start: float = 3.0) -> str:
    """Point the rack at ``cluster`` with admin access; return the role/database name."""
    name = f"res_{secrets.token_hex(4)}"
    fake.configure_rack(
        app.config,
        name="sandbox",
        postgres=fake.PostgresBackend(
            "127.0.0.1",
            cluster.port,
            name,
            "unused",
            name,
            admin_user=cluster.superuser,
            admin_password=cluster.password,
        ),
        timings={"resource_start": start},
    )
    return name


def can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def record(app: Sandbox) -> dict[str, object]:
    resources = app.app()["resources"]
    assert isinstance(resources, dict)
    return dict(resources["database"])


def test_postgres_resource_is_created_empty_at_the_first_promote_and_starts_late(
    app: Sandbox, pg_target: PgCluster
) -> None:
    name = admin_rack(app, pg_target)
    app.write_manifest(MANIFEST.format(type="postgres", version="15"))
    app.ok("build", "-a", "demo")
    # Built, not promoted: the rack has created nothing.
    assert "resources" not in app.app() or not app.app()["resources"]
    with psycopg.connect(pg_target.url("postgres")) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        assert found.fetchone() is None
    app.ok("releases", "promote", "-a", "demo")
    url = app.ok("resources", "url", "database", "-a", "demo").strip()
    assert f"/{name}?sslmode=disable" in url
    # The deploy returned; the resource does not accept connections yet.
    assert record(app)["status"] == "pending"
    assert not can_connect(url)
    assert app.ok("resources", "-a", "demo").splitlines()[1].startswith("database  postgres  ")
    # pkg/cli/resources.go ResourcesInfo: Name, Type, URL; neither command shows the version.
    info = app.ok("resources", "info", "database", "-a", "demo")
    assert [line.split()[0] for line in info.splitlines()] == ["Name", "Type", "URL"]
    assert app.app()["resources"]["database"]["version"] == "15"  # type: ignore[index]
    wait_for(lambda: record(app)["status"] == "running")
    with psycopg.connect(url) as conn:
        user_tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert conn.execute(user_tables).fetchone() == (0,)
        superuser = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        assert conn.execute(superuser).fetchone() == (True,)
        conn.execute("CREATE EXTENSION pg_trgm")
        conn.execute("CREATE EXTENSION pg_stat_statements")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("CREATE EXTENSION postgis")  # the official image has no PostGIS


def test_resources_proxy_refuses_connections_until_the_resource_is_up(
    app: Sandbox, pg_target: PgCluster
) -> None:
    admin_rack(app, pg_target, start=4.0)
    app.write_manifest(MANIFEST.format(type="postgres", version="15"))
    app.ok("deploy", "-a", "demo")
    port = procs.free_port()
    proxy = app.start("resources", "proxy", "database", "-p", str(port), "-a", "demo")
    wait_for(lambda: _listening(port))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed at once: nothing behind the resource yet
    wait_for(lambda: record(app)["status"] == "running")
    url = app.ok("resources", "url", "database", "-a", "demo").strip()
    local = url.replace(f":{pg_target.port}/", f":{port}/")
    with psycopg.connect(local, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    proxy.kill()
    _, err = proxy.communicate(timeout=10)
    assert f"ERROR: dial tcp 127.0.0.1:{pg_target.port}: connect: connection refused" in err


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_rds_postgres_role_is_not_a_superuser_and_has_only_trusted_extensions(
    app: Sandbox, pg_target: PgCluster
) -> None:
    admin_rack(app, pg_target, start=0.5)
    app.write_manifest(MANIFEST.format(type="rds-postgres", version="15.4"))
    app.ok("deploy", "-a", "demo")
    wait_for(lambda: record(app)["status"] == "running")
    url = app.ok("resources", "url", "database", "-a", "demo").strip()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, True, True)
        conn.execute("CREATE EXTENSION pg_trgm")  # trusted: the database owner may
        conn.execute("CREATE EXTENSION citext")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE EXTENSION pg_stat_statements")


def test_a_version_the_sandbox_cannot_run_is_refused_at_the_promote(
    app: Sandbox, pg_target: PgCluster
) -> None:
    admin_rack(app, pg_target)
    app.write_manifest(
        MANIFEST.replace('    options:\n      version: "{version}"\n', "").format(type="postgres")
    )
    app.ok("build", "-a", "demo")
    result = app.run("releases", "promote", "-a", "demo")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "ERROR: sandbox limit (not a Convox one): resource database declares PostgreSQL "
        "version 10.5 (the default, no options.version), and the sandbox runs only PostgreSQL "
    )
    assert app.app()["release"] == ""
    assert not app.app().get("resources")
    info = app.run("resources", "info", "database", "-a", "demo")
    assert (info.returncode, info.stderr) == (1, "ERROR: no release for app: demo\n")


WORKER_MANIFEST = """\
resources:
  database:
    type: postgres
    options:
      version: "15"
services:
  web:
    build: .
    port: 3000
    resources:
      - database
  worker:
    build: .
    command: bundle exec sidekiq
    resources:
      - database
"""
QUEUE = "CREATE TABLE sandbox_jobs (id serial PRIMARY KEY, done_at timestamptz, done_by text)"


def test_a_promoted_worker_really_runs_and_scale_zero_stops_it(
    app: Sandbox, pg_target: PgCluster
) -> None:
    admin_rack(app, pg_target, start=0.5)
    fake.configure_rack(app.config, name="sandbox", timings={"rollout": 0.2})
    app.write_manifest(WORKER_MANIFEST)
    app.ok("deploy", "-a", "demo")
    release = str(app.app()["release"])
    wait_for(lambda: record(app)["status"] == "running")
    url = app.ok("resources", "url", "database", "-a", "demo").strip()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(QUEUE)
        conn.execute("INSERT INTO sandbox_jobs DEFAULT VALUES")

        def done() -> bool:
            row = conn.execute("SELECT done_by FROM sandbox_jobs WHERE id = 1").fetchone()
            return row is not None and row[0] == release

        wait_for(done)  # the worker consumed the job: it really runs, with the release's env
        workers = [p for p in app.app()["processes"] if p["service"] == "worker"]  # type: ignore[attr-defined]
        assert len(workers) == 1 and procs.pid_alive(int(workers[0]["pid"]))
        app.ok("scale", "worker", "--count", "0", "-a", "demo")
        assert not procs.pid_alive(int(workers[0]["pid"]))
        assert " worker " not in app.ok("ps", "-a", "demo")
        conn.execute("INSERT INTO sandbox_jobs DEFAULT VALUES")
        app.ok("scale", "worker", "--count", "1", "-a", "demo")

        def second_done() -> bool:
            row = conn.execute("SELECT done_at FROM sandbox_jobs WHERE id = 2").fetchone()
            return row is not None and row[0] is not None

        wait_for(second_done)
