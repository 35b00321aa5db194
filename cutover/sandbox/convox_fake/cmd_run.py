"""``convox run``: a one-off pod that sleeps, and the command exec'd in it.

Facts: ``pkg/cli/run.go`` ``Run`` (without ``--detach`` the pod's command is ``sleep <timeout>``,
``--timeout``/``-t`` default 3600; the CLI waits for the pod to run
(``common.WaitForProcessRunning``: 1 s polls, 5 minutes, then ``timeout``), execs the command in
it (stdout and stderr merged when stdin is not a terminal), exits with the remote exit code, and
stops the pod when it returns; with ``--detach`` the pod runs the command itself and the CLI
prints ``Running detached process... OK, <pod>``), ``provider/k8s/process.go`` (``ProcessRun``:
the pod is named ``<service>-<5 chars>``, runs as the service's service account, and reads the
linked resources' env from the ``resource-<name>`` config maps).

Before an app's first promote neither exists: the pod is refused at creation (the k8s
ServiceAccount admission error, printed as ``ERROR: ...``, exit 1). A service account exists but
a linked resource's config map does not (a release adding a resource, before its promote): the
pod stays pending and the CLI fails with ``timeout`` after the rack timing ``process_wait``.

The stand-in's pod is a detached ``sleep <timeout>`` shell that kills the commands exec'd in it
when it ends; an exec'd command runs in its own session, so it keeps running when the CLI is
killed, and dies with the pod at its timeout. Its output goes to a log file the CLI follows.
"""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
import time
from pathlib import Path

from cutover.sandbox.convox_fake import pods
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.manifest import Manifest, Service, release_manifest
from cutover.sandbox.convox_fake.model import env_load, find_build, find_release, get_app
from cutover.sandbox.convox_fake.output import CliError, ExitCode
from cutover.sandbox.convox_fake.resources import is_overlay
from cutover.sandbox.convox_fake.runtime import service_env
from cutover.sandbox.convox_fake.store import Json, timing

DEFAULT_TIMEOUT = 3600  # pkg/cli/run.go


def _pod_can_start(
    rack_name: str, app: Json, manifest: Manifest, service: Service, env: dict[str, str]
) -> bool:
    """Raise the admission error without a service account; False if a config map is missing."""
    active = set(app.get("service_accounts") or [])
    if service.name not in active:
        namespace = f"{rack_name}-{app['name']}"
        raise CliError(
            f'pods "{service.name}-" is forbidden: error looking up service account '
            f'{namespace}/{service.name}: serviceaccount "{service.name}" not found'
        )
    made = app.get("resources") or {}
    for entry in service.resources:
        resource = manifest.resource(entry.partition(":")[0])
        if resource is not None and not is_overlay(resource, env) and resource.name not in made:
            return False
    return True


def cmd_run(ctx: Ctx) -> None:
    service_name, words = ctx.args[0], ctx.args[1:]
    app_name = ctx.app_name()
    with ctx.store.locked() as state:
        rack_name, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        release_id = ctx.string("release") or app.get("release", "")
        if not release_id:
            raise CliError(f"no release for app: {app_name}")
        release = find_release(app, release_id)
        app_values = env_load(release["env"])
        manifest = release_manifest(app, release, app_values)
        service = manifest.service(service_name) if manifest else None
        if service is None or manifest is None:
            raise CliError(f"no such service: {service_name}")
        startable = _pod_can_start(rack_name, app, manifest, service, app_values)
        env = service_env(state, rack_name, app, release, manifest, service, ctx.environ)
        build_dir = Path(find_build(app, release["build"]).get("dir", ""))
        wait_limit, poll = timing(state, "process_wait"), timing(state, "poll")
    cwd = build_dir if str(build_dir) not in ("", ".") and build_dir.is_dir() else ctx.cwd
    command = " ".join(words)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CliError(f"{exc}".lower()) from None
    if not argv:
        raise CliError("no command given")
    if ctx.flag("detach"):
        ctx.out.startf("Running detached process")
        pod = pods.start(ctx.store, rack_name, app_name, service_name, release_id, argv, env, cwd)
        ctx.out.ok(pod)
        return
    timeout = ctx.number("timeout") or DEFAULT_TIMEOUT
    if timeout <= 0:
        timeout = DEFAULT_TIMEOUT
    pod = pods.start(
        ctx.store, rack_name, app_name, service_name, release_id, [], env, cwd, sleep=timeout
    )
    try:
        if not startable:
            time.sleep(wait_limit)  # pending: CreateContainerConfigError, never running
            raise CliError("timeout")
        time.sleep(min(poll, 1.0))  # WaitForProcessRunning's first poll
        code = _exec(ctx, pod, argv, env, cwd, timeout)
    finally:
        pods.stop(ctx.store, rack_name, app_name, pod)  # the CLI's deferred ProcessStop
    raise ExitCode(code)


def _exec(ctx: Ctx, pod: str, argv: list[str], env: dict[str, str], cwd: Path, timeout: int) -> int:
    """``ProcessExec``: run ``argv`` in the pod's process group, relay its merged output."""
    log = pods.exec_log(ctx.store, pod)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    ctx.out.stdout.flush()
    try:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=fd, stderr=fd, start_new_session=True
        )
    except OSError as exc:
        reason = (
            "executable file not found in $PATH"
            if exc.errno == errno.ENOENT
            else (os.strerror(exc.errno or errno.EIO).lower())
        )
        ctx.out.write(
            "OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{argv[0]}": {reason}: unknown\n'
        )
        return 126
    finally:
        os.close(fd)
    pods.record_exec(ctx.store, pod, proc.pid)  # the pod's end kills it (pods.sleeper)
    deadline = time.monotonic() + timeout + 5
    with open(log, "rb") as stream:
        while True:
            done = proc.poll() is not None
            chunk = stream.read()
            if chunk:
                _relay(ctx, chunk)
            if done:
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.05)
    code = proc.returncode
    return code if code >= 0 else 128 - code


def _relay(ctx: Ctx, chunk: bytes) -> None:
    buffer = getattr(ctx.out.stdout, "buffer", None)
    if buffer is not None:
        ctx.out.stdout.flush()
        buffer.write(chunk)
        buffer.flush()
    else:
        ctx.out.write(chunk.decode("utf-8", "replace"))
