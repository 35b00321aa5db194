"""Builds on the rack: created -> running -> complete | failed, then a release.

Facts: ``provider/k8s/build.go`` (``BuildCreate`` stores the build as ``created`` and starts a
build pod; the pod sets ``running``, streams its logs, and on success creates the release and
sets ``complete`` with ``Release``, else ``failed``), ``pkg/build`` (what the log prints:
``Building: <path>`` per build path, ``Running: docker pull <image>`` per image; manifest load and
validation errors as ``ERROR: ...``). The durations are the rack timings ``build_created`` and
``build_running`` (:data:`cutover.sandbox.convox_fake.store.DEFAULT_TIMINGS`).
"""

from __future__ import annotations

import time
from pathlib import Path

from cutover.sandbox.convox_fake import jobs
from cutover.sandbox.convox_fake.manifest import ManifestError, load_manifest, validate_manifest
from cutover.sandbox.convox_fake.model import (
    app_env,
    create_release,
    find_build,
    get_app,
    latest_release,
    new_build_id,
    rack_by_name,
)
from cutover.sandbox.convox_fake.output import now_iso
from cutover.sandbox.convox_fake.store import Store, timing

TERMINAL = ("complete", "failed")


def create(
    store: Store,
    rack_name: str,
    app_name: str,
    *,
    source: Path,
    manifest_name: str,
    description: str,
    git_sha: str,
    build_args: list[str],
    build_error: str = "",
) -> str:
    """``BuildCreate``: store the build as ``created``, start its job; return the build id."""
    with store.locked() as state:
        app = get_app(rack_by_name(state, rack_name), app_name)
        record: dict[str, object] = {
            "id": new_build_id(),
            "status": "created",
            "release": "",
            "description": description,
            "manifest": "",
            "manifest_name": manifest_name,
            "dir": str(source.resolve()),
            "git_sha": git_sha,
            "build_args": list(build_args),
            "logs": "",
            "build_error": build_error,  # a fault (faults.build_failed): the build fails with it
            "started": now_iso(),
            "ended": "",
        }
        app["builds"].append(record)
        build_id = str(record["id"])
        record["job"] = jobs.spawn(store, state, "build", rack_name, app_name, build_id)
    return build_id


def run(store: Store, rack_name: str, app_name: str, build_id: str) -> None:
    """The build job: wait, run, stream the log into the build record, finish."""
    with store.locked() as state:
        created, running = timing(state, "build_created"), timing(state, "build_running")
    time.sleep(created)
    with store.locked() as state:
        app = get_app(rack_by_name(state, rack_name), app_name)
        build = find_build(app, build_id)
        build["status"] = "running"
        env = app_env(app)
        source, name = Path(build["dir"]), str(build["manifest_name"])
        args = [str(a) for a in build.get("build_args") or []]
        injected = str(build.get("build_error") or "")
    logs, manifest_text, failed = build_output(source, name, env, args)
    if injected and not failed:
        # pkg/build/build.go fail(): "ERROR: <err>" closes the log, the build is failed.
        logs, failed = logs + f"ERROR: {injected}\n", True
    lines = logs.splitlines(keepends=True)
    step = running / (len(lines) + 1)
    for line in lines:
        time.sleep(step)
        with store.locked() as state:
            build = find_build(get_app(rack_by_name(state, rack_name), app_name), build_id)
            build["logs"] = str(build.get("logs", "")) + line
    time.sleep(step)
    with store.locked() as state:
        app = get_app(rack_by_name(state, rack_name), app_name)
        build = find_build(app, build_id)
        build.update(manifest=manifest_text, ended=now_iso(), status="failed")
        if not failed:
            latest = latest_release(app)
            release = create_release(
                app,
                latest["env"] if latest else "",
                build=build_id,
                description=str(build.get("description", "")),
            )
            build.update(status="complete", release=release["id"])
        jobs.finished(state, "build", build_id)


def build_output(
    source: Path, manifest_name: str, env: dict[str, str], build_args: list[str]
) -> tuple[str, str, bool]:
    """(logs, manifest text, failed): what the rack's build prints (``pkg/build``)."""
    path = source / manifest_name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return f"ERROR: no such file: {manifest_name}\n", "", True
    for arg in build_args:
        key, eq, value = arg.partition("=")
        if not eq:
            return f"ERROR: invalid build args: {arg}\n", text, True
        env[key] = value
    try:
        manifest = load_manifest(text, env)
    except ManifestError as exc:
        return f"ERROR: {exc}\n", text, True
    errors = validate_manifest(manifest, env)
    if errors:
        return "ERROR: validation errors:\n" + "".join(e + "\n" for e in errors), text, True
    lines = []
    for path_ in dict.fromkeys(s.build_path for s in manifest.services if not s.image):
        lines.append(f"Building: {path_}\n")
    for image in dict.fromkeys(s.image for s in manifest.services if s.image):
        lines.append(f"Running: docker pull {image}\n")
    return "".join(lines), text, False
