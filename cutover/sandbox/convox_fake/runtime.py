"""The rack's runtime: processes of promoted releases, the served web process, pods.

Facts: ``provider/k8s/release.go`` (``ReleasePromote``), ``provider/k8s/process.go``
(``ProcessList``), ``pkg/common/provider.go`` (``WaitForAppRunning``), ``pkg/cli/releases.go``
(``releasePromote``), ``pkg/manifest`` (a service's env: system vars, resources, manifest
defaults, app env).
"""

from __future__ import annotations

import copy
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.manifest import Manifest, Service, missing_env, release_manifest
from cutover.sandbox.convox_fake.model import env_load, find_build, find_release, get_app
from cutover.sandbox.convox_fake.output import CliError, new_pod_id, now_iso
from cutover.sandbox.convox_fake.resources import resource_env
from cutover.sandbox.convox_fake.store import LOG_DIR, Json, Store

# The real CLI sleeps 5 s before and between its polls; the stand-in keeps the printed lines and
# only pauses this long.
WAIT = 0.02
READY_TIMEOUT = 20.0
WAIT_READY_TIMEOUT = 60.0
SAMPLEAPP_MODULE = "cutover.sandbox.sampleapp"
# The operator's environment does not leak into a "container"; only these pass through.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")


def base_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in PASSTHROUGH_ENV if k in environ}


