"""The sample web app, started as a real process serving HTTPS with a trustme certificate.

The ``slow`` tests use a real PostgreSQL database (the shared cluster of tests/sandbox/conftest.py):
the app's own database checks, and the app deployed through the convox stand-in with a postgres
resource (served over HTTPS, reached by ``convox run`` and through ``convox resources proxy``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
from support.convox_rack import convox_rack
from support.tls import peer_dns_names, write_tls_files

from cutover.sandbox import convox_fake as fake
from cutover.sandbox import procs
from cutover.sandbox.pgcluster import PgCluster

SECRET = "pw-t0p-s3cret"


@dataclass
class Tls:
    cert: Path
    key: Path
    context: ssl.SSLContext


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    files = write_tls_files(tmp_path)
    context = ssl.create_default_context()
    files.ca.configure_trust(context)
    return Tls(files.cert_file, files.key_file, context)


@dataclass
class App:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    context: ssl.SSLContext | None

    def get(self, path: str) -> tuple[int, str, bytes]:
        scheme = "https" if self.context else "http"
        url = f"{scheme}://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, context=self.context, timeout=15) as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    def json(self, path: str) -> tuple[int, dict[str, object]]:
        status, content_type, body = self.get(path)
        assert content_type == "application/json"
        return status, json.loads(body)


StartApp = Callable[..., App]


@pytest.fixture
def start_app(tmp_path: Path, tls: Tls) -> Iterator[StartApp]:
    started: list[App] = []

    def start(use_tls: bool = True, **env: str) -> App:
        port_text = env.pop("PORT", "")
        port = int(port_text) if port_text.isdigit() else procs.free_port()
        log = tmp_path / f"app-{len(started)}.log"
        child_env = {
            "PATH": os.environ["PATH"],
            "PORT": port_text or str(port),
            "PLATFORM": "convox",
            "APP": "demo",
            "RELEASE": "RABCDEFGHIJ",
        }
        if use_tls:
            child_env.update(TLS_CERT=str(tls.cert), TLS_KEY=str(tls.key))
        child_env.update(env)
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cutover.sandbox.sampleapp"],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        app = App(proc, port, log, tls.context if use_tls else None)
        started.append(app)
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                return app
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return app
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

    yield start
    for app in started:
        if app.proc.poll() is None:
            app.proc.kill()
        app.proc.wait(timeout=10)


def dead_database_url() -> str:
    return f"postgresql://app:{SECRET}@127.0.0.1:{procs.free_port()}/appdb"


def test_healthz_reports_503_without_leaking_the_password(start_app: StartApp) -> None:
    app = start_app(DATABASE_URL=dead_database_url())
    status, body = app.json("/healthz")
    assert status == 503
    assert body == {
        "status": "error",
        "database": "error",
        "error": "OperationalError",
        "platform": "convox",
        "app": "demo",
        "release": "RABCDEFGHIJ",
    }
    status, body = app.json("/api/orders/count")
    assert (status, body["database"]) == (503, "error")
    log = app.log.read_text()
    assert "GET /healthz" in log
    assert SECRET not in log
    assert "postgresql://" not in log


def test_healthz_without_database_url(start_app: StartApp) -> None:
    app = start_app(PLATFORM="heroku", RELEASE="", HEROKU_RELEASE_VERSION="v42")
    status, body = app.json("/healthz")
    assert status == 503
    assert (body["error"], body["platform"], body["release"]) == (
        "DATABASE_URL is not set",
        "heroku",
        "v42",
    )


def test_index_and_unknown_paths(start_app: StartApp) -> None:
    app = start_app(DATABASE_URL=dead_database_url(), APP="shop <b>")
    status, content_type, body = app.get("/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert b"<strong>convox</strong>" in body
    assert b"shop &lt;b&gt;" in body
    status, body_json = app.json("/nope")
    assert (status, body_json["error"]) == (404, "not found")


def test_plain_http_without_a_certificate(start_app: StartApp) -> None:
    app = start_app(use_tls=False)
    assert app.get("/")[0] == 200


def test_sigterm_stops_it_cleanly(start_app: StartApp) -> None:
    app = start_app()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=10) == 0
    assert "sampleapp: stopped" in app.log.read_text()


def test_sigterm_ends_open_connections_before_the_interpreter_exits(start_app: StartApp) -> None:
    """A client connected but silent holds a handler thread in the TLS handshake's read (30 s
    timeout). A stop shuts the connection down and joins the thread, so its log line is written
    before "stopped", never by a daemon thread during interpreter exit (CPython then aborts:
    exit -6, the flaky SIGABRT of a CI run on a loaded machine)."""
    app = start_app()
    with socket.create_connection(("127.0.0.1", app.port), timeout=5):
        time.sleep(0.3)  # the handler thread is now in wrap_socket's read
        started = time.monotonic()
        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    # Two handshakes failed: start_app's probe (connect, close) and the silent client's.
    before, stopped, _ = app.log.read_text().partition("sampleapp: stopped")
    assert stopped
    assert before.count("TLS handshake failed") == 2


def test_busy_port_or_bad_config_fails_to_start(start_app: StartApp, tls: Tls) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        app = start_app(PORT=str(busy.getsockname()[1]))
        assert app.proc.wait(timeout=10) == 1
    assert "cannot start" in app.log.read_text()
    app = start_app(PORT="http")
    assert app.proc.wait(timeout=10) == 1
    app = start_app(TLS_CERT=str(tls.cert.with_name("missing.pem")))
    assert app.proc.wait(timeout=10) == 1


# --- with a real PostgreSQL -----------------------------------------------------------------


@pytest.fixture
def database(pg_source: PgCluster, pg_database: Callable[..., Any]) -> Any:
    """A fresh role and database on the session's shared cluster (tests/sandbox/conftest.py)."""
    return pg_database(pg_source, prefix="sample")


