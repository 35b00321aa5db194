"""maintenance-on, scale-down and disable-scheduler with the REAL heroku CLI 11.10.0 against the
Heroku API emulator (as tests/adapters/test_heroku_adapter.py), each with its undo.

The emulator's dynos pass through the Platform API states over ``timings.dyno_stop_seconds``
(sandbox/heroku_api/dynos.py); one-off dynos (type ``run``) are seeded in its state and stopped
by ``heroku ps:stop --dyno-name`` (commands/ps/stop.js). Every child's argv is counted through
the runner's ``CUTOVER_TEST_ARGV_LOG`` hook: each fact is read once per step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.convox_rack import no_convox
from support.databases import WIDGETS_SQL, make_database
from support.heroku_emulator import Running, spawn_emulator, stop_emulator
from support.paths import HEROKU_BIN, needs_heroku_cli
from support.tls import TlsFiles, write_tls_files

from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.heroku import HerokuAdapter
from cutover.adapters.postgres import PostgresAdapter
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.runner import ARGV_LOG_VAR, Runner
from cutover.sandbox.heroku_api import (
    cli_env,
    default_state,
    prepare_home,
    save_state,
    update_state,
)
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.state import Status
from cutover.steps import STEP_IDS
from cutover.steps.base import Context
from cutover.steps.freeze import PREFETCH, other_apps
from cutover.steps.scheduler import DisableScheduler
from cutover.steps.window import MaintenanceOn, ScaleDown

pytestmark = [pytest.mark.slow, needs_heroku_cli]

APP = "myapp"
API_KEY = "window-test-api-key-0a1b2c3d4e5f"
STOP_SECONDS = 15.0  # how long a stopped dyno stays listed (up, then down) in the emulator

PLAYBOOK = """
version: 1
heroku: {{app: {app}}}
convox: {{app: myapp, rack: test}}
window:
  drain_seconds: {drain}
{window}
{extra}
"""


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


@dataclass
class World:
    emu: Running
    tmp: Path
    runner: Runner
    masker: SecretMasker
    argv_log: Path

    def state(self) -> dict[str, Any]:
        entry: dict[str, Any] = self.emu.state()["apps"][APP]
        return entry

    def context(self, window: str = "", extra: str = "", drain: int = 30) -> tuple[Context, Notes]:
        path = self.tmp / "cutover.yml"
        text = PLAYBOOK.format(app=APP, window=window, extra=extra, drain=drain)
        path.write_text(text, encoding="utf-8")
        playbook = load_playbook(path)
        notes = Notes()
        work = self.tmp / "work"
        ctx = Context(
            playbook=playbook,
            state=new_state(playbook),
            runner=self.runner,
            masker=self.masker,
            heroku=HerokuAdapter(self.runner, self.masker, APP, work),
            # No convox to find: prefetch notes that it could not hold the proxy.
            convox=ConvoxAdapter(no_convox(self.masker), self.masker, APP, "test"),
            postgres=PostgresAdapter(self.runner, self.masker),
            http=None,  # type: ignore[arg-type]
            dns=None,
            reporter=notes,
            work_dir=work,
            sleep=lambda s: time.sleep(min(s, 0.5)),
        )
        return ctx, notes

    def calls(self) -> list[list[str]]:
        """heroku subcommands run since the last call (argv[1:] without ``-a APP``)."""
        if not self.argv_log.exists():
            return []
        lines = self.argv_log.read_text(encoding="utf-8").splitlines()
        self.argv_log.write_text("", encoding="utf-8")
        argvs = [json.loads(line) for line in lines if line]
        return [[a for a in argv[1:] if a not in ("-a", APP)] for argv in argvs]

    def formation(self) -> dict[str, int]:
        return {p["type"]: int(p["quantity"]) for p in self.state()["formation"]}


@pytest.fixture(scope="module")
def emulator(
    pg_source: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Running, dict[str, Any], TlsFiles]]:
    db = make_database(pg_source, "heroku")
    db.execute(*WIDGETS_SQL)
    folder = tmp_path_factory.mktemp("window-emulator")
    tls = write_tls_files(tmp_path_factory.mktemp("window-tls"))
    state = default_state(
        APP,
        db={
            "host": "127.0.0.1",
            "port": pg_source.port,
            "dbname": db.dbname,
            "user": db.owner,
            "password": db.password,
        },
        domain="www.example.test",
        heroku_dns_target="sushi-1234.herokudns.com",
        api_key=API_KEY,
    )
    state_path = folder / "state.json"
    save_state(state_path, state)
    started = spawn_emulator(
        state_path, tls.cert_file, tls.key_file, folder / "emu.log", folder / "pid"
    )
    try:
        yield started, state, tls
    finally:
        stop_emulator(started)


@pytest.fixture
def world(emulator: tuple[Running, dict[str, Any], TlsFiles], tmp_path: Path) -> World:
    running, pristine, tls = emulator
    state = json.loads(json.dumps(pristine))
    state["timings"] = {**(state.get("timings") or {}), "dyno_stop_seconds": STOP_SECONDS}
    entry = state["apps"][APP]
    entry["formation"].append(
        {**entry["formation"][-1], "type": "clock", "quantity": 1, "command": "bin/clock"}
    )
    save_state(running.state_path, state)
    home = tmp_path / "home"
    prepare_home(home, running.port)
    env = cli_env(running.port, API_KEY, home, tls.ca_file)
    env.pop("PATH")
    argv_log = tmp_path / "argv.jsonl"
    env[ARGV_LOG_VAR] = str(argv_log)
    masker = SecretMasker()
    runner = Runner(masker, base_env=env, path_prefix=[str(HEROKU_BIN)])
    return World(running, tmp_path, runner, masker, argv_log)


def seed_one_offs(world: World, **commands: str) -> None:
    with update_state(world.emu.state_path) as state:
        state["apps"][APP]["one_off_dynos"] = {
            name.replace("_", "."): {"command": command, "size": "Standard-1X"}
            for name, command in commands.items()
        }


def test_step_order_puts_the_window_steps_in_place() -> None:
    window = STEP_IDS[STEP_IDS.index("confirm-window") :][:7]
    assert window == [
        "confirm-window",
        "disable-scheduler",
        "maintenance-on",
        "scale-down",
        "inspect-redis",
        "freeze-writes",
        "final-sync",
    ]


def test_maintenance_on_is_read_back_and_undone(world: World) -> None:
    ctx, _ = world.context()
    step = MaintenanceOn()
    assert step.check(ctx) is None
    out = step.apply(ctx)
    assert world.state()["app"]["maintenance"] is True
    assert out.at > 0
    assert world.calls() == [["maintenance"], ["maintenance:on"], ["maintenance"]]
    assert "scheduler" not in step.gate_text(ctx).lower()

    ctx.state.step(step.id).outputs.update({"at": out.at})  # what the engine saves
    assert step.undo_needed(ctx) == "Heroku is in maintenance mode"
    step.undo(ctx)
    assert world.state()["app"]["maintenance"] is False
    assert world.calls() == [["maintenance"], ["maintenance:off"], ["maintenance"]]
    assert step.undo_needed(ctx) is None


def test_maintenance_undo_does_nothing_when_cutover_never_turned_it_on(world: World) -> None:
    ctx, _ = world.context()
    assert MaintenanceOn().undo_needed(ctx) is None
    assert world.calls() == []


def test_scale_down_stops_every_non_web_type_in_one_call_and_waits_for_the_dynos(
    world: World,
) -> None:
    ctx, notes = world.context()  # no window.scale_down: every type but web
    step = ScaleDown()
    assert step.check(ctx) is None
    assert sorted(world.calls()) == [["ps", "--json"], ["ps:scale"]]  # read once, at once
    out = step.apply(ctx)
    assert world.formation() == {"web": 2, "worker": 0, "clock": 0}
    assert out.stopped == {"clock": 1, "worker": 1}
    assert out.formation == {"web": 2, "worker": 1, "clock": 1}
    calls = world.calls()
    # apply reused check's reading: one scale for both types, then only ps --json polls
    assert calls[0] == ["ps:scale", "clock=0", "worker=0"]
    assert set(map(tuple, calls[1:])) == {("ps", "--json")}
    # the dynos were seen stopping (listed after the scale) before they were gone
    assert any("waiting for" in line and "worker.1" in line for line in notes.lines)
    assert [d for d in _dynos(world) if d["type"] != "web"] == []


def _dynos(world: World) -> list[dict[str, Any]]:
    ctx, _ = world.context()
    return ctx.heroku.dynos()


def test_scale_down_honours_an_explicit_list_and_undo_scales_back_in_one_call(
    world: World,
) -> None:
    ctx, _ = world.context(window="  scale_down: [worker]")
    step = ScaleDown()
    out = step.apply(ctx)
    assert out.stopped == {"worker": 1}
    assert world.formation() == {"web": 2, "worker": 0, "clock": 1}
    ctx.state.step(step.id).outputs.update(out.model_dump(mode="json"))
    world.calls()
    assert step.undo_needed(ctx) == "Heroku runs worker=0 (was 1)"
    step.undo(ctx)
    assert world.formation() == {"web": 2, "worker": 1, "clock": 1}
    assert world.calls() == [["ps:scale"], ["ps:scale", "worker=1"]]


def test_scale_down_stops_named_one_off_dynos_and_waits_for_the_others(world: World) -> None:
    seed_one_offs(world, run_7="rake jobs:work", run_8="bash")
    with update_state(world.emu.state_path) as state:  # a Scheduler job running meanwhile
        state["apps"][APP]["one_off_dynos"]["scheduler.9"] = {
            "command": "bin/report",
            "type": "scheduler",
            "stopped_at": time.time(),  # it ends by itself, after STOP_SECONDS
        }
    ctx, notes = world.context(window="  stop_one_off: ['rake *']")
    step = ScaleDown()
    assert step.check(ctx) is None  # one-off dynos still run

    def stop_bash_later() -> None:  # the operator ends the console meanwhile
        time.sleep(2)
        with update_state(world.emu.state_path) as state:
            state["apps"][APP]["one_off_dynos"]["run.8"]["stopped_at"] = time.time()

    import threading  # noqa: PLC0415

    helper = threading.Thread(target=stop_bash_later)
    helper.start()
    out = step.apply(ctx)
    helper.join()
    assert out.one_offs_stopped == ["run.7"]
    stops = [c for c in world.calls() if c[0] == "ps:stop"]
    assert stops == [["ps:stop", "--dyno-name", "run.7"]]
    assert any("run.8 (up: bash)" in line and "waited for" in line for line in notes.lines)
    assert any("scheduler.9" in line and "waited for" in line for line in notes.lines)
    assert not [d for d in _dynos(world) if d["type"] in ("run", "scheduler")]


def test_scale_down_timeout_names_the_dynos_still_listed_and_undo_uses_the_progress(
    world: World,
) -> None:
    """A one-off dyno nobody named keeps running: the step fails after drain_seconds + 30 s
    naming it; rollback runs after failures too, from the formation saved before the scale."""
    seed_one_offs(world, run_3="bin/long-import")
    ctx, _ = world.context(drain=0)
    saved: dict[str, Any] = {}
    ctx.checkpoint = saved.update  # the engine's checkpoint: what the state file would hold
    with pytest.raises(CutoverError) as failed:
        ScaleDown().apply(ctx)
    assert "run.3 (up: bin/long-import)" in failed.value.brief
    assert "window.stop_one_off" in failed.value.resolution
    assert world.formation() == {"web": 2, "worker": 0, "clock": 0}
    st = ctx.state.step("scale-down")
    st.outputs.update(saved)
    st.status = Status.FAILED
    world.calls()
    step = ScaleDown()
    assert step.undo_needed(ctx) == "Heroku runs clock=0 (was 1), worker=0 (was 1)"
    step.undo(ctx)
    assert world.formation() == {"web": 2, "worker": 1, "clock": 1}
    assert world.calls() == [["ps:scale"], ["ps:scale", "clock=1", "worker=1"]]


def test_disable_scheduler_lists_the_timers_at_its_gate(world: World) -> None:
    extra = (
        "timers:\n"
        "  - {name: nightly, schedule: '0 3 * * *', command: 'rake report'}\n"
        "  - {name: sweep, schedule: '*/10 * * * *', command: 'bin/sweep'}\n"
    )
    ctx, _ = world.context(extra=extra)
    step = DisableScheduler()
    assert step.check(ctx) is None
    # Before the window, it reads what freeze-writes needs (at once), kept in memory only.
    assert sorted(world.calls()) == [["addons", "--json"], ["pg:credentials:url", "DATABASE"]]
    assert PREFETCH in ctx.extras
    text = step.gate_text(ctx)
    assert "nightly: 0 3 * * * rake report" in text and "sweep: */10 * * * * bin/sweep" in text
    assert "no CLI" in text
    out = step.apply(ctx)
    assert out.jobs == ["nightly: 0 3 * * * rake report", "sweep: */10 * * * * bin/sweep"]
    assert world.calls() == []  # nothing to ask Heroku: the gate is the operator's


def test_without_the_freeze_the_window_still_reads_the_url_before_it(world: World) -> None:
    """final-sync and verify-data need Heroku's URL inside the window: it is read once, before
    it (heroku adapter, CREDENTIALS_MAX_AGE), kept in memory only, even without freeze-writes."""
    ctx, _ = world.context(window="  freeze_writes: false")
    assert not ctx.model.window.freeze_writes
    DisableScheduler().check(ctx)
    assert world.calls() == [["pg:credentials:url", "DATABASE"]]
    url = ctx.heroku.credentials_url("DATABASE")  # what final-sync and verify-data ask for
    assert url.startswith("postgres") and world.calls() == []
    assert url not in json.dumps(ctx.state.model_dump(mode="json"))


def test_disable_scheduler_asks_when_preflight_saw_the_addon_without_timers(world: World) -> None:
    ctx, _ = world.context()
    st = ctx.state.step("preflight")
    st.outputs.update(
        {
            "heroku_cli": "11.10.0",
            "heroku_formation": {},
            "heroku_addons": ["scheduler"],
            "scheduler": True,
            "router": "router.test",
            "rack": "test",
        }
    )
    st.status = Status.DONE
    step = DisableScheduler()
    assert step.check(ctx) is None
    assert "preflight saw a Scheduler add-on" in step.gate_text(ctx)


def test_disable_scheduler_has_nothing_to_do_without_addon_or_timers(world: World) -> None:
    ctx, notes = world.context()
    out = DisableScheduler().check(ctx)
    assert out is not None and out.jobs == [] and out.nothing
    assert any("nothing to disable" in line for line in notes.lines)


def test_addons_json_names_other_apps_attached_to_the_database(world: World) -> None:
    """`heroku addons --json` joins GET /addon-attachments (commands/addons/index.js): an
    attachment of the same add-on to another app shows there."""
    with update_state(world.emu.state_path) as state:
        entry = state["apps"][APP]
        pg = next(a for a in entry["addons"] if a["addon_service"]["name"] == "heroku-postgresql")
        other = json.loads(json.dumps(entry))
        other["app"] = {**entry["app"], "id": "0f0f0f0f-1111-2222-3333-444455556666",
                        "name": "myapp-admin"}  # fmt: skip
        shared = {**pg, "app": {"id": entry["app"]["id"], "name": APP}}
        shared["attachments"] = [{**pg["attachments"][0], "id": "att-admin", "name": "MAIN_DB"}]
        other["addons"] = [shared]
        state["apps"]["myapp-admin"] = other
    ctx, _ = world.context()
    addons = ctx.heroku.addons()
    assert other_apps(addons, APP, "DATABASE") == ["myapp-admin::MAIN_DB"]
    assert world.calls() == [["addons", "--json"]]