def service_env(
    state: Json,
    rack_name: str,
    app: Json,
    release: Json,
    manifest: Manifest,
    service: Service,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """A process's env, later wins: system, APP, RELEASE, BUILD, SERVICE, PORT, resources,
    manifest defaults, app env (§17), then the sandbox marker PLATFORM=convox."""
    env = base_env(environ)
    app_values = env_load(release["env"])
    build_description = ""
    if release.get("build"):
        build_description = find_build(app, release["build"]).get("description", "")
    env.update(
        RACK=rack_name,
        APP=app["name"],
        RELEASE=release["id"],
        BUILD=release.get("build", ""),
        BUILD_DESCRIPTION=build_description,
        SERVICE=service.name,
    )
    if service.port:
        env["PORT"] = str(service.port)
    env.update(resource_env(state, app["name"], manifest, service, app_values))
    for entry in [*manifest.environment, *service.environment]:
        key, eq, default = entry.partition("=")
        if eq:
            env[key] = default
    env.update(app_values)
    env["PLATFORM"] = "convox"
    return env



# --- the served web process -------------------------------------------------------------------


def web_service(manifest: Manifest | None) -> Service | None:
    """The service the router sends traffic to: ``web`` if it has a port, else the first."""
    if manifest is None:
        return None
    routable = [s for s in manifest.services if s.port and not s.internal]
    return next((s for s in routable if s.name == "web"), routable[0] if routable else None)


def _is_web_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return procs.pid_alive(pid)
    return SAMPLEAPP_MODULE.encode() in cmdline


def _stop_web(served: Json) -> bool:
    pid = int(served.get("pid") or 0)
    if pid <= 0 or not procs.pid_alive(pid) or not _is_web_process(pid):
        return False
    procs.stop_pid(pid, timeout=10.0)
    return True


def _start_web(store: Store, router: Json, env: Mapping[str, str], cwd: Path, log_name: str) -> int:
    """Start the sample app on the router port; wait until it accepts connections."""
    log_dir = procs.ensure_private_dir(store.folder / LOG_DIR)
    log_path = log_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', log_name)}.log"
    child_env = dict(env)
    child_env.update(
        PORT=str(router["port"]),
        SAMPLEAPP_HOST=str(router.get("host", "127.0.0.1")),
        TLS_CERT=str(router.get("tls_cert", "")),
        TLS_KEY=str(router.get("tls_key", "")),
    )
    pid = procs.spawn_daemon(
        [sys.executable, "-m", SAMPLEAPP_MODULE], log_path=log_path, env=child_env, cwd=cwd
    )
    try:
        procs.wait_for_port(
            str(router.get("host", "127.0.0.1")),
            int(router["port"]),
            READY_TIMEOUT,
            pid=pid,
            log_path=log_path,
        )
        time.sleep(0.2)  # the port may belong to someone else: make sure ours is still up
        if not procs.pid_alive(pid):
            raise procs.DaemonDiedError(f"process {pid} exited right after start")
    except (procs.DaemonDiedError, TimeoutError):
        procs.stop_pid(pid, timeout=5.0)
        raise
    return pid


@dataclass
class WebPlan:
    """What a promote or scale must do about the served web process, decided under the lock."""

    stop: Json | None = None
    service: str = ""
    start_env: dict[str, str] | None = None
    cwd: Path = Path()
    log_name: str = ""


def plan_web(
    ctx: Ctx,
    state: Json,
    rack_name: str,
    rack: Json,
    app: Json,
    release: Json,
    manifest: Manifest | None,
    counts: Mapping[str, int],
) -> WebPlan:
    """Restart the web process for ``release`` (or stop it when it has no web service)."""
    router = state.get("router")
    served = rack.get("served")
    plan = WebPlan()
    if not isinstance(router, dict) or not router.get("port"):
        return plan
    web = web_service(manifest)
    if served:
        plan.stop = served
    if web is None or manifest is None or counts.get(web.name, 0) <= 0:
        if served and served.get("app") != app["name"]:
            plan.stop = None  # another app's web process keeps the router
        return plan
    plan.service = web.name
    plan.start_env = service_env(state, rack_name, app, release, manifest, web, ctx.environ)
    build = find_build(app, release["build"]) if release.get("build") else {}
    source = Path(str(build.get("dir", "")))
    plan.cwd = source if build.get("dir") and source.is_dir() else ctx.store.folder
    plan.log_name = f"{app['name']}-{web.name}"
    return plan


def apply_web(ctx: Ctx, state_router: Json | None, plan: WebPlan) -> int | None:
    """Stop and start as planned (outside the lock); the new pid, None if nothing started.

    Raises CliError("rollback") if the new process does not come up.
    """
    if plan.stop:
        _stop_web(plan.stop)
    if plan.start_env is None or state_router is None:
        return None
    try:
        return _start_web(ctx.store, state_router, plan.start_env, plan.cwd, plan.log_name)
    except (procs.DaemonDiedError, TimeoutError, OSError):
        raise CliError("rollback") from None


def _pod_line(pod: Json, status: str) -> str:
    return f"  {pod['id']:<32}  {pod['service']:<12}  {status}\n"


def _desired_counts(app: Json, manifest: Manifest | None) -> dict[str, int]:
    """Runtime scale persists across deploys; new services start at the manifest count (§11)."""
    if manifest is None:
        return {}
    scale: Json = app.setdefault("scale", {})
    counts = {}
    for service in manifest.services:
        current = scale.get(service.name) or {}
        count = current.get("count")
        counts[service.name] = int(count) if isinstance(count, int) else service.count
        scale[service.name] = {
            "count": counts[service.name],
            "cpu": int(current.get("cpu") or service.cpu),
            "memory": int(current.get("memory") or service.memory),
        }
    for name in list(scale):
        if name not in counts:
            del scale[name]
    return counts


def _make_pods(release_id: str, service: Service, count: int) -> list[Json]:
    return [
        {
            "id": new_pod_id(service.name),
            "service": service.name,
            "release": release_id,
            "status": "pending",
            "started": now_iso(),
            "command": service.command,
        }
        for _ in range(count)
    ]


def wait_until_running(ctx: Ctx, app_name: str) -> None:
    """``releasePromote`` step 1: wait while another update runs (§10)."""
    deadline = time.monotonic() + WAIT_READY_TIMEOUT
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        status = get_app(rack, app_name).get("status")
    if status == "running":
        return
    ctx.out.startf("Waiting for app to be ready")
    while status != "running":
        if time.monotonic() > deadline:
            raise CliError("timeout")
        time.sleep(WAIT * 5)
        with ctx.store.locked() as state:
            _, rack = ctx.rack(state)
            status = get_app(rack, app_name).get("status")
    ctx.out.ok()


def _record_served(rack: Json, app: Json, service: str, pid: int) -> None:
    """Remember the web process (on its first pod and on the rack) so it can be stopped."""
    first = next((p for p in app["processes"] if p["service"] == service), None)
    if first is not None:
        first["pid"] = pid
    rack["served"] = {
        "app": app["name"],
        "service": service,
        "release": app["release"],
        "pid": pid,
        "pod": first["id"] if first else "",
        "started": now_iso(),
    }


def promote(ctx: Ctx, app_name: str, release_id: str) -> None:
    """``releasePromote``: the shared promote of deploy, releases promote, env --promote (§10).

    A web process that does not come up is a failed rollout: the app goes back to the previous
    release (whose web process is started again) and the command fails with ``rollback``.
    """
    if not release_id:
        raise CliError("no release to promote")
    wait_until_running(ctx, app_name)
    ctx.out.startf(f"Promoting {release_id}")
    with ctx.store.locked() as state:
        rack_name, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        release = find_release(app, release_id)
        env = env_load(release["env"])
        manifest = release_manifest(app, release, env)
        services = manifest.services if manifest else []
        for service in services:
            missing = missing_env(manifest, service, env) if manifest else []
            if missing:
                raise CliError(f"required env: {', '.join(missing)}")
        previous = {
            "release": app.get("release", ""),
            "processes": app.get("processes", []),
            "scale": copy.deepcopy(app.get("scale", {})),
        }
        counts = _desired_counts(app, manifest)
        pods = [p for s in services for p in _make_pods(release_id, s, counts[s.name])]
        plan = plan_web(ctx, state, rack_name, rack, app, release, manifest, counts)
        router = state.get("router") if isinstance(state.get("router"), dict) else None
        app.update(release=release_id, status="updating", processes=pods)
        if plan.stop:
            rack.pop("served", None)
    ctx.out.write("\n")
    for pod in pods:
        ctx.out.write(_pod_line(pod, "pending"))
    time.sleep(WAIT)
    try:
        pid = apply_web(ctx, router, plan)
    except CliError:
        _roll_back(ctx, app_name, previous, router)
        raise
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        for pod in app["processes"]:
            pod["status"] = "running"
        if pid is not None and plan.service:
            _record_served(rack, app, plan.service, pid)
        app["status"] = "running"
        final = app.get("release")
    for pod in pods:
        ctx.out.write(_pod_line(pod, "running"))
    if final != release_id:
        raise CliError("rollback")
    ctx.out.ok()


def _roll_back(ctx: Ctx, app_name: str, previous: Json, router: Json | None) -> None:
    """Put the app back on its previous release and restart that release's web process."""
    with ctx.store.locked() as state:
        rack_name, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        app.update(
            release=previous["release"],
            processes=previous["processes"],
            scale=previous["scale"],
            status="running",
        )
        plan = WebPlan()
        if previous["release"]:
            old = find_release(app, previous["release"])
            manifest = release_manifest(app, old, env_load(old["env"]))
            counts = {name: int(s.get("count", 0)) for name, s in app["scale"].items()}
            plan = plan_web(ctx, state, rack_name, rack, app, old, manifest, counts)
            plan.stop = None
    try:
        pid = apply_web(ctx, router, plan)
    except CliError:
        return
    if pid is not None and plan.service:
        with ctx.store.locked() as state:
            _, rack = ctx.rack(state)
            _record_served(rack, get_app(rack, app_name), plan.service, pid)


def pod_status(rack: Json, pod: Json) -> str:
    """A web pod whose real process died shows ``crashed``."""
    pid = pod.get("pid")
    served = rack.get("served") or {}
    if pid and served.get("pid") == pid and not procs.pid_alive(int(pid)):
        return "crashed"
    return str(pod.get("status", "running"))



def stop_processes(config_dir: Path) -> list[int]:
    """Stop every web process the stand-in started for ``config_dir``; return their pids."""
    stopped = []
    with Store(config_dir).locked() as state:
        for rack in state["racks"]:
            served = rack.pop("served", None)
            if served and _stop_web(served):
                stopped.append(int(served["pid"]))
    return stopped
