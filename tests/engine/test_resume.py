"""kill -9 anywhere, then resume: the final state equals an uninterrupted run's and no effect is
applied twice.

The two chains (:mod:`fakes.chains`, run once a session by the ``boundary_chain`` and
``effect_chain`` fixtures) cross every interruption point with a real ``kill -9``; each test
below checks one property of a chain, so a failure names what broke.
"""

from __future__ import annotations

import signal

import pytest
from fakes.chains import EFFECT_HOOKS, Chain
from fakes.harness import ORIGINAL_TTL, STEP_IDS, Finished, Project, normalized_state
from fakes.seed import ROUTER

pytestmark = pytest.mark.slow


def state_differences(expected: dict[str, object], got: dict[str, object]) -> list[str]:
    return [
        f"{step}: expected {expected.get(step)}, got {got.get(step)}"
        for step in STEP_IDS
        if expected.get(step) != got.get(step)
    ]


def killed_steps(project: Project) -> list[str]:
    return [k.get("step", "?") for k in project.world().get("kills", [])]


# -- kill -9 before the first command of every step ---------------------------------------------
def test_boundary_kills_hit_every_step_that_runs_commands(
    boundary_chain: Chain, finished: Finished
) -> None:
    steps = list(finished.first_call)
    assert steps[:3] == ["preflight", "create-app", "set-env"]
    assert len(boundary_chain.results) == len(steps) + 1
    assert killed_steps(boundary_chain.project) == steps
    assert {k["moment"] for k in boundary_chain.project.world()["kills"]} == {"before"}


def test_each_boundary_crash_is_visible_and_resumed(
    boundary_chain: Chain, finished: Finished
) -> None:
    for step, snapshot, resumed in zip(
        finished.first_call, boundary_chain.snapshots, boundary_chain.results[1:], strict=True
    ):
        # Checkpointed as running before its first command; every earlier step done; the next
        # run says it resumes that step.
        statuses = {sid: st["status"] for sid, st in snapshot["steps"].items()}
        assert statuses[step] == "running", (step, statuses)
        earlier = STEP_IDS[: STEP_IDS.index(step)]
        assert all(statuses.get(sid) in ("done", "skipped") for sid in earlier), statuses
        assert f"{step}: " in resumed.stdout
        assert "(was running when cutover stopped: check, then run again)" in resumed.stdout


def test_boundary_kills_end_in_the_uninterrupted_state(
    boundary_chain: Chain, finished: Finished
) -> None:
    got = normalized_state(boundary_chain.project.state())
    assert state_differences(finished.state, got) == []


def test_boundary_kills_apply_no_effect_twice(boundary_chain: Chain, finished: Finished) -> None:
    assert boundary_chain.project.effect_counts() == finished.effects


# -- kill -9 right after each effect ----------------------------------------------------------
def test_effect_kills_hit_every_effect(effect_chain: Chain) -> None:
    project = effect_chain.project
    assert len(effect_chain.results) == len(EFFECT_HOOKS) + 3 + 1  # + 3 DNS kills + the last
    assert killed_steps(project) == [
        "create-app",
        "set-env",
        "deploy",
        "add-domain",
        "maintenance-on",
        "scale-down",
    ]
    assert len(project.tap.updates) == 3  # lower-ttl, switch-dns, restore-ttl
    record = project.dns_record()
    assert record is not None and record.values == [ROUTER + "."] and record.ttl == ORIGINAL_TTL


def test_effect_kills_apply_no_effect_twice(effect_chain: Chain, finished: Finished) -> None:
    assert effect_chain.project.effect_counts() == finished.effects


def test_every_interrupted_step_is_found_already_applied(effect_chain: Chain) -> None:
    steps = effect_chain.project.state()["steps"]
    assert sorted(sid for sid, st in steps.items() if st["found_applied"]) == [
        "add-domain",
        "create-app",
        "deploy",
        "disable-scheduler",  # no Scheduler add-on and no timers: nothing to disable
        "final-sync-mysql",  # no MySQL add-on: the checks find nothing to do (steps/mysql.py)
        "initial-sync-mysql",
        "lower-ttl",
        "maintenance-on",
        "restore-ttl",  # killed right after its DNS update
        "scale-down",
        "set-env",
        "switch-dns",
        "verify-mysql",
    ]


def test_effect_kills_end_in_the_uninterrupted_state(
    effect_chain: Chain, finished: Finished
) -> None:
    """A step found already applied must record the same outputs as one that applied itself
    (the release set-env created, whether add-domain edited the manifest, ...)."""
    problems = state_differences(finished.state, normalized_state(effect_chain.project.state()))
    assert problems == [], "\n".join(problems)


