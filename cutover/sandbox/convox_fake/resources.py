"""Resources: what a manifest's ``resources:`` give the app (URL and the derived env vars).

Facts: ``provider/k8s/resource.go`` and ``provider/k8s/template/resource/*.yml.tmpl`` (the
``resource-<name>`` config map holds URL, USER, PASS, HOST, PORT, NAME; services get them as
``<NAME>_URL`` etc., or under an alias ``name:ALIAS_URL``), ``pkg/manifest`` (an app env that
already holds ``<NAME>_URL`` overlays the resource: the rack creates nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit

from cutover.sandbox.convox_fake.manifest import Manifest, ResourceDef, Service
from cutover.sandbox.convox_fake.store import Json

_FAMILIES = {
    "postgres": "postgres",
    "postgis": "postgres",
    "rds-postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "rds-mysql": "mysql",
    "rds-mariadb": "mysql",
    "redis": "redis",
    "elasticache-redis": "redis",
    "memcached": "memcached",
    "elasticache-memcached": "memcached",
}


def env_prefix(name: str) -> str:
    return name.upper().replace("-", "_")


def is_overlay(resource: ResourceDef, env: Mapping[str, str]) -> bool:
    """The app env already holds ``<NAME>_URL``: the rack uses it, creates nothing (§17)."""
    return bool(env.get(f"{env_prefix(resource.name)}_URL"))


def resource_url(state: Json, app: Json, resource: ResourceDef, env: Mapping[str, str]) -> str:
    """The resource's URL: the overlay URL, else the one the rack made for it (its config map),
    else the configured backend's, else empty."""
    if is_overlay(resource, env):
        return env[f"{env_prefix(resource.name)}_URL"]
    made = (app.get("resources") or {}).get(resource.name)
    if isinstance(made, dict) and made.get("url"):
        return str(made["url"])
    backends = state.get("resource_backends") or {}
    family = _FAMILIES.get(resource.type, resource.type)
    backend = backends.get(f"{app['name']}/{resource.name}") or backends.get(family)
    if not isinstance(backend, dict):
        return ""
    if backend.get("url"):
        return str(backend["url"])
    userinfo = ""
    if backend.get("user"):
        userinfo = quote(str(backend["user"]), safe="")
        if backend.get("password"):
            userinfo += ":" + quote(str(backend["password"]), safe="")
        userinfo += "@"
    url = f"{family}://{userinfo}{backend.get('host', '127.0.0.1')}:{backend.get('port', '')}"
    if backend.get("dbname"):
        url += "/" + quote(str(backend["dbname"]), safe="")
    if family == "postgres":
        url += "?sslmode=disable"
    return url


def resource_family(resource_type: str) -> str:
    return _FAMILIES.get(resource_type, resource_type)


def _url_parts(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "URL": url,
        "USER": unquote(parts.username or ""),
        "PASS": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "NAME": unquote(parts.path.lstrip("/")),
    }


def resource_env(
    state: Json, app: Json, manifest: Manifest, service: Service, env: Mapping[str, str]
) -> dict[str, str]:
    """``<NAME>_URL/_USER/_PASS/_HOST/_PORT/_NAME`` of linked resources; aliases (§17)."""
    result: dict[str, str] = {}
    for entry in service.resources:
        name, colon, alias = entry.partition(":")
        resource = manifest.resource(name)
        if resource is None or is_overlay(resource, env):
            continue
        url = resource_url(state, app, resource, env)
        if not url:
            continue
        parts = _url_parts(url)
        if colon:
            alias = alias.strip()
            suffix = alias.rsplit("_", 1)[-1]
            result[alias] = parts.get(suffix, url)
        else:
            for key, value in parts.items():
                result[f"{env_prefix(name)}_{key}"] = value
    return result
