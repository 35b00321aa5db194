"""Contract tests of cutover.adapters.convox.ConvoxAdapter against the convox stand-in.

The stand-in (``cutover.sandbox.convox_fake``) is installed as a ``convox`` executable in a temp
bin folder on the runner's path_prefix, with ``CONVOX_CONFIG`` in the runner's base_env pointing
at a temp rack. Everything goes through the real Runner. Only the tests that tunnel to a real
PostgreSQL cluster are ``slow``; the proxy's failure paths need no database (the proxy never gets
that far).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from adapter_support import (
    ARGV_LOG_ENV,
    ListAudit,
    assert_argv_clean,
    group_gone,
    read_argv_log,
)
from support.convox_rack import convox_rack
from support.databases import make_database

from cutover.adapters import convox as convox_mod
from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.convoxparse import MAX_ENV_LINE, env_lines, parse_info, parse_table
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError, UnexpectedOutput
from cutover.runner import Runner
from cutover.sandbox import convox_fake
from cutover.sandbox.convox_fake import PostgresBackend
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

APP = "myapp"
RACK = "sandbox"
RELEASE_ID = re.compile(r"R[A-Z]{10}")
MANIFEST = """\
resources:
  database:
    type: postgres
services:
  web:
    build: .
    port: 3000
    resources:
      - database
  worker:
    build: .
    command: bin/worker
