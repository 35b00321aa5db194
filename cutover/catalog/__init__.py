"""What cutover knows about Heroku's add-ons and dyno sizes, as data (``addons.json``,
``dynos.json`` beside this module, shipped as package data).

This is the single add-on table: ``cutover translate`` maps add-ons to Convox resources with it,
and ``set-env`` must exclude exactly the config vars a resource replaces. The two functions for
``set-env``:

- :func:`resource_addon` (``"rediscloud"`` -> ``"redis"``; ``"sendgrid"`` -> ``None``): the Convox
  resource type that replaces an add-on service, or ``None`` when its config vars must be copied;
- :func:`resource_config_vars` (service slug + the config var names Heroku lists for the
  attachment) -> the names not to copy, because the Convox resource injects its own (a copied
  ``REDISCLOUD_URL`` would point the app back at the Heroku add-on).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any, Literal, NamedTuple, cast

__all__ = [
    "AddonKind",
    "DynoSize",
    "ResourceKind",
    "addon_kind",
    "addons",
    "dyno_size",
    "dyno_sizes",
    "resource_addon",
    "resource_config_vars",
    "shared_advice",
]

ResourceKind = Literal["postgres", "redis", "mysql", "mariadb", "memcached"]
_KINDS: tuple[str, ...] = ("postgres", "redis", "mysql", "mariadb", "memcached")


class AddonKind(NamedTuple):
    resource: ResourceKind | None  # None: no Convox equivalent
    category: str
    default_vars: tuple[str, ...]  # what the add-on sets when we only know its plan
    advice: str = ""


class DynoSize(NamedTuple):
    name: str  # Heroku's spelling
    cpu: int  # millicores (scale.cpu)
    memory: int  # MB (scale.memory)


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return cast("dict[str, Any]", json.loads(text))


@cache
def addons() -> dict[str, AddonKind]:
    """Every known add-on service slug -> :class:`AddonKind`."""
    data = _load("addons.json")
    shared: dict[str, str] = data["advice"]
    out: dict[str, AddonKind] = {}
    for slug, entry in data["addons"].items():
        resource = entry["resource"]
        if resource is not None and resource not in _KINDS:
            raise ValueError(f"addons.json: {slug}: unknown resource {resource!r}")
        advice = str(entry.get("advice", ""))
        if advice.startswith("@"):
            advice = shared[advice[1:]]
        out[slug] = AddonKind(
            cast("ResourceKind | None", resource),
            str(entry["category"]),
            tuple(entry["config_vars"]),
            advice,
        )
    return out


@cache
def dyno_sizes() -> dict[str, DynoSize]:
    """Lower-case Heroku dyno size -> :class:`DynoSize` (see dynos.json for the basis)."""
    return {key: DynoSize(*value) for key, value in _load("dynos.json")["sizes"].items()}


def dyno_size(name: str) -> DynoSize | None:
    """Case-insensitive lookup: ``"Standard-2X"`` -> ``DynoSize("standard-2X", 500, 1024)``."""
    return dyno_sizes().get(name.strip().lower())


def shared_advice(key: str) -> str:
    """Advice shared by several add-ons (``addons.json``: ``advice``), e.g. ``keep-account``."""
    return str(_load("addons.json")["advice"][key])


def addon_kind(service: str) -> AddonKind | None:
    return addons().get(service)


def resource_addon(service: str) -> ResourceKind | None:
    """The Convox resource type replacing this add-on service, or None (copy its config vars)."""
    kind = addons().get(service)
    return kind.resource if kind is not None else None


def resource_config_vars(service: str, config_vars: Iterable[str] = ()) -> frozenset[str]:
    """Config var names set-env must not copy for one add-on attachment: the names Heroku lists
    for it (``heroku addons --json``: ``config_vars``) plus the ones the table knows, when a
    Convox resource replaces the add-on; nothing otherwise."""
    kind = addons().get(service)
    if kind is None or kind.resource is None:
        return frozenset()
    return frozenset(config_vars) | frozenset(kind.default_vars)
