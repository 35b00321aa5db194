"""The rack's runtime: processes of promoted releases, the served web process, pods.

Facts: ``provider/k8s/release.go`` (``ReleasePromote``), ``provider/k8s/process.go``
(``ProcessList``), ``pkg/common/provider.go`` (``WaitForAppRunning``), ``pkg/cli/releases.go``
(``releasePromote``), ``pkg/manifest`` (a service's env: system vars, resources, manifest
defaults, app env).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.convox_fake import jobs, pods
from cutover.sandbox.convox_fake.manifest import Manifest, Service
from cutover.sandbox.convox_fake.model import env_load, find_build
from cutover.sandbox.convox_fake.output import CliError, new_pod_id, now_iso
from cutover.sandbox.convox_fake.resources import resource_env
from cutover.sandbox.convox_fake.store import LOG_DIR, PASSTHROUGH_ENV, Json, Store

# The real CLI sleeps 5 s before and between its polls; the stand-in keeps the printed lines and
# only pauses this long.
WAIT = 0.02
READY_TIMEOUT = 20.0
WAIT_READY_TIMEOUT = 60.0
SAMPLEAPP_MODULE = "cutover.sandbox.sampleapp"
SAMPLEWORKER_MODULE = "cutover.sandbox.sampleworker"


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
    env.update(resource_env(state, app, manifest, service, app_values))
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
        TLS_CERT_DIR=str(store.folder / "router-certs"),  # certs.py issues custom domains here
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
    store: Store,
    environ: Mapping[str, str],
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
    plan.start_env = service_env(state, rack_name, app, release, manifest, web, environ)
    build = find_build(app, release["build"]) if release.get("build") else {}
    source = Path(str(build.get("dir", "")))
    plan.cwd = source if build.get("dir") and source.is_dir() else store.folder
    plan.log_name = f"{app['name']}-{web.name}"
    return plan


def apply_web(store: Store, state_router: Json | None, plan: WebPlan) -> int | None:
    """Stop and start as planned (outside the lock); the new pid, None if nothing started.

    Raises CliError("rollback") if the new process does not come up.
    """
    if plan.stop:
        _stop_web(plan.stop)
    if plan.start_env is None or state_router is None:
        return None
    try:
        return _start_web(store, state_router, plan.start_env, plan.cwd, plan.log_name)
    except (procs.DaemonDiedError, TimeoutError, OSError):
        raise CliError("rollback") from None


def pod_line(pod: Json, status: str) -> str:
    return f"  {pod['id']:<32}  {pod['service']:<12}  {status}\n"


def desired_counts(app: Json, manifest: Manifest | None) -> dict[str, int]:
    """The replicas a promote gives each service: ``CoalesceInt(runtime count,
    scale.count.min)`` (provider/k8s/release.go ``releaseTemplateServices``,
    pkg/common/coalesce.go): a non-zero runtime count persists across promotes, a runtime 0 (or
    a new service) takes the manifest's count, so only ``scale.count: 0`` keeps a service at
    zero through a promote."""
    if manifest is None:
        return {}
    scale: Json = app.setdefault("scale", {})
    counts = {}
    for service in manifest.services:
        current = scale.get(service.name) or {}
        count = current.get("count")
        counts[service.name] = int(count) if isinstance(count, int) and count else service.count
        scale[service.name] = {
            "count": counts[service.name],
            "cpu": int(current.get("cpu") or service.cpu),
            "memory": int(current.get("memory") or service.memory),
        }
    for name in list(scale):
        if name not in counts:
            del scale[name]
    return counts


def make_pods(release_id: str, service: Service, count: int) -> list[Json]:
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


def record_served(rack: Json, app: Json, service: str, pid: int) -> None:
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


def pod_status(rack: Json, pod: Json) -> str:
    """A pod whose real process (web or worker) died shows ``crashed``."""
    pid = pod.get("pid")
    if pid and pod.get("status") == "running" and not procs.pid_alive(int(pid)):
        return "crashed"
    return str(pod.get("status", "running"))


def _is_worker(pid: int) -> bool:
    try:
        return SAMPLEWORKER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def start_workers(
    store: Store,
    environ: Mapping[str, str],
    state: Json,
    rack_name: str,
    app: Json,
    release: Json,
    manifest: Manifest | None,
    pods: list[Json],
) -> None:
    """Start the sample worker for every pod of a service the router does not serve (called
    under the lock; sets each pod's ``pid``). The stand-in builds no images: whatever the
    service's command, its process is :mod:`cutover.sandbox.sampleworker`."""
    if manifest is None:
        return
    web = web_service(manifest)
    build = find_build(app, release["build"]) if release.get("build") else {}
    source = Path(str(build.get("dir", "")))
    cwd = source if build.get("dir") and source.is_dir() else store.folder
    folder = procs.ensure_private_dir(store.folder / LOG_DIR)
    for pod in pods:
        service = manifest.service(pod["service"])
        if service is None or (web is not None and service.name == web.name) or pod.get("pid"):
            continue
        env = service_env(state, rack_name, app, release, manifest, service, environ)
        pod["pid"] = procs.spawn_daemon(
            [sys.executable, "-m", SAMPLEWORKER_MODULE],
            log_path=folder / f"{app['name']}-{pod['id']}.log",
            env=env,
            cwd=cwd,
        )


def stop_workers(pods: list[Json]) -> list[int]:
    """Stop the worker processes of ``pods``; return their pids."""
    stopped = []
    for pod in pods:
        pid = int(pod.get("pid") or 0)
        if pid > 0 and procs.pid_alive(pid) and _is_worker(pid):
            procs.stop_pid(pid, timeout=10.0)
            stopped.append(pid)
    return stopped


def stop_processes(config_dir: Path) -> list[int]:
    """Stop the rack-side jobs and every process the stand-in started; return their pids."""
    from cutover.sandbox.convox_fake import timers  # noqa: PLC0415 - timers imports this module

    with Store(config_dir).locked() as state:
        stopped = jobs.stop_jobs(state) + pods.stop_all(state)
        for rack in state["racks"]:
            for app in (rack.get("apps") or {}).values():
                stopped += stop_workers(app.get("processes") or [])
                stopped += stop_workers(
                    (app.get("rollout") or {}).get("previous", {}).get("processes") or []
                )
                stopped += timers.stop_runs(app)
    with Store(config_dir).locked() as state:
        for rack in state["racks"]:
            served = rack.pop("served", None)
            if served and _stop_web(served):
                stopped.append(int(served["pid"]))
    return stopped
