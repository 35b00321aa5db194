"""Issue 9 through the real CLI: a run is bound to its apps, an existing Convox app is adopted
only with consent (its env differences shown by name at a gate), and a playbook change re-runs
exactly the steps that read the changed fields."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fakes import seed
from fakes.harness import STEP_IDS, Finished, Project

pytestmark = pytest.mark.slow


def test_a_copied_playbook_naming_other_apps_is_refused(
    finished: Finished, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Copy a finished run's folder, change the app names, --accept-changes: refused (exit 2),
    nothing run, the state untouched (it used to report "cutover complete in 0.0s")."""
    project = finished.project
    copy = tmp_path_factory.mktemp("copied") / "project"
    shutil.copytree(project.root, copy, ignore=shutil.ignore_patterns("world", "*.sock"))
    playbook = copy / "cutover.yml"
    text = playbook.read_text()
    playbook.write_text(
        text.replace(f"app: {seed.HEROKU_APP}", "app: other-shop").replace(
            f"app: {seed.CONVOX_APP}\n", "app: other\n"
        )
    )
    state_before = (copy / ".cutover" / "state.json").read_bytes()
    calls_before = len(project.calls())

    refused = project.run("run", "--yes", "--accept-changes", "-f", str(playbook), cwd=copy)

    output = refused.output
    assert refused.returncode == 2, refused
    assert "Traceback" not in output
    assert "names other apps than the run recorded" in output
    assert f"heroku.app: {seed.HEROKU_APP} -> other-shop" in output
    assert f"convox.app: {seed.CONVOX_APP} -> other" in output
    assert "cutover complete" not in output
    assert (copy / ".cutover" / "state.json").read_bytes() == state_before
    assert len(project.calls()) == calls_before


def _convox(project: Project, *argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["convox", *argv, "-r", seed.RACK],
        input=stdin,
        env=project.env(
            {"FAKE_WORLD": str(project.world_path), "FAKE_CALLS": str(project.calls_path)}
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done
    return done.stdout


def _precreate(project: Project, **env: str) -> str:
    """An app someone else made on the rack, with its own env, promoted: its release."""
    _convox(project, "apps", "create", seed.CONVOX_APP)
    out = _convox(
        project,
        "env",
        "set",
        "-a",
        seed.CONVOX_APP,
        stdin="".join(f"{k}={v}\n" for k, v in env.items()),
    )
    release = out.rsplit("Release: ", 1)[1].split()[0]
    _convox(project, "releases", "promote", release, "-a", seed.CONVOX_APP)
    return release


def test_an_existing_app_is_adopted_only_with_consent(project: Project) -> None:
    theirs = "sk_live_not_heroku_value"
    their_release = _precreate(project, STRIPE_SECRET_KEY=theirs)

    refused = project.run("run", "--yes", "--until", "set-env")

    assert refused.returncode == 2, refused
    assert f"the Convox app {seed.CONVOX_APP} already exists" in refused.output
    assert "convox.adopt: true" in refused.output
    assert "Traceback" not in refused.output
    assert project.effect_counts().get("convox env set", 0) == 1  # ours above only

    project.playbook.write_text(
        project.playbook.read_text().replace(
            f"  rack: {seed.RACK}\n", f"  rack: {seed.RACK}\n  adopt: true\n", 1
        )
    )
    waiting = project.run("run", "--accept-changes", "--until", "set-env")

    assert waiting.returncode == 3, waiting
    assert "STRIPE_SECRET_KEY" in waiting.output
    assert theirs not in waiting.output
    assert project.secret_values()["stripe_key"] not in waiting.output
    assert project.effect_counts().get("convox env set", 0) == 1  # nothing overwritten yet
    outputs = project.state()["steps"]["create-app"]["outputs"]
    assert outputs == {"app": seed.CONVOX_APP, "adopted": True}

    confirmed = project.run("run", "--yes", "--until", "set-env")

    assert confirmed.returncode == 0, confirmed
    assert project.effect_counts()["convox env set"] == 2

    # The release active before cutover's deploy is recorded for a rollback to return to.
    active = project.world()["convox"]["apps"][seed.CONVOX_APP]["active"]
    # pkg/cli/env.go: `env set` promotes only with --promote; this one was promoted by hand.
    assert active == their_release
    deployed = project.run("run", "--yes", "--until", "deploy")

    assert deployed.returncode == 0, deployed
    deploy = project.state()["steps"]["deploy"]["outputs"]
    assert deploy["previous_release"] == active
    assert deploy["release"] != active


def test_a_created_app_is_recorded_as_created(finished: Finished) -> None:
    outputs = finished.project.state()["steps"]["create-app"]["outputs"]
    assert outputs["created"] is True
    assert outputs.get("adopted") is None


def test_a_changed_field_reruns_exactly_the_steps_that_read_it(project: Project) -> None:
    assert project.run("run", "--yes", "--until", "smoke-test").returncode == 0
    project.playbook.write_text(
        project.playbook.read_text().replace("  timeout: 20\n", "  timeout: 30\n")
    )

    refused = project.run("run", "--yes", "--until", "smoke-test")

    assert refused.returncode == 2, refused
    assert "finished steps whose inputs changed: smoke-test" in refused.output

    accepted = project.run("run", "--yes", "--accept-changes", "--until", "smoke-test")

    assert accepted.returncode == 0, accepted
    assert "re-running (inputs changed): smoke-test" in accepted.stdout
    started = [e["step"] for e in project.events() if e["kind"] == "step-start"]
    assert started == [*STEP_IDS[: STEP_IDS.index("smoke-test") + 1], "smoke-test"]
    assert [e["steps"] for e in project.events() if e["kind"] == "rerun-changed"] == [
        ["smoke-test"]
    ]
