"""A fake ``heroku`` CLI (11.10.0): the commands cutover's Heroku adapter runs, with the real
output formats (shared/reference/heroku-cli.md): JSON printed with 2-space indents, action
progress on stderr only, API errors as `` ›   Error: ...`` / `` ›   Error ID: <id>`` with rc 2.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

from fakes.world import next_number, note_effect, read_world, update_world

VERSION = "heroku/11.10.0 linux-x64 node-v20.20.2"
_SCALE_ITEM = re.compile(r"^([A-Za-z0-9_-]+)=(\d+)(?::(\S+))?$")


def reads_stdin(args: list[str]) -> bool:
    return False


def _out(text: str) -> None:
    sys.stdout.write(text)


def _err(text: str) -> None:
    sys.stderr.write(text)


def _coloured() -> bool:
    """Whether the real CLI's colour library (ansis 4, node_modules/ansis/index.cjs) colours:
    FORCE_COLOR present (any value but 0/false) forces it; else NO_COLOR stops it; else a TTY,
    CI or PM2_HOME turns it on."""
    env = os.environ
    if "FORCE_COLOR" in env:
        return env["FORCE_COLOR"] not in ("0", "false")
    if env.get("NO_COLOR"):
        return False
    return sys.stdout.isatty() or bool(env.get("CI") or env.get("PM2_HOME"))


def _cyan(text: str) -> str:
    return f"\x1b[36m{text}\x1b[39m" if _coloured() else text


def _json(value: Any) -> None:
    _out(json.dumps(value, indent=2) + "\n")


def api_error(message: str, error_id: str) -> int:
    """A Heroku API error as the CLI prints it (exit 2)."""
    _err(f" \u203a   Error: {message}\n \u203a\n \u203a   Error ID: {error_id}\n")
    return 2


def internal_server_error() -> int:
    return api_error("Internal server error.", "internal_server_error")


def _parse(args: list[str]) -> tuple[str | None, set[str], list[str]]:
    app = None
    flags: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-a", "--app") and i + 1 < len(args):
            app = args[i + 1]
            i += 2
            continue
        if arg.startswith("--app="):
            app = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            flags.add(arg)
        else:
            positional.append(arg)
        i += 1
    return app, flags, positional


def _dynos(h: dict[str, Any]) -> list[dict[str, Any]]:
    dynos = []
    for f in h["formation"]:
        for n in range(1, int(f["quantity"]) + 1):
            dynos.append(
                {
                    "app": {"id": h["app_id"], "name": h["app"]},
                    "attach_url": None,
                    "command": f["command"],
                    "created_at": "2024-05-01T12:00:00Z",
                    "id": f"dyno-{f['type']}-{n}",
                    "name": f"{f['type']}.{n}",
                    "release": {"id": "rrrr", "version": 42},
                    "size": f["size"],
                    "state": "up",
                    "type": f["type"],
                    "updated_at": "2024-05-01T12:00:00Z",
                }
            )
    now = time.time()
    for gone in h.get("stopping", []):
        if gone["until"] > now:  # scaled away but still shutting down (SIGTERM, then SIGKILL)
            dynos.append({**gone["dyno"], "state": "down"})
    return sorted(dynos, key=lambda d: d["name"])


def _formation_line(h: dict[str, Any]) -> str:
    return " ".join(f"{f['type']}={f['quantity']}:{f['size']}" for f in h["formation"]) + "\n"


def main(args: list[str]) -> int:
    if args in (["--version"], ["-v"], ["version"]):
        _out(VERSION + "\n")
        if os.environ.get("HEROKU_API_KEY"):
            _err(" \u203a   Warning: HEROKU_API_KEY set to [REDACTED]\n")
        return 0
    if not args:
        _out("CLI to interact with Heroku\n")
        return 0
    command, rest = args[0], args[1:]
    app, flags, positional = _parse(rest)
    if app is None:
        _err(
            " \u203a   Error: The following error occurred:\n"
            " \u203a     Missing required flag app\n \u203a   See more help with --help\n"
        )
        return 2
    handler = COMMANDS.get(command)
    if handler is None:
        _err(
            f" \u203a   Warning: {command} is not a heroku command.\n"
            " \u203a   Error: Run heroku help for a list of available commands.\n"
        )
        return 127
    world = read_world()
    if app != world["heroku"]["app"]:
        return api_error("Couldn't find that app.", "not_found")
    return handler(flags, positional)


def apps_info(flags: set[str], positional: list[str]) -> int:
    h = read_world()["heroku"]
    app = {
        "acm": False,
        "archived_at": None,
        "build_stack": {"name": "heroku-24"},
        "create_status": "complete",
        "git_url": f"https://git.heroku.com/{h['app']}.git",
        "id": h["app_id"],
        "internal_routing": None,
        "maintenance": h["maintenance"],
        "name": h["app"],
        "owner": {"email": "owner@example.test", "id": "11111111-2222"},
        "region": {"name": "us"},
        "repo_size": 1048576,
        "slug_size": 52428800,
        "space": None,
        "stack": {"name": "heroku-24"},
        "web_url": f"https://{h['app']}-abc123.herokuapp.com/",
    }
    _json(
        {
            "addons": h["addons"],
            "app": app,
            "collaborators": [{"role": "owner", "user": {"email": "owner@example.test"}}],
            "dynos": _dynos(h),
            "pipeline_coupling": None,
        }
    )
    return 0


def config(flags: set[str], positional: list[str]) -> int:
    h = read_world()["heroku"]
    if "--json" in flags:
        _json(h["config"])
    else:
        _out(f"=== {h['app']} Config Vars\n\n")
        width = max(len(k) for k in h["config"]) + 1
        for key, value in sorted(h["config"].items()):
            _out(f"{key + ':':<{width}} {value}\n")
    return 0


def ps(flags: set[str], positional: list[str]) -> int:
    with update_world() as world:
        dynos = _dynos(world["heroku"])
        world["heroku"].setdefault("ps_seen", []).append(sorted(d["name"] for d in dynos))
    _json(dynos)
    return 0


def ps_scale(flags: set[str], positional: list[str]) -> int:
    updates = [_SCALE_ITEM.match(p) for p in positional]
    if not positional or not all(updates):
        # No (or an unparsable) argument: the CLI just shows the formation, rc 0.
        _out(_formation_line(read_world()["heroku"]))
        return 0
    _err("Scaling dynos... ")
    done = []
    with update_world() as world:
        formation = {f["type"]: f for f in world["heroku"]["formation"]}
        for match in updates:
            assert match
            kind, quantity, size = match[1], int(match[2]), match[3]
            if kind not in formation:
                _err("!\n")
                return api_error(f"No such process type {kind} defined in Procfile.", "not_found")
            # Dynos scaled away stay listed while they stop: the world's dyno_stop_seconds.
            stop = float(world["heroku"].get("dyno_stop_seconds") or 0)
            before = _dynos(world["heroku"])
            formation[kind]["quantity"] = quantity
            after = {d["name"] for d in _dynos(world["heroku"])}
            world["heroku"].setdefault("stopping", []).extend(
                {"dyno": d, "until": time.time() + stop}
                for d in before
                if d["name"] not in after and d["type"] == kind and stop
            )
            note_effect(world, f"heroku ps:scale {kind}={quantity}")
            if size:
                formation[kind]["size"] = size
            done.append(f"{kind} at {quantity}:{formation[kind]['size']}")
    _err("done, now running " + ", ".join(done) + "\n")
    return 0


def addons(flags: set[str], positional: list[str]) -> int:
    h = read_world()["heroku"]
    out = []
    for addon in h["addons"]:
        item = dict(addon)
        item["plan"] = {**addon["plan"], "price": addon["billed_price"]}
        item["attachments"] = [
            {
                "addon": {
                    "id": addon["id"],
                    "name": addon["name"],
                    "app": addon["app"],
                    "plan": addon["plan"],
                },
                "app": addon["app"],
                "config_vars": addon["config_vars"],
                "id": f"att-{addon['id'][:8]}",
                "name": addon["config_vars"][0].removesuffix("_URL"),
                "namespace": None,
            }
        ]
        out.append(item)
    _json(out)
    return 0


def maintenance(flags: set[str], positional: list[str]) -> int:
    _out("on\n" if read_world()["heroku"]["maintenance"] else "off\n")
    return 0


def _set_maintenance(on: bool) -> int:
    with update_world() as world:
        h = world["heroku"]
        _err(f"{'Enabling' if on else 'Disabling'} maintenance mode for {h['app']}... ")
        note_effect(world, f"heroku maintenance:{'on' if on else 'off'}")
        if h["maintenance"] != on:
            h["maintenance"] = on
            h["maintenance_on_at"] = time.time() if on else None
    _err("done\n")
    return 0


def maintenance_on(flags: set[str], positional: list[str]) -> int:
    return _set_maintenance(True)


def maintenance_off(flags: set[str], positional: list[str]) -> int:
    return _set_maintenance(False)


def _attachment_known(db: dict[str, Any], name: str | None) -> bool:
    """Attachment names the fake's one database answers to (DatabaseResolver.getAttachment)."""
    return name in (None, "DATABASE", "DATABASE_URL", db["addon"])


