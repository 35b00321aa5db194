"""Failures of external commands during a run: retried, reported, interrupted, resumed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from fakes.harness import Project

pytestmark = pytest.mark.slow


def test_a_transient_heroku_error_is_retried(project: Project) -> None:
    result = project.run(
        "run", "--yes", "--until", "set-env", env={"FAKE_FAIL": "heroku config:once"}
    )

    assert result.returncode == 0, result
    (retry,) = [e for e in project.events() if e["kind"] == "retry"]
    assert retry["step"] == "set-env"
    assert retry["argv"] == ["heroku", "config", "--json", "-a", "acme-shop"]
    assert retry["attempt"] == 1
    assert "exit code 2" in retry["reason"]
    config_calls = [argv for argv in project.argvs() if argv[:2] == ["heroku", "config"]]
    assert len(config_calls) == 2
    outcomes = [
        e["outcome"]
        for e in project.events()
        if e["kind"] == "command" and e["argv"][:2] == ["heroku", "config"]
    ]
    assert outcomes == ["failed", "ok"]
    assert project.state()["steps"]["set-env"]["status"] == "done"


def test_a_permanent_failure_stops_with_the_command_and_how_to_resume(project: Project) -> None:
    failed = project.run(
        "run", "--yes", "--until", "deploy", env={"FAKE_FAIL": "convox deploy:always"}
    )

    assert failed.returncode == 1, failed
    out = failed.output
    assert "Traceback" not in out
    assert "step deploy failed: command failed with exit code 1: convox deploy " in out
    run_id = project.state()["run_id"]
    assert f"cutover {run_id} deploy" in out and "-a shop -r acme/production" in out
    assert "ERROR: err1" in out
    # The build log echoed a secret from the app's env: shown masked, never in clear.
    assert "Step 1/3 : ARG SECRET_KEY_BASE=****" in out
    assert project.secrets.secret_key_base not in out
    assert "Fix the cause, then resume with: cutover run\n" in out
    deploy = project.state()["steps"]["deploy"]
    assert deploy["status"] == "failed"
    assert "ERROR: err1" in deploy["error"]
    assert project.secrets.secret_key_base not in project.state_path.read_text()
    assert "convox deploy" not in project.effects()

    resumed = project.run("run", "--yes", "--until", "deploy")

    assert resumed.returncode == 0, resumed
    assert "deploy: Build and promote on Convox  (failed last time: check, then run again)" in (
        resumed.stdout
    )
    deploy = project.state()["steps"]["deploy"]
    assert deploy["status"] == "done"
    assert deploy["attempts"] == 2
    assert deploy["error"] is None
    assert project.effect_counts()["convox deploy"] == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_stops_the_hung_command_and_the_run_resumes(
    project: Project, sig: signal.Signals
) -> None:
    proc = project.start(
        "run", "--yes", "--until", "create-app", env={"FAKE_FAIL": "convox apps create:hang"}
    )
    deadline = time.monotonic() + 60
    while not project.world().get("processes"):
        assert proc.poll() is None, project.finish(proc)
        assert time.monotonic() < deadline, "the hanging fake never started"
        time.sleep(0.05)
    (hung,) = project.world()["processes"]

    proc.send_signal(sig)
    result = project.finish(proc, timeout=30)

    assert result.returncode == 130, result
    assert "Traceback" not in result.output
    assert "interrupted during create-app" in result.output
    assert "Resume with: cutover run" in result.output
    assert not _running(hung["pid"]), "the hung convox is still running"
    create = project.state()["steps"]["create-app"]
    assert create["status"] == "interrupted"
    kinds = [
        (e["kind"], e.get("outcome")) for e in project.events() if e.get("step") == "create-app"
    ]
    assert ("command", "interrupted") in kinds
    assert ("step-interrupted", None) in kinds

    resumed = project.run("run", "--yes", "--until", "create-app")

    assert resumed.returncode == 0, resumed
    assert "(was interrupted: check, then run again)" in resumed.stdout
    assert project.state()["steps"]["create-app"]["status"] == "done"
    assert project.effect_counts()["convox apps create"] == 1


def _running(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
        except FileNotFoundError:
            return False
        time.sleep(0.05)
    return True


def test_exhausted_retries_fail_with_the_resume_command_for_this_playbook(
    project: Project, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    failed = project.run(
        "run",
        "-f",
        str(project.playbook),
        "--yes",
        "--until",
        "preflight",
        env={"FAKE_FAIL": "heroku apps:info:always"},
        cwd=elsewhere,
    )

    assert failed.returncode == 1, failed
    assert "step preflight failed" in failed.output
    assert "Error ID: internal_server_error" in failed.output
    assert f"resume with: cutover run -f {project.playbook}\n" in failed.output
    attempts = [argv for argv in project.argvs() if argv[:2] == ["heroku", "apps:info"]]
    assert len(attempts) == 3
    assert len([e for e in project.events() if e["kind"] == "retry"]) == 2


def test_a_failed_restore_stops_the_proxy_and_removes_the_dump(project: Project) -> None:
    failed = project.run(
        "run", "--yes", "--until", "initial-sync", env={"FAKE_FAIL": "pg_restore --no-owner:always"}
    )

    assert failed.returncode == 1, failed
    assert "step initial-sync failed: command failed with exit code 1: pg_restore --no-owner" in (
        failed.output
    )
    assert "canceling statement due to statement timeout" in failed.output
    proxies = [p for p in project.world()["processes"] if p["kind"] == "proxy"]
    assert len(proxies) == 2  # check-data's (read-only), then initial-sync's
    assert not [p for p in proxies if _running(p["pid"])], "a resources proxy was left running"
    kinds = [e["kind"] for e in project.events() if e.get("step") == "initial-sync"]
    assert "command-stop" in kinds
    work = project.state_dir / "work"
    assert not [p.name for p in work.iterdir() if p.suffix in (".dump", ".part")]
    assert project.state()["steps"]["initial-sync"]["status"] == "failed"
