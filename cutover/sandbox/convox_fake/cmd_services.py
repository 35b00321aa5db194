"""Commands about running services: services, ps, scale.

Facts: ``pkg/cli/services.go``, ``ps.go``, ``scale.go``, ``provider/k8s/service.go``.
"""

from __future__ import annotations

from collections.abc import Mapping

from cutover.sandbox import procs
from cutover.sandbox.convox_fake import pods as pod_records
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.manifest import Manifest, active_manifest
from cutover.sandbox.convox_fake.model import find_release, get_app, rack_domain
from cutover.sandbox.convox_fake.output import CliError, ago, table
from cutover.sandbox.convox_fake.runtime import (
    WebPlan,
    apply_web,
    desired_counts,
    make_pods,
    plan_web,
    pod_line,
    pod_status,
    record_served,
    start_workers,
    stop_workers,
    web_service,
)
from cutover.sandbox.convox_fake.store import Json


def active(ctx: Ctx, state: Json) -> tuple[str, Json, Json, Manifest | None]:
    """(rack name, rack, app, active manifest or None) for list commands."""
    rack_name, rack = ctx.rack(state)
    app = get_app(rack, ctx.app_name())
    manifest = active_manifest(app)[1] if app.get("release") else None
    return rack_name, rack, app, manifest


def scale_cell(low: int, high: int) -> str:
    """``formatScaleCell`` (pkg/cli/services.go): ``2`` or ``1-3``."""
    return str(low) if low == high else f"{low}-{high}"


def cmd_services(ctx: Ctx) -> None:
    """pkg/cli/services.go: SERVICE, DOMAIN, PORTS, then SCALE when any service has Min/Max.

    A v3 rack's ServiceList (provider/k8s/service.go) sets Min and Max from the manifest's
    ``scale.count`` on every service, so SCALE is always there once a release is active.
    """
    with ctx.store.locked() as state:
        rack_name, rack, app, manifest = active(ctx, state)
    rows = []
    for s in sorted(manifest.services if manifest else [], key=lambda s: s.name):
        if s.internal:
            domain = f"{s.name}.{app['name']}.{rack_name}.local"
        else:
            domain = f"{s.name}.{app['name']}.{rack_domain(rack)}"
        ports = f"443:{s.port}" if s.port else ""
        rows.append([s.name, domain, ports, scale_cell(s.count, s.count_max)])
    headers = ["SERVICE", "DOMAIN", "PORTS"]
    if rows:
        headers.append("SCALE")
    ctx.out.write(table(headers, rows))


