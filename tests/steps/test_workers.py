"""Nothing runs twice (issue 11): deploy and add-domain hold the app's non-web services at 0 and
its timers out of the release; start-workers, after the switch, scales them to Heroku's formation
and releases the timers; its undo holds them again. Driven through the real Convox adapter
against the convox stand-in, which follows the rack's scale rules (provider/k8s/release.go
``CoalesceInt(runtime, scale.count.min)``; tests/sandbox/test_convox_fake_scale.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.convox_rack import convox_rack
from support.waiting import wait_for

from cutover.adapters.convox import ConvoxAdapter
from cutover.engine.plan import new_state
from cutover.errors import InvalidInput
from cutover.playbook import load_playbook
from cutover.runner import Runner
from cutover.sandbox import convox_fake
from cutover.secrets import SecretMasker
from cutover.state import Status
from cutover.steps import BY_ID, STEP_IDS
from cutover.steps.base import Context, StepOutputs, dump
from cutover.steps.holding import staged_manifest, staged_name
from cutover.steps.preflight import Dynos, PreflightOutputs

FAST = {"build_created": 0.1, "build_running": 0.2, "rollout": 0.2, "poll": 0.1}
PLAYBOOK = """\
version: 1
heroku:
  app: shop-heroku
convox:
  app: demo
  rack: sandbox
smoke:
  service: web
  checks:
    - path: /healthz
"""
MANIFEST = """\
# the app's manifest, as translate writes it
services:
  web:
    build: .
    port: 3000
  worker:
    build: .
    command: bundle exec sidekiq
    scale:
      count: 1
      memory: 1024
  worker-low:
    build: .
    command: bundle exec sidekiq -q low
  pgclient:
    image: postgres:15
    scale:
      count: 0
timers:
  cleanup:
    schedule: "0 3 * * *"
    service: worker
    command: bin/cleanup
"""


class Quiet:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


@dataclass
class World:
    ctx: Context
    convox: ConvoxAdapter
    root: Path

    def run(self, step_id: str) -> StepOutputs:
        """Run a step's apply as the engine would, and record it done."""
        self.ctx.runner.step = step_id
        st = self.ctx.state.step(step_id)
        st.status = Status.RUNNING
        out = BY_ID[step_id].apply(self.ctx)
        st.outputs.update(dump(out))
        st.status = Status.DONE
        return out

    def desired(self) -> dict[str, int]:
        return {r["SERVICE"]: int(r["DESIRED"]) for r in self.convox.scale_table()}

    def running(self) -> dict[str, int]:
        return {r["SERVICE"]: int(r["RUNNING"]) for r in self.convox.scale_table()}

    def active_timers(self) -> list[str]:
        active = self.convox.active_release()
        assert active
        return list(yaml.safe_load(self.convox.release_manifest(active)).get("timers") or {})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "cutover.yml").write_text(PLAYBOOK, encoding="utf-8")
    (root / "convox.yml").write_text(MANIFEST, encoding="utf-8")
    with convox_rack(
        tmp_path / "bin", tmp_path / "cfg", name="sandbox", domain="router.t", timings=FAST
    ):
        masker = SecretMasker()
        env = {
            "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "CONVOX_CONFIG": str(tmp_path / "cfg"),
            "HOME": str(tmp_path),
        }
        runner = Runner(masker, base_env=env)
        convox = ConvoxAdapter(runner, masker, "demo", "sandbox")
        playbook = load_playbook(root / "cutover.yml")
        state = new_state(playbook)
        none: Any = None

        def checkpoint(outputs: dict[str, Any]) -> None:
            assert runner.step
            state.step(runner.step).outputs.update(outputs)

        ctx = Context(
            playbook=playbook,
            state=state,
            runner=runner,
            masker=masker,
            heroku=none,
            convox=convox,
            postgres=none,
            http=none,
            dns=None,
            reporter=Quiet(),
            work_dir=root / ".cutover" / "work",
            checkpoint=checkpoint,
            sleep=lambda s: None,
        )
        formation = {"web": Dynos(quantity=2, size="std"), "worker": Dynos(quantity=3, size="x")}
        formation["worker_low"] = Dynos(quantity=0, size="x")
        pre = PreflightOutputs(
            heroku_cli="11.10.0",
            heroku_formation=formation,
            heroku_addons=[],
            scheduler=True,
            router="router.t",
            rack="sandbox",
        )
        state.step("preflight").outputs = dump(pre)
        state.step("preflight").status = Status.DONE
        convox.create_app()
        yield World(ctx, convox, root)


