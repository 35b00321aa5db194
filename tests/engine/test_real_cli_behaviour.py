"""Whole runs against the recording fakes where they behave as the real CLIs' source says and the
old belief did not (issue 7). Each test names the source it relies on."""

from __future__ import annotations

import os
import signal
import time

from fakes import seed
from fakes.harness import Project
from fakes.world import update_world


def test_sync_restores_its_own_backup_of_the_named_attachment(project: Project) -> None:
    """pg/backups/capture.js backs up the ``[database]`` argument (default DATABASE_URL's);
    pg/backups/url.js without an id returns the newest successful backup of the app. A scheduled
    backup (``a002``, older data) finishing right after ours must not be what is restored."""
    project.playbook.write_text(
        project.playbook.read_text().replace(
            "heroku_attachment: DATABASE", f"heroku_attachment: {seed.DB_ADDON}"
        )
    )
    with update_world(project.world_path) as world:
        world["heroku"]["scheduled_backup"] = {"tables": {}, "sequences": {}}

    result = project.run("run", "--yes", "--until", "verify-data")

    assert result.returncode == 0, result
    captures = [a for a in project.argvs() if a[:2] == ["heroku", "pg:backups:capture"]]
    assert captures and all(a[2] == seed.DB_ADDON for a in captures)
    urls = [a[1:] for a in project.argvs() if a[:2] == ["heroku", "pg:backups:url"]]
    state = project.state()["steps"]
    assert [u[1] for u in urls] == [
        state["initial-sync"]["outputs"]["backup"],
        state["final-sync"]["outputs"]["backup"],
    ]
    world = project.world()
    assert (
        world["convox"]["apps"]["shop"]["resources"]["database"]["data"]
        == (world["heroku"]["database"]["data"])
    )


def test_force_color_in_the_operators_environment(project: Project) -> None:
    """FORCE_COLOR=1 in the operator's shell makes the heroku CLI colour what cutover parses
    (ansis, node_modules/ansis/index.cjs; the fake colours the same way): the child gets no
    FORCE_COLOR and NO_COLOR=1, so the run still parses every output."""
    result = project.run(
        "run", "--yes", "--until", "initial-sync", env={"FORCE_COLOR": "1", "CI": "true"}
    )

    assert result.returncode == 0, result
    assert project.state()["steps"]["initial-sync"]["outputs"]["backup"] == "b001"


RELEASE_COMMAND = "release:\n  command: bin/rails db:migrate\n  service: web\n  timeout: 900\n"


def test_release_command_order_first_and_later_releases(project: Project) -> None:
    """The first release is promoted before its release command (the run pod needs the
    ServiceAccount and resource-<name> ConfigMaps the first promote creates:
    provider/k8s/process.go, template/app/service.yml.tmpl; the fake refuses a run before it);
    add-domain's later release runs the command before its promote. ``--timeout`` comes from
    the playbook (pkg/cli/run.go: the pod sleeps that long)."""
    project.playbook.write_text(project.playbook.read_text() + RELEASE_COMMAND)

    result = project.run("run", "--yes", "--until", "add-domain")

    assert result.returncode == 0, result
    steps = project.state()["steps"]
    first, later = steps["deploy"]["outputs"]["release"], steps["add-domain"]["outputs"]["release"]
    order = [e for e in project.effects() if e.startswith(("convox run", "convox releases"))]
    assert order == [
        "convox releases promote",
        "convox run web bin/rails db:migrate",
        "convox run web bin/rails db:migrate",
        "convox releases promote",
    ]
    runs = project.world()["convox"]["apps"]["shop"]["runs"]
    assert [r["release"] for r in runs] == [first, later]
    run_argvs = [a for a in project.argvs() if a[:2] == ["convox", "run"]]
    assert all(a[a.index("--timeout") + 1] == "900" for a in run_argvs)


