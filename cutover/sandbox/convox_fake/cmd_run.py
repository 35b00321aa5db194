"""``convox run``.

Facts: ``pkg/cli/run.go``, ``provider/k8s/process.go``.
"""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.manifest import release_manifest
from cutover.sandbox.convox_fake.model import env_load, find_build, find_release, get_app
from cutover.sandbox.convox_fake.output import CliError, ExitCode, new_pod_id
from cutover.sandbox.convox_fake.runtime import service_env
from cutover.sandbox.convox_fake.store import LOG_DIR


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
        manifest = release_manifest(app, release, env_load(release["env"]))
        service = manifest.service(service_name) if manifest else None
        if service is None or manifest is None:
            raise CliError(f"no such service: {service_name}")
        env = service_env(state, rack_name, app, release, manifest, service, ctx.environ)
        build_dir = Path(find_build(app, release["build"]).get("dir", ""))
    cwd = build_dir if str(build_dir) not in ("", ".") and build_dir.is_dir() else ctx.cwd
    try:
        argv = shlex.split(" ".join(words))
    except ValueError as exc:
        raise CliError(f"{exc}".lower()) from None
    if not argv:
        raise CliError("no command given")
    if ctx.flag("detach"):
        ctx.out.startf("Running detached process")
        log_dir = procs.ensure_private_dir(ctx.store.folder / LOG_DIR)
        try:
            procs.spawn_daemon(argv, log_path=log_dir / f"{app_name}-run.log", env=env, cwd=cwd)
        except OSError as exc:
            raise CliError(f"exec: {exc.strerror}") from None
        ctx.out.ok(new_pod_id(service_name))
        return
    timeout = ctx.number("timeout") or 3600
    ctx.out.stdout.flush()
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stderr=subprocess.STDOUT)
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
        raise ExitCode(126) from None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    raise ExitCode(code if code >= 0 else 128 - code)

