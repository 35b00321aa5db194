"""Commands about the rack, apps and env: version, switch, racks, rack, apps, env.

Facts: ``pkg/cli/version.go``, ``switch.go``, ``racks.go``, ``rack.go``, ``apps.go``, ``env.go``
(env values come on stdin through ``bufio.Scanner``: lines over 64 KiB stop the scan).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

from cutover.sandbox.convox_fake import waits
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.model import (
    NO_RACK,
    RESERVED_APPS,
    app_env,
    create_release,
    env_diff,
    env_load,
    env_string,
    find_release,
    get_app,
    latest_release,
    match_rack,
)
from cutover.sandbox.convox_fake.output import CliError, info, now_iso, table
from cutover.sandbox.convox_fake.runtime import WAIT
from cutover.sandbox.convox_fake.store import VERSION, write_current

STDIN_LINE_LIMIT = 64 * 1024  # bufio.Scanner's MaxScanTokenSize


def cmd_version(ctx: Ctx) -> None:
    ctx.out.write(f"client: {VERSION}\n")
    with ctx.store.locked() as state:
        try:
            _, rack = ctx.rack(state)
        except CliError as exc:
            if str(exc) != NO_RACK:
                raise
            ctx.out.write("server: none\n")
            return
    ctx.out.write(f"server: {rack.get('version', VERSION)}\n")


def cmd_switch(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        if ctx.args:
            rack = match_rack(state["racks"], ctx.args[0])
            write_current(ctx.store.folder, str(rack["name"]))
            ctx.out.write(f"Switched to {rack['name']}\n")
            return
        name, _ = ctx.rack(state)
    ctx.out.write(f"{name}\n")


def cmd_racks(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        racks = sorted(state["racks"], key=lambda r: (r.get("provider") != "local", r["name"]))
        rows = [
            [r["name"], r.get("provider") or "unknown", r.get("status", "running")] for r in racks
        ]
    ctx.out.write(table(["NAME", "PROVIDER", "STATUS"], rows))


def cmd_rack(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
    rows = [("Name", str(rack["name"])), ("Provider", str(rack.get("provider", "local")))]
    if rack.get("region"):
        rows.append(("Region", str(rack["region"])))
    if rack.get("domain"):
        rows.append(("Router", str(rack["domain"])))
    rows += [
        ("Status", str(rack.get("status", "running"))),
        ("Version", str(rack.get("version", VERSION))),
    ]
    ctx.out.write(info(rows))


# --- commands: apps ---------------------------------------------------------------------------


def cmd_apps(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        apps = rack.setdefault("apps", {})
        rows = [
            [a["name"], a.get("status", ""), a.get("release", "")] for _, a in sorted(apps.items())
        ]
    ctx.out.write(table(["APP", "STATUS", "RELEASE"], rows))


def cmd_apps_create(ctx: Ctx) -> None:
    name = ctx.arg(0) or ctx.app_name()
    with ctx.store.locked() as state:
        ctx.rack(state)
    ctx.out.startf(f"Creating {name}")
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        apps = rack.setdefault("apps", {})
        if name in RESERVED_APPS:
            raise CliError("app name is reserved")
        if name in apps:
            raise CliError(f"app already exists: {name}")
        apps[name] = {
            "name": name,
            "status": "creating",
            "generation": "3",
            "locked": False,
            "release": "",
            "created": now_iso(),
            "releases": [],
            "builds": [],
            "scale": {},
            "processes": [],
        }
    time.sleep(WAIT)
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        get_app(rack, name)["status"] = "running"
    ctx.out.ok()


def cmd_apps_info(ctx: Ctx) -> None:
    name = ctx.arg(0) or ctx.app_name()
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, name)
    rows = [
        ("Name", app["name"]),
        ("Status", app.get("status", "")),
        ("Generation", app.get("generation", "3")),
        ("Locked", "true" if app.get("locked") else "false"),
        ("Release", app.get("release", "")),
    ]
    if rack.get("domain"):
        rows.append(("Router", str(rack["domain"])))
    ctx.out.write(info(rows))


# --- commands: env ----------------------------------------------------------------------------


def _read_stdin_lines() -> list[str]:
    """bufio.Scanner over stdin: lines (CR dropped) until EOF or the first line over 64 KiB."""
    try:
        if os.isatty(0):
            return []
        stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
        data = stream.read() if stream is not None else sys.stdin.read().encode()
    except (OSError, ValueError):
        return []
    lines = []
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        chunk = data[start:] if end < 0 else data[start:end]
        if len(chunk) >= STDIN_LINE_LIMIT:
            break  # bufio.ErrTooLong: the scan stops silently, later lines are dropped
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        lines.append(chunk.decode("utf-8", "replace"))
        if end < 0:
            break
        start = end + 1
    return lines


def cmd_env(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        env = app_env(get_app(rack, ctx.app_name()), ctx.string("release"))
    ctx.out.write(env_string(env) + "\n")


def cmd_env_get(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        env = app_env(get_app(rack, ctx.app_name()), ctx.string("release"))
    key = ctx.args[0]
    if key not in env:
        raise CliError(f"env not found: {key}")
    ctx.out.write(env[key] + "\n")


def _env_release(ctx: Ctx, app_name: str, env: Mapping[str, str], parent: str) -> str:
    """POST /apps/{app}/releases with the full env; description ``env <diff>`` (§8)."""
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        base = find_release(app, parent) if parent else latest_release(app)
        diff = env_diff(env_load(base["env"]) if base else {}, env_load(env_string(env)))
        release = create_release(
            app, env_string(env), parent=parent, description=f"env {diff}" if diff else ""
        )
    return str(release["id"])


def cmd_env_set(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    app_name = ctx.app_name()
    parent = ctx.string("release")
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        env = {} if ctx.flag("replace") else app_env(app, parent)
    pairs = [*ctx.args, *_read_stdin_lines()]
    keys = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if eq:
            keys.append(key)
            env[key] = value
    ctx.out.startf("Setting " + ", ".join(sorted(keys)))
    release_id = _env_release(ctx, app_name, env, parent)
    ctx.out.ok()
    ctx.out.write(f"Release: {release_id}\n")
    if ctx.flag("promote"):
        waits.promote(ctx, app_name, release_id)
    if ctx.flag("id"):
        ctx.out.print_id(release_id)


def cmd_env_unset(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    app_name = ctx.app_name()
    parent = ctx.string("release")
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        env = app_env(get_app(rack, app_name), parent)
    for key in ctx.args:
        env.pop(key, None)
    ctx.out.startf("Unsetting " + ", ".join(sorted(ctx.args)))
    release_id = _env_release(ctx, app_name, env, parent)
    ctx.out.ok()
    ctx.out.write(f"Release: {release_id}\n")
    if ctx.flag("promote"):
        waits.promote(ctx, app_name, release_id)
    if ctx.flag("id"):
        ctx.out.print_id(release_id)