"""
# A backend for the failure paths and URL tests: nothing listens there, nothing connects.
FAKE_BACKEND = PostgresBackend(
    host="127.0.0.1", port=9, user="app", password="backend-pw-7c1e9a", dbname="app"
)


@dataclass
class Convox:
    runner: Runner
    masker: SecretMasker
    audit: ListAudit
    adapter: ConvoxAdapter
    config: Path
    argv_log: Path
    source: Path
    sleeps: list[float]

    def fault(self, **fault: Any) -> None:
        convox_fake.add_fault(self.config, fault)

    def commands(self) -> list[list[str]]:
        return [e["argv"] for e in self.audit.of("command")]

    def deploy(self, description: str = "cutover test deploy") -> str:
        self.adapter.create_app()
        return self.adapter.deploy(self.source, "convox.yml", description)


@pytest.fixture
def cx(tmp_path: Path, audit: ListAudit, argv_log: Path) -> Iterator[Convox]:
    bin_dir = tmp_path / "bin"
    config = tmp_path / "convox"
    with convox_rack(bin_dir, config, name=RACK, postgres=FAKE_BACKEND):
        source = tmp_path / "src"
        source.mkdir()
        (source / "convox.yml").write_text(MANIFEST, encoding="utf-8")
        masker = SecretMasker()
        sleeps: list[float] = []
        runner = Runner(
            masker,
            audit=audit,
            base_env={"CONVOX_CONFIG": str(config), ARGV_LOG_ENV: str(argv_log)},
            path_prefix=[str(bin_dir)],
            _sleep=sleeps.append,
        )
        adapter = ConvoxAdapter(runner, masker, APP, RACK)
        yield Convox(runner, masker, audit, adapter, config, argv_log, source, sleeps)
    assert_argv_clean(argv_log, [FAKE_BACKEND.password])


# --------------------------------------------------------------------------------------------
# Rack and app


def test_version_and_rack_info(cx: Convox) -> None:
    assert cx.adapter.version() == convox_fake.VERSION
    info = cx.adapter.rack_info()
    assert info["Name"] == RACK and info["Provider"] == "local" and info["Status"] == "running"
    assert cx.adapter.router() == "router.sandbox.convox.test"
    # rack-level commands carry -r but never -a.
    assert ["convox", "rack", "-r", RACK] in cx.commands()


def test_unknown_rack_is_a_command_error(cx: Convox) -> None:
    adapter = ConvoxAdapter(cx.runner, cx.masker, APP, "nope")
    with pytest.raises(CommandError) as caught:
        adapter.app_exists()  # a missing rack is not a missing app
    assert caught.value.returncode == 1
    assert "ERROR: could not find rack: nope" in caught.value.stderr_tail


def test_app_exists_create_app(cx: Convox) -> None:
    assert cx.adapter.app_exists() is False
    cx.adapter.create_app()
    assert cx.adapter.app_exists() is True
    with pytest.raises(CommandError, match="app already exists"):
        cx.adapter.create_app()
    assert cx.commands()[:3] == [
        ["convox", "apps", "info", "-a", APP, "-r", RACK],
        ["convox", "apps", "create", APP, "-r", RACK],  # pkg/cli/apps.go: no -a
        ["convox", "apps", "info", "-a", APP, "-r", RACK],
    ]


# --------------------------------------------------------------------------------------------
# Env


def test_env_set_passes_values_on_stdin_only(cx: Convox) -> None:
    cx.adapter.create_app()
    secret = "sk_live_" + "Zq9" * 12
    values = {
        "SECRET_KEY_BASE": secret,
        "RAILS_ENV": "production",
        "DATABASE_URL": "postgres://u:db-pass-8x7@127.0.0.1:5432/app",
        "WITH_EQUALS": "a=b=c",
        "EMPTY": "",
    }
    release = cx.adapter.env_set(values)
    assert RELEASE_ID.fullmatch(release), release
    set_argv = [a for a in read_argv_log(cx.argv_log) if a[1:3] == ["env", "set"]]
    assert set_argv == [["convox", "env", "set", "--id", "-a", APP, "-r", RACK]]
    assert_argv_clean(cx.argv_log, [secret, "db-pass-8x7", "a=b=c"])
    # env set creates a release but does not promote it.
    assert release in [r["ID"] for r in cx.adapter.releases()]
    assert cx.adapter.active_release() is None

    fresh = SecretMasker()
    reader = ConvoxAdapter(cx.runner, fresh, APP, RACK)
    assert reader.env() == values
    assert secret in fresh and "db-pass-8x7" in fresh
    assert "production" not in fresh
    assert secret not in cx.audit.text()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"PEM": "-----BEGIN KEY-----\nabc\n-----END KEY-----"}, "contains a newline"),
        ({"CRLF": "value\r"}, "contains a newline"),
        ({"BIG": "x" * (MAX_ENV_LINE - len("BIG=") + 1)}, "64 KiB"),
        ({"WIDE": "\u00e9" * ((MAX_ENV_LINE - len("WIDE=")) // 2 + 1)}, "64 KiB"),
        ({"bad-key": "v"}, "cannot be set on Convox"),
        ({"OK": "fine", "LATER": "x\ny"}, "contains a newline"),
    ],
    ids=[
        "newline",
        "carriage-return",
        "line-over-64KiB",
        "multibyte-over-64KiB",
        "bad-name",
        "one-bad-of-many",
    ],
)
def test_env_set_refuses_unstorable_values_before_running_anything(
    cx: Convox, values: dict[str, str], message: str
) -> None:
    with pytest.raises(CutoverError, match=message) as caught:
        cx.adapter.env_set(values)
    assert not isinstance(caught.value, CommandError)
    assert read_argv_log(cx.argv_log) == [] and cx.audit.events == []
    for value in values.values():
        if len(value) >= 8:
            assert value not in str(caught.value)


def test_env_set_longest_line_round_trips(cx: Convox) -> None:
    """A KEY=VALUE line of exactly MAX_ENV_LINE bytes is accepted and stored whole."""
    cx.adapter.create_app()
    # "/" keeps this test off the masker's slow path (see test_reading_long_values_is_fast).
    value = ("v/" * MAX_ENV_LINE)[: MAX_ENV_LINE - len("LONG=")]
    assert len(env_lines({"LONG": value})) == MAX_ENV_LINE + 1  # plus the newline
    cx.adapter.env_set({"LONG": value, "AFTER": "still-here"})
    env = cx.adapter.env()
    assert env["LONG"] == value and env["AFTER"] == "still-here"


def test_reading_long_values_is_fast(cx: Convox) -> None:
    """env() registers every value with the SecretMasker. A 48 KB token-like value (hex, say)
    must not take seconds: the masker's URL-password regex is quadratic on long runs of
    scheme characters (see the report: cutover/secrets.py _URL_PASSWORD)."""
    cx.adapter.create_app()
    blob = "a1" * 24_000
    cx.adapter.env_set({"BLOB": blob})
    started = time.monotonic()
    assert cx.adapter.env()["BLOB"] == blob
    elapsed = time.monotonic() - started
    assert blob in cx.masker
    assert elapsed < 1.5, f"env() took {elapsed:.1f}s for one 48 KB value"


# --------------------------------------------------------------------------------------------
# Deploy, builds, releases, services


def test_deploy_builds_releases_services(cx: Convox) -> None:
    release = cx.deploy("cutover run 20240501-abc")
    assert RELEASE_ID.fullmatch(release), release
    (build,) = cx.adapter.builds()
    assert build["RELEASE"] == release and build["STATUS"] == "complete"
    assert build["DESCRIPTION"] == "cutover run 20240501-abc"
    releases = cx.adapter.releases()
    assert releases[0]["ID"] == release and releases[0]["STATUS"] == "active"
    assert releases[0]["BUILD"] == build["ID"]
    assert cx.adapter.active_release() == release
    assert cx.adapter.release_manifest(release).strip() == MANIFEST.strip()

    services = {row["SERVICE"]: row for row in cx.adapter.services()}
    assert set(services) == {"web", "worker"}
    assert services["web"]["PORTS"] == "443:3000"
    assert cx.adapter.service_domain("web") == "web.myapp.sandbox.convox.test"
    with pytest.raises(CutoverError, match="no domain for service 'nope'"):
        cx.adapter.service_domain("nope")
    scale = {row["SERVICE"]: row for row in cx.adapter.scale_table()}
    assert scale["web"]["DESIRED"] == "1" and scale["web"]["RUNNING"] == "1"
    assert scale["worker"]["DESIRED"] == "1"

    deploy_argv = next(a for a in cx.commands() if a[1] == "deploy")
    assert deploy_argv == [
        "convox",
        "deploy",
        str(cx.source),
        "-m",
        "convox.yml",
        "--id",
        "-d",
        "cutover run 20240501-abc",
        "-a",
        APP,
        "-r",
        RACK,
    ]


def test_env_set_after_deploy_is_a_new_unpromoted_release(cx: Convox) -> None:
    deployed = cx.deploy()
    release = cx.adapter.env_set({"FEATURE_FLAG": "on-for-beta"})
    assert release != deployed and RELEASE_ID.fullmatch(release)
    assert cx.adapter.active_release() == deployed
    cx.adapter.promote(release)
    assert cx.adapter.active_release() == release
    assert cx.adapter.env()["FEATURE_FLAG"] == "on-for-beta"


def test_deploy_error_fault_is_command_error(cx: Convox) -> None:
    cx.adapter.create_app()
    cx.fault(command="deploy", stderr="ERROR: err1\n", exit=1)
    with pytest.raises(CommandError) as caught:
        cx.adapter.deploy(cx.source, "convox.yml", "d")
    assert caught.value.returncode == 1
    assert "ERROR: err1" in caught.value.stderr_tail
    assert [a[1] for a in cx.commands()] == ["apps", "deploy"]  # never retried
    assert cx.audit.of("retry") == []


def test_deploy_without_release_id_is_unexpected_output(cx: Convox) -> None:
    cx.fault(command="deploy", stdout="Packaging source... OK\n", exit=0)
    with pytest.raises(UnexpectedOutput, match="printed no release id"):
        cx.adapter.deploy(cx.source, "convox.yml", "d")


def test_services_garbage_is_unexpected_output(cx: Convox) -> None:
    cx.fault(command="services", stdout="<html><body>502 Bad Gateway</body></html>\n", exit=0)
    with pytest.raises(UnexpectedOutput, match="SERVICE, DOMAIN"):
        cx.adapter.services()


def test_services_tolerates_stderr_noise(cx: Convox) -> None:
    table = convox_fake.table(
        ["SERVICE", "DOMAIN", "PORTS"],
        [
            ["web", "web.myapp.sandbox.convox.test", "443:3000"],
            ["worker", "worker.myapp.sandbox.convox.test", ""],
        ],
    )
    cx.fault(command="services", stdout=table, stderr="ns=cli_budget at=wait elapsed=1\n", exit=0)
    assert cx.adapter.services() == [
        {"SERVICE": "web", "DOMAIN": "web.myapp.sandbox.convox.test", "PORTS": "443:3000"},
        {"SERVICE": "worker", "DOMAIN": "worker.myapp.sandbox.convox.test", "PORTS": ""},
    ]


def test_transient_read_failure_is_retried(cx: Convox) -> None:
    cx.adapter.create_app()
    cx.fault(
        command="services",
        stderr="ERROR: dial tcp 10.0.0.1:443: connect: connection refused\n",
        exit=1,
    )
    assert cx.adapter.services() == []
    assert [e["outcome"] for e in cx.audit.of("command")][-2:] == ["failed", "ok"]
    assert len(cx.audit.of("retry")) == 1 and len(cx.sleeps) == 1


def test_parsers() -> None:
    text = (
        "ID          STATUS    BUILD       CREATED      DESCRIPTION\n"
        "RABCDEFGHIJ  active    BABCDEFGHIJ  1 minute ago  \n"
    )
    # A header whose cells are wider than the column titles: offsets come from the header.
    rows = parse_table(
        convox_fake.table(
            ["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"],
            [["RABCDEFGHIJ", "", "BXYZ", "2 hours ago", "env FOO"]],
        ),
        ["ID", "STATUS", "BUILD"],
    )
    assert rows == [
        {
            "ID": "RABCDEFGHIJ",
            "STATUS": "",
            "BUILD": "BXYZ",
            "CREATED": "2 hours ago",
            "DESCRIPTION": "env FOO",
        }
    ]
    with pytest.raises(UnexpectedOutput):
        parse_table(text.replace("BUILD", "BILD"), ["ID", "STATUS", "BUILD"])
    assert parse_info("Name    sandbox\nRouter  a.example\n        b.example\n") == {
        "Name": "sandbox",
        "Router": "a.example\nb.example",
    }


# --------------------------------------------------------------------------------------------
# Resources and proxy


def test_resource_url_is_registered_as_secret(cx: Convox) -> None:
    cx.deploy()
    url = cx.adapter.resource_url("database")
    assert url == "postgres://app:backend-pw-7c1e9a@127.0.0.1:9/app?sslmode=disable"
    assert url in cx.masker and FAKE_BACKEND.password in cx.masker
    assert FAKE_BACKEND.password not in cx.audit.text()
    with pytest.raises(CommandError, match="no such resource"):
        cx.adapter.resource_url("cache")


def _proxy_pid(audit: ListAudit) -> int:
    (start,) = audit.of("command-start")
    assert start["argv"][:4] == ["convox", "resources", "proxy", "database"]
    return int(start["pid"])


def test_proxy_hang_before_listen_times_out_and_is_stopped(cx: Convox) -> None:
    cx.deploy()
    cx.fault(command="resources proxy", hang_before_listen=True)
    started = time.monotonic()
    with (
        pytest.raises(CutoverError, match="did not accept connections") as caught,
        cx.adapter.proxy("database", timeout=1.5),
    ):
        pytest.fail("the proxy never listened: the block must not run")
    assert time.monotonic() - started < 10
    assert not isinstance(caught.value, CommandError)
    assert group_gone(_proxy_pid(cx.audit)), "the proxy process is still running"
    assert cx.audit.of("command-stop")


def test_proxy_early_exit_is_reported(cx: Convox) -> None:
    cx.deploy()
    cx.fault(command="resources proxy", stderr="ERROR: no such resource: database\n", exit=1)
    with (
        pytest.raises(CutoverError, match=r"no such resource|exited before"),
        cx.adapter.proxy("database", timeout=5),
    ):
        pytest.fail("the block must not run")
    assert group_gone(_proxy_pid(cx.audit))


@pytest.fixture
def bound_port() -> Iterator[int]:
    """A port held by a socket that is bound but not listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port some other program listens on (a local PostgreSQL on 5432, say)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_proxy_bind_failure_is_reported_and_stopped(
    cx: Convox, bound_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cx.deploy()
    monkeypatch.setattr(convox_mod, "free_port", lambda: bound_port)
    with (
        pytest.raises(CutoverError, match="address already in use"),
        cx.adapter.proxy("database", timeout=10),
    ):
        pytest.fail("the proxy could not bind: the block must not run")
    assert group_gone(_proxy_pid(cx.audit)), "the proxy process is still running"


def test_proxy_bind_failure_behind_another_listener_is_reported(
    cx: Convox, listening_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port is taken by another program that accepts connections. The proxy cannot bind
    (ERROR on stderr, §12), but a bare TCP probe succeeds, against the other program: the
    adapter must not hand that port out as the tunnel to the database."""
    cx.deploy()
    monkeypatch.setattr(convox_mod, "free_port", lambda: listening_port)
    entered = False
    with (
        pytest.raises(CutoverError, match="address already in use"),
        cx.adapter.proxy("database", timeout=10),
    ):
        entered = True
        time.sleep(1.0)  # the block uses the "tunnel" for a while
    assert not entered, "the adapter yielded a port owned by another program"
    assert group_gone(_proxy_pid(cx.audit)), "the proxy process is still running"


# --------------------------------------------------------------------------------------------
# Proxy to a real PostgreSQL (slow)


@dataclass
class RealBackend:
    cx: Convox
    password: str
    user: str
    dbname: str


@pytest.fixture
def real_backend(cx: Convox, pg_source: PgCluster) -> RealBackend:
    db = make_database(pg_source, "convox")
    convox_fake.configure_rack(
        cx.config,
        name=RACK,
        postgres=PostgresBackend(
            host="127.0.0.1",
            port=pg_source.port,
            user=db.owner,
            password=db.password,
            dbname=db.dbname,
        ),
    )
    cx.deploy()
    return RealBackend(cx, db.password, db.owner, db.dbname)


@pytest.mark.slow
def test_proxy_tunnels_to_the_real_database(real_backend: RealBackend) -> None:
    cx = real_backend.cx
    url = cx.adapter.resource_url("database")
    conn = ConnInfo.from_url(url)
    assert conn.password == real_backend.password and conn.sslmode == "disable"
    pg = PostgresAdapter(cx.runner, cx.masker)
    with cx.adapter.proxy("database", timeout=15) as port:
        assert port != conn.port
        rows = pg.psql(conn.via("127.0.0.1", port), "SELECT 1, current_user, current_database();")
        assert rows == [["1", real_backend.user, real_backend.dbname]]
        pid = _proxy_pid(cx.audit)
    assert group_gone(pid), "the proxy process is still running after the with block"
    assert_argv_clean(cx.argv_log, [real_backend.password, url])
    assert real_backend.password not in cx.audit.text()


@pytest.mark.slow
def test_proxy_is_stopped_when_the_block_raises(real_backend: RealBackend) -> None:
    cx = real_backend.cx

    class Boom(Exception):
        pass

    pg = PostgresAdapter(cx.runner, cx.masker)
    conn = ConnInfo.from_url(cx.adapter.resource_url("database"))
    with pytest.raises(Boom), cx.adapter.proxy("database", timeout=15) as port:
        assert pg.psql(conn.via("127.0.0.1", port), "SELECT 1;") == [["1"]]
        raise Boom
    assert group_gone(_proxy_pid(cx.audit)), "the proxy process survived an exception"


@pytest.mark.parametrize(
    ("printed", "error"),
    [
        ("client: 20190111211123\nserver: none\n", "v2 CLI"),
        ("convox something else\n", "no client version"),
    ],
)
def test_version_refuses_v2_and_garbage(tmp_path: Path, printed: str, error: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "convox"
    fake.write_text(f"#!/bin/sh\nprintf '%s' '{printed}'\n")
    fake.chmod(0o755)
    masker = SecretMasker()
    adapter = ConvoxAdapter(Runner(masker, path_prefix=[str(bin_dir)]), masker, APP, None)
    with pytest.raises(CutoverError, match=error):
        adapter.version()