def backups_capture(flags: set[str], positional: list[str]) -> int:
    """pg/backups/capture.js: ``[database]`` (default DATABASE_URL's), the progress on stderr as
    oclif's simple action prints it: ``Backing up <from_name> to b<num:03>... done``
    (lib/pg/backups.js ``name()``). A world ``scheduled_backup`` switch makes Heroku's daily
    backup finish right after ours (an ``a`` backup, newer, of older data)."""
    attachment = positional[0] if positional else None
    with update_world() as world:
        h = world["heroku"]
        db = h["database"]
        if not _attachment_known(db, attachment):
            return api_error("Couldn't find that addon.", "not_found")
        number = next_number(world, "backup")
        note_effect(world, "heroku pg:backups:capture")
        name = f"b{number:03d}"
        h["backups"].append(
            {
                "num": number,
                "name": name,
                "token": os.urandom(16).hex(),
                "data": json.loads(json.dumps(db["data"])),
                "created_at": time.time(),
                "maintenance": h["maintenance"],
                "attachment": attachment or "DATABASE",
            }
        )
        if h.get("scheduled_backup"):
            scheduled = next_number(world, "backup")
            h["backups"].append(
                {
                    "num": scheduled,
                    "name": f"a{scheduled:03d}",
                    "token": os.urandom(16).hex(),
                    "data": h["scheduled_backup"],
                    "created_at": time.time() + 1,
                    "maintenance": False,
                    "attachment": "DATABASE",
                }
            )
    _out(
        "\nUse Ctrl-C at any time to stop monitoring progress; the backup will continue "
        "running.\nUse heroku pg:backups:info to check progress.\nStop a running backup with "
        "heroku pg:backups:cancel.\n\n"
    )
    from_name = attachment if attachment and attachment != db["addon"] else "DATABASE"
    # capture.js: color.datastore(from_name) and color.cyan(name), through ansis.
    _err(
        f"Starting backup of {_cyan(db['addon'])}... done\nBacking up {_cyan(from_name)} to "
        f"{_cyan(name)}... done\n"
    )
    return 0


