"""The playbook's convox.yml as the steps read it: where it is, loaded, its web service, and the
staged copy deploy and add-domain build with the other services and the timers held
(steps/holding.py).

The staged copy is the operator's file round-tripped with ruamel.yaml: comments, key order and
quoting stay as written and only the held services' ``scale`` and the ``timers`` section change
(pyyaml would re-dump it and lose the comments). The result is parsed back and compared with
holding.staged_manifest's; should they ever differ, the plain re-dump is written instead."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cutover.errors import InvalidInput
from cutover.fsutil import atomic_write
from cutover.playbook_yaml import DuplicateKeyError, StrictLoader
from cutover.steps.base import Context
from cutover.steps.holding import (
    HEADER,
    staged_manifest,
    staged_name,
    timer_names,
    write_staged,
)


def manifest_path(ctx: Context) -> Path:
    return ctx.playbook.resolve(ctx.model.convox.source) / ctx.model.convox.manifest


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        # StrictLoader: a duplicate key is refused, not silently the last one
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)  # noqa: S506
    except FileNotFoundError:
        raise InvalidInput(
            f"{path}: manifest not found",
            resolution="Write it with `cutover translate -o convox.yml`, or fix "
            "convox.manifest/convox.source in the playbook.",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        detail = f": {problem}" if isinstance(exc, DuplicateKeyError) else ""
        raise InvalidInput(f"{path}{where}: invalid YAML in the manifest{detail}") from None
    except RecursionError:
        raise InvalidInput(f"{path}: invalid YAML in the manifest: nested too deeply") from None
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
    return write_staged_keeping_comments(source, ctx.model.convox.manifest, web_service(ctx))


def write_staged_keeping_comments(
    source: Path,
    manifest: str,
    web: str,
    *,
    release_to: Mapping[str, int] | None = None,
) -> str:
    """holding.write_staged's file (same name, header, content and mode), keeping the
    operator's comments and layout; returns its name relative to ``source`` for ``-m``."""
    import io  # noqa: PLC0415

    from ruamel.yaml import YAML  # noqa: PLC0415 - only deploy, add-domain, start-workers
    from ruamel.yaml.comments import CommentedMap  # noqa: PLC0415
    from ruamel.yaml.error import YAMLError  # noqa: PLC0415

    original = source / manifest
    data = load_manifest(original)
    staged = staged_manifest(data, web, str(original), release_to=release_to)
    name = staged_name(manifest)
    held_timers = timer_names(data) if release_to is None else []
    header = HEADER.format(
        source=manifest,
        web=web,
        timers=f", timers {', '.join(held_timers)} left out" if held_timers else "",
    )
    try:
        rt = YAML(typ="rt")
        rt.preserve_quotes = True
        rt.width = 4096
        rt.indent(mapping=2, sequence=4, offset=2)  # "  - item", as convox.yml is written
        doc = rt.load(original.read_text(encoding="utf-8"))
        services = doc["services"]
        for svc, spec in staged["services"].items():
            if spec is data["services"][svc]:
                continue  # not held: as written
            if services.get(svc) is None:
                services[svc] = CommentedMap()
            scale = CommentedMap()
            for key, value in spec["scale"].items():
                scale[key] = value
            services[svc]["scale"] = scale
        if "timers" not in staged and "timers" in doc:
            del doc["timers"]
        out = io.StringIO()
        rt.dump(doc, out)
        text = header + out.getvalue()
    except (YAMLError, KeyError, TypeError, AttributeError):
        text = ""
    if not text or yaml.safe_load(text) != staged:
        return write_staged(source, manifest, data, web, release_to=release_to)
    mode = stat.S_IMODE(original.stat().st_mode) if original.exists() else 0o644
    atomic_write(source / name, text, mode=mode)
    return name


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
