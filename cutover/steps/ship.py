"""Shipping the source to Convox (deploy and add-domain): build, release command, promote.

Both build the *staged* manifest (steps/holding.py: every service but the web one at
``scale.count: 0``, no timers), and after the promote read ``convox scale`` back and scale to
0 a held service the rack still runs (:func:`hold_services`): nothing runs on Convox beside
Heroku's workers until start-workers (steps/workers.py).

What the rack does, from the convox source (see docs/design.md, "Release command order"):

* builds and promotes run on the rack; a killed ``convox build``/``deploy``/``releases promote``
  does not stop them. Every build carries this run's marker as its description, so a resume
  finds it (``convox builds``), waits while it is created/running, and never starts a second
  one; a promote in progress shows as app status ``updating`` (pkg/cli/releases.go waits for
  ``running`` before and after ``ReleasePromote``), which a resume waits out too.
* ``convox run SVC --release R`` needs the service's ServiceAccount and the ``resource-<name>``
  ConfigMaps (provider/k8s/process.go sets ``serviceAccountName`` and ``envFrom`` from them),
  which only a promote creates (template/app/service.yml.tmpl, template/resource/*.tmpl). So on
  the app's FIRST release: build, promote, then the release command against that release (no
  traffic reaches Convox before smoke-test and switch-dns). On later releases: build, release
  command, promote, so the new code never serves before its release command ran.
* ``convox run --timeout N`` (pkg/cli/run.go) makes the pod ``sleep N`` and execs the command in
  it; a killed CLI leaves both running. So the start is recorded before the command runs, and a
  resume that finds a start without an end never runs it again on its own: it looks for the pod
  (``convox ps --service S --release R``, COMMAND ``sleep N``) and stops with what to check and
  how to go on (``CUTOVER_RELEASE_COMMAND_DONE=R`` or ``CUTOVER_RELEASE_COMMAND_RERUN=R``).
"""

from __future__ import annotations

import os
import secrets
import time

from cutover.errors import CommandError, CutoverError
from cutover.steps.base import Context, Progress, StepOutputs, cmd

BUILD_WAIT = 3600.0
APP_SETTLE_WAIT = 1800.0
DONE_VAR = "CUTOVER_RELEASE_COMMAND_DONE"
RERUN_VAR = "CUTOVER_RELEASE_COMMAND_RERUN"
_POD_ENDED = ("complete", "failed")


class ShipProgress(Progress):
    """Saved while shipping, each before the effect it describes (module doc)."""

    marker: str | None = None
    first_release: bool | None = None
    built: str | None = None
    release_command_started: str | None = None
    release_command_done: str | None = None
    # An adopted app only: the release active before this step's build (None: there was none).
    previous_release: str | None = None


class ShipOutputs(StepOutputs):
    """The release that went live, the build marker (absent when the release was found already
    active) and, for an adopted app, the release that was active before (rollback promotes it
    back; an app cutover created had none)."""

    release: str
    marker: str | None = None
    previous_release: str | None = None


def shipped(ctx: Context, step_id: str, release: str, marker: str) -> ShipOutputs:
    saved = _progress(ctx, step_id)
    if "previous_release" in saved.model_fields_set:
        return ShipOutputs(release=release, marker=marker, previous_release=saved.previous_release)
    return ShipOutputs(release=release, marker=marker)


def _progress(ctx: Context, step_id: str) -> ShipProgress:
    return ShipProgress.model_validate(ctx.state.step(step_id).outputs)


def build_marker(ctx: Context, step_id: str, *, create: bool = False) -> str | None:
    """The build description that identifies one attempt of a deploying step on the rack.

    Saved in the step's progress before the build starts, so a crash mid-deploy finds that
    build on resume; a step cleared by ``--from`` has none, so it builds afresh.
    """
    saved = _progress(ctx, step_id).marker
    if saved or not create:
        return saved
    marker = f"cutover {ctx.state.run_id} {step_id} {secrets.token_hex(3)}"
    ctx.save(ShipProgress(marker=marker))
    return marker


def ship_commands(ctx: Context, step_id: str, manifest: str) -> list[str]:
    """What deploy and add-domain run: ``convox deploy``, or build, release command, promote,
    of ``manifest`` (the staged one: steps/holding.py)."""
    source = str(ctx.playbook.resolve(ctx.model.convox.source))
    marker = build_marker(ctx, step_id) or f"cutover {ctx.state.run_id} {step_id} <nonce>"
    lines = [cmd(ctx.convox.argv("builds")), cmd(ctx.convox.argv("releases"))]
    release = ctx.model.release
    if release is None:
        return [
            *lines,
            cmd(ctx.convox.argv("deploy", source, "-m", manifest, "--id", "-d", marker)),
        ]
    run = cmd(ctx.convox.run_argv(release.service, release.command, "<R>", release.timeout))
    promote = cmd(ctx.convox.argv("releases", "promote", "<R>"))
    return [
        *lines,
        cmd(ctx.convox.argv("build", source, "-m", manifest, "--id", "-d", marker)),
        "order: the app's first release is promoted before its release command (the run pod "
        "needs what the first promote creates); later releases run it before the promote",
        run,
        promote,
    ]