def backups_url(flags: set[str], positional: list[str]) -> int:
    """pg/backups/url.js: ``[backup_id]``; without it the newest successful backup of the app
    (whatever made it), with it that backup (``[abcr](\\d+)`` gives its number)."""
    world = read_world()
    backups = world["heroku"]["backups"]
    if positional:
        match = re.fullmatch(r"[abcr](\d+)", positional[0])
        if not match:
            _err(f" \u203a   Error: Invalid Backup: {positional[0]}\n")
            return 1
        chosen = next((b for b in backups if b["num"] == int(match[1])), None)
        if chosen is None:
            return api_error("Couldn't find that transfer.", "not_found")
    elif not backups:
        _err(
            f" \u203a   Error: No backups on {world['heroku']['app']}. Capture one with "
            "heroku pg:backups:capture\n"
        )
        return 1
    else:
        chosen = max(backups, key=lambda b: b["created_at"])
    port = world["storage"]["port"]
    _out(
        f"https://127.0.0.1:{port}/backup.dump?X-Amz-Expires=3600"
        f"&X-Amz-Signature={chosen['token']}\n\n"
    )
    return 0


def credentials_url(flags: set[str], positional: list[str]) -> int:
    from urllib.parse import quote  # noqa: PLC0415 - only this command pays for urllib

    db = read_world()["heroku"]["database"]
    if positional[:1] not in (["DATABASE"], ["DATABASE_URL"], [db["addon"]]):
        return api_error("Couldn't find that addon.", "not_found")
    url = (
        f"postgres://{db['user']}:{quote(db['password'], safe='')}@{db['host']}:{db['port']}"
        f"/{db['dbname']}"
    )
    _out(
        "Connection information for default credential.\nConnection info string:\n"
        f'  "dbname={db["dbname"]} host={db["host"]} port={db["port"]} user={db["user"]} '
        f'password={db["password"]} sslmode=require"\nConnection URL:\n  {url}\n\n'
    )
    return 0


COMMANDS = {
    "apps:info": apps_info,
    "config": config,
    "ps": ps,
    "ps:scale": ps_scale,
    "addons": addons,
    "maintenance": maintenance,
    "maintenance:on": maintenance_on,
    "maintenance:off": maintenance_off,
    "pg:backups:capture": backups_capture,
    "pg:backups:url": backups_url,
    "pg:credentials:url": credentials_url,
}
