"""The whole cutover in the sandbox, then a look at the world it left behind.

Real parts: the heroku CLI 11.10.0 against the API emulator, the convox stand-in, two real
PostgreSQL clusters (pg_dump, pg_restore, psql), a real Knot DNS server with TSIG updates, an
HTTPS sample app on both sides.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.paths import REPO

from cutover.adapters.dns import query_authoritative
from cutover.sandbox import convox_fake, heroku_api, manager, pgcluster, seed
from cutover.sandbox.audit import harness, recorder
from cutover.secrets import is_public_config
from cutover.steps import STEP_IDS

pytestmark = pytest.mark.slow

EXTRA_VARS = {
    # Excluded by the playbook's env.exclude (NEW_RELIC_*) and by the HEROKU_ rule.
    "NEW_RELIC_LICENSE_KEY": "nrl-5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f",
    "HEROKU_POSTGRESQL_ONYX_URL": "postgres://x:onyx-secret-9f8e7d6c@10.0.0.9:5432/d",
}


@pytest.fixture(scope="module", autouse=True)
def extra_config_vars(sandbox: Path) -> None:
    with heroku_api.update_state(sandbox / "heroku" / "state.json") as state:
        state["apps"][manager.HEROKU_APP]["config_vars"].update(EXTRA_VARS)


def write_playbook(folder: Path, sandbox: Path) -> Path:
    text = (REPO / "playbooks" / "sandbox.yml").read_text()
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    path = folder / "cutover.yml"
    path.write_text(text)
    return path


def collect_secrets(sandbox: Path) -> dict[str, str]:
    """Every secret value the sandbox holds, by where it comes from."""
    found: dict[str, str] = {}
    state = heroku_api.load_state(sandbox / "heroku" / "state.json")
    found["heroku api key"] = state["api_key"]
    app = state["apps"][manager.HEROKU_APP]
    for key, value in app["config_vars"].items():
        if not is_public_config(key, value):
            found[f"config {key}"] = value
    found["heroku redis password"] = urlsplit(app["config_vars"]["REDIS_URL"]).password or ""
    for addon in app["addons"]:
        db = addon.get("database")
        if db:
            found["heroku db password"] = db["password"]
    for transfer in app.get("transfers", []):
        if transfer.get("token"):
            found[f"backup token {transfer.get('num')}"] = transfer["token"]
    for name in ("pg-heroku.json", "pg-convox.json"):
        found[f"{name} superuser"] = pgcluster.load(sandbox / name).password
    rack = convox_fake.read_state(sandbox / "convox")
    found["convox db password"] = rack["resource_backends"]["postgres"]["password"]
    env = json.loads((sandbox / "env.json").read_text())
    found["tsig secret"] = env["dns"]["key_secret"]
    return {k: v for k, v in found.items() if v and len(v) >= 6}


@pytest.fixture(scope="module")
def cutover_run(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("run")
    playbook = write_playbook(work, sandbox)
    argv_log = work / "argv.jsonl"
    env = {**os.environ, "CUTOVER_TEST_ARGV_LOG": str(argv_log), "COLUMNS": "120"}
    env.update(recorder.harness_env(work / "record"))  # issue 15's audit: the last test
    proc = subprocess.run(
        [sys.executable, "-m", "cutover", "run", "-f", str(playbook), "--yes"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return {"proc": proc, "playbook": playbook, "work": work, "argv_log": argv_log, "env": env}


def convox(sandbox: Path, *args: str) -> str:
    shim = sandbox / "bin" / "convox"
    env = {**os.environ, "CONVOX_CONFIG": str(sandbox / "convox")}
    result = subprocess.run(
        [str(shim), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_run_succeeds(cutover_run: dict[str, Any]) -> None:
    proc = cutover_run["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cutover complete" in proc.stdout
    assert "measured downtime" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    state = json.loads((cutover_run["work"] / ".cutover" / "state.json").read_text())
    # All, but capture-changes: the sandbox playbook's final sync is a full one.
    expected = ["skipped" if s == "capture-changes" else "done" for s in STEP_IDS]
    assert [s["status"] for s in state["steps"].values()] == expected


def test_convox_app_has_the_copied_env(sandbox: Path, cutover_run: dict[str, Any]) -> None:
    env = dict(
        line.split("=", 1)
        for line in convox(sandbox, "env", "-a", "myapp").splitlines()
        if "=" in line
    )
    heroku = heroku_api.load_state(sandbox / "heroku" / "state.json")
    config = heroku["apps"][manager.HEROKU_APP]["config_vars"]
    for key in ("SECRET_KEY_BASE", "STRIPE_API_KEY", "RAILS_ENV", "LANG"):
        assert env[key] == config[key]
    assert env["RAILS_LOG_TO_STDOUT"] == "enabled"
    for key in ("DATABASE_URL", "REDIS_URL", "NEW_RELIC_LICENSE_KEY", "HEROKU_POSTGRESQL_ONYX_URL"):
        assert key not in env


def test_a_release_is_promoted(sandbox: Path, cutover_run: dict[str, Any]) -> None:
    state = json.loads((cutover_run["work"] / ".cutover" / "state.json").read_text())
    release = state["steps"]["add-domain"]["outputs"]["release"]
    table = convox(sandbox, "releases", "-a", "myapp")
    active = [line.split()[0] for line in table.splitlines()[1:] if " active " in line]
    assert active == [release]
    manifest = convox(sandbox, "releases", "manifest", release, "-a", "myapp")
    assert "domain: www.example.test" in manifest


def test_every_table_matches(sandbox: Path, cutover_run: dict[str, Any]) -> None:
    source = pgcluster.load(sandbox / "pg-heroku.json")
    target = pgcluster.load(sandbox / "pg-convox.json")
    src = seed.table_fingerprints(source, manager.SOURCE_DB)
    dst = seed.table_fingerprints(target, manager.TARGET_DB)
    assert len(src) >= 5
    assert sum(count for count, _ in src.values()) > 400
    assert src == dst


def test_heroku_is_in_maintenance_with_workers_stopped(
    sandbox: Path, cutover_run: dict[str, Any]
) -> None:
    app = heroku_api.load_state(sandbox / "heroku" / "state.json")["apps"][manager.HEROKU_APP]
    assert app["app"]["maintenance"] is True
    quantities = {f["type"]: int(f["quantity"]) for f in app["formation"]}
    assert quantities["worker"] == 0
    assert quantities["web"] == 2


def test_dns_points_at_the_router(sandbox: Path, cutover_run: dict[str, Any]) -> None:
    env = json.loads((sandbox / "env.json").read_text())
    for server in env["dns"]["nameservers"]:  # the primary and its secondary
        host, _, port = server.partition(":")
        record = query_authoritative(host, int(port), manager.RECORD, "CNAME")
        assert record is not None
        assert [v.rstrip(".") for v in record.values] == [manager.ROUTER]
        assert record.ttl == manager.ORIGINAL_TTL  # restore-ttl, after the soak
    state = json.loads((cutover_run["work"] / ".cutover" / "state.json").read_text())
    assert state["steps"]["restore-ttl"]["status"] == "done"


def test_no_secret_leaks(sandbox: Path, cutover_run: dict[str, Any]) -> None:
    secrets = collect_secrets(sandbox)
    assert len(secrets) >= 8
    proc = cutover_run["proc"]
    state_dir = cutover_run["work"] / ".cutover"
    places = {
        "terminal": proc.stdout + proc.stderr,
        "state.json": (state_dir / "state.json").read_text(),
        "events.jsonl": (state_dir / "events.jsonl").read_text(),
        "argv": cutover_run["argv_log"].read_text(),
    }
    assert places["argv"].count("\n") > 30  # every child was recorded
    for where, text in places.items():
        for what, value in secrets.items():
            assert value not in text, f"{what} leaked into {where}"


def test_the_window_uses_the_proxy_started_before_it(cutover_run: dict[str, Any]) -> None:
    """steps/freeze.py prefetch: disable-scheduler, the last step before the window, reads the
    resource's URL and starts its proxy, held for the run; the window's steps that reach the
    Convox database (final-sync, verify-data, switch-dns) start no proxy and read no URL, and
    the held proxy is stopped when the run ends."""
    text = (cutover_run["work"] / ".cutover" / "events.jsonl").read_text()
    events = [json.loads(line) for line in text.splitlines()]

    def steps(kind: str, head: list[str]) -> list[str]:
        return [e.get("step") for e in events if e["kind"] == kind and e["argv"][:3] == head]

    proxy, url = ["convox", "resources", "proxy"], ["convox", "resources", "url"]
    (held,) = [
        e["pid"]
        for e in events
        if e["kind"] == "command-start"
        and e["argv"][:3] == proxy
        and e.get("step") == "disable-scheduler"
    ]
    assert "disable-scheduler" in steps("command", url)
    for step in ("final-sync", "verify-data", "switch-dns"):
        assert step not in steps("command-start", proxy) + steps("command", url), step
    reused = {e.get("step") for e in events if e["kind"] == "proxy-reused" and e["pid"] == held}
    assert reused >= {"final-sync", "verify-data", "switch-dns"}
    assert not [e for e in events if e["kind"] == "proxy-dropped"]
    (stop,) = [e for e in events if e["kind"] == "command-stop" and e.get("pid") == held]
    assert stop["started_in"] == "disable-scheduler"
    assert len(steps("command-start", proxy)) == len(steps("command-stop", proxy))


def test_state_files_are_private(cutover_run: dict[str, Any]) -> None:
    state_dir = cutover_run["work"] / ".cutover"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for path in state_dir.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    assert not list(state_dir.rglob("*.dump")), "dumps are deleted after the restore"


def test_second_run_is_a_no_op(cutover_run: dict[str, Any]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cutover", "run", "-f", str(cutover_run["playbook"]), "--yes"],
        cwd=cutover_run["work"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[ 1/{len(STEP_IDS)}]" not in proc.stdout  # nothing ran again
    assert "cutover complete" in proc.stdout


def test_sync_restored_its_own_backup_not_the_newest(
    sandbox: Path, cutover_run: dict[str, Any]
) -> None:
    """A scheduled backup finished while initial-sync's capture ran (the sandbox injects one,
    as on a real app): `pg:backups:url` without an id would have handed out that one
    (pg/backups/url.js), so cutover must ask for the id it captured."""
    state = json.loads((cutover_run["work"] / ".cutover" / "state.json").read_text())
    ours = {state["steps"][step]["outputs"]["backup"] for step in ("initial-sync", "final-sync")}
    assert all(re.fullmatch(r"b\d{3,}", b) for b in ours), ours
    app = heroku_api.load_state(sandbox / "heroku" / "state.json")["apps"][manager.HEROKU_APP]
    transfers = app["transfers"]
    initial = state["steps"]["initial-sync"]["outputs"]["backup"]
    captured = next(t for t in transfers if f"b{int(t['num']):03d}" == initial)
    in_between = [
        t
        for t in transfers
        if t.get("schedule") and t.get("succeeded") and t["created_at"] > captured["created_at"]
    ]
    assert in_between, "the sandbox should have finished a scheduled backup during the capture"
    logged = [
        json.loads(line)
        for line in cutover_run["argv_log"].read_text().splitlines()
        if line.strip()
    ]
    urls = [argv for argv in logged if "pg:backups:url" in argv]
    assert urls and all(any(re.fullmatch(r"b\d{3,}", a) for a in argv) for argv in urls), urls


def test_heroku_answers_with_the_maintenance_page(
    sandbox: Path, cutover_run: dict[str, Any]
) -> None:
    """Heroku's router answers every request of an app in maintenance with its maintenance
    page and 503 (Dev Center, "Maintenance Mode"), so a smoke check cannot pass against it."""
    import ssl  # noqa: PLC0415 - only this test speaks HTTP

    import httpx  # noqa: PLC0415

    env = json.loads((sandbox / "env.json").read_text())
    host, port = env["resolve"][manager.HEROKU_HOSTNAME].split(":")
    trust = ssl.create_default_context(cafile=env["ca_file"])
    with httpx.Client(verify=trust) as client:
        response = client.get(
            f"https://{host}:{port}/healthz",
            headers={"Host": manager.HEROKU_HOSTNAME},
            extensions={"sni_hostname": manager.HEROKU_HOSTNAME},
        )
    assert response.status_code == 503
    assert "maintenance" in response.text.lower()


def test_convox_workers_start_only_after_herokus_stopped_then_do_jobs(
    sandbox: Path, cutover_run: dict[str, Any]
) -> None:
    """Nothing runs twice (issue 11): every Convox build before the switch used the staged
    manifest (worker at scale.count 0), no Convox service was scaled up before Heroku's worker
    was scaled to 0, start-workers scaled the worker to Heroku's recorded formation, and the
    Convox worker then really works off a queue in the Convox database."""
    import psycopg  # noqa: PLC0415 - only this test connects
    from support.waiting import wait_for  # noqa: PLC0415

    logged = [
        json.loads(line)
        for line in cutover_run["argv_log"].read_text().splitlines()
        if line.strip()
    ]
    builds = [a for a in logged if a[:2] in (["convox", "deploy"], ["convox", "build"])]
    assert builds and all("convox.cutover.yml" in a for a in builds), builds
    heroku_stop = next(i for i, a in enumerate(logged) if "ps:scale" in a and "worker=0" in a)
    ups = [
        i
        for i, a in enumerate(logged)
        if a[:2] == ["convox", "scale"] and "--count" in a and a[a.index("--count") + 1] != "0"
    ]
    assert ups and min(ups) > heroku_stop, (ups, heroku_stop)
    state = json.loads((cutover_run["work"] / ".cutover" / "state.json").read_text())
    recorded = state["steps"]["preflight"]["outputs"]["heroku_formation"]["worker"]["quantity"]
    assert recorded > 0
    assert state["steps"]["start-workers"]["outputs"]["scaled"]["worker"] == recorded
    rows = convox(sandbox, "scale", "worker", "-a", "myapp").splitlines()
    assert rows[1].split()[:3] == ["worker", str(recorded), str(recorded)]

    target = pgcluster.load(sandbox / "pg-convox.json")
    with psycopg.connect(target.url(manager.TARGET_DB), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE sandbox_jobs (id serial PRIMARY KEY, done_at timestamptz, done_by text)"
        )
        conn.execute("GRANT ALL ON TABLE sandbox_jobs TO PUBLIC")
        conn.execute("INSERT INTO sandbox_jobs DEFAULT VALUES")
        release = state["steps"]["add-domain"]["outputs"]["release"]

        def done_by_convox() -> bool:
            row = conn.execute("SELECT done_by FROM sandbox_jobs WHERE id = 1").fetchone()
            return row is not None and row[0] == release

        wait_for(done_by_convox, "the Convox worker doing the job", deadline=180)


def test_audit_of_the_run_and_a_rollback(sandbox: Path, cutover_run: dict[str, Any]) -> None:
    """Issue 15's `make audit` (cutover/sandbox/audit) on this module's recorded run, plus a
    recorded rollback: no second whole cutover in CI. Last in the module: traffic goes back to
    Heroku (--force: the test above wrote to the Convox database)."""
    playbook = cutover_run["playbook"]
    rollback = subprocess.run(
        [sys.executable, "-m", "cutover", "rollback", "-f", str(playbook), "--yes", "--force"],
        cwd=cutover_run["work"],
        env=cutover_run["env"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    run = harness.Run(playbook, cutover_run["work"] / "record")
    run.outputs["cutover run"] = cutover_run["proc"].stdout + cutover_run["proc"].stderr
    run.outputs["cutover rollback"] = rollback.stdout + rollback.stderr
    report = harness.examine(sandbox, run)
    text = "\n".join(report.lines())
    assert report.leaks == [], text
    assert report.summary() in text and report.places > 100, text
    # The children were really recorded: the data tools got their passwords by env only.
    assert "PGPASSWORD" in str(report.uses.get("pg_restore")), text
    record = recorder.load(run.record_dir / recorder.RECORD_FILE)
    assert any(
        c.event == "start" and c.tool == "cutover.sandbox.convox_fake" for c in record.children
    )
