"""Commands about builds and releases: build, deploy, builds, releases.

Facts: ``pkg/cli/builds.go`` (``build()``), ``deploy.go``, ``releases.go``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cutover.sandbox.convox_fake import buildjob, waits
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.model import (
    find_build,
    find_release,
    get_app,
    latest_release,
)
from cutover.sandbox.convox_fake.output import (
    CliError,
    ago,
    duration,
    info,
    rfc3339,
    table,
)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _build_description(ctx: Ctx) -> str:
    """``-d``, else ``build <sha10> <subject>`` when ``git diff --quiet`` passes in the cwd."""
    if "description" in ctx.flags:
        return ctx.string("description")
    if _git(ctx.cwd, "diff", "--quiet") is None:
        return ""
    line = _git(ctx.cwd, "log", "-n", "1", "--pretty=%h %s", "--abbrev=10")
    return f"build {line}" if line else ""


def build(ctx: Ctx) -> tuple[str, str]:
    """The shared ``build()`` of build and deploy (pkg/cli/builds.go): upload, ``BuildCreate``
    on the rack, follow; returns (build id, release id)."""
    app_name = ctx.app_name()
    source = Path(ctx.arg(0) or ".")
    if not source.is_absolute():
        source = ctx.cwd / source
    with ctx.store.locked() as state:
        ctx.rack(state)
    description = _build_description(ctx)
    ctx.out.startf("Packaging source")
    if not source.is_dir():
        raise CliError(f"lstat {source}: no such file or directory")
    ctx.out.ok()
    ctx.out.startf("Uploading source")
    with ctx.store.locked() as state:
        rack_name, rack = ctx.rack(state)
        get_app(rack, app_name)
    ctx.out.ok()
    ctx.out.startf("Starting build")
    build_id = buildjob.create(
        ctx.store,
        rack_name,
        app_name,
        source=source,
        manifest_name=ctx.string("manifest") or "convox.yml",
        description=description,
        git_sha=_git(source, "rev-parse", "HEAD") or "",
        build_args=ctx.strings("build-args"),
        build_error=str((ctx.fault or {}).get("build_error") or ""),
    )
    ctx.out.ok()
    finished = waits.follow_build(ctx, app_name, build_id)
    return build_id, str(finished["release"])


def cmd_build(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    build_id, release_id = build(ctx)
    ctx.out.write(f"Build:   {build_id}\nRelease: {release_id}\n")
    if ctx.flag("id"):
        ctx.out.print_id(release_id)


def cmd_deploy(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    _, release_id = build(ctx)
    waits.promote(ctx, ctx.app_name(), release_id, force=ctx.flag("force"))
    if ctx.flag("id"):
        ctx.out.print_id(release_id)


def cmd_builds(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        builds = list(reversed(get_app(rack, ctx.app_name())["builds"]))
    limit = ctx.number("limit")
    rows = [
        [
            b["id"],
            b["status"],
            b.get("release", ""),
            ago(b["started"]),
            duration(b["started"], b.get("ended", "")),
            b.get("description", ""),
        ]
        for b in builds[: 10 if limit is None else limit]
    ]
    ctx.out.write(table(["ID", "STATUS", "RELEASE", "STARTED", "ELAPSED", "DESCRIPTION"], rows))


def cmd_builds_info(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        b = find_build(get_app(rack, ctx.app_name()), ctx.args[0])
    ctx.out.write(
        info(
            [
                ("Id", b["id"]),
                ("Status", b["status"]),
                ("Release", b.get("release", "")),
                ("Description", b.get("description", "")),
                ("Started", ago(b["started"])),
                ("Elapsed", duration(b["started"], b.get("ended", ""))),
            ]
        )
    )


# --- commands: releases -----------------------------------------------------------------------


def cmd_releases(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, ctx.app_name())
    limit = ctx.number("limit")
    releases = list(reversed(app["releases"]))[: 10 if limit is None else limit]
    rows = [
        [
            r["id"],
            "active" if r["id"] == app.get("release") else "",
            r.get("build", ""),
            ago(r["created"]),
            r.get("description", ""),
        ]
        for r in releases
    ]
    ctx.out.write(table(["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"], rows))


def cmd_releases_info(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        r = find_release(get_app(rack, ctx.app_name()), ctx.args[0])
    ctx.out.write(
        info(
            [
                ("Id", r["id"]),
                ("Build", r.get("build", "")),
                ("Created", rfc3339(r["created"])),
                ("Description", r.get("description", "")),
                ("Env", r.get("env", "")),
            ]
        )
    )


def cmd_releases_manifest(ctx: Ctx) -> None:
    release_id = ctx.args[0]
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, ctx.app_name())
        release = find_release(app, release_id)
        if not release.get("build"):
            raise CliError(f"no build for release: {release_id}")
        text = find_build(app, release["build"]).get("manifest", "")
    ctx.out.write(text.strip() + "\n")


def cmd_releases_promote(ctx: Ctx) -> None:
    app_name = ctx.app_name()
    release_id = ctx.arg(0)
    if not release_id:
        with ctx.store.locked() as state:
            _, rack = ctx.rack(state)
            latest = latest_release(get_app(rack, app_name))
        if latest is None:
            raise CliError("no releases to promote")
        release_id = latest["id"]
    waits.promote(ctx, app_name, release_id, force=ctx.flag("force"))
