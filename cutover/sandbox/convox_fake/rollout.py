"""Promotes on the rack: ``ReleasePromote`` returns at once, the rollout finishes by itself.

Facts: ``provider/k8s/release.go`` ``ReleasePromote`` (applies the release's templates and
returns; the app is ``updating`` until the deployments are available, then ``running``),
``pkg/common/provider.go`` (the CLI only watches). A web process that does not come up is a
failed rollout: the app goes back to its previous release (whose web process is started again),
and the CLI, seeing another release active, fails with ``rollback`` (``pkg/cli/releases.go``).
The rollout's duration is the rack timing ``rollout``.
"""

from __future__ import annotations

import copy
import os
import time

from cutover.sandbox.convox_fake import certs, jobs, provision
from cutover.sandbox.convox_fake.manifest import missing_env, release_manifest
from cutover.sandbox.convox_fake.model import env_load, find_release, get_app, rack_by_name
from cutover.sandbox.convox_fake.output import CliError, now_iso
from cutover.sandbox.convox_fake.runtime import (
    WebPlan,
    apply_web,
    desired_counts,
    make_pods,
    plan_web,
    record_served,
    start_workers,
    stop_workers,
)
from cutover.sandbox.convox_fake.store import Json, Store, timing


def release_promote(store: Store, rack_name: str, app_name: str, release_id: str) -> list[Json]:
    """The rack API call: check, mark the app ``updating``, start the rollout; the new pods."""
    with store.locked() as state:
        app = get_app(rack_by_name(state, rack_name), app_name)
        release = find_release(app, release_id)
        env = env_load(release["env"])
        manifest = release_manifest(app, release, env)
        services = manifest.services if manifest else []
        for service in services:
            missing = missing_env(manifest, service, env) if manifest else []
            if missing:
                raise CliError(f"required env: {', '.join(missing)}")
        previous = app.get("rollout", {}).get("previous") or {
            "release": app.get("release", ""),
            "processes": app.get("processes", []),
            "scale": copy.deepcopy(app.get("scale", {})),
        }
        provision.plan(state, app, manifest, env)
        counts = desired_counts(app, manifest)
        pods = [p for s in services for p in make_pods(release_id, s, counts[s.name])]
        app.update(release=release_id, status="updating", processes=pods)
        # the release's templates create a service account per service (provider/k8s)
        app["service_accounts"] = sorted(
            {*app.get("service_accounts", []), *(s.name for s in services)}
        )
        app["rollout"] = {"release": release_id, "previous": previous, "started": now_iso()}
        jobs.spawn(store, state, "rollout", rack_name, app_name, release_id)
    return pods


def run(store: Store, rack_name: str, app_name: str, release_id: str) -> None:
    """The rollout job: pods start, the web process is replaced, the app is running."""
    with store.locked() as state:
        seconds = timing(state, "rollout")
    time.sleep(seconds)
    with store.locked() as state:
        rack = rack_by_name(state, rack_name)
        app = get_app(rack, app_name)
        rollout = app.get("rollout") or {}
        if rollout.get("release") != release_id:  # a later promote took over
            jobs.finished(state, "rollout", release_id)
            return
        release = find_release(app, release_id)
        manifest = release_manifest(app, release, env_load(release["env"]))
        counts = {name: int(s.get("count", 0)) for name, s in app.get("scale", {}).items()}
        plan = plan_web(store, os.environ, state, rack_name, rack, app, release, manifest, counts)
        router = state.get("router") if isinstance(state.get("router"), dict) else None
        if plan.stop:
            rack.pop("served", None)
    try:
        pid = apply_web(store, router, plan)
    except CliError:
        _roll_back(store, rack_name, app_name, rollout["previous"], router)
        with store.locked() as state:
            jobs.finished(state, "rollout", release_id)
        return
    stop_workers(rollout["previous"].get("processes") or [])
    with store.locked() as state:
        rack = rack_by_name(state, rack_name)
        app = get_app(rack, app_name)
        release = find_release(app, release_id)
        start_workers(store, os.environ, state, rack_name, app, release, manifest, app["processes"])
        for pod in app["processes"]:
            pod["status"] = "running"
        if pid is not None and plan.service:
            record_served(rack, app, plan.service, pid)
        app["status"] = "running"
        app.pop("rollout", None)
        certs.ensure(store, state, rack_name, app_name, manifest)
        if manifest is not None and manifest.timers:  # the release's CronJobs (timers.py)
            jobs.spawn(store, state, "timers", rack_name, app_name, release_id)
    provision.materialize(store, rack_name, app_name, release_id)
    with store.locked() as state:
        jobs.finished(state, "rollout", release_id)


def _roll_back(
    store: Store, rack_name: str, app_name: str, previous: Json, router: Json | None
) -> None:
    """Put the app back on its previous release and restart that release's web process."""
    with store.locked() as state:
        rack = rack_by_name(state, rack_name)
        app = get_app(rack, app_name)
        app.update(
            release=previous["release"],
            processes=previous["processes"],
            scale=previous["scale"],
            status="running",
        )
        app.pop("rollout", None)
        plan = WebPlan()
        if previous["release"]:
            old = find_release(app, previous["release"])
            manifest = release_manifest(app, old, env_load(old["env"]))
            counts = {name: int(s.get("count", 0)) for name, s in app["scale"].items()}
            plan = plan_web(store, os.environ, state, rack_name, rack, app, old, manifest, counts)
            plan.stop = None
            if manifest is not None and manifest.timers:  # its CronJobs are back
                jobs.spawn(store, state, "timers", rack_name, app_name, previous["release"])
    try:
        pid = apply_web(store, router, plan)
    except CliError:
        return
    if pid is not None and plan.service:
        with store.locked() as state:
            rack = rack_by_name(state, rack_name)
            record_served(rack, get_app(rack, app_name), plan.service, pid)
