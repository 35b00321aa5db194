"""Render convox.yml deterministically and check it against convox's validation rules.

Rendering is hand-written rather than ``yaml.dump`` so the output reads like the guide: block
style, keys in the guide's order (environment, resources, services, timers; within a service
build, command, port, health, ...), and strings quoted exactly when YAML would mistype them
(``"16"``, ``"0 6 * * *"``, ``"yes"``, ``"*"``) or when they are versions or schedules.

:func:`validate` applies the rules of convox's ``validate.go`` that can be checked without a
rack (convox-cli.md §17), with convox's own messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import yaml

__all__ = ["render", "render_block", "scalar", "validate"]

TOP_ORDER: Final = ("environment", "resources", "services", "timers")
SERVICE_ORDER: Final = (
    "image",
    "build",
    "command",
    "port",
    "health",
    "domain",
    "environment",
    "singleton",
    "scale",
    "resources",
    "initContainer",
)
ORDERS: Final[dict[str, tuple[str, ...]]] = {
    "": TOP_ORDER,
    "services.*": SERVICE_ORDER,
    "services.*.scale": ("count", "cpu", "memory"),
    "services.*.build": ("path", "manifest", "args"),
    "resources.*": ("type", "image", "options"),
    "resources.*.options": ("class", "version", "storage"),
    "timers.*": ("schedule", "command", "service"),
}
# Strings always written quoted, whatever they contain: versions and schedules.
ALWAYS_QUOTED: Final = frozenset({"schedule", "version"})

_PLAIN_SAFE: Final = re.compile(r"^[A-Za-z0-9_./=+:@%,$()' -]*$")
_LEADING_INDICATOR: Final = tuple("-?:,[]{}#&*!|>'\"%@`")


def scalar(value: object, *, force_quote: bool = False) -> str:
    """One YAML scalar: ints and bools plain, strings plain when that reads back identically."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"cannot render {type(value).__name__} as a YAML scalar")
    if force_quote or not _plain_ok(value):
        return json.dumps(value, ensure_ascii=False)
    return value


def _plain_ok(text: str) -> bool:
    if not text or text != text.strip() or text.startswith(_LEADING_INDICATOR):
        return False
    if not _PLAIN_SAFE.match(text) or ": " in text or " #" in text or text.endswith(":"):
        return False
    try:
        return bool(yaml.safe_load(f"k: {text}") == {"k": text})
    except yaml.YAMLError:
        return False


def _ordered(data: Mapping[str, Any], path: str) -> list[tuple[str, Any]]:
    order = ORDERS.get(path, ())
    known = [(k, data[k]) for k in order if k in data]
    return known + [(k, v) for k, v in data.items() if k not in order]


def _child_path(path: str, key: str) -> str:
    """The ORDERS key of a child: names under services/resources/timers become ``*``."""
    if path in ("services", "resources", "timers"):
        return f"{path}.*"
    return f"{path}.{key}" if path else key


def render_block(data: Any, indent: int = 0, path: str = "", key: str = "") -> list[str]:
    """Lines of a block-style YAML value (a mapping or a list) at ``indent`` spaces."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, Mapping):
        for child_key, value in _ordered(data, path):
            child = _child_path(path, str(child_key))
            name = scalar(str(child_key))
            is_list = isinstance(value, Sequence) and not isinstance(value, str)
            if value and (isinstance(value, Mapping) or is_list):
                lines.append(f"{pad}{name}:")
                lines.extend(render_block(value, indent + 2, child, str(child_key)))
            elif isinstance(value, Mapping):
                lines.append(f"{pad}{name}: {{}}")
            elif isinstance(value, Sequence) and not isinstance(value, str):
                lines.append(f"{pad}{name}: []")
            else:
                quoted = str(child_key) in ALWAYS_QUOTED and isinstance(value, str)
                lines.append(f"{pad}{name}: {scalar(value, force_quote=quoted)}")
        return lines
    if isinstance(data, Sequence) and not isinstance(data, str):
        for item in data:
            if isinstance(item, Mapping) and item:
                inner = render_block(item, indent + 2, path, key)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {scalar(item)}")
        return lines
    return [f"{pad}{scalar(data)}"]


def render(manifest: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """convox.yml text: optional ``#`` header lines, then the sections separated by blank lines."""
    out = [f"# {line}" if line else "#" for line in header]
    for index, (key, value) in enumerate(_ordered(manifest, "")):
        if index or out:
            out.append("")
        out.extend(render_block({key: value}, 0, ""))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Validation

