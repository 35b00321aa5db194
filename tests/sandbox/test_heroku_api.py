"""The Heroku API emulator: fast tests of its state/fault logic, then the REAL heroku CLI.

The ``slow`` tests start the emulator as a real subprocess on free loopback ports and run the
pinned ``node_modules/.bin/heroku`` against it with the isolated environment from ``cli_env``.
Before every CLI call the environment is checked to point only at loopback.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from heroku_support import API_KEY, CliRunner, EmulatorFactory
from support.heroku_emulator import Running
from support.paths import needs_heroku_cli

from cutover.sandbox.heroku_api import (
    Emulator,
    EmulatorServers,
    Request,
    Response,
    cli_env,
    default_state,
    load_state,
    parse_range,
    prepare_home,
    save_state,
    update_state,
)

APP = "myapp"
FAKE_DB: dict[str, str | int] = {
    "host": "127.0.0.1",
    "port": 1,
    "dbname": "d1",
    "user": "u1",
    "password": "p@ss w'rd",
}
DOMAIN = "www.example.test"
DNS_TARGET = "sushi-1234.herokudns.com"


def make_state(db: dict[str, str | int] | None = None) -> dict[str, Any]:
    return default_state(
        APP, db=db or FAKE_DB, domain=DOMAIN, heroku_dns_target=DNS_TARGET, api_key=API_KEY
    )


# ============================================================================================
# Fast tests: state, routing and fault logic in-process (no sockets, no CLI)


@pytest.fixture
def emu(tmp_path: Path) -> Emulator:
    path = tmp_path / "state.json"
    save_state(path, make_state())
    return Emulator(path, backup_port=4443)


def call(
    emu: Emulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    key: str | None = API_KEY,
) -> tuple[int, Any, Response]:
    hdrs = {"authorization": f"Bearer {key}"} if key is not None else {}
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    raw = b"" if body is None else json.dumps(body).encode()
    path, _, query = path.partition("?")
    request = Request(
        method,
        path,
        query={k: [v] for k, v in (p.split("=", 1) for p in query.split("&") if p)},
        headers=hdrs,
        body=raw,
    )
    response = emu.handle_api(request)
    try:
        payload = json.loads(response.body) if response.body else None
    except ValueError:
        payload = response.body.decode()
    return response.status, payload, response


def wait_finished(emu: Emulator, ident: str, deadline: float = 60) -> dict[str, Any]:
    """Poll the transfer as the CLI does (lib/pg/backups.js poll()) until ``finished_at``."""
    until = time.monotonic() + deadline
    while True:
        _, polled, _ = call(emu, "GET", f"/client/v11/apps/{APP}/transfers/{ident}?verbose=true")
        if polled["finished_at"] or time.monotonic() > until:
            return dict(polled)
        time.sleep(0.05)


def test_default_state_shape() -> None:
    state = make_state()
    entry = state["apps"][APP]
    app = entry["app"]
    assert app["name"] == APP and app["create_status"] == "complete"
    assert app["repo_size"] > 0 and app["slug_size"] > 0 and app["maintenance"] is False
    assert app["web_url"].endswith(".herokuapp.com/") and app["git_url"].endswith(f"/{APP}.git")
    formation = {p["type"]: p for p in entry["formation"]}
    assert formation["web"]["quantity"] == 2 and formation["web"]["size"] == "standard-1X"
    assert formation["web"]["command"] == "bundle exec puma -C config/puma.rb"
    assert formation["worker"]["quantity"] == 1 and formation["worker"]["size"] == "standard-2X"
    assert formation["worker"]["command"] == "bundle exec sidekiq"
    config = entry["config_vars"]
    assert all(isinstance(v, str) for v in config.values())
    assert config["DATABASE_URL"] == "postgres://u1:p%40ss%20w%27rd@127.0.0.1:1/d1"
    assert config["REDIS_URL"].startswith("redis://h:") and "@127.0.0.1:1/0" in config["REDIS_URL"]
    assert config["RAILS_ENV"] == "production" and config["LANG"] == "en_US.UTF-8"
    assert config["RAILS_LOG_TO_STDOUT"] == "enabled"
    assert len(config["SECRET_KEY_BASE"]) >= 64 and config["STRIPE_API_KEY"]
    assert not any(k.startswith("HEROKU_POSTGRESQL_") for k in config)
    plans = [a["plan"]["name"] for a in entry["addons"]]
    assert plans == ["heroku-postgresql:standard-0", "heroku-redis:premium-0", "scheduler:standard"]
    assert entry["addons"][0]["database"] == {
        "host": "127.0.0.1",
        "port": 1,
        "database": "d1",
        "user": "u1",
        "password": "p@ss w'rd",
    }
    assert entry["addons"][2]["config_vars"] == []
    kinds = {d["kind"]: d for d in entry["domains"]}
    assert kinds["custom"]["hostname"] == DOMAIN and kinds["custom"]["cname"] == DNS_TARGET
    assert kinds["heroku"]["hostname"].endswith(".herokuapp.com")
    assert [r["current"] for r in entry["releases"]] == [False, False, True]
    # Same app, same ids; secrets differ.
    again = make_state()["apps"][APP]
    assert again["app"]["id"] == app["id"]
    assert again["config_vars"]["SECRET_KEY_BASE"] != config["SECRET_KEY_BASE"]


def test_default_state_needs_all_db_facts() -> None:
    with pytest.raises(ValueError, match="password"):
        make_state({"host": "h", "port": 1, "dbname": "d", "user": "u"})


def test_save_state_is_private_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, make_state())
    assert path.stat().st_mode & 0o777 == 0o600
    with update_state(path) as state:
        state["apps"][APP]["app"]["maintenance"] = True
    assert load_state(path)["apps"][APP]["app"]["maintenance"] is True
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.lock"]
    with pytest.raises(RuntimeError), update_state(path) as state:
        state["apps"][APP]["app"]["maintenance"] = False
        raise RuntimeError("abort")
    assert load_state(path)["apps"][APP]["app"]["maintenance"] is True


def test_cli_env_is_loopback_only(tmp_path: Path) -> None:
    env = cli_env(5555, "k", tmp_path, tmp_path / "ca.pem")
    assert env["HEROKU_HOST"] == "http://127.0.0.1:5555"
    assert env["HEROKU_PARTICLEBOARD_URL"] == "http://127.0.0.1:5555"
    assert env["HEROKU_DATA_HOST"] == "127.0.0.1"
    assert env["HEROKU_API_KEY"] == "k" and env["HOME"] == str(tmp_path)
    assert env["DISABLE_TELEMETRY"] == "true" and env["HEROKU_DISABLE_AUTOUPDATE"] == "1"
    assert env["HEROKU_SKIP_NEW_VERSION_CHECK"] == "true" and env["OCLIF_COLUMNS"] == "1000"
    assert env["TZ"] == "UTC" and env["NODE_EXTRA_CA_CERTS"] == str(tmp_path / "ca.pem")
    assert "HEROKU_APP" not in env and not any(
        "PROXY" in k.upper() and k.upper() != "NO_PROXY" for k in env
    )
    assert "NODE_EXTRA_CA_CERTS" not in cli_env(5555, "k", tmp_path, None)


def test_prepare_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    prepare_home(home, 5555)
    prepare_home(home, 5555)  # idempotent
    assert (home / ".cache" / "heroku" / "terms-of-service").is_file()
    text = (home / ".gitconfig").read_text()
    assert text == '[credential "https://127.0.0.1:5555"]\n\thelper = !heroku git:credentials\n'
    got = subprocess.run(
        ["git", "config", "--global", "--get", "credential.https://127.0.0.1:5555.helper"],
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert got.stdout.strip() == "!heroku git:credentials"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        "Bearer undefined",
        "Bearer ",
        "Basic " + base64.b64encode(b":x").decode(),
    ],
)
def test_auth_rejected(emu: Emulator, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    status, body, _ = call(emu, "GET", f"/apps/{APP}", headers=headers, key=None)
    assert status == 401
    assert body == {"id": "unauthorized", "message": "Invalid credentials provided."}


def test_basic_auth_accepted(emu: Emulator) -> None:
    basic = "Basic " + base64.b64encode(f":{API_KEY}".encode()).decode()
    status, body, _ = call(emu, "GET", f"/apps/{APP}", headers={"authorization": basic}, key=None)
    assert status == 200 and body["name"] == APP


def test_unknown_app_and_endpoint(emu: Emulator) -> None:
    for path in (
        "/apps/missing",
        "/apps/missing/config-vars",
        "/client/v11/apps/missing/transfers",
    ):
        status, body, _ = call(emu, "GET", path)
        assert (status, body) == (404, {"id": "not_found", "message": "Couldn't find that app."})
    status, body, _ = call(emu, "GET", "/nope")
    assert status == 404 and body["id"] == "not_found"
    status, body, _ = call(emu, "DELETE", f"/apps/{APP}")
    assert status == 404


def test_app_lookup_by_id(emu: Emulator) -> None:
    app_id = emu.read()["apps"][APP]["app"]["id"]
    status, body, _ = call(emu, "GET", f"/apps/{app_id}")
    assert status == 200 and body["name"] == APP


def test_maintenance_patch_persists(emu: Emulator) -> None:
    status, body, _ = call(emu, "PATCH", f"/apps/{APP}", {"maintenance": True})
    assert status == 200 and body["maintenance"] is True
    assert emu.read()["apps"][APP]["app"]["maintenance"] is True
    status, _, _ = call(emu, "PATCH", f"/apps/{APP}", {"maintenance": "yes"})
    assert status == 422
    assert emu.read()["apps"][APP]["app"]["maintenance"] is True


def test_formation_patch(emu: Emulator) -> None:
    """Formation arithmetic; dynos change instantly here (their states: test_heroku_api_states)."""
    with emu.edit() as state:
        state["timings"].update(dyno_start_seconds=0, dyno_stop_seconds=0)
    status, body, _ = call(
        emu, "PATCH", f"/apps/{APP}/formation", {"updates": [{"quantity": "0", "type": "worker"}]}
    )
    assert status == 200
    assert [(p["type"], p["quantity"], p["size"]) for p in body] == [("worker", 0, "standard-2X")]
    status, body, _ = call(
        emu,
        "PATCH",
        f"/apps/{APP}/formation",
        {"updates": [{"quantity": "+1", "type": "web", "size": "performance-M"}]},
    )
    assert [(p["type"], p["quantity"], p["size"]) for p in body] == [("web", 3, "performance-M")]
    stored = {p["type"]: p["quantity"] for p in emu.read()["apps"][APP]["formation"]}
    assert stored == {"web": 3, "worker": 0}
    _, dynos, _ = call(emu, "GET", f"/apps/{APP}/dynos")
    assert [d["name"] for d in dynos] == ["web.1", "web.2", "web.3"]
    assert {d["size"] for d in dynos} == {"performance-M"} and dynos[0]["state"] == "up"
    status, body, _ = call(
        emu, "PATCH", f"/apps/{APP}/formation", {"updates": [{"quantity": "1", "type": "nope"}]}
    )
    assert status == 404 and body["id"] == "not_found"
    for bad in ("abc", "-9"):
        status, _, _ = call(
            emu, "PATCH", f"/apps/{APP}/formation", {"updates": [{"quantity": bad, "type": "web"}]}
        )
        assert status == 422
    assert {p["type"]: p["quantity"] for p in emu.read()["apps"][APP]["formation"]} == stored


def test_config_vars_patch_adds_release(emu: Emulator) -> None:
    status, body, _ = call(emu, "PATCH", f"/apps/{APP}/config-vars", {"NEW": "1", "LANG": None})
    assert status == 200 and body["NEW"] == "1" and "LANG" not in body
    _, releases, _ = call(emu, "GET", f"/apps/{APP}/releases")
    assert releases[-1]["version"] == 4 and releases[-1]["current"] is True
    assert releases[-1]["description"] == "Set NEW config vars and Remove LANG config vars"
    assert sum(r["current"] for r in releases) == 1
    status, _, _ = call(emu, "PATCH", f"/apps/{APP}/config-vars", {"N": 1})
    assert status == 422


def test_parse_range() -> None:
    assert parse_range("id ..; max=1000;") == ("id", False, "", 1000, None)
    assert parse_range("]d1..; max=1000; page2") == (None, True, "d1", 1000, None)
    assert parse_range("version ..; max=15, order=desc") == ("version", False, "", 15, "desc")
    assert parse_range("") == (None, False, "", None, None)


def test_domains_pagination(emu: Emulator) -> None:
    with emu.edit() as state:
        entry = state["apps"][APP]
        entry["domains_page_size"] = 2
        template = entry["domains"][1]
        for n in range(3):
            entry["domains"].append(dict(template, id=f"zz-{n}", hostname=f"d{n}.example.test"))
    seen: list[str] = []
    range_header = "id ..; max=1000;"
    for _ in range(5):
        status, page, response = call(
            emu, "GET", f"/apps/{APP}/domains", headers={"Range": range_header}
        )
        seen += [d["id"] for d in page]
        if status != 206:
            break
        range_header = response.headers["Next-Range"]
    assert status == 200
    assert len(seen) == 5 and len(set(seen)) == 5 and seen == sorted(seen)


def test_releases_range(emu: Emulator) -> None:
    _, body, _ = call(
        emu, "GET", f"/apps/{APP}/releases", headers={"Range": "version ..; max=2, order=desc"}
    )
    assert [r["version"] for r in body] == [3, 2]
    _, body, _ = call(emu, "GET", f"/apps/{APP}/releases")
    assert [r["version"] for r in body] == [1, 2, 3]


def test_resolve_attachment(emu: Emulator) -> None:
    for wanted in ("DATABASE", "DATABASE_URL"):
        status, body, _ = call(
            emu,
            "POST",
            "/actions/addon-attachments/resolve",
            {"addon_attachment": wanted, "app": APP},
        )
        assert status == 200 and len(body) == 1
        att = body[0]
        assert att["name"] == "DATABASE" and att["namespace"] is None
        assert att["addon"]["plan"]["name"] == "heroku-postgresql:standard-0"
        assert att["app"]["name"] == APP and att["config_vars"] == ["DATABASE_URL"]
    status, body, _ = call(
        emu, "POST", "/actions/addon-attachments/resolve", {"addon_attachment": "NOPE", "app": APP}
    )
    assert status == 404 and body["id"] == "not_found"
    status, body, _ = call(emu, "GET", "/addon-attachments")
    assert [a["name"] for a in body] == ["DATABASE", "REDIS", "SCHEDULER"]
    _, addons, _ = call(emu, "GET", f"/apps/{APP}/addons")
    assert all("database" not in a and "attachments" not in a for a in addons)
    assert str(FAKE_DB["password"]) not in json.dumps(addons)


def test_credentials_and_db_info(emu: Emulator) -> None:
    addon = emu.read()["apps"][APP]["addons"][0]
    status, body, _ = call(
        emu, "GET", f"/postgres/v0/databases/{addon['name']}/credentials/default"
    )
    assert status == 200
    assert (body["host"], body["port"], body["database"]) == ("127.0.0.1", 1, "d1")
    assert body["credentials"] == [
        {"user": "u1", "password": "p@ss w'rd", "state": "active", "connections": None}
    ]
    status, body, _ = call(emu, "GET", f"/client/v11/databases/{addon['id']}")
    assert status == 200
    assert {"name": "Continuous Protection", "values": ["Off"]} in body["info"]
    redis_id = emu.read()["apps"][APP]["addons"][1]["id"]
    assert call(emu, "GET", f"/client/v11/databases/{redis_id}")[0] == 404


def test_no_backups_yet(emu: Emulator) -> None:
    assert call(emu, "GET", f"/client/v11/apps/{APP}/transfers")[1] == []
    assert call(emu, "POST", f"/client/v11/apps/{APP}/transfers/1/actions/public-url")[0] == 404
    backup = emu.handle_backup(Request("GET", "/backups/nope/b001.dump"))
    assert backup.status == 404 and backup.file is None


def test_capture_failure_is_reported(emu: Emulator) -> None:
    """pg_dump cannot reach port 1: the transfer finishes, unsuccessful, and serves no file."""
    addon_id = emu.read()["apps"][APP]["addons"][0]["id"]
    status, body, _ = call(emu, "POST", f"/client/v11/databases/{addon_id}/backups")
    assert status == 201 and body["num"] == 1 and body["succeeded"] is False
    assert "token" not in body and "file" not in body and "logs" not in body
    polled = wait_finished(emu, body["uuid"])
    assert polled["finished_at"] and polled["logs"]
    assert "p@ss" not in json.dumps(polled)
    assert call(emu, "POST", f"/client/v11/apps/{APP}/transfers/1/actions/public-url")[0] == 404


def test_faults_are_consumed_and_persisted(emu: Emulator) -> None:
    with emu.edit() as state:
        state["faults"] = [
            {
                "method": "GET",
                "path": f"/apps/{APP}/config-vars",
                "status": 500,
                "body": "<html>oops</html>",
                "times": 2,
            },
            {
                "method": "get",
                "path": f"/apps/{APP}",
                "status": 503,
                "body": {"id": "unavailable", "message": "Down."},
            },
            {
                "method": "GET",
                "path": f"/apps/{APP}/dynos",
                "status": 500,
                "body": '{"id": "internal_server_error", "message": "Internal server error."}',
            },
        ]
    status, body, response = call(emu, "GET", f"/apps/{APP}/config-vars", key="wrong")
    assert (status, body) == (500, "<html>oops</html>")
    assert response.content_type.startswith("text/html")
    assert emu.read()["faults"][0]["times"] == 1
    assert call(emu, "GET", f"/apps/{APP}/config-vars")[0] == 500
    assert call(emu, "GET", f"/apps/{APP}/config-vars")[0] == 200
    assert call(emu, "PATCH", f"/apps/{APP}", {"maintenance": True})[0] == 200  # method differs
    status, body, response = call(emu, "GET", f"/apps/{APP}")
    assert (status, body) == (503, {"id": "unavailable", "message": "Down."})
    assert response.content_type.startswith("application/json")
    status, body, _ = call(emu, "GET", f"/apps/{APP}/dynos")
    assert status == 500 and body["id"] == "internal_server_error"
    assert emu.read()["faults"] == []
    assert call(emu, "GET", f"/apps/{APP}")[0] == 200


def test_delay_fault_then_normal_answer(emu: Emulator) -> None:
    with emu.edit() as state:
        state["faults"] = [{"method": "GET", "path": f"/apps/{APP}", "delay": 0.3}]
    started = time.monotonic()
    status, body, _ = call(emu, "GET", f"/apps/{APP}")
    assert status == 200 and body["name"] == APP
    assert time.monotonic() - started >= 0.3
    assert emu.read()["faults"] == []


def test_delay_fault_wakes_on_stop(emu: Emulator) -> None:
    with emu.edit() as state:
        state["faults"] = [
            {"method": "GET", "path": f"/apps/{APP}", "delay": 30, "status": 504, "body": "timeout"}
        ]
    threading.Timer(0.2, emu.stop.set).start()
    started = time.monotonic()
    assert call(emu, "GET", f"/apps/{APP}")[0] == 504
    assert time.monotonic() - started < 5


# ============================================================================================
# Real listeners in this process (still fast): HTTP framing, TLS, logging


def test_servers_in_process(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    ca_file, cert, key = tls_files
    state_path = tmp_path / "state.json"
    save_state(state_path, make_state())
    servers = EmulatorServers(state_path, port=0, backup_port=0, tls_cert=cert, tls_key=key)
    servers.start()
    try:
        request = urllib.request.Request(
            f"{servers.base_url}/apps/{APP}", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/json")
            assert int(response.headers["Content-Length"]) > 0
            assert json.load(response)["name"] == APP
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{servers.base_url}/apps/{APP}", timeout=10)
        assert caught.value.code == 401
        caught.value.close()
        context = ssl.create_default_context(cafile=str(ca_file))
        url = f"https://127.0.0.1:{servers.backup_port}/backups/nope/b001.dump"
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url, context=context, timeout=10)
        assert caught.value.code == 404
        caught.value.close()
    finally:
        servers.stop()


# ============================================================================================
# The emulator as a real subprocess, and the real heroku CLI


# oclif CLIError lines start with a space, U+203A and three spaces.
CLI_ERROR = " \u203a   "


def home_snapshot(home: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(home)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in home.rglob("*")
    }


@pytest.fixture
def running(start_emulator: EmulatorFactory) -> Running:
    return start_emulator(make_state())


@pytest.mark.slow
def test_subprocess_sigterm_and_quiet_log(start_emulator: EmulatorFactory) -> None:
    running = start_emulator(make_state())
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.port}/apps/{APP}/config-vars",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        secret = json.load(response)["SECRET_KEY_BASE"]
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=15) == 0
    assert not running.pid_file.exists()
    log = running.log()
    assert f"api GET /apps/{APP}/config-vars 200" in log
    assert secret not in log and API_KEY not in log
    assert running.state_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
@needs_heroku_cli
def test_cli_apps_info_json(running: Running, cli: CliRunner, tmp_path: Path) -> None:
    prepare_home(tmp_path / f"home-{running.port}", running.port)
    before = home_snapshot(tmp_path / f"home-{running.port}")
    result = cli(running, "apps:info", "-a", APP, "--json")
    assert result.rc == 0, result.stderr
    assert result.stderr == ""  # no ToS banner, no warnings
    info = result.json()
    assert set(info) == {"addons", "app", "collaborators", "dynos", "pipeline_coupling"}
    assert info["app"]["name"] == APP and info["app"]["create_status"] == "complete"
    assert info["pipeline_coupling"] is None
    assert [d["name"] for d in info["dynos"]] == ["web.1", "web.2", "worker.1"]
    assert info["collaborators"][0]["user"]["email"] == "owner@example.com"
    # The CLI changed nothing in the pre-seeded HOME (no gitconfig rewrite, no cache files).
    assert home_snapshot(tmp_path / f"home-{running.port}") == before


@pytest.mark.slow
@needs_heroku_cli
def test_cli_config_json(running: Running, cli: CliRunner) -> None:
    result = cli(running, "config", "-a", APP, "--json")
    assert result.rc == 0, result.stderr
    assert result.json() == running.state()["apps"][APP]["config_vars"]


@pytest.mark.slow
@needs_heroku_cli
def test_cli_ps_json(running: Running, cli: CliRunner) -> None:
    result = cli(running, "ps", "-a", APP, "--json")
    assert result.rc == 0, result.stderr
    dynos = result.json()
    assert [(d["name"], d["size"], d["state"]) for d in dynos] == [
        ("web.1", "standard-1X", "up"),
        ("web.2", "standard-1X", "up"),
        ("worker.1", "standard-2X", "up"),
    ]
    assert dynos[0]["command"] == "bundle exec puma -C config/puma.rb"


@pytest.mark.slow
@needs_heroku_cli
def test_cli_ps_scale(running: Running, cli: CliRunner) -> None:
    result = cli(running, "ps:scale", "worker=0", "-a", APP)
    assert result.rc == 0, result.stderr
    assert result.stdout == ""
    assert "Scaling dynos... done, now running worker at 0:standard-2X" in result.stderr
    formation = {p["type"]: p["quantity"] for p in running.state()["apps"][APP]["formation"]}
    assert formation == {"web": 2, "worker": 0}
    assert f"api PATCH /apps/{APP}/formation 200" in running.log()


@pytest.mark.slow
@needs_heroku_cli
def test_cli_maintenance(running: Running, cli: CliRunner) -> None:
    assert cli(running, "maintenance", "-a", APP).stdout.strip() == "off"
    result = cli(running, "maintenance:on", "-a", APP)
    assert result.rc == 0 and f"Enabling maintenance mode for {APP}... done" in result.stderr
    assert running.state()["apps"][APP]["app"]["maintenance"] is True
    assert cli(running, "maintenance", "-a", APP).stdout.strip() == "on"
    result = cli(running, "maintenance:off", "-a", APP)
    assert result.rc == 0 and f"Disabling maintenance mode for {APP}... done" in result.stderr
    assert running.state()["apps"][APP]["app"]["maintenance"] is False


@pytest.mark.slow
@needs_heroku_cli
def test_cli_addons_json(running: Running, cli: CliRunner) -> None:
    result = cli(running, "addons", "-a", APP, "--json")
    assert result.rc == 0, result.stderr
    addons = result.json()
    assert [a["plan"]["name"] for a in addons] == [
        "heroku-postgresql:standard-0",
        "heroku-redis:premium-0",
        "scheduler:standard",
    ]
    assert [[att["name"] for att in a["attachments"]] for a in addons] == [
        ["DATABASE"],
        ["REDIS"],
        ["SCHEDULER"],
    ]
    assert addons[0]["plan"]["price"]["cents"] == 5000
    assert addons[0]["config_vars"] == ["DATABASE_URL"]
    assert "database" not in addons[0]


@pytest.mark.slow
@needs_heroku_cli
def test_cli_domains_json(running: Running, cli: CliRunner) -> None:
    result = cli(running, "domains", "-a", APP, "--json")
    assert result.rc == 0, result.stderr
    domains = {d["kind"]: d for d in result.json()}
    assert domains["custom"]["hostname"] == DOMAIN and domains["custom"]["cname"] == DNS_TARGET
    assert domains["heroku"]["hostname"].endswith(".herokuapp.com")


@pytest.mark.slow
@needs_heroku_cli
def test_cli_domains_paginated(start_emulator: EmulatorFactory, cli: CliRunner) -> None:
    state = make_state()
    paged = default_state(
        "paged",
        db=FAKE_DB,
        domain="shop.example.test",
        heroku_dns_target=DNS_TARGET,
        api_key=API_KEY,
    )["apps"]["paged"]
    paged["domains_page_size"] = 1
    state["apps"]["paged"] = paged
    running = start_emulator(state)
    result = cli(running, "domains", "-a", "paged", "--json")
    assert result.rc == 0, result.stderr
    ids = [d["id"] for d in result.json()]
    assert sorted(ids) == sorted(d["id"] for d in paged["domains"])
    assert ids == sorted(ids, reverse=True)  # the CLI prepends each later page
    log = running.log()
    assert log.count("api GET /apps/paged/domains 206") == 1
    assert log.count("api GET /apps/paged/domains 200") == 1


@pytest.mark.slow
@needs_heroku_cli
def test_cli_releases_json(running: Running, cli: CliRunner) -> None:
    result = cli(running, "releases", "-a", APP, "--json")
    assert result.rc == 0, result.stderr
    releases = result.json()
    assert [r["version"] for r in releases] == [3, 2, 1]
    assert releases[0]["current"] is True and releases[0]["user"]["email"] == "owner@example.com"


@pytest.mark.slow
@needs_heroku_cli
def test_cli_backup_capture_url_and_download(
    start_emulator: EmulatorFactory,
    cli: CliRunner,
    backing_db: dict[str, str | int],
    tls_files: tuple[Path, Path, Path],
    tmp_path: Path,
) -> None:
    running = start_emulator(make_state(backing_db))
    capture = cli(running, "pg:backups:capture", "-a", APP)
    assert capture.rc == 0, capture.stderr
    assert "Backing up DATABASE to b001... done" in capture.stderr
    dump = running.state_path.parent / "backups" / "b001.dump"
    assert dump.stat().st_mode & 0o777 == 0o600
    (transfer,) = running.state()["apps"][APP]["transfers"]
    assert transfer["succeeded"] is True and transfer["num"] == 1
    # The password never reached argv: pg_dump got it via PGPASSWORD only.
    assert str(backing_db["password"]) not in running.log()

    url_result = cli(running, "pg:backups:url", "-a", APP)
    assert url_result.rc == 0, url_result.stderr
    url = next(line for line in url_result.stdout.splitlines() if line.strip())
    prefix = f"https://127.0.0.1:{running.backup_port}/backups/"
    assert url.startswith(prefix) and url.endswith("/b001.dump")
    assert len(url[len(prefix) :].split("/")[0]) >= 32  # unguessable token

    context = ssl.create_default_context(cafile=str(tls_files[0]))
    downloaded = tmp_path / "downloaded.dump"
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        assert int(response.headers["Content-Length"]) == dump.stat().st_size
        downloaded.write_bytes(response.read())
    assert downloaded.read_bytes() == dump.read_bytes()
    listing = subprocess.run(
        ["pg_restore", "--list", str(downloaded)], capture_output=True, text=True, check=False
    )
    assert listing.returncode == 0, listing.stderr
    assert "TABLE DATA public widgets" in listing.stdout
    wrong = url.replace("/backups/", "/backups/x")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(wrong, context=context, timeout=30)
    assert caught.value.code == 404
    caught.value.close()

    # The CLI's own download trusts the CA through NODE_EXTRA_CA_CERTS.
    out = tmp_path / "cli.dump"
    result = cli(running, "pg:backups:download", "-a", APP, "-o", str(out))
    assert result.rc == 0, result.stderr
    assert out.read_bytes() == dump.read_bytes()
    assert "backup GET /backups/***/b001.dump 200" in running.log()
    assert transfer["token"] not in running.log()


@pytest.mark.slow
@needs_heroku_cli
def test_cli_credentials_url(running: Running, cli: CliRunner) -> None:
    result = cli(running, "pg:credentials:url", "DATABASE", "-a", APP)
    assert result.rc == 0, result.stderr
    assert '"dbname=d1 host=127.0.0.1 port=1 user=u1 password=p@ss w\'rd sslmode=require"' in (
        result.stdout
    )
    assert "postgres://u1:p%40ss%20w'rd@127.0.0.1:1/d1" in result.stdout
    addon = running.state()["apps"][APP]["addons"][0]["name"]
    assert f"api GET /postgres/v0/databases/{addon}/credentials/default 200" in running.log()


@pytest.mark.slow
@needs_heroku_cli
def test_cli_unknown_app(running: Running, cli: CliRunner) -> None:
    result = cli(running, "config", "-a", "missing", "--json")
    assert result.rc == 2
    assert result.stdout == ""
    assert CLI_ERROR + "Error: Couldn't find that app." in result.stderr.splitlines()
    assert CLI_ERROR + "Error ID: not_found" in result.stderr.splitlines()


@pytest.mark.slow
@needs_heroku_cli
def test_cli_wrong_key(running: Running, cli: CliRunner) -> None:
    result = cli(running, "maintenance:off", "-a", APP, key="not-the-key")
    assert result.rc == 1
    assert "Error: The token provided to HEROKU_API_KEY is invalid." in result.stderr
    assert f"Disabling maintenance mode for {APP}... !" in result.stderr


@pytest.mark.slow
@needs_heroku_cli
def test_cli_injected_500_json_and_html(running: Running, cli: CliRunner) -> None:
    with update_state(running.state_path) as state:
        state["faults"] = [
            {
                "method": "GET",
                "path": f"/apps/{APP}/config-vars",
                "status": 500,
                "body": {"id": "internal_server_error", "message": "Internal server error."},
            },
            {
                "method": "GET",
                "path": f"/apps/{APP}/config-vars",
                "status": 500,
                "body": "<html>oops</html>",
            },
        ]
    result = cli(running, "config", "-a", APP, "--json")
    assert result.rc == 2
    assert CLI_ERROR + "Error: Internal server error." in result.stderr.splitlines()
    assert CLI_ERROR + "Error ID: internal_server_error" in result.stderr.splitlines()
    result = cli(running, "config", "-a", APP, "--json")
    assert result.rc == 1
    assert (
        f"    Error: HTTP Error 500 for GET http://127.0.0.1/apps/{APP}/config-vars"
        in result.stderr.splitlines()
    )
    assert "    <html>oops</html>" in result.stderr.splitlines()
    assert running.state()["faults"] == []
