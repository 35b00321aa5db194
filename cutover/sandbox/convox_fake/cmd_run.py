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

Stdin (``ProcessExec`` gets the stdcli context as its ReadWriter: ``Stdin: true``, and ``Tty``
false when the CLI's stdin is not a terminal): the CLI's stdin is copied into a pipe that is the
command's stdin. At 9e02452 the rack copies the client's input with ``go io.Copy(inw, rw)`` and
never closes ``inw`` (provider/k8s/process.go), so the command never sees end of input: ``cat``
waits until the pod's timeout. The stand-in keeps its end of the pipe open until the command
ends, the same. (One difference: a killed stand-in CLI closes the pipe, so the command then
sees end of input.) The stand-in relays the command's stderr merged with its stdout; the real
rack may drop it: ``ProcessExec`` streams with ``Tty`` true whenever stdin is on, and client-go
then opens no stderr stream (vendor/k8s.io/client-go/tools/remotecommand/v2.go) while the exec
asked for no TTY. What must come back belongs on stdout (the in-rack script does ``exec 2>&1``).

Image: a service whose ``image:`` is ``postgres:<major>`` (or ``postgis``) is built ``FROM``
that image (pkg/build/docker.go, buildkit.go) and its pods run it (provider/k8s/process.go:
``<repo>:<service>.<build>``). The stand-in runs this machine's PostgreSQL client tools of that
major instead (``/usr/lib/postgresql/<major>/bin`` first on PATH) and refuses the run, naming
the folder, when that major is not installed here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import subprocess
import sys
import threading
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
PG_BIN = "/usr/lib/postgresql/{major}/bin"  # Debian's layout, as in the postgres image
_PG_IMAGE = re.compile(r"(?:^|/)(?:postgres|postgis)(?::(?P<major>\d+)(?:[.\-][^/]*)?)?$")


def image_env(service: Service, env: dict[str, str]) -> dict[str, str]:
    """The pod's env for a service built ``FROM postgres:<major>``: that major's client tools
    first on PATH. Raise CliError when this machine has none of that major."""
    match = _PG_IMAGE.search(service.image) if service.image else None
    if not match:
        return env
    major = match.group("major")
    if not major:
        raise CliError(
            f"the sandbox runs image {service.image} with this machine's PostgreSQL client "
            "tools and needs the major in its tag (postgres:<major>)"
        )
    folder = PG_BIN.format(major=major)
    if not Path(folder, "pg_dump").is_file():
        raise CliError(
            f"the sandbox runs image {service.image} with this machine's PostgreSQL {major} "
            f"client tools, and {folder} has none: install them or use another major"
        )
    return {**env, "PATH": os.pathsep.join([folder, env.get("PATH", os.defpath)])}


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
        env = image_env(
            service, service_env(state, rack_name, app, release, manifest, service, ctx.environ)
        )
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


def cmd_ps_stop(ctx: Ctx) -> None:
    """``convox ps stop POD`` (pkg/cli/ps.go ``PsStop``: ``Stopping POD... OK``; the rack
    deletes the pod: provider/k8s/process.go ``ProcessStop``). The stand-in stops one-off pods
    (``convox run``); the error for any other id is the k8s one for a pod that is not there."""
    pod = ctx.arg(0)
    with ctx.store.locked() as state:
        rack_name, _ = ctx.rack(state)
    ctx.out.startf(f"Stopping {pod}")
    if not pods.stop(ctx.store, rack_name, ctx.app_name(), pod):
        raise CliError(f'pods "{pod}" not found')
    ctx.out.ok()


def _exec(ctx: Ctx, pod: str, argv: list[str], env: dict[str, str], cwd: Path, timeout: int) -> int:
    """``ProcessExec``: run ``argv`` in the pod's process group, relay its merged output."""
    log = pods.exec_log(ctx.store, pod)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    ctx.out.stdout.flush()
    stdin_read, stdin_write = os.pipe()
    try:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=stdin_read, stdout=fd, stderr=fd, start_new_session=True
        )
    except OSError as exc:
        os.close(stdin_write)
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
        os.close(stdin_read)
    threading.Thread(target=_forward_stdin, args=(stdin_write,), daemon=True).start()
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
    # stdin_write stays open until this CLI process exits (right after): the rack never closes
    # it while the command runs, and closing it under the forwarding thread could let a later
    # open reuse the descriptor.
    code = proc.returncode
    return code if code >= 0 else 128 - code


def _forward_stdin(pipe: int) -> None:
    """Copy the CLI's stdin into the command's until end of input, then leave the pipe open
    (provider/k8s/process.go: ``go io.Copy(inw, rw)``; ``inw`` is never closed)."""
    with contextlib.suppress(OSError, ValueError):
        while chunk := os.read(sys.stdin.fileno(), 65536):
            os.write(pipe, chunk)


def _relay(ctx: Ctx, chunk: bytes) -> None:
    buffer = getattr(ctx.out.stdout, "buffer", None)
    if buffer is not None:
        ctx.out.stdout.flush()
        buffer.write(chunk)
        buffer.flush()
    else:
        ctx.out.write(chunk.decode("utf-8", "replace"))