@pytest.mark.slow
def test_healthz_and_orders_with_a_real_database(start_app: StartApp, database: Any) -> None:
    app = start_app(DATABASE_URL=database.url())
    status, body = app.json("/healthz")
    assert (status, body["status"], body["database"]) == (200, "ok", "ok")
    status, body = app.json("/api/orders/count")
    assert (status, body["error"]) == (404, "no orders table")
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS orders")
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
        conn.execute("INSERT INTO orders (total) VALUES (1), (2), (3)")
    status, body = app.json("/api/orders/count")
    assert (status, body["count"]) == (200, 3)
    assert database.password not in app.log.read_text()


def post(app: App, path: str) -> tuple[int, dict[str, object]]:
    scheme = "https" if app.context else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{app.port}{path}", method="POST")
    try:
        with urllib.request.urlopen(request, context=app.context, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_orders_written_through_the_app_and_refused_by_a_read_only_database(
    start_app: StartApp, database: Any
) -> None:
    app = start_app(DATABASE_URL=database.url())
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS orders, accounts")
        conn.execute("CREATE TABLE accounts (id bigserial PRIMARY KEY)")
        conn.execute("INSERT INTO accounts DEFAULT VALUES")
        conn.execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint NOT NULL, "
            "reference varchar NOT NULL UNIQUE, created_at timestamp NOT NULL, "
            "updated_at timestamp NOT NULL)"
        )
    status, body = post(app, "/api/orders?reference=r-1")
    assert (status, body["reference"]) == (201, "r-1")
    status, body = post(app, "/api/orders")
    assert status == 201 and str(body["reference"]).startswith("web-")
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {database.dbname} SET default_transaction_read_only = on")
    try:
        status, body = post(app, "/api/orders?reference=r-2")
        assert (status, body["database"]) == (503, "read-only")
    finally:
        with psycopg.connect(database.url(), autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f"ALTER DATABASE {database.dbname} RESET default_transaction_read_only")
    status, body = app.json("/api/orders/count")
    assert (status, body["count"]) == (200, 2)
    status, body = post(app, "/api/nothing")
    assert status == 404
    assert database.password not in app.log.read_text()


