"""What the CLI does while the rack works: follow a build, wait for a promote.

Facts: ``pkg/cli/builds.go`` ``build()`` (after ``Starting build... OK`` it copies the build's
log stream, then polls ``BuildGet`` on a 1 s ticker: ``created``/``running`` go on,
``complete`` returns, ``failed`` is ``build failed``, anything else ``unexpected build status``;
60 minutes at most), ``pkg/cli/releases.go`` ``releasePromote`` (``Waiting for app to be
ready... OK`` when the app is not ``running`` and ``--force`` is not given, ``Promoting <id>...``,
the rack call, ``WaitForAppWithLogs``, then ``rollback`` if another release is active),
``pkg/common/provider.go`` (``WaitForAppRunning``: polls until ``running``, fails on
``rollback``). The stand-in polls at the rack timing ``poll`` (1 s by default; a real rack's
app wait polls every 5 s).
"""

from __future__ import annotations

import time

from cutover.sandbox.convox_fake import rollout
from cutover.sandbox.convox_fake.buildjob import TERMINAL
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.model import find_build, get_app
from cutover.sandbox.convox_fake.output import CliError
from cutover.sandbox.convox_fake.runtime import pod_line
from cutover.sandbox.convox_fake.store import Json, timing

BUILD_TIMEOUT = 60 * 60.0
APP_TIMEOUT = 35 * 60.0
LOG_READ = 0.1  # how often the followed build log is read


def _build(ctx: Ctx, app_name: str, build_id: str) -> tuple[Json, float]:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        return dict(find_build(get_app(rack, app_name), build_id)), timing(state, "poll")


def follow_build(ctx: Ctx, app_name: str, build_id: str) -> Json:
    """Print the build's log as it grows; poll its status; the finished build or CliError."""
    printed = 0
    started = time.monotonic()
    build, poll = _build(ctx, app_name, build_id)
    next_tick = started + poll
    while True:
        logs = str(build.get("logs", ""))
        if len(logs) > printed:
            ctx.out.write(logs[printed:])
            printed = len(logs)
        if time.monotonic() >= next_tick:
            next_tick += poll
            status = build["status"]
            if status == "complete":
                return build
            if status == "failed":
                raise CliError("build failed")
            if status not in TERMINAL and status not in ("created", "running"):
                raise CliError(f"unexpected build status: {status}")
        if time.monotonic() - started > BUILD_TIMEOUT:
            raise CliError(
                f"build {build_id} timed out after 60 minutes (status: {build['status']}). "
                f"Check: convox builds info {build_id}"
            )
        time.sleep(LOG_READ)
        build, poll = _build(ctx, app_name, build_id)


def _app(ctx: Ctx, app_name: str) -> tuple[Json, float]:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        return dict(get_app(rack, app_name)), timing(state, "poll")


def wait_for_running(ctx: Ctx, app_name: str, pods: list[Json] | None = None) -> None:
    """``WaitForAppRunning`` (with ``StreamAppProcessStates``' lines when ``pods`` is given)."""
    deadline = time.monotonic() + APP_TIMEOUT
    app, poll = _app(ctx, app_name)
    while app.get("status") != "running":
        if app.get("status") == "rollback":
            raise CliError("rollback")
        if time.monotonic() > deadline:
            raise CliError("timeout")
        time.sleep(poll)
        app, poll = _app(ctx, app_name)
    if pods:
        running = {p["id"] for p in app.get("processes", [])}
        for pod in pods:
            if pod["id"] in running:
                ctx.out.write(pod_line(pod, "running"))


def promote(ctx: Ctx, app_name: str, release_id: str, *, force: bool = False) -> None:
    """``releasePromote``: the shared promote of deploy, releases promote, env --promote."""
    if not release_id:
        raise CliError("no release to promote")
    app, _ = _app(ctx, app_name)
    if not force and app.get("status") != "running":
        ctx.out.startf("Waiting for app to be ready")
        wait_for_running(ctx, app_name)
        ctx.out.ok()
    ctx.out.startf(f"Promoting {release_id}")
    ctx.out.write("\n")
    with ctx.store.locked() as state:
        rack_name, _ = ctx.rack(state)
    pods = rollout.release_promote(ctx.store, rack_name, app_name, release_id)
    for pod in pods:
        ctx.out.write(pod_line(pod, "pending"))
    wait_for_running(ctx, app_name, pods)
    app, _ = _app(ctx, app_name)
    if app.get("release") != release_id:
        raise CliError("rollback")
    ctx.out.ok()