def test_a_release_command_pod_left_running_stops_the_resume(project: Project) -> None:
    """pkg/cli/run.go: a killed CLI leaves its pod (``sleep N``) and the command running. The
    resume finds the pod with ``convox ps --service --release`` and stops, naming it; a rerun
    is refused while it is there; the operator's DONE finishes the step."""
    project.playbook.write_text(project.playbook.read_text() + RELEASE_COMMAND)
    with update_world(project.world_path) as world:
        world["convox"]["run_pod_lingers"] = True
    killed = project.run(
        "run", "--yes", "--until", "deploy", env={"FAKE_KILL_PARENT": "convox run:after"}
    )
    assert killed.returncode != 0
    app = project.world()["convox"]["apps"]["shop"]
    release, (pod,) = app["active"], app["processes"]

    for env in ({}, {"CUTOVER_RELEASE_COMMAND_RERUN": release}):
        stopped = project.run("run", "--yes", "--until", "deploy", env=env)
        assert stopped.returncode == 1, stopped
        assert f"may still be running: process {pod['id']}" in stopped.output
        assert f"convox exec {pod['id']} -a shop -r {seed.RACK} -- ps aux" in stopped.output
    ps_calls = [a for a in project.argvs() if a[:2] == ["convox", "ps"]]
    assert ps_calls and all(["--service", "web", "--release", release] == a[2:6] for a in ps_calls)

    done = project.run(
        "run", "--yes", "--until", "deploy", env={"CUTOVER_RELEASE_COMMAND_DONE": release}
    )
    assert done.returncode == 0, done
    assert project.effect_counts()["convox run web bin/rails db:migrate"] == 1


def test_a_build_left_running_by_a_killed_cli_is_waited_for(project: Project) -> None:
    """Builds and promotes run on the rack (pkg/cli/build.go follows the logs; releases.go waits
    for the app): cutover killed during ``convox deploy`` finds its marked build on resume,
    waits for it, and never starts a second one."""
    with update_world(project.world_path) as world:
        world["convox"]["build_seconds"] = 4
        world["convox"]["promote_seconds"] = 2
    proc = project.start("run", "--yes", "--until", "deploy")
    project.wait_for_call(lambda argv: argv[:2] == ["convox", "deploy"])
    os.killpg(proc.pid, signal.SIGKILL)
    project.finish(proc)

    resumed = project.run("run", "--yes", "--until", "deploy")

    assert resumed.returncode == 0, resumed
    assert project.effect_counts()["convox deploy"] == 1
    app = project.world()["convox"]["apps"]["shop"]
    assert project.state()["steps"]["deploy"]["outputs"]["release"] == app["active"]


def test_preflight_refuses_a_resource_older_than_heroku(project: Project) -> None:
    """provider/k8s/template/resource/postgres.yml.tmpl runs ``postgres:<options.version>``,
    10.5 when absent: a dump of Heroku's PostgreSQL 15 cannot be restored there. Preflight says
    so before anything is created or copied."""
    project.manifest.write_text(
        project.manifest.read_text().replace('    options:\n      version: "15"\n', "")
    )

    result = project.run("run", "--yes")

    assert result.returncode != 0
    assert "would run PostgreSQL 10 (the default: no options.version)" in result.output
    assert "older than Heroku's PostgreSQL 15" in result.output
    assert 'options.version to "15"' in result.output
    assert project.effects() == []
    assert project.state()["steps"]["preflight"]["status"] == "failed"


def test_sync_waits_for_the_new_resource_to_accept_connections(project: Project) -> None:
    """The promote creates the postgres resource empty; its pod refuses connections for a while
    after the deploy returns (provider/k8s/template/resource/postgres.yml.tmpl). The sync polls
    through the proxy until it answers, then restores."""
    with update_world(project.world_path) as world:
        world["convox"]["resource_start_seconds"] = 4

    result = project.run("run", "--yes", "--until", "initial-sync")

    assert result.returncode == 0, result
    world = project.world()
    assert (
        world["convox"]["apps"]["shop"]["resources"]["database"]["data"]
        == (world["heroku"]["database"]["data"])
    )
    assert project.effect_counts()["pg_restore"] == 1


def test_verify_site_retries_until_the_certificate_is_issued(project: Project) -> None:
    """The router serves a certificate covering the custom domain only after DNS points at it
    and it is issued: verify-site retries certificate failures within smoke.timeout."""
    with update_world(project.world_path) as world:
        world["convox"]["certificate_delay"] = 3

    result = project.run("run", "--yes")

    assert result.returncode == 0, result
    assert project.state()["steps"]["verify-site"]["status"] == "done"