@pytest.mark.slow
def test_convox_stand_in_serves_the_app_on_its_real_database(
    tmp_path: Path, tls: Tls, database: Any
) -> None:
    """deploy -> HTTPS /healthz 200 via the injected DATABASE_URL; proxy and run reach it too."""
    config, bindir, work = tmp_path / "cfg", tmp_path / "bin", tmp_path / "work"
    work.mkdir()
    router = fake.Router("127.0.0.1", procs.free_port(), str(tls.cert), str(tls.key))
    backend = fake.PostgresBackend(
        "127.0.0.1", database.cluster.port, database.owner, database.password, database.dbname
    )
    with convox_rack(bindir, config, name="sandbox", router=router, postgres=backend):
        (work / "convox.yml").write_text(
            "resources:\n  database:\n    type: postgres\n"
            "services:\n  web:\n    port: 3000\n    resources:\n      - database\n"
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CONVOX_", "RACK_URL"))},
            "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
            "CONVOX_CONFIG": str(config),
        }

        def convox(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["convox", *args],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        proxy = None
        try:
            assert convox("apps", "create", "demo").returncode == 0
            deploy = convox("deploy", "-a", "demo", "--id")
            assert deploy.returncode == 0, deploy.stderr
            app = App(subprocess.Popen(["true"]), router.port, tmp_path / "none", tls.context)
            app.proc.wait()
            status, body = app.json("/healthz")
            assert (status, body["database"], body["release"]) == (200, "ok", deploy.stdout)

            run = convox(
                "run",
                "web",
                "-a",
                "demo",
                "--",
                'sh -c \'psql "$DATABASE_URL" -tAc "select 40 + 2"\'',
            )
            assert (run.returncode, run.stdout.strip()) == (0, "42")

            port = procs.free_port()
            proxy = subprocess.Popen(
                ["convox", "resources", "proxy", "database", "-a", "demo", "-p", str(port)],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 15
            while True:
                try:
                    conn = psycopg.connect(
                        host="127.0.0.1",
                        port=port,
                        user=database.owner,
                        password=database.password,
                        dbname=database.dbname,
                        sslmode="disable",
                        connect_timeout=5,
                    )
                    break
                except psycopg.OperationalError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            with conn:
                row = conn.execute("SELECT current_user").fetchone()
            assert row == (database.owner,)
        finally:
            if proxy is not None:
                proxy.kill()
                proxy.communicate(timeout=10)


# --- SNI certificates (the router) and Heroku maintenance mode -------------------------------


def test_sni_picks_the_certificate_for_the_name_once_it_exists(
    start_app: StartApp, tmp_path: Path
) -> None:
    ca = trustme.CA()
    default = ca.issue_cert("router.sandbox.convox.test")
    default_cert, default_key = tmp_path / "default.pem", tmp_path / "default-key.pem"
    default.cert_chain_pems[0].write_to_path(str(default_cert))
    default.private_key_pem.write_to_path(str(default_key))
    certs = tmp_path / "router-certs"
    certs.mkdir()
    app = start_app(TLS_CERT=str(default_cert), TLS_KEY=str(default_key), TLS_CERT_DIR=str(certs))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    # No certificate for the custom name yet: the default one, which does not cover it.
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_dns_names(app.port, "www.example.test", context)
    assert peer_dns_names(app.port, "router.sandbox.convox.test", context) == [
        "router.sandbox.convox.test"
    ]
    leaf = ca.issue_cert("www.example.test")
    leaf.private_key_pem.write_to_path(str(certs / "www.example.test-key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(certs / "www.example.test.pem"))
    assert peer_dns_names(app.port, "www.example.test", context) == ["www.example.test"]


def test_heroku_app_in_maintenance_answers_the_maintenance_page_with_503(
    start_app: StartApp, tmp_path: Path
) -> None:
    state = tmp_path / "heroku-state.json"

    def maintenance(flag: bool) -> None:
        doc = {"apps": {"myapp-sandbox": {"app": {"name": "myapp-sandbox", "maintenance": flag}}}}
        tmp = tmp_path / "state.tmp"
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, state)
        # a new mtime even within the file system's timestamp granularity
        os.utime(state, ns=(time.time_ns(), time.time_ns() + (1 if flag else 2) * 10**9))

    maintenance(False)
    app = start_app(PLATFORM="heroku", APP="myapp-sandbox", SANDBOX_HEROKU_STATE=str(state))
    status, content_type, body = app.get("/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert b"heroku" in body
    maintenance(True)
    for path in ("/", "/healthz", "/api/orders/count", "/anything"):
        status, content_type, body = app.get(path)
        assert (status, content_type) == (503, "text/html; charset=utf-8")
        assert b"<title>Offline for Maintenance</title>" in body
    maintenance(False)
    assert app.get("/")[0] == 200