NAME_RULE: Final = re.compile(r"^[a-z][a-z0-9-]*$")
MANAGED_NAME_RULE: Final = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
ENV_ENTRY: Final = re.compile(r"^(\*|[A-Za-z_][A-Za-z0-9_]*(=.*)?)$")
_CRON_FIELD: Final = re.compile(r"^[0-9A-Za-z*/,?-]+$")
_MANAGED_PREFIXES: Final = ("rds-", "elasticache-")
_MANAGED_NAME_MAX: Final = 20


def _go_type(value: object) -> str:
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{v}" for k, v in value.items()) + "]"
    return type(value).__name__


def _environment(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [f"unknown type for {where}environment: {_go_type(value)}"]
    errors: list[str] = []
    for entry in value:
        if not isinstance(entry, str) or not ENV_ENTRY.match(entry):
            errors.append(f"{where}environment entry {entry!r} invalid, must be NAME or NAME=value")
    return errors


def _resource_name(link: str) -> str:
    return link.split(":", 1)[0]


def _invalid_name(kind: str, name: object) -> str:
    return f"{kind} name {name} invalid, must contain only lowercase alphanumeric and dashes"


def _check_resource(name: str, resource: object) -> list[str]:
    errors: list[str] = []
    if not NAME_RULE.match(name):
        errors.append(_invalid_name("resource", name))
    rtype = resource.get("type") if isinstance(resource, Mapping) else None
    if not rtype or not isinstance(resource, Mapping):
        return [*errors, f'resource "{name}" has blank type']
    options = resource.get("options") or {}
    if not isinstance(options, Mapping) or not all(isinstance(v, str) for v in options.values()):
        errors.append(f'resource "{name}" options must be a map of strings')
    if str(rtype).startswith(_MANAGED_PREFIXES) and (
        not MANAGED_NAME_RULE.match(name) or len(name) > _MANAGED_NAME_MAX
    ):
        errors.append(
            f"resource name {name} invalid, {rtype} names must match "
            f"^[a-z]([a-z0-9-]*[a-z0-9])?$ and be at most {_MANAGED_NAME_MAX} characters"
        )
    return errors


def _check_scale(name: str, scale: object) -> list[str]:
    if not isinstance(scale, Mapping):
        return []
    errors = [
        f"service {name} scale.{key} must be an integer"
        for key in ("cpu", "memory")
        if key in scale and (isinstance(scale[key], bool) or not isinstance(scale[key], int))
    ]
    count = scale.get("count")
    if isinstance(count, int) and count < 0:
        errors.append(f"service {name} scale.count must be >= 0")
    return errors


def _check_service(name: str, service: object, resources: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    if not NAME_RULE.match(name):
        errors.append(_invalid_name("service", name))
    if not isinstance(service, Mapping):
        return [*errors, f"service {name} must be a map"]
    errors.extend(_environment(service.get("environment"), "service "))
    for link in service.get("resources") or []:
        if _resource_name(str(link)) not in resources:
            errors.append(
                f"service {name} references a resource that does not exist: "
                f"{_resource_name(str(link))}"
            )
    port = service.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        errors.append(f"service {name} port {port!r} invalid")
    errors.extend(_check_scale(name, service.get("scale")))
    init = service.get("initContainer")
    if init is not None and not (isinstance(init, Mapping) and init.get("command")):
        errors.append(f"service {name} initContainer needs a command")
    if service.get("internal") and service.get("internalRouter"):
        errors.append(f"service {name} can not be both internal and internalRouter")
    return errors


def _check_timer(name: str, timer: object, services: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    if not NAME_RULE.match(name):
        errors.append(_invalid_name("timer", name))
    if not isinstance(timer, Mapping):
        return [*errors, f"timer {name} must be a map"]
    target = timer.get("service")
    if target not in services:
        errors.append(f"timer {name} references a service that does not exist: {target}")
    schedule = str(timer.get("schedule") or "")
    if "?" in schedule:
        errors.append(f"timer {name} invalid, schedule cannot contain ?")
    fields = schedule.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        errors.append(f"timer {name} invalid, schedule must be 5-field cron: {schedule!r}")
    return errors


def validate(manifest: Mapping[str, Any]) -> list[str]:
    """Convox's build-time checks (validate.go) that need no rack; ``[]`` when valid.

    Not checkable here: ``required env`` (needs the app env on the rack).
    """
    errors = _environment(manifest.get("environment"), "")
    sections: dict[str, Mapping[str, Any]] = {}
    for section in ("resources", "services", "timers"):
        value = manifest.get(section) or {}
        if not isinstance(value, Mapping):
            errors.append(f"{section} must be a map of name to definition")
            value = {}
        sections[section] = value
    for name, resource in sections["resources"].items():
        errors.extend(_check_resource(str(name), resource))
    for name, service in sections["services"].items():
        errors.extend(_check_service(str(name), service, sections["resources"]))
    for name, timer in sections["timers"].items():
        errors.extend(_check_timer(str(name), timer, sections["services"]))
    return errors