def test_start_workers_is_the_last_step() -> None:
    # ... of the cutover proper: only restore-ttl (issue 12) follows, after the soak.
    assert STEP_IDS[-3:] == ["verify-site", "start-workers", "restore-ttl"]


def test_staged_manifest_holds_every_service_but_web_and_leaves_timers_out() -> None:
    data = yaml.safe_load(MANIFEST)
    held = staged_manifest(data, "web", "convox.yml")
    assert "timers" not in held
    assert held["services"]["web"] == data["services"]["web"]
    assert held["services"]["worker"]["scale"] == {"count": 0, "memory": 1024}
    assert held["services"]["worker-low"]["scale"] == {"count": 0}
    assert held["services"]["worker"]["command"] == "bundle exec sidekiq"
    live = staged_manifest(data, "web", "convox.yml", release_to={"worker": 3, "worker-low": 0})
    assert live["timers"] == data["timers"]
    assert live["services"]["worker"] == data["services"]["worker"]  # its runtime count wins
    assert live["services"]["worker-low"]["scale"] == {"count": 0}  # Heroku ran none
    assert staged_name("convox.yml") == "convox.cutover.yml"
    assert staged_name("deploy/convox.yaml") == "deploy/convox.cutover.yml"


def test_autoscale_keys_are_dropped_and_an_agent_is_refused() -> None:
    """pkg/manifest/manifest.go ApplyDefaults: min/max/autoscale decide the count, so a held
    service keeps only its sizing; an agent (a DaemonSet) has no count to hold."""
    spec = {"scale": {"min": 1, "max": 4, "autoscale": {"cpu": {"threshold": 70}}, "cpu": 500}}
    data = {"services": {"web": {"port": 3000}, "jobs": spec}}
    assert staged_manifest(data, "web", "convox.yml")["services"]["jobs"]["scale"] == {
        "count": 0,
        "cpu": 500,
    }
    data["services"]["jobs"] = {"agent": True}
    with pytest.raises(InvalidInput, match=r"convox.yml: services.jobs is an agent"):
        staged_manifest(data, "web", "convox.yml")


def test_deploy_holds_the_workers_and_start_workers_releases_them(world: World) -> None:
    deployed = world.run("deploy")
    # After `--until deploy`: no worker wants or runs a process, no timer is in the release.
    assert world.desired() == {"pgclient": 0, "web": 1, "worker": 0, "worker-low": 0}
    assert world.running()["worker"] == 0
    assert world.active_timers() == []
    staged = (world.root / "convox.cutover.yml").read_text(encoding="utf-8")
    assert staged.startswith("# Written by cutover from convox.yml")
    assert "timers cleanup left out" in staged
    assert (world.root / "convox.yml").read_text(encoding="utf-8") == MANIFEST  # untouched

    out = world.run("start-workers")
    # Heroku's formation (worker_low maps to worker-low, as translate names it); pgclient has
    # no Heroku type: its manifest count, 0.
    assert out.model_dump() == {
        "scaled": {"worker": 3, "worker-low": 0, "pgclient": 0},
        "timers": ["cleanup"],
        "release": world.convox.active_release(),
        "held_release": deployed.release,  # type: ignore[attr-defined]
    }
    assert world.desired() == {"pgclient": 0, "web": 1, "worker": 3, "worker-low": 0}
    assert world.running()["worker"] == 3
    assert world.active_timers() == ["cleanup"]
    step = BY_ID["start-workers"]
    assert step.check(world.ctx) is not None  # done is seen as done: a resume does nothing

    reason = step.undo_needed(world.ctx)
    assert reason == "the Convox service(s) worker run beside Heroku's"
    step.undo(world.ctx)
    assert world.desired() == {"pgclient": 0, "web": 1, "worker": 0, "worker-low": 0}
    assert world.running()["worker"] == 0
    assert world.convox.active_release() == deployed.release  # type: ignore[attr-defined]
    assert world.active_timers() == []
    assert step.undo_needed(world.ctx) is None
    assert step.check(world.ctx) is None  # rolled back: a later run starts them again


def test_an_adopted_apps_running_worker_is_scaled_to_zero_by_deploy(world: World) -> None:
    """The promote keeps a non-zero runtime count (CoalesceInt), even with scale.count 0 in the
    manifest: deploy reads the scale back and scales the worker to 0."""
    world.convox.deploy(world.root, "convox.yml", "the app before cutover")
    assert world.desired()["worker"] == 1
    world.run("deploy")
    assert world.desired()["worker"] == 0
    assert world.running()["worker"] == 0
    assert any("scaling it to 0 until the switch" in n for n in world.ctx.reporter.notes)  # type: ignore[attr-defined]


