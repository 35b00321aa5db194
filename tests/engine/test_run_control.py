"""Controlling a run: gates, --until, --from, and a playbook that changed since the run started."""

from __future__ import annotations

import getpass
import json
import os
import pty
import re
import select
import subprocess
import time

import pytest
from fakes.harness import (
    GATED_STEPS,
    LOWERED_TTL,
    SKIPPED_IN_FAKES,
    STEP_IDS,
    Project,
    cutover_command,
)
from fakes.seed import ROUTER

pytestmark = pytest.mark.slow

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(
    project: Project, args: list[str], answers: list[str], timeout: float = 90
) -> tuple[int, str]:
    """Run cutover with a pseudo-terminal as stdin/stdout; answer each ``[y/n]`` prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*cutover_command(), *args],
        cwd=project.root,
        env=project.env({"TERM": "dumb"}),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    raw = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            raw += chunk
            text = _ANSI.sub("", raw.decode(errors="replace"))
            if answered < len(answers) and text.count("[y/n]") > answered:
                os.write(master, answers[answered].encode() + b"\n")
                answered += 1
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, _ANSI.sub("", raw.decode(errors="replace")).replace("\r\n", "\n")


def test_gates_stop_without_a_terminal_and_record_who_answered(project: Project) -> None:
    waiting = project.run("run")

    assert waiting.returncode == 3, waiting
    assert "waiting at the gate before maintenance-on" in waiting.output
    assert "cutover run --yes" in waiting.output
    steps = project.state()["steps"]
    before_gate = [
        s for s in STEP_IDS[: STEP_IDS.index("maintenance-on")] if s not in SKIPPED_IN_FAKES
    ]
    assert {sid: steps[sid]["status"] for sid in before_gate} == dict.fromkeys(before_gate, "done")
    assert steps["maintenance-on"]["status"] == "pending"
    assert steps["maintenance-on"]["attempts"] == 0
    assert not project.world()["heroku"]["maintenance"]
    assert [e["step"] for e in project.events() if e["kind"] == "gate-waiting"] == [
        "maintenance-on"
    ]

    # In a terminal the operator is asked; "no" changes nothing.
    code, screen = run_in_terminal(project, ["run"], answers=["n"])

    assert code == 3, screen
    assert "Put the Heroku app in maintenance mode now?" in screen
    assert "not confirmed" in screen
    assert not project.world()["heroku"]["maintenance"]
    assert project.state()["steps"]["maintenance-on"]["status"] == "pending"

    finished = project.run("run", "--yes")

    assert finished.returncode == 0, finished
    assert project.world()["heroku"]["maintenance"]
    gates = [e for e in project.events() if e["kind"] == "gate"]
    assert [(g["step"], g["answer"], g["answered_by"]) for g in gates] == [
        ("maintenance-on", "no", "prompt"),
        # disable-scheduler is found already applied here (no Scheduler add-on, no timers),
        # sync-redis asks nothing (the manifest has no redis resource: nothing to copy), nor
        # does final-sync-mysql (no MySQL add-on: its check finds nothing to do).
        *(
            (step, "yes", "--yes")
            for step in GATED_STEPS
            if step not in ("disable-scheduler", "sync-redis", "final-sync-mysql")
        ),
    ]
    assert {g["user"] for g in gates} == {getpass.getuser()}
    assert all(g["question"] for g in gates)


def test_until_stops_after_the_step_and_a_later_run_finishes(project: Project) -> None:
    paused = project.run("run", "--yes", "--until", "lower-ttl")

    assert paused.returncode == 0, paused
    assert "stopped after lower-ttl as asked" in paused.stdout
    assert "Continue with: cutover run" in paused.stdout
    steps = project.state()["steps"]
    upto = [s for s in STEP_IDS[: STEP_IDS.index("lower-ttl") + 1] if s not in SKIPPED_IN_FAKES]
    assert [sid for sid in STEP_IDS if steps.get(sid, {}).get("status") == "done"] == upto
    record = project.dns_record()
    assert record is not None and record.ttl == LOWERED_TTL
    assert record.values == ["myapp.herokudns.test."]
    assert not project.world()["heroku"]["maintenance"]
    assert [e["until"] for e in project.events() if e["kind"] == "run-paused"] == ["lower-ttl"]

    rest = project.run("run", "--yes")

    assert rest.returncode == 0, rest
    assert "cutover complete" in rest.stdout
    statuses = {sid: st["status"] for sid, st in project.state()["steps"].items()}
    assert {statuses.pop(sid) for sid in SKIPPED_IN_FAKES} == {"skipped"}
    assert set(statuses.values()) == {"done"}
    record = project.dns_record()
    assert record is not None and record.values == [ROUTER + "."]
    assert project.effect_counts()["convox apps create"] == 1


def test_from_reruns_the_step_and_clears_every_later_one(project: Project) -> None:
    assert project.run("run", "--yes", "--until", "deploy").returncode == 0
    calls_before = len(project.calls())

    rerun = project.run("run", "--yes", "--from", "set-env", "--until", "set-env")

    assert rerun.returncode == 0, rerun
    (event,) = [e for e in project.events() if e["kind"] == "rerun-from"]
    assert event["step"] == "set-env"
    assert event["cleared"] == ["set-env", "deploy"]
    steps = project.state()["steps"]
    assert steps["set-env"]["status"] == "done"
    assert "deploy" not in steps
    rerun_calls = project.argvs()[calls_before:]
    assert ["heroku", "config", "--json", "-a", "acme-shop"] in rerun_calls
    assert not any(argv[:2] == ["convox", "deploy"] for argv in rerun_calls)
    status = project.run("status", "--json")
    by_id = {s["id"]: s for s in json.loads(status.stdout)["steps"]}
    assert by_id["deploy"]["status"] == "pending"
    assert by_id["deploy"]["next"] == "run"

    again = project.run("run", "--yes", "--until", "deploy")

    # A cleared deploy builds afresh (a new marker), so a changed env or source goes live;
    # set-env found its values already on Convox and set nothing.
    assert again.returncode == 0, again
    assert project.state()["steps"]["deploy"]["found_applied"] is False
    assert project.effect_counts()["convox deploy"] == 2
    assert project.effect_counts()["convox env set"] == 1


def test_a_changed_playbook_is_detected_on_resume(project: Project) -> None:
    assert project.run("run", "--yes", "--until", "create-app").returncode == 0
    text = project.playbook.read_text()
    changed = text.replace("  timeout: 20\n", "  timeout: 30\n").replace(
        "  drain_seconds: 0\n", "  drain_seconds: 5\n"
    )
    assert changed != text
    project.playbook.write_text(changed)
    state_before = project.state_path.read_bytes()
    calls_before = len(project.calls())

    refused = project.run("run", "--yes")

    assert refused.returncode == 2, refused
    assert "Traceback" not in refused.output
    assert "changed since this run started" in refused.output
    assert "changed: smoke.timeout, window.drain_seconds" in refused.output
    assert "--accept-changes" in refused.output
    assert project.state_path.read_bytes() == state_before
    assert len(project.calls()) == calls_before
    plan = project.run("plan")
    assert "playbook changed since the run started: smoke.timeout, window.drain_seconds" in (
        plan.stdout
    )

    accepted = project.run("run", "--yes", "--accept-changes", "--until", "set-env")

    assert accepted.returncode == 0, accepted
    assert "playbook changed (accepted): smoke.timeout, window.drain_seconds" in accepted.stdout
    (event,) = [e for e in project.events() if e["kind"] == "playbook-changed"]
    assert event["fields"] == ["smoke.timeout", "window.drain_seconds"]
    assert event["accepted"] is True
    assert project.state()["steps"]["set-env"]["status"] == "done"
    assert project.run("run", "--yes", "--until", "set-env").returncode == 0


def test_from_a_sync_is_refused_once_traffic_is_on_convox(project: Project) -> None:
    assert project.run("run", "--yes").returncode == 0
    state_before = project.state_path.read_bytes()
    calls_before = len(project.calls())
    refused = project.run("run", "--yes", "--from", "initial-sync")
    assert refused.returncode == 2
    assert "traffic moved to Convox" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert project.state_path.read_bytes() == state_before
    assert len(project.calls()) == calls_before
    # Later steps may still be re-run.
    again = project.run("run", "--yes", "--from", "verify-dns")
    assert again.returncode == 0, again


def test_a_soak_still_to_come_ends_the_run_with_exit_5_and_restore_ttl_pending(
    project: Project,
) -> None:
    """The cutover is verified but dns.soak_seconds has not passed: nothing failed, so the run
    says when to come back (exit 5, "not yet"), restore-ttl stays pending and a later run does
    only that step."""
    text = project.playbook.read_text(encoding="utf-8")
    assert "soak_seconds: 0" in text
    project.playbook.write_text(text.replace("soak_seconds: 0", "soak_seconds: 3600"))

    first = project.run("run", "--yes")

    assert first.returncode == 5, first
    assert "not yet:" in first.stdout + first.stderr
    assert "Run `cutover run` again after" in first.stdout + first.stderr
    assert "failed" not in (first.stdout + first.stderr).lower()
    steps = project.state()["steps"]
    assert steps["verify-site"]["status"] == "done"
    assert steps["restore-ttl"]["status"] == "pending" and steps["restore-ttl"]["attempts"] == 0
    assert [e["step"] for e in project.events() if e["kind"] == "step-not-yet"] == ["restore-ttl"]
    record = project.dns_record()
    assert record is not None and record.ttl == LOWERED_TTL  # still low during the soak

    # The soak has passed (here: the playbook says so, accepted as a changed input).
    project.playbook.write_text(text)
    rest = project.run("run", "--yes", "--accept-changes")

    assert rest.returncode == 0, rest
    steps = project.state()["steps"]
    assert steps["restore-ttl"]["status"] == "done"
    # dns.soak_seconds is read by restore-ttl alone: the switch and lower-ttl (whose saved
    # record is what a rollback restores) are not run again.
    assert {sid: steps[sid]["attempts"] for sid in ("lower-ttl", "switch-dns")} == {
        "lower-ttl": 1,
        "switch-dns": 1,
    }
    record = project.dns_record()
    assert record is not None and record.values == [ROUTER + "."]
    assert record.ttl != LOWERED_TTL