def test_maintenance_found_on_keeps_the_real_start_of_the_window(effect_chain: Chain) -> None:
    """The window (and the measured downtime) starts when maintenance went on, not when a
    resumed run noticed it was on (the chain pauses before that resume)."""
    project = effect_chain.project
    went_on = project.world()["heroku"]["maintenance_on_at"]
    recorded = project.state()["steps"]["maintenance-on"]["outputs"]["at"]
    assert recorded == pytest.approx(went_on, abs=1.0), (
        f"maintenance-on recorded the window start {recorded - went_on:.1f}s after maintenance "
        "actually went on"
    )


# -- single interruptions -----------------------------------------------------------------------
def test_kill_9_between_build_release_command_and_promote(project: Project) -> None:
    """With a release command, the app's first deploy is build, promote, ``convox run --release
    R`` (the run pod needs what the first promote creates: provider/k8s/process.go). Killed
    after each: the build is never repeated, the release promoted once, and the release command,
    whose end was never seen, is not run again on its own (pkg/cli/run.go: it may still run on
    the rack): cutover stops and says what to check, and goes on once the operator says it
    finished (CUTOVER_RELEASE_COMMAND_DONE=R)."""
    project.playbook.write_text(
        project.playbook.read_text() + "release:\n  command: bin/rails db:migrate\n  service: web\n"
    )
    hooks = "convox build:after;convox releases promote:after;convox run:after"
    results = []
    for _ in range(3):
        results.append(
            project.run("run", "--yes", "--until", "deploy", env={"FAKE_KILL_PARENT": hooks})
        )
    assert [r.returncode for r in results] == [-signal.SIGKILL] * 3, results[-1]
    stopped = project.run("run", "--yes", "--until", "deploy")
    assert stopped.returncode == 1, stopped
    app = project.world()["convox"]["apps"]["shop"]
    release = app["active"]
    assert "cannot tell whether it finished" in stopped.output
    assert f"CUTOVER_RELEASE_COMMAND_DONE={release} cutover run" in stopped.output
    assert f"CUTOVER_RELEASE_COMMAND_RERUN={release} cutover run" in stopped.output

    done = project.run(
        "run", "--yes", "--until", "deploy", env={"CUTOVER_RELEASE_COMMAND_DONE": release}
    )

    assert done.returncode == 0, done
    effects = project.effect_counts()
    assert effects["convox build"] == 1
    assert effects["convox run web bin/rails db:migrate"] == 1
    assert effects["convox releases promote"] == 1
    assert "convox deploy" not in effects
    order = [e for e in project.effects() if e.startswith(("convox run", "convox releases"))]
    assert order == ["convox releases promote", "convox run web bin/rails db:migrate"]
    deploy = project.state()["steps"]["deploy"]
    assert deploy["status"] == "done"
    assert deploy["outputs"]["release"] == app["active"]
    assert deploy["outputs"]["release_command_done"] == app["active"]


def test_kill_9_in_the_middle_of_a_sync_reruns_the_sync(
    project: Project, finished: Finished
) -> None:
    """A sync interrupted after its restore runs again with the backup it captured (its id was
    saved before the download; pg/backups/url.js gives that backup's URL, not the newest one):
    no second capture, the restore is repeated, and the dump the killed run left behind is
    removed."""
    env = {"FAKE_KILL_PARENT": "pg_restore --no-owner:after"}
    first = project.run("run", "--yes", "--until", "initial-sync", env=env)
    assert first.returncode == -signal.SIGKILL, first
    work = project.state_dir / "work"
    assert (work / "initial-sync.dump").exists()  # no `finally` runs after kill -9

    resumed = project.run("run", "--yes", "--until", "initial-sync", env=env)

    assert resumed.returncode == 0, resumed
    effects = project.effect_counts()
    assert effects["heroku pg:backups:capture"] == 1
    assert effects["pg_restore"] == 2
    sync = normalized_state(project.state())["initial-sync"]
    expected = finished.state["initial-sync"]
    assert sync["outputs"]["backup"] == "b001"
    assert sync == expected
    world = project.world()
    target = world["convox"]["apps"]["shop"]["resources"]["database"]["data"]
    assert target == world["heroku"]["database"]["data"]
    assert not [p.name for p in work.iterdir() if p.suffix in (".dump", ".part")]