def test_start_workers_plan_names_the_counts_once_preflight_recorded_them(world: World) -> None:
    lines = BY_ID["start-workers"].describe(world.ctx)
    assert "convox scale worker --count 3 -a demo -r sandbox   (unless already so)" in lines
    assert any(
        line.startswith("convox build ") and "-m convox.cutover.yml" in line for line in lines
    )
    assert "convox scale -a demo -r sandbox   (read back: DESIRED and RUNNING)" in lines


def test_an_interrupted_start_workers_finishes_its_own_build(world: World) -> None:
    """Killed after its build started (the marker saved first: steps/ship.py build_marker): a
    resume waits for that build, promotes it and verifies, never building twice."""
    world.run("deploy")
    step = BY_ID["start-workers"]
    world.ctx.runner.step = "start-workers"
    st = world.ctx.state.step("start-workers")
    st.status = Status.RUNNING
    st.outputs.update({"targets": {"worker": 3, "worker-low": 0, "pgclient": 0}})
    marker = f"cutover {world.ctx.state.run_id} start-workers abc123"
    st.outputs["marker"] = marker
    world.convox.scale("worker", 3)
    data = yaml.safe_load(MANIFEST)
    live = staged_manifest(data, "web", "convox.yml", release_to={"worker": 3, "worker-low": 0})
    (world.root / "convox.cutover.yml").write_text(yaml.safe_dump(live), encoding="utf-8")
    built = world.convox.build(world.root, "convox.cutover.yml", marker)
    builds_before = len(world.convox.builds())

    out = step.recover(world.ctx)

    assert out is not None and out.release == built  # type: ignore[attr-defined]
    assert world.convox.active_release() == built
    assert len(world.convox.builds()) == builds_before
    assert world.active_timers() == ["cleanup"]
    assert world.running()["worker"] == 3


def test_undo_after_a_failed_start_workers_stops_what_it_started(world: World) -> None:
    """Rollback runs after failures too: undo reads the targets saved before the first scale."""
    world.run("deploy")
    step = BY_ID["start-workers"]
    world.ctx.state.step("start-workers").status = Status.FAILED
    world.ctx.state.step("start-workers").outputs["targets"] = {"worker": 2}
    assert step.undo_needed(world.ctx) is None  # nothing runs yet: nothing to undo
    world.convox.scale("worker", 2)
    assert step.undo_needed(world.ctx) == "the Convox service(s) worker run beside Heroku's"
    assert step.undo_describe(world.ctx)[0] == "convox scale worker --count 0 -a demo -r sandbox"
    step.undo(world.ctx)
    assert world.desired()["worker"] == 0
    assert step.undo_needed(world.ctx) is None


def test_deploy_plan_shows_the_staged_manifest(world: World) -> None:
    lines = BY_ID["deploy"].describe(world.ctx)
    assert lines[0] == (
        "write convox.cutover.yml from convox.yml: held at scale.count 0 until start-workers: "
        "worker, worker-low, pgclient; timers left out: cleanup"
    )
    assert any("-m convox.cutover.yml" in line for line in lines)


def test_timers_fire_on_convox_only_after_start_workers(world: World) -> None:
    """The stand-in fires the active release's timers (cutover/sandbox/convox_fake/timers.py):
    after deploy there is no timers job at all; after start-workers the timer runs."""
    config = Path(world.ctx.runner.base_env["CONVOX_CONFIG"])
    convox_fake.configure_rack(config, name="sandbox", timings={"timer_minute": 0.3})
    out = world.root / "fired.txt"
    manifest = MANIFEST.replace(
        '    schedule: "0 3 * * *"\n    service: worker\n    command: bin/cleanup\n',
        f"    schedule: '* * * * *'\n    service: worker\n"
        f"    command: sh -c 'echo $TIMER >> {out}'\n",
    )
    assert manifest != MANIFEST
    (world.root / "convox.yml").write_text(manifest, encoding="utf-8")

    def timer_jobs() -> list[object]:
        jobs = convox_fake.read_state(config).get("jobs") or []
        return [j for j in jobs if j["kind"] == "timers"]

    world.run("deploy")
    assert timer_jobs() == []  # held: no CronJob, nothing can fire
    world.run("start-workers")
    wait_for(lambda: out.exists() and "cleanup" in out.read_text(), "the timer fired")
    BY_ID["start-workers"].undo(world.ctx)
    wait_for(lambda: timer_jobs() == [], "the timers pruned by the held release")
