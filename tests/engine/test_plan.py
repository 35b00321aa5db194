"""``cutover plan`` and ``cutover run --dry-run`` execute nothing and write nothing, and show every
step, the gates and the commands with secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.harness import GATED_STEPS, SKIPPED_IN_FAKES, STEP_IDS, Finished, Project

pytestmark = pytest.mark.slow


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def assert_lists_every_step_in_order(output: str) -> None:
    positions = [output.find(f"] {step}: ") for step in STEP_IDS]
    assert -1 not in positions, [s for s, p in zip(STEP_IDS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)


def assert_no_secret(project: Project, output: str) -> None:
    leaked = [name for name, value in project.secret_values().items() if value in output]
    assert leaked == []


@pytest.mark.parametrize("args", [("plan",), ("run", "--dry-run", "--yes")])
def test_a_fresh_plan_runs_nothing_and_writes_nothing(
    project: Project, args: tuple[str, ...]
) -> None:
    before = snapshot(project.root)

    result = project.run(*args)

    assert result.returncode == 0, result
    assert project.calls() == []
    assert not project.state_dir.exists()
    assert snapshot(project.root) == before
    out = result.stdout
    assert "nothing is executed; nothing is written" in out
    assert_lists_every_step_in_order(out)
    gate_lines = [line for line in out.splitlines() if line.rstrip().endswith("[gate]")]
    # capture-changes has a gate but is skipped (final_sync: full): marked, never asked
    gated = [line.split("] ", 1)[1].split(":")[0] for line in gate_lines]
    assert gated == ["capture-changes", *GATED_STEPS]
    assert out.count("        gate: ") == len(GATED_STEPS)
    for command in (
        "$ heroku apps:info --json -a acme-shop",
        "$ convox apps create shop -r acme/production",
        "$ convox env set --id -a shop -r acme/production   < KEY=VALUE lines on stdin",
        "$ heroku maintenance:on -a acme-shop",
        "$ heroku ps:scale worker=0 -a acme-shop",
        "$ pg_restore --no-owner --no-acl --exit-on-error --jobs 2 --use-list",
        "PGPASSWORD=****",
        "DNS update: www.example.test CNAME <router> TTL 1",
    ):
        assert command in out, command
    assert_no_secret(project, result.output)


def test_plan_of_a_started_run_leaves_every_file_untouched(project: Project) -> None:
    started = project.run("run", "--yes", "--until", "set-env")
    assert started.returncode == 0, started
    before, calls = snapshot(project.root), len(project.calls())

    results = [
        project.run("plan"),
        project.run("run", "--dry-run", "--yes"),
        project.run("plan", "--from", "create-app"),
        project.run("plan", "--until", "deploy"),
    ]

    for result in results:
        assert result.returncode == 0, result
        assert_lists_every_step_in_order(result.stdout)
        assert_no_secret(project, result.output)
    assert snapshot(project.root) == before
    assert len(project.calls()) == calls
    plain, _, rerun, until = (r.stdout for r in results)
    assert "        done: done (" in plain
    assert "set-env: Copy config vars to Convox\n        done" in plain
    assert "deploy: Build and promote on Convox\n        will run: pending" in plain
    assert "create-app: Create the Convox app\n        will run: pending" in rerun
    assert "smoke-test: Smoke-test the Convox service\n        not in this run" in until


def test_plan_after_a_full_run_shows_every_step_done(finished: Finished) -> None:
    project = finished.project
    before = snapshot(project.state_dir)

    result = project.run("plan")

    assert result.returncode == 0, result
    assert result.stdout.count("        done: ") == len(STEP_IDS) - len(SKIPPED_IN_FAKES)
    assert result.stdout.count("        skip: ") == len(SKIPPED_IN_FAKES)
    assert "        $ " not in result.stdout
    assert snapshot(project.state_dir) == before
    assert_no_secret(project, result.output)


def test_plan_refuses_an_unknown_step(project: Project) -> None:
    result = project.run("plan", "--until", "deploy-everything")
    assert result.returncode == 2, result
    assert "--until deploy-everything: no such step" in result.output
    assert "preflight, create-app" in result.output
