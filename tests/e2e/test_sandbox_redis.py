"""Redis in the sandbox's cutover: the Sidekiq work left in "Heroku Redis" at the window is found
by inspect-redis and copied by sync-redis into the Convox ``redis`` resource; a kill -9 during
the copy resumes and converges; ``copy: none`` names the queue it leaves behind.

Real parts: the heroku CLI 11.10.0 against the API emulator (REDIS_URL from ``heroku config``),
the convox stand-in's ``resources url``/``resources proxy`` (cutover/sandbox/convox_fake), two
real redis-servers: Heroku's with TLS and a password (cutover/sandbox/redisbox.py), the
resource's in plain TCP (provider/k8s/template/resource/redis.yml.tmpl).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support.paths import REPO

from cutover.adapters import rediscopy, redisstore
from cutover.engine.context import build_context
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.sandbox import convox_fake, heroku_api, manager, redisseed
from cutover.secrets import SecretMasker
from cutover.state import Status
from cutover.steps.base import Context, dump
from cutover.steps.redis import InspectRedis, SyncRedis

pytestmark = pytest.mark.slow

EXTRA_KEYS = 40_000  # enough for the copy to take seconds at batch 20 (the kill lands in it)
DEADLINE = 600.0


def heroku_redis(sandbox: Path) -> tuple[redis.Redis, str]:
    state = heroku_api.load_state(sandbox / "heroku" / "state.json")
    url = state["apps"][manager.HEROKU_APP]["config_vars"]["REDIS_URL"]
    endpoint = redisstore.parse_url(url, "REDIS_URL", verify=False)  # heroku-redis: self-signed
    return redisstore.connect(endpoint, "Heroku Redis"), endpoint.password or ""


def convox_redis(sandbox: Path) -> redis.Redis:
    backend = convox_fake.read_state(sandbox / "convox")["resource_backends"]["redis"]
    return redisstore.connect(
        redisstore.Endpoint("127.0.0.1", int(backend["port"]), None, None, 0, False), "convox"
    )


def write_playbook(folder: Path, sandbox: Path, copy: str = "auto", batch: int = 20) -> Path:
    text = (REPO / "playbooks" / "sandbox.yml").read_text()
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    text = re.sub(r"(?m)^  copy: auto\b.*$", f"  copy: {copy}", text)
    text = re.sub(r"(?m)^  batch: 200$", f"  batch: {batch}", text)
    assert f"copy: {copy}" in text and f"batch: {batch}" in text
    path = folder / "cutover.yml"
    path.write_text(text)
    return path


def cutover(work: Path, playbook: Path, *args: str, argv_log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CUTOVER_TEST_ARGV_LOG": str(argv_log), "COLUMNS": "120"}
    return subprocess.Popen(
        [sys.executable, "-m", "cutover", "run", "-f", str(playbook), "--yes", *args],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_state(work: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((work / ".cutover" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data


@pytest.fixture(scope="module")
def seeded(sandbox: Path) -> Iterator[dict[str, Any]]:
    """Beyond the Sidekiq app the sandbox seeds: an RQ queue, and many small keys (half with a
    TTL), so the copy lasts long enough to be killed in the middle."""
    conn, password = heroku_redis(sandbox)
    redisseed.seed_rq(conn, jobs=4)
    pipe = conn.pipeline(transaction=False)
    for i in range(EXTRA_KEYS):
        pipe.set(f"counter:{i}", i, ex=7200 if i % 2 else None)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    yield {"heroku": conn, "password": password, "keys": conn.dbsize()}
    conn.close()


@pytest.fixture(scope="module")
def killed_then_resumed(
    sandbox: Path, seeded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("redis-run")
    playbook = write_playbook(work, sandbox)
    argv_log = work / "argv.jsonl"
    first = cutover(work, playbook, argv_log=argv_log)
    deadline = time.monotonic() + DEADLINE
    progress: dict[str, Any] = {}
    while time.monotonic() < deadline and first.poll() is None:
        step = read_state(work).get("steps", {}).get("sync-redis", {})
        progress = (step.get("outputs") or {}).get("progress") or {}
        if progress.get("done", 0) > 0:
            break
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[0]
    first.send_signal(signal.SIGKILL)
    first_out = first.communicate(timeout=60)[0]
    copied_at_kill = convox_redis(sandbox).dbsize()
    second = cutover(work, playbook, argv_log=argv_log)
    second_out = second.communicate(timeout=DEADLINE)[0]
    return {
        "work": work,
        "first": first_out,
        "progress": progress,
        "copied_at_kill": copied_at_kill,
        "second": second_out,
        "rc": second.returncode,
        "state": read_state(work),
        "argv_log": argv_log,
    }


def test_the_kill_landed_in_the_middle_of_the_copy(
    killed_then_resumed: dict[str, Any], seeded: dict[str, Any]
) -> None:
    assert "sync-redis" in killed_then_resumed["first"]
    assert 0 < killed_then_resumed["copied_at_kill"] < seeded["keys"]


def test_the_resumed_run_completes_and_says_it_resumed(killed_then_resumed: dict[str, Any]) -> None:
    out = killed_then_resumed["second"]
    assert killed_then_resumed["rc"] == 0, out
    assert "cutover complete" in out
    assert "resuming: an earlier attempt was writing into redis" in out
    assert "Traceback" not in out


def test_inspect_redis_found_the_queues_left_at_the_window(
    killed_then_resumed: dict[str, Any], seeded: dict[str, Any]
) -> None:
    found = killed_then_resumed["state"]["steps"]["inspect-redis"]["outputs"]["addons"]
    assert len(found) == 1
    addon = found[0]
    assert (addon["config_var"], addon["resource"], addon["tls"]) == ("REDIS_URL", "redis", True)
    assert addon["keys"] == seeded["keys"]
    assert "sidekiq default: 5" in addon["queues"]
    assert "sidekiq schedule: 3" in addon["queues"]
    assert "sidekiq retry: 2" in addon["queues"]
    assert "rq default: 4" in addon["queues"]
    assert addon["mode"] == "all"  # auto: lasting keys outside the job layouts
    assert "sidekiq default: 5" in killed_then_resumed["first"]


def test_the_convox_redis_holds_exactly_herokus_keys_with_their_ttls(
    sandbox: Path, killed_then_resumed: dict[str, Any], seeded: dict[str, Any]
) -> None:
    copied = killed_then_resumed["state"]["steps"]["sync-redis"]["outputs"]["copied"]
    assert [(c["resource"], c["mode"], c["method"]) for c in copied] == [("redis", "all", "dump")]
    assert copied[0]["checked"] == seeded["keys"]
    dst = convox_redis(sandbox)
    check = rediscopy.verify(seeded["heroku"], dst, mode="all", batch=500)
    assert check.ok, check.mismatches
    assert dst.llen("queue:default") == 5 and dst.zcard("retry") == 2
    assert dst.pttl("counter:1") > 0 and dst.pttl("counter:2") == -1
    dst.close()


def test_no_redis_password_in_any_argv_output_or_state(
    killed_then_resumed: dict[str, Any], seeded: dict[str, Any]
) -> None:
    password = seeded["password"]
    assert len(password) >= 12
    work = killed_then_resumed["work"]
    places = {
        "argv": killed_then_resumed["argv_log"].read_text(),
        "terminal": killed_then_resumed["first"] + killed_then_resumed["second"],
        "state": (work / ".cutover" / "state.json").read_text(),
        "events": (work / ".cutover" / "events.jsonl").read_text(),
    }
    assert places["argv"].count("\n") > 30
    for where, text in places.items():
        assert password not in text, where


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def step_context(work: Path, playbook: Path) -> tuple[Context, Notes]:
    """The engine's own context for the playbook (real heroku CLI and convox stand-in)."""
    loaded = load_playbook(playbook)
    notes = Notes()
    ctx = build_context(
        loaded, new_state(loaded), masker=SecretMasker(), audit=None, reporter=notes
    )
    return ctx, notes


