"""The convox stand-in's rack works on its own: builds and rollouts survive the CLI.

Facts: pkg/cli/builds.go build() (BuildCreate, then the CLI only follows the log and polls
BuildGet every second), pkg/cli/releases.go releasePromote and pkg/common/provider.go
WaitForAppRunning (ReleasePromote returns at once; the rack finishes the rollout),
provider/k8s/build.go (created -> running -> complete|failed, release on success).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from convox_support import BUILD, FAST, RELEASE, Sandbox
from support.waiting import wait_for

from cutover.sandbox import convox_fake as fake
from cutover.sandbox import procs

# Slow enough to see every state even through a poll of two CLI calls on a loaded 2-core
# CI box (seen: "running" missed at 2.5 s), fast enough for a test.
VISIBLE = {**FAST, "build_created": 2.0, "build_running": 6.0, "rollout": 2.0, "poll": 0.2}


def slow_rack(box: Sandbox) -> None:
    fake.configure_rack(box.config, name="sandbox", timings=VISIBLE)


def builds(box: Sandbox) -> list[dict[str, object]]:
    found = box.app()["builds"]
    assert isinstance(found, list)
    return found


def test_default_timings_are_realistic_and_never_zero() -> None:
    assert all(value > 0 for value in fake.store.DEFAULT_TIMINGS.values())
    assert fake.store.DEFAULT_TIMINGS["build_running"] >= 2
    assert fake.store.DEFAULT_TIMINGS["poll"] == 1.0  # builds.go: time.NewTicker(1 * time.Second)


def test_a_build_is_created_then_running_then_complete_with_its_release(app: Sandbox) -> None:
    slow_rack(app)
    proc = app.start("build", "-a", "demo")
    wait_for(lambda: len(builds(app)) == 1)
    seen, seen_info = set(), set()
    while proc.poll() is None:
        row = app.ok("builds", "-a", "demo").splitlines()[1]
        match = re.match(rf"^({BUILD})\s+(\S+)", row)
        assert match is not None
        seen.add(match.group(2))
        info = app.ok("builds", "info", match.group(1), "-a", "demo")
        status = re.search(r"^Status\s+(\S+)$", info, re.MULTILINE)
        assert status is not None
        seen_info.add(status.group(1))
        time.sleep(0.1)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert {"created", "running"} <= seen
    assert {"created", "running"} <= seen_info
    build = builds(app)[0]
    assert build["status"] == "complete"
    assert re.fullmatch(RELEASE, str(build["release"]))
    assert out.endswith(f"Build:   {build['id']}\nRelease: {build['release']}\n")


def test_a_sigkilled_cli_leaves_the_build_running_to_completion(app: Sandbox) -> None:
    slow_rack(app)
    proc = app.start("deploy", "-a", "demo")
    wait_for(lambda: bool(builds(app)) and builds(app)[0]["status"] in ("created", "running"))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert builds(app)[0]["status"] in ("created", "running")
    wait_for(lambda: builds(app)[0]["status"] == "complete")
    build = builds(app)[0]
    table = app.ok("builds", "-a", "demo").splitlines()
    assert len(table) == 2  # one build: nothing started a second one
    assert re.match(rf"^{build['id']}\s+complete\s+{build['release']}\s", table[1])
    releases = app.app()["releases"]
    assert isinstance(releases, list) and [r["build"] for r in releases] == [build["id"]]
    # The CLI died before it asked for the promote: the release stays unpromoted.
    assert app.app()["release"] == ""
    assert app.app().get("status") == "running"


def test_a_sigkilled_cli_leaves_the_rollout_to_finish(deployed: Sandbox) -> None:
    slow_rack(deployed)
    deployed.ok("env", "set", "X=1", "-a", "demo")
    new = str(deployed.app()["releases"][-1]["id"])  # type: ignore[index]
    proc = deployed.start("releases", "promote", new, "-a", "demo")
    wait_for(lambda: deployed.app()["status"] == "updating")
    assert re.search(r"^Status\s+updating$", deployed.ok("apps", "info", "demo"), re.MULTILINE)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    wait_for(lambda: deployed.app()["status"] == "running")
    assert deployed.app()["release"] == new
    assert all(p["status"] == "running" for p in deployed.app()["processes"])  # type: ignore[attr-defined]
    # The job goes on after the app is running (it provisions the release's resources, as
    # the rack does after the deploy returns), then ends by itself.
    wait_for(lambda: not fake.read_state(deployed.config).get("jobs"))


def test_promote_waits_for_an_updating_app_first(deployed: Sandbox) -> None:
    slow_rack(deployed)
    deployed.ok("env", "set", "X=1", "-a", "demo")
    deployed.ok("env", "set", "Y=2", "-a", "demo")
    first, second = (str(r["id"]) for r in deployed.app()["releases"][-2:])  # type: ignore[index]
    proc = deployed.start("releases", "promote", first, "-a", "demo")
    wait_for(lambda: deployed.app()["status"] == "updating")
    out = deployed.ok("releases", "promote", second, "-a", "demo")
    assert out.startswith(f"Waiting for app to be ready... OK\nPromoting {second}... \n")
    assert out.endswith("OK\n")
    _, err = proc.communicate(timeout=30)
    # The first CLI sees its rollout finish, or, if it polls after the second promote began,
    # another release active: releasePromote then fails with "rollback" (pkg/cli/releases.go).
    assert (proc.returncode, err) in ((0, ""), (1, "ERROR: rollback\n"))
    assert deployed.app()["release"] == second


def test_stop_processes_stops_running_jobs(app: Sandbox) -> None:
    fake.configure_rack(app.config, name="sandbox", timings={**VISIBLE, "build_running": 60.0})
    proc = app.start("build", "-a", "demo")
    wait_for(lambda: bool(fake.read_state(app.config).get("jobs")))
    job = int(fake.read_state(app.config)["jobs"][0]["pid"])
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert procs.pid_alive(job)
    assert job in fake.stop_processes(app.config)
    wait_for(lambda: not procs.pid_alive(job))
    assert os.getpid() != job


# --- convox run (pkg/cli/run.go, provider/k8s/process.go) -----------------------------------


def test_run_execs_in_a_sleeping_pod_and_a_killed_cli_leaves_the_command_running(
    deployed: Sandbox,
) -> None:
    marker = deployed.root / "marker"
    script = f"sh -c 'echo started; sleep 2; echo done > {marker}'"
    proc = deployed.start("run", "web", "-a", "demo", "--", script)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    listed = deployed.ok("ps", "-a", "demo")
    assert re.search(r"^web-[a-z0-9]{5}\s+web\s+running\s+\S+\s+.*sleep 3600$", listed, re.M)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    wait_for(lambda: marker.exists())
    assert marker.read_text() == "done\n"
    # The pod stays until its timeout: the CLI that would have stopped it is gone.
    assert re.search(r"sleep 3600$", deployed.ok("ps", "-a", "demo"), re.M)


def test_run_pod_ends_at_its_timeout_and_kills_the_command(deployed: Sandbox) -> None:
    started = time.monotonic()
    result = deployed.run("run", "web", "-t", "2", "-a", "demo", "--", "sleep 30")
    assert result.returncode == 137  # SIGKILLed with its pod
    assert time.monotonic() - started < 20
    assert "sleep 2" not in deployed.ok("ps", "-a", "demo")  # the CLI stopped the pod


def test_run_before_the_first_promote_is_refused_by_the_rack(app: Sandbox) -> None:
    app.ok("build", "-a", "demo")
    release = str(app.app()["releases"][-1]["id"])  # type: ignore[index]
    result = app.run("run", "web", "--release", release, "-a", "demo", "--", "true")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        'ERROR: pods "web-" is forbidden: error looking up service account sandbox-demo/web: '
        'serviceaccount "web" not found\n'
    )


def test_run_of_a_release_whose_resource_does_not_exist_yet_times_out(deployed: Sandbox) -> None:
    fake.configure_rack(deployed.config, name="sandbox", timings={"process_wait": 1.0})
    with_cache = (
        "resources:\n  cache:\n    type: redis\n"
        "services:\n  web:\n    port: 3000\n    resources:\n      - cache\n"
    )
    deployed.write_manifest(with_cache)
    deployed.ok("build", "-a", "demo")
    release = str(deployed.app()["releases"][-1]["id"])  # type: ignore[index]
    result = deployed.run("run", "web", "--release", release, "-a", "demo", "--", "true")
    assert (result.returncode, result.stderr) == (1, "ERROR: timeout\n")


def test_rack_jobs_do_not_inherit_the_operators_environment(app: Sandbox) -> None:
    fake.configure_rack(app.config, name="sandbox", timings={**VISIBLE, "build_running": 60.0})
    proc = subprocess.Popen(
        ["convox", "build", "-a", "demo"],
        cwd=app.work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=app.env(OPERATOR_TOKEN="op-s3cret-token"),
    )
    app.children.append(proc)  # type: ignore[arg-type]
    wait_for(lambda: bool(fake.read_state(app.config).get("jobs")))
    job = int(fake.read_state(app.config)["jobs"][0]["pid"])
    environ = Path(f"/proc/{job}/environ").read_bytes()
    assert b"op-s3cret-token" not in environ and b"OPERATOR_TOKEN" not in environ
    assert b"PATH=" in environ
    proc.kill()
    proc.wait(timeout=10)
    fake.stop_processes(app.config)