def ship(ctx: Context, step_id: str, manifest: str, *, adopted: bool = False) -> ShipOutputs:
    """Build and promote the source with ``manifest`` (relative to the source), marked with
    this run and step (see find_marked_release). For an ``adopted`` app the active release is
    saved first (what a rollback returns to)."""
    source = ctx.playbook.resolve(ctx.model.convox.source)
    if adopted and "previous_release" not in _progress(ctx, step_id).model_fields_set:
        ctx.save(ShipProgress(previous_release=ctx.convox.active_release()))
    marker = build_marker(ctx, step_id, create=True)
    assert marker is not None
    if ctx.model.release is None:
        return shipped(ctx, step_id, ctx.convox.deploy(source, manifest, marker), marker)
    first = _progress(ctx, step_id).first_release
    if first is None:
        first = ctx.convox.active_release() is None
        ctx.save(ShipProgress(first_release=first))
    release = ctx.convox.build(source, manifest, marker)
    ctx.save(ShipProgress(built=release))
    finish_release(ctx, step_id, release)
    return shipped(ctx, step_id, release, marker)


def finish_release(ctx: Context, step_id: str, release: str) -> None:
    """Release command and promote, in the order that is right for this app (module doc)."""
    if ctx.model.release is None:
        ensure_promoted(ctx, release)
    elif _progress(ctx, step_id).first_release:
        ensure_promoted(ctx, release)
        release_command(ctx, step_id, release)
    else:
        release_command(ctx, step_id, release)
        ensure_promoted(ctx, release)


def find_marked_release(ctx: Context, step_id: str, marker: str) -> ShipOutputs | None:
    """The release of the build with this run's marker, finished: a build still running is
    waited for, a release not yet promoted (or its release command not yet run) is finished."""
    build = wait_for_marked_build(ctx, marker)
    release = build.get("RELEASE", "") if build else ""
    if not build or not release:
        return None
    if ctx.convox.active_release() != release:
        ctx.note(
            f"build {build['ID']} of this run finished but {release} is not active: finishing it"
        )
    finish_release(ctx, step_id, release)
    return shipped(ctx, step_id, release, marker)


def wait_for_marked_build(ctx: Context, marker: str) -> dict[str, str] | None:
    """The complete build carrying ``marker``; a build still running (its deploy died with
    cutover) is waited for rather than started a second time. None: no usable build."""
    deadline = time.monotonic() + BUILD_WAIT
    while True:
        build = next((b for b in ctx.convox.builds() if b.get("DESCRIPTION") == marker), None)
        status = build.get("STATUS") if build else None
        if status == "complete":
            return build
        if status not in ("created", "running") or time.monotonic() > deadline:
            return None
        ctx.note(f"build {build['ID'] if build else '?'} of this run is still {status}: waiting")
        ctx.sleep(5)


def wait_app_settled(ctx: Context, timeout: float = APP_SETTLE_WAIT) -> str:
    """Wait while the app is ``updating`` (a promote in progress, maybe one a killed CLI left
    behind: pkg/cli/releases.go waits for ``running`` the same way); return the status."""
    deadline = time.monotonic() + timeout
    while True:
        status = ctx.convox.app_status()
        if status != "updating":
            return status
        if time.monotonic() > deadline:
            raise CutoverError(
                f"the Convox app is still updating after {timeout:g}s",
                resolution=f"Watch `convox apps info -a {ctx.convox.app}` and "
                f"`convox logs -a {ctx.convox.app}`; run `cutover run` again once it is running.",
            )
        ctx.note("the Convox app is updating (a promote in progress): waiting")
        ctx.sleep(5)


def ensure_promoted(ctx: Context, release: str) -> None:
    wait_app_settled(ctx)
    if ctx.convox.active_release() == release:
        return
    ctx.convox.promote(release)
    wait_app_settled(ctx)
    active = ctx.convox.active_release()
    if active != release:
        raise CutoverError(
            f"promoting {release} did not make it active (active: {active}); "
            "the rack rolled it back",
            resolution=f"Look at `convox logs -a {ctx.convox.app}`, fix, and run "
            "`cutover run` again.",
        )