def cmd_ps(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack, app, _ = active(ctx, state)
    runs = [r for r in app.get("runs") or [] if pod_records.alive(r)]
    pods = sorted([*app.get("processes", []), *runs], key=lambda p: (p["service"], p["id"]))
    if ctx.string("service"):
        pods = [p for p in pods if p["service"] == ctx.string("service")]
    if ctx.string("release"):
        pods = [p for p in pods if p["release"] == ctx.string("release")]
    rows = [
        [
            p["id"],
            p["service"],
            pod_status(rack, p),
            p["release"],
            ago(p["started"]),
            p.get("command", ""),
        ]
        for p in pods
    ]
    ctx.out.write(table(["ID", "SERVICE", "STATUS", "RELEASE", "STARTED", "COMMAND"], rows))


_SCALE_FLAGS = ("count", "cpu", "memory", "gpu", "gpu-vendor", "min", "max")


def cmd_scale(ctx: Ctx) -> None:
    if any(name in ctx.flags for name in _SCALE_FLAGS):
        scale_service(ctx)
        return
    with ctx.store.locked() as state:
        _, _, app, manifest = active(ctx, state)
    services = sorted(manifest.services if manifest else [], key=lambda s: s.name)
    wanted = ctx.arg(0)
    if wanted:
        services = [s for s in services if s.name == wanted]
        if not services:
            raise CliError(f'service "{wanted}" not found in app {app["name"]}')
    scale = app.get("scale", {})
    running: dict[str, int] = {}
    for pod in app.get("processes", []):
        running[pod["service"]] = running.get(pod["service"], 0) + 1
    rows = []
    for s in services:
        current = scale.get(s.name, {})
        desired = int(current.get("count", s.count))
        # provider/k8s/service.go ServiceList: Min/Max from the manifest's scale.count, and
        # ColdStart when both the manifest's min and the replicas are 0 (pkg/cli/scale.go
        # prints it in STATUS).
        cold = "COLD (~2-5m first req)" if s.count == 0 and desired == 0 else ""
        rows.append(
            [
                s.name,
                str(desired),
                str(running.get(s.name, 0)),
                str(current.get("cpu", s.cpu)),
                str(current.get("memory", s.memory)),
                "-",
                str(s.count),
                str(s.count_max),
                cold,
            ]
        )
    headers = ["SERVICE", "DESIRED", "RUNNING", "CPU", "MEMORY", "GPU", "MIN", "MAX", "STATUS"]
    ctx.out.write(table(headers, rows))


def _check_scale_flags(count: int | None, low: int | None, high: int | None) -> None:
    if count is not None and (low is not None or high is not None):
        raise CliError("--min/--max and --count are mutually exclusive")
    if low is not None and low < 0:
        raise CliError("--min must be >= 0")
    if high is not None and high < 1:
        raise CliError("--max must be >= 1")
    if low is not None and high is not None and high < low:
        raise CliError("--max must be >= --min")


def _scale_web_plan(
    ctx: Ctx,
    state: Json,
    rack_name: str,
    rack: Json,
    app: Json,
    manifest: Manifest,
    service: str,
    counts: Mapping[str, int],
) -> WebPlan:
    """Scaling the served service to 0 stops its process; scaling it up starts it if down."""
    web = web_service(manifest)
    if web is None or web.name != service:
        return WebPlan()
    served = rack.get("served") or {}
    is_served = served.get("app") == app["name"] and served.get("service") == service
    alive = is_served and procs.pid_alive(int(served.get("pid") or 0))
    if (counts[service] == 0 and not is_served) or (counts[service] > 0 and alive):
        return WebPlan()
    release = find_release(app, app["release"])
    plan = plan_web(ctx.store, ctx.environ, state, rack_name, rack, app, release, manifest, counts)
    if plan.stop:
        rack.pop("served", None)
    return plan


def scale_service(ctx: Ctx) -> None:
    """``scale SERVICE --count N`` and friends: update, then wait like a promote (§11)."""
    count = ctx.number("count")
    _check_scale_flags(count, ctx.number("min"), ctx.number("max"))
    name = ctx.args[0]
    app_name = ctx.app_name()
    ctx.out.startf(f"Scaling {name}")
    with ctx.store.locked() as state:
        rack_name, rack, app, manifest = active(ctx, state)
        service = manifest.service(name) if manifest else None
        if service is None or manifest is None:
            raise CliError(f'deployments.apps "{name}" not found')
        counts = desired_counts(app, manifest)
        current = app["scale"][name]
        if count is not None:
            current["count"] = counts[name] = count
        for key in ("cpu", "memory"):
            if ctx.number(key) is not None:
                current[key] = ctx.number(key)
        pods = [p for p in app["processes"] if p["service"] == name]
        new = make_pods(app["release"], service, max(0, counts[name] - len(pods)))
        removed = pods[counts[name] :]
        app["processes"] = [p for p in app["processes"] if p not in removed] + new
        plan = _scale_web_plan(ctx, state, rack_name, rack, app, manifest, name, counts)
        start_workers(
            ctx.store,
            ctx.environ,
            state,
            rack_name,
            app,
            find_release(app, app["release"]),
            manifest,
            new,
        )
        router = state.get("router") if isinstance(state.get("router"), dict) else None
    ctx.out.write("\n")
    for pod in new:
        ctx.out.write(pod_line(pod, "pending"))
    stop_workers(removed)
    pid = apply_web(ctx.store, router, plan)
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        for pod in app["processes"]:
            if pod["status"] == "pending":
                pod["status"] = "running"
        if pid is not None:
            record_served(rack, app, name, pid)
    for pod in new:
        ctx.out.write(pod_line(pod, "running"))
    ctx.out.ok()
