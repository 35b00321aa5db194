"""The convox fake's state and output helpers: the app store in the world file (apps, builds,
releases as the rack keeps them) and stdcli's output shapes (tables, Info blocks, ``--id``
streams). Standard library only, like every fake module (PyYAML lazily).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from fakes.world import fake_id, next_number


class Fail(Exception):
    """``ERROR: <message>`` on stderr, exit 1."""


class Streams:
    """stdout/stderr, with ``--id`` moving everything but the release id to stderr."""

    def __init__(self, id_mode: bool) -> None:
        self.id_mode = id_mode

    def out(self, text: str) -> None:
        (sys.stderr if self.id_mode else sys.stdout).write(text)
        (sys.stderr if self.id_mode else sys.stdout).flush()

    def release_id(self, release: str) -> None:
        if self.id_mode:
            sys.stdout.write(release)  # no newline, as the real --id mode


def table(header: list[str], rows: list[list[str]]) -> str:
    """A stdcli table: two-space gutters, every column but the last padded."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(widths[i]) for i, c in enumerate(row[:-1])] + [str(row[-1])]
        lines.append("  ".join(cells))
    return "\n".join(lines) + "\n"


def info(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in rows)


def ago(ts: float) -> str:
    seconds = int(time.time() - ts)
    if seconds < 1:
        return "now"
    if seconds < 60:
        return f"{seconds} second{'s' if seconds > 1 else ''} ago"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes > 1 else ''} ago"


def app_name(positional: list[str], opts: dict[str, Any]) -> str:
    return str(opts.get("app") or (positional[0] if positional else os.path.basename(os.getcwd())))


def get_app(world: dict[str, Any], name: str) -> dict[str, Any]:
    app = world["convox"]["apps"].get(name)
    if app is None:
        raise Fail(f"app not found: {name}")
    return dict(app)


def app_status(app: dict[str, Any]) -> str:
    """``updating`` while a promote rolls out on the rack (it goes on if the CLI is killed)."""
    return "updating" if time.time() < app.get("updating_until", 0) else str(app["status"])


def build_ready(build: dict[str, Any]) -> bool:
    """Builds run on the rack: complete ``ready_at`` whatever happened to the CLI."""
    return time.time() >= build.get("ready_at", 0)


def visible_releases(app: dict[str, Any]) -> list[dict[str, Any]]:
    """A build's release exists once the build has completed (env releases at once)."""
    ready = {b["id"] for b in app["builds"] if b["status"] == "complete" and build_ready(b)}
    return [
        r for r in app["releases"] if r.get("pending_build") is None or r["pending_build"] in ready
    ]


def latest_release(app: dict[str, Any]) -> dict[str, Any] | None:
    return app["releases"][-1] if app["releases"] else None


def env_dict(text: str) -> dict[str, str]:
    env = {}
    for line in text.split("\n"):
        if "=" in line:
            key, _, value = line.partition("=")
            env[key] = value
    return env


def env_text(env: dict[str, str]) -> str:
    return "\n".join(sorted(f"{k}={v}" for k, v in env.items()))


def build_of(app: dict[str, Any], build_id: str) -> dict[str, Any] | None:
    return next((b for b in app["builds"] if b["id"] == build_id), None)


def load_yaml(text: str) -> Any:
    import yaml  # noqa: PLC0415 - only the commands reading a manifest pay for PyYAML

    return yaml.safe_load(text)


def active_manifest(app: dict[str, Any]) -> dict[str, Any]:
    release = next((r for r in app["releases"] if r["id"] == app.get("active")), None)
    build = build_of(app, release["build"]) if release else None
    if not build:
        return {}
    return dict(load_yaml(build["manifest"]) or {})


def new_release(
    world: dict[str, Any], app: dict[str, Any], *, env: dict[str, str], build: str, description: str
) -> str:
    release = fake_id("R", next_number(world, "release"))
    app["releases"].append(
        {
            "id": release,
            "build": build,
            "env": env_text(env),
            "created": time.time(),
            "description": description,
        }
    )
    return release