def done(ctx: Context, step_id: str, outputs: dict[str, Any]) -> None:
    entry = ctx.state.step(step_id)
    entry.status = Status.DONE
    entry.outputs = outputs


def test_copy_none_names_the_queue_it_leaves_behind(
    sandbox: Path, killed_then_resumed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """inspect-redis alone, in-process, under ``copy: none``: it inspects and says, as a warning,
    which jobs stay behind; sync-redis is skipped by the playbook."""
    work = tmp_path_factory.mktemp("redis-none")
    playbook = write_playbook(work, sandbox, copy="none")
    ctx, notes = step_context(work, playbook)
    assert SyncRedis().applies(ctx.model) == (
        "redis.copy is none (inspect-redis still names what is left behind)"
    )
    out = InspectRedis().apply(ctx)
    assert [(a.mode, a.queued_jobs) for a in out.addons] == [("none", 15)]
    text = "\n".join(notes.lines)
    assert re.search(
        r"WARNING: REDIS_URL: NOT copied: 15 jobs \(sidekiq default: 5; .*rq default: 4\)", text
    ), text


def test_sync_redis_refuses_keys_cutover_did_not_write(
    sandbox: Path, killed_then_resumed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("redis-guard")
    playbook = write_playbook(work, sandbox, copy="queues")
    ctx, _ = step_context(work, playbook)
    inspected = InspectRedis().apply(ctx)
    done(ctx, "inspect-redis", dump(inspected))
    dst = convox_redis(sandbox)
    dst.set("sidekiq:convox-worker:beat", "1")  # as if the Convox workers ran already
    try:
        with pytest.raises(CutoverError) as err:
            SyncRedis().apply(ctx)
        assert "holds keys cutover did not write (sidekiq:convox-worker:beat)" in str(err.value)
        assert "--force-data" in (err.value.resolution or "")
        ctx.extras["force_data"] = True
        copied = SyncRedis().apply(ctx)
        assert [(c.mode, c.keys) for c in copied.copied] == [
            ("queues", inspected.addons[0].queue_keys)
        ]
    finally:
        dst.delete("sidekiq:convox-worker:beat")
        dst.close()


def test_preflight_reached_heroku_redis_before_anything_was_created(
    killed_then_resumed: dict[str, Any],
) -> None:
    """steps/redischeck.py: the add-on's URL from `heroku config`, PING through TLS, before
    create-app; its password never in the output."""
    first = killed_then_resumed["first"]
    assert re.search(r"Redis REDIS_URL \(heroku-redis\): redis \d+\.\d+\.\d+, TLS, reached", first)
    assert first.index("reached; copied to the Convox resource") < first.index("create-app")


@pytest.mark.parametrize(
    ("addons", "named"),
    [
        (
            "[{config_var: REDISGREEN_URL, resource: redis}]",
            "redis.addons[].config_var: the Heroku app has no config var REDISGREEN_URL",
        ),
        (
            "[{config_var: REDIS_URL, resource: cache}]",
            "redis.addons: resource 'cache' (for REDIS_URL) is not a redis resource",
        ),
    ],
)
def test_a_redis_playbook_mistake_is_refused_by_preflight_naming_the_field(
    sandbox: Path, tmp_path: Path, addons: str, named: str
) -> None:
    """Found before anything is created, not by inspect-redis in the window."""
    playbook = write_playbook(tmp_path, sandbox)
    text = playbook.read_text().replace("  batch: 20\n", f"  batch: 20\n  addons: {addons}\n")
    playbook.write_text(text)
    proc = cutover(tmp_path, playbook, "--until", "preflight", argv_log=tmp_path / "argv.jsonl")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, out
    assert named in " ".join(out.split()), out
    assert "Traceback" not in out
    state = read_state(tmp_path)
    assert state["steps"]["preflight"]["status"] == "failed"
    assert [s for s, st in state["steps"].items() if st["status"] == "done"] == []


def test_the_sandbox_redis_folders_are_private(sandbox: Path) -> None:
    """They hold redis.conf with each server's password (requirepass): 0700, files 0600."""
    for path in [sandbox / "redis", *(sandbox / "redis").rglob("*")]:
        if path.is_dir():
            assert path.stat().st_mode & 0o777 == 0o700, path
        elif path.name.endswith(".conf"):
            assert path.stat().st_mode & 0o777 == 0o600, path