def release_command(ctx: Context, step_id: str, release: str) -> None:
    """Run the release command once for ``release``, recording its start before running it."""
    cfg = ctx.model.release
    assert cfg is not None
    saved = _progress(ctx, step_id)
    if saved.release_command_done == release:
        return
    if saved.release_command_started == release:
        _started_before(ctx, release)  # returns only when the operator said how to go on
        if _progress(ctx, step_id).release_command_done == release:
            return
    ctx.save(ShipProgress(release_command_started=release))
    ctx.note(
        f"release command on {cfg.service} with {release} (up to {cfg.timeout}s): {cfg.command}"
    )
    try:
        ctx.convox.run_command(cfg.service, cfg.command, release=release, timeout=cfg.timeout)
    except CommandError as exc:
        if exc.timed_out or exc.returncode is None or exc.returncode < 0:
            raise CutoverError(
                f"the release command's CLI was stopped ({exc.brief}); the command itself may "
                "still be running on the rack (convox run execs it in a pod that sleeps "
                f"--timeout {cfg.timeout})",
                details=exc.details,
                resolution="Run `cutover run` again: it checks the pod before going on.",
            ) from None
        # The CLI returned the command's exit code (or an API error) and stopped its pod: the
        # command is not running, so a later attempt may run it again.
        ctx.save(ShipProgress(release_command_started=None))
        raise
    ctx.save(ShipProgress(release_command_done=release))


def _started_before(ctx: Context, release: str) -> None:
    """A release command started by an earlier attempt and never seen to end."""
    cfg = ctx.model.release
    assert cfg is not None
    app, rack = ctx.convox.app, ctx.convox.rack
    where = f"-a {app}" + (f" -r {rack}" if rack else "")
    pods = [
        p
        for p in ctx.convox.processes(service=cfg.service, release=release)
        if p.get("COMMAND") == f"sleep {cfg.timeout}" and p.get("STATUS") not in _POD_ENDED
    ]
    if os.environ.get(DONE_VAR) == release:
        ctx.note(f"{DONE_VAR}={release}: the operator checked that the release command finished")
        ctx.save(ShipProgress(release_command_done=release))
        return
    if os.environ.get(RERUN_VAR) == release and not pods:
        ctx.note(f"{RERUN_VAR}={release}: running the release command again, as the operator asked")
        return
    ids = ", ".join(p["ID"] for p in pods)
    if pods:
        brief = (
            f"the release command for {release} may still be running: process {ids} "
            f"({cfg.service}, `sleep {cfg.timeout}`) that `convox run` started for it is "
            f"{pods[0].get('STATUS')}"
        )
        check = (
            f"`convox exec {pods[0]['ID']} {where} -- ps aux` shows whether "
            f"`{cfg.command}` still runs in it; wait until it has ended, then stop the "
            f"process: `convox ps stop {pods[0]['ID']} {where}`."
        )
    else:
        brief = (
            f"the release command for {release} was started by an interrupted attempt and "
            "cutover cannot tell whether it finished"
        )
        check = (
            f"Check its effect (e.g. the schema version the command migrates to) and "
            f"`convox logs {where} --no-follow --since 2h`."
        )
    raise CutoverError(
        brief,
        details=f"command: {cfg.command}",
        resolution=f"{check} Then, if it finished successfully: "
        f"`{DONE_VAR}={release} cutover run`; to run it again (it must be idempotent): "
        f"`{RERUN_VAR}={release} cutover run`.",
    )


def scale_counts(ctx: Context) -> dict[str, tuple[int, int]]:
    """``convox scale`` read back: service -> (DESIRED, RUNNING)."""
    counts = {}
    for row in ctx.convox.scale_table():
        try:
            counts[row["SERVICE"]] = (int(row["DESIRED"]), int(row["RUNNING"] or 0))
        except ValueError:
            continue
    return counts


def hold_services(ctx: Context, held: list[str]) -> None:
    """After a promote of the staged manifest: read the scale back and scale to 0 any held
    service the rack still runs (the promote keeps a non-zero runtime count:
    provider/k8s/release.go, see steps/holding.py), then check they all want 0."""
    if not held:
        return
    counts = scale_counts(ctx)
    for service in held:
        if counts.get(service, (0, 0))[0] != 0:
            ctx.note(
                f"the Convox service {service} wants {counts[service][0]} process(es) (a runtime "
                "count the promote kept): scaling it to 0 until the switch"
            )
            ctx.convox.scale(service, 0)
    after = scale_counts(ctx)
    still = sorted(s for s in held if after.get(s, (0, 0))[0] != 0)
    if still:
        raise CutoverError(
            f"the Convox service(s) {', '.join(still)} still want processes after scaling them "
            "to 0: they would run beside Heroku's",
            resolution=f"Look at `convox scale -a {ctx.convox.app}`, fix, and run `cutover run` "
            "again.",
        )