def test_verify_site_says_the_certificate_was_not_valid_yet(project: Project) -> None:
    """Given up on: the error says the certificate was not valid for the name yet, not just
    that a GET failed."""
    project.playbook.write_text(
        project.playbook.read_text().replace(
            "smoke:\n  service: web\n  timeout: 20", "smoke:\n  service: web\n  timeout: 3"
        )
    )
    with update_world(project.world_path) as world:
        world["convox"]["certificate_delay"] = 600

    result = project.run("run", "--yes")

    assert result.returncode != 0
    assert project.state()["steps"]["verify-site"]["status"] == "failed"
    assert "the certificate served for www.example.test was still not valid" in result.output
    assert "once DNS points at it" in result.output


def test_scale_down_waits_until_no_dyno_of_the_type_is_listed(project: Project) -> None:
    """After ``ps:scale worker=0`` Heroku lists the dynos (state down) while they stop: the
    step ends only once ``heroku ps --json`` lists none of that type, in any state."""
    with update_world(project.world_path) as world:
        world["heroku"]["dyno_stop_seconds"] = 3

    result = project.run("run", "--yes", "--until", "scale-down")

    assert result.returncode == 0, result
    seen = project.world()["heroku"]["ps_seen"]
    assert any("worker.1" in names for names in seen)
    assert "worker.1" not in seen[-1]


def test_a_promote_left_running_by_a_killed_cli_is_waited_for(project: Project) -> None:
    """pkg/cli/releases.go: the rack rolls a promote out (app status ``updating``) whether or
    not the CLI still waits. Killed during it, the resume waits for ``running`` and does not
    promote again."""
    with update_world(project.world_path) as world:
        world["convox"]["promote_seconds"] = 4
    proc = project.start("run", "--yes", "--until", "deploy")
    deadline = time.monotonic() + 60
    while not (project.world()["convox"]["apps"].get("shop") or {}).get("active"):
        assert time.monotonic() < deadline, "the deploy never promoted"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    project.finish(proc)

    resumed = project.run("run", "--yes", "--until", "deploy")

    assert resumed.returncode == 0, resumed
    effects = project.effect_counts()
    assert effects["convox deploy"] == 1 and "convox releases promote" not in effects
    seen = project.world()["convox"]["status_seen"]
    assert seen[-1] == "running"


def test_preflight_refuses_an_extension_the_resource_type_lacks(project: Project) -> None:
    """provider/k8s/template/resource/postgres.yml.tmpl runs the official postgres image:
    contrib extensions (pg_trgm, citext, ...) can be created, PostGIS cannot."""
    with update_world(project.world_path) as world:
        world["heroku"]["database"]["data"]["extensions"] = [
            "citext",
            "pg_trgm",
            "plpgsql",
            "postgis",
        ]

    result = project.run("run", "--yes")

    assert result.returncode != 0
    assert "uses postgis, which the Convox database resource" in result.output
    assert project.effects() == []


def test_a_release_command_that_exits_non_zero_may_run_again(project: Project) -> None:
    """pkg/cli/run.go: the CLI exits with the command's status after stopping its pod, so a
    failure is known to be over: the step fails, and the next run runs the command again
    without asking (unlike a start whose end was never seen)."""
    project.playbook.write_text(project.playbook.read_text() + RELEASE_COMMAND)
    with update_world(project.world_path) as world:
        world["convox"]["run_exit_code"] = 3
    failed = project.run("run", "--yes", "--until", "deploy")
    assert failed.returncode == 1, failed
    assert project.state()["steps"]["deploy"]["status"] == "failed"
    with update_world(project.world_path) as world:
        world["convox"]["run_exit_code"] = 0

    fixed = project.run("run", "--yes", "--until", "deploy")

    assert fixed.returncode == 0, fixed
    assert project.effect_counts()["convox run web bin/rails db:migrate"] == 2
    assert project.effect_counts()["convox build"] == 1
