"""Which Redis add-ons the app has and which Convox resource each goes to (steps/redis.py).

* The add-ons: ``heroku addons --json`` (each with ``addon_service.name`` and the
  ``config_vars`` it sets); cutover's catalog (cutover/catalog/addons.json) says which services
  a Convox ``redis`` resource replaces (Heroku Redis, Key-Value Store, Redis Cloud, ...).
* The URL config var of an add-on: the first ``*_URL`` that is not ``*_TLS_URL``, as
  ``cutover translate`` picks it (cutover/translate/resources.py ``resource``).
* Its resource: the manifest's link alias ``name:VAR`` when a service has one, else the redis
  resource whose injected ``<NAME>_URL`` is the var (convox provider/k8s resource env:
  ``<NAME>_URL`` with ``-`` as ``_``), else, for the app's only Redis add-on, the manifest's
  only redis resource. Two add-ons never go into one resource (their keys would merge).
* The service of a ``redis.addons`` entry: the add-on that sets its var, else (a var copied by
  hand: SIDEKIQ_REDIS_URL holding REDIS_URL's value) the add-on whose own URL var holds the same
  value in ``heroku config`` (compared, never printed), else ``playbook`` (unknown: its TLS
  certificate is verified, adapters/redisstore.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cutover import catalog
from cutover.errors import InvalidInput
from cutover.playbook_redis import RedisSection

# convox pkg/manifest resource types that run Redis (provider/k8s: redis; provider/aws:
# elasticache-redis)
REDIS_TYPES = ("redis", "elasticache-redis")
PLAYBOOK = "playbook"  # the service of a redis.addons entry no add-on's var holds: unknown


@dataclass(frozen=True)
class Target:
    config_var: str
    resource: str | None  # None: the manifest has no redis resource for it
    service: str  # the Heroku add-on service, or "playbook" when redis.addons names it
    mode: str  # as configured: auto, all, queues, none


def redis_resources(manifest: dict[str, Any]) -> dict[str, str]:
    """Manifest resource name -> type, for the Redis ones."""
    out = {}
    for name, spec in (manifest.get("resources") or {}).items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind in REDIS_TYPES:
            out[str(name)] = str(kind)
    return out


def resource_for(manifest: dict[str, Any], config_var: str, *, alone: bool = True) -> str | None:
    """The redis resource for ``config_var``: its link alias, else ``<NAME>_URL``, else (only
    when ``alone``: the app's only Redis add-on) the manifest's only redis resource."""
    resources = redis_resources(manifest)
    for service in (manifest.get("services") or {}).values():
        for link in (service or {}).get("resources") or [] if isinstance(service, dict) else []:
            name, colon, alias = str(link).partition(":")
            if colon and alias.strip() == config_var and name in resources:
                return name
    for name in resources:
        if name.upper().replace("-", "_") + "_URL" == config_var:
            return name
    return next(iter(resources)) if alone and len(resources) == 1 else None


def url_var(config_vars: list[str]) -> str | None:
    urls = [v for v in config_vars if v.endswith("_URL") and not v.endswith("_TLS_URL")]
    urls = urls or [v for v in config_vars if v.endswith("_URL")]
    return urls[0] if urls else None


def redis_addons(addons: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(service, URL config var) of every add-on a Convox redis resource replaces."""
    out = []
    for addon in addons:
        service = str((addon.get("addon_service") or {}).get("name", ""))
        if catalog.resource_addon(service) != "redis":
            continue
        names = [str(v) for v in addon.get("config_vars") or []]
        var = url_var(names) or url_var(list(catalog.addons()[service].default_vars))
        if var:
            out.append((service, var))
    return out


def service_of(
    addons: list[dict[str, Any]], config_var: str, config: Mapping[str, str] | None = None
) -> str | None:
    """The service of the add-on that sets ``config_var`` (its ``config_vars``), else, with
    ``config`` (``heroku config``), of the Redis add-on whose own URL var holds the same value."""
    for addon in addons:
        if config_var in [str(v) for v in addon.get("config_vars") or []]:
            return str((addon.get("addon_service") or {}).get("name", "")) or None
    value = (config or {}).get(config_var)
    if value:
        for service, var in redis_addons(addons):
            if (config or {}).get(var) == value:
                return service
    return None


def values_needed(section: RedisSection, addons: list[dict[str, Any]] | None) -> bool:
    """Whether :func:`targets` needs ``heroku config``: a ``redis.addons`` var no add-on sets."""
    return any(service_of(addons or [], e.config_var) is None for e in section.addons)


def targets(
    section: RedisSection,
    addons: list[dict[str, Any]] | None,
    manifest: dict[str, Any],
    config: Mapping[str, str] | None = None,
) -> list[Target]:
    """The add-ons to inspect, each with its resource. ``addons`` (``heroku addons --json``) is
    needed when the playbook's ``redis.addons`` is empty; with it, an add-on the playbook names
    gets the service that sets its config var, or whose var holds the same value in ``config``
    (whether its TLS certificate is verified depends on it: adapters/redisstore.py), else
    ``playbook``."""
    if section.addons:
        out = []
        for entry in section.addons:
            service = service_of(addons or [], entry.config_var, config) or PLAYBOOK
            resource = entry.resource or resource_for(manifest, entry.config_var)
            if entry.resource and entry.resource not in redis_resources(manifest):
                raise InvalidInput(
                    f"redis.addons: resource {entry.resource!r} (for {entry.config_var}) is not "
                    "a redis resource of the manifest "
                    f"(redis resources: {', '.join(redis_resources(manifest)) or 'none'})"
                )
            mode = entry.copy_mode or section.copy_mode
            out.append(Target(entry.config_var, resource, service, mode))
        _one_addon_per_resource(out)
        return out
    found = redis_addons(addons or [])
    out = [
        Target(var, resource_for(manifest, var, alone=len(found) == 1), service, section.copy_mode)
        for service, var in found
    ]
    _one_addon_per_resource(out)
    return out


def _one_addon_per_resource(found: list[Target]) -> None:
    """Two add-ons copied into one resource would merge (same names replaced, and the second
    copy's guard meets the first's keys): refused, naming both."""
    seen: dict[str, str] = {}
    for target in found:
        if target.resource is None:
            continue
        if target.resource in seen:
            raise InvalidInput(
                f"redis: {seen[target.resource]} and {target.config_var} would both be copied "
                f"into the Convox resource {target.resource!r}; give each its own redis "
                "resource in the manifest and name it in redis.addons[].resource"
            )
        seen[target.resource] = target.config_var


def auto_mode(keys: int, queue_keys: int, store_keys: int) -> tuple[str, str]:
    """``copy: auto`` resolved from the inspection: (mode, why)."""
    if store_keys:
        return "all", f"{store_keys} keys outside the job layouts have no TTL (Redis as a store)"
    if queue_keys:
        return "queues", "only job-library keys are lasting; the rest expires (cache)"
    if keys:
        return "none", "every key has a TTL and none belongs to a job library (cache only)"
    return "none", "the Redis is empty"
