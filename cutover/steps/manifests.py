"""The playbook's convox.yml as the steps read it: where it is, loaded, its web service, and the
staged copy deploy and add-domain build with the other services and the timers held
(steps/holding.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cutover.errors import InvalidInput
from cutover.steps.base import Context
from cutover.steps.holding import staged_name, timer_names, write_staged


def manifest_path(ctx: Context) -> Path:
    return ctx.playbook.resolve(ctx.model.convox.source) / ctx.model.convox.manifest


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(
            f"{path}: manifest not found",
            resolution="Write it with `cutover translate -o convox.yml`, or fix "
            "convox.manifest/convox.source in the playbook.",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{path}{where}: invalid YAML in the manifest") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise InvalidInput(f"{path}: the manifest has no services: mapping")
    return data


def web_service(ctx: Context) -> str:
    """The service that takes the production domain: smoke.service, else the first service
    of the manifest with a port."""
    if ctx.model.smoke:
        return ctx.model.smoke.service
    services = load_manifest(manifest_path(ctx))["services"]
    for name, svc in services.items():
        if isinstance(svc, dict) and svc.get("port"):
            return str(name)
    raise InvalidInput(f"{manifest_path(ctx)}: no service has a port to take the domain")


def held_services(ctx: Context) -> list[str]:
    """The manifest's services other than the web one: held at 0 until start-workers."""
    web = web_service(ctx)
    services = load_manifest(manifest_path(ctx))["services"]
    return [str(name) for name in services if str(name) != web]


def stage_held(ctx: Context) -> str:
    """Write the staged manifest with the non-web services and the timers held (steps/holding.py);
    its name relative to the source, for ``-m``."""
    source = ctx.playbook.resolve(ctx.model.convox.source)
    data = load_manifest(manifest_path(ctx))
    return write_staged(source, ctx.model.convox.manifest, data, web_service(ctx))


def staging_line(ctx: Context) -> str:
    """The plan's line for the staged manifest."""
    manifest = ctx.model.convox.manifest
    held = ", ".join(held_services(ctx)) or "none"
    timers = timer_names(load_manifest(manifest_path(ctx)))
    left_out = f"; timers left out: {', '.join(timers)}" if timers else ""
    return (
        f"write {staged_name(manifest)} from {manifest}: held at scale.count 0 until "
        f"start-workers: {held}{left_out}"
    )
