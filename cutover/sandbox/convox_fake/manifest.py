"""``convox.yml``: loading and validation as the rack's build does it.

Facts: ``pkg/manifest`` (``manifest.go`` ``Load``: ``${VAR}`` interpolation, non-strict YAML,
defaults; ``validate.go`` ``Validate``: env, resources, services, timers in that order;
``service.go`` scale/port/deployment defaults).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cutover.sandbox.convox_fake.model import env_load, find_build, find_release
from cutover.sandbox.convox_fake.output import CliError
from cutover.sandbox.convox_fake.store import Json

NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
NAME_RULE = "must contain only lowercase alphanumeric and dashes"


class ManifestError(Exception):
    """``manifest.Load`` failed."""


@dataclass
class Service:
    name: str
    port: int = 0
    scheme: str = ""
    command: str = ""
    image: str = ""
    build_path: str = "."
    environment: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    count: int = 1
    count_max: int = 1
    cpu: int = 250
    memory: int = 512
    internal: bool = False
    internal_router: bool = False
    deployment_min: int = 50
    deployment_max: int = 200
    domains: list[str] = field(default_factory=list)
    # ``certificate: {id, duration}`` (pkg/manifest/service.go Certificate): the router serves
    # that certificate for the service's domains instead of asking cert-manager (HTTP-01) for
    # one (provider/k8s/template/app/ingress.yml.tmpl secretName).
    certificate_id: str = ""


@dataclass
class ResourceDef:
    name: str
    type: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class TimerDef:
    name: str
    schedule: str
    service: str
    command: str


@dataclass
class Manifest:
    environment: list[str]
    services: list[Service]
    resources: list[ResourceDef]
    timers: list[TimerDef]

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def resource(self, name: str) -> ResourceDef | None:
        return next((r for r in self.resources if r.name == name), None)


def _go_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = " ".join(
            f"{_go_value(k)}:{_go_value(v)}" for k, v in sorted(value.items(), key=str)
        )
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _env_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    raise ManifestError(f"unknown type for service environment: {_go_value(value)}")


def _go_type(value: Any) -> str:
    """Go's ``%T`` of a value yaml.v2 decoded into ``interface{}``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, dict):
        return "map[interface {}]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return "<nil>" if value is None else "string"


def _domains(value: Any) -> list[str]:
    """``ServiceDomains.UnmarshalYAML`` (pkg/manifest/yaml.go): a list of strings, or a string
    split at commas; blanks dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        return [d.strip() for d in value.split(",") if d.strip()]
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise ManifestError(f"unknown type for service domain: {_go_type(item)}")
        return [d.strip() for d in value if d.strip()]
    raise ManifestError(f"unknown type for service domain: {_go_type(value)}")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ManifestError(f"invalid {what}: {_scalar(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise ManifestError(f"invalid {what}: {_go_value(value)}")


def _parse_port(service: Service, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        service.port = _int(value.get("port", 0), "port")
        service.scheme = _scalar(value.get("scheme", "")) or "http"
        return
    text = _scalar(value)
    scheme, colon, number = text.rpartition(":")
    service.port = _int(number, "port")
    service.scheme = scheme if colon else "http"


def _parse_count(service: Service, value: Any) -> None:
    if isinstance(value, dict):
        low, high = _int(value.get("min", 1), "count"), _int(value.get("max", 1), "count")
    elif isinstance(value, str) and "-" in value.strip()[1:]:
        first, _, second = value.strip().partition("-")
        low, high = _int(first, "count"), _int(second, "count")
    else:
        low = high = _int(value, "count")
    service.count, service.count_max = low, high


def _parse_scale(service: Service, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        _parse_count(service, value)
        return
    if "count" in value:
        _parse_count(service, value["count"])
    # Like the real parser, a non-int cpu/memory (e.g. a quoted string) is silently ignored.
    if isinstance(value.get("cpu"), int) and not isinstance(value.get("cpu"), bool):
        service.cpu = value["cpu"]
    if isinstance(value.get("memory"), int) and not isinstance(value.get("memory"), bool):
        service.memory = value["memory"]


def _named(data: Json, key: str) -> list[tuple[str, Json]]:
    section = data.get(key)
    if section is None:
        return []
    if not isinstance(section, dict):
        raise ManifestError(f"yaml: unmarshal errors:\n  cannot unmarshal {key} into a map")
    items = []
    for name, body in section.items():
        if body is not None and not isinstance(body, dict):
            raise ManifestError(f"yaml: unmarshal errors:\n  cannot unmarshal {key}.{name}")
        items.append((_scalar(name), body or {}))
    return items


def load_manifest(text: str, env: Mapping[str, str]) -> Manifest:
    """``manifest.Load``: ``${VAR}`` interpolation, non-strict YAML, defaults (§17)."""
    import yaml  # noqa: PLC0415 - only build, deploy and promote parse manifests

    interpolated = re.sub(r"\$\{([^}]*)\}", lambda m: env.get(m.group(1), ""), text)
    try:
        data = yaml.safe_load(interpolated)
    except yaml.YAMLError as exc:
        raise ManifestError(f"yaml: {exc}".replace("\n", " ")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ManifestError("yaml: unmarshal errors:\n  cannot unmarshal the document into a map")
    services = []
    for name, body in _named(data, "services"):
        service = Service(name=name)
        _parse_port(service, body.get("port"))
        service.command = _scalar(body.get("command"))
        service.image = _scalar(body.get("image"))
        build = body.get("build")
        if isinstance(build, dict):
            service.build_path = _scalar(build.get("path")) or "."
        elif build is not None:
            service.build_path = _scalar(build) or "."
        service.environment = _env_list(body.get("environment"))
        service.domains = _domains(body.get("domain"))
        certificate = body.get("certificate")
        if isinstance(certificate, dict):
            service.certificate_id = _scalar(certificate.get("id"))
        service.resources = [_scalar(r) for r in body.get("resources") or []]
        _parse_scale(service, body.get("scale"))
        service.internal = body.get("internal") is True
        service.internal_router = body.get("internalRouter") is True
        deployment = body.get("deployment") or {}
        if isinstance(deployment, dict):
            singleton = body.get("singleton") is True or body.get("agent") is True
            service.deployment_min = _int(
                deployment.get("minimum", 0 if singleton else 50), "deployment minimum"
            )
            service.deployment_max = _int(
                deployment.get("maximum", 100 if singleton else 200), "deployment maximum"
            )
        services.append(service)
    resources = [
        ResourceDef(
            name=name,
            type=_scalar(body.get("type")),
            options={_scalar(k): _scalar(v) for k, v in (body.get("options") or {}).items()},
        )
        for name, body in _named(data, "resources")
    ]
    timers = []
    for name, body in _named(data, "timers"):
        parts = _scalar(body.get("schedule")).split()
        if len(parts) > 5:
            parts = parts[:5]
        parts = ["*" if p == "?" else p for p in parts]
        timers.append(
            TimerDef(
                name, " ".join(parts), _scalar(body.get("service")), _scalar(body.get("command"))
            )
        )
    return Manifest(_env_list(data.get("environment")), services, resources, timers)


def missing_env(manifest: Manifest, service: Service, env: Mapping[str, str]) -> list[str]:
    missing = []
    for entry in [*manifest.environment, *service.environment]:
        if "=" not in entry and entry != "*" and entry not in env:
            missing.append(entry)
    return sorted(missing)


def _validate_env(manifest: Manifest, env: Mapping[str, str]) -> list[str]:
    errors = []
    for service in manifest.services:
        missing = missing_env(manifest, service, env)
        if missing:
            errors.append(f"required env: {', '.join(missing)}")
    return errors


def _validate_resources(manifest: Manifest) -> list[str]:
    errors = []
    for resource in manifest.resources:
        if not NAME_RE.match(resource.name):
            errors.append(f"resource name {resource.name} invalid, {NAME_RULE}")
        if not resource.type.strip():
            errors.append(f"resource {json.dumps(resource.name)} has blank type")
    return errors


def _validate_service(manifest: Manifest, s: Service) -> list[str]:
    checks = [
        (not NAME_RE.match(s.name), f"service name {s.name} invalid, {NAME_RULE}"),
        (s.deployment_min < 0, f"service {s.name} deployment minimum can not be less than 0"),
        (
            s.deployment_min > 100,
            f"service {s.name} deployment minimum can not be greater than 100",
        ),
        (s.deployment_max < 100, f"service {s.name} deployment maximum can not be less than 100"),
        (
            s.deployment_max > 200,
            f"service {s.name} deployment maximum can not be greater than 200",
        ),
        (
            s.internal and s.internal_router,
            f"service {s.name} can not have both internal and internalRouter set as true",
        ),
    ]
    errors = [message for failed, message in checks if failed]
    for entry in s.resources:
        name = entry.split(":", 1)[0]
        if manifest.resource(name) is None:
            errors.append(f"service {s.name} references a resource that does not exist: {name}")
    if s.count < 0:
        errors.append(f"service {s.name}: scale.min must be >= 0")
    if s.count_max < s.count:
        errors.append(f"service {s.name}: scale.max must be >= scale.min")
    return errors


def _validate_timers(manifest: Manifest) -> list[str]:
    errors = []
    for timer in manifest.timers:
        if not NAME_RE.match(timer.name):
            errors.append(f"timer name {timer.name} invalid, {NAME_RULE}")
        if manifest.service(timer.service) is None:
            errors.append(
                f"timer {timer.name} references a service that does not exist: {timer.service}"
            )
        if "?" in timer.schedule:
            errors.append(f"timer {timer.name} invalid, schedule cannot contain ?")
    return errors


def validate_manifest(manifest: Manifest, env: Mapping[str, str]) -> list[str]:
    """``Manifest.Validate``: env, resources, services, timers, in that order (§17)."""
    errors = _validate_env(manifest, env) + _validate_resources(manifest)
    for service in manifest.services:
        errors += _validate_service(manifest, service)
    return errors + _validate_timers(manifest)


def release_manifest(app: Json, release: Json, env: Mapping[str, str]) -> Manifest | None:
    """The parsed manifest of ``release``'s build (None without a build)."""
    if not release.get("build"):
        return None
    build = find_build(app, release["build"])
    try:
        return load_manifest(build.get("manifest", ""), env)
    except ManifestError as exc:
        raise CliError(str(exc)) from None


def active_manifest(app: Json) -> tuple[Json, Manifest | None, dict[str, str]]:
    """(active release, its manifest, its env) or CliError ``no release for app`` (§12)."""
    if not app.get("release"):
        raise CliError(f"no release for app: {app['name']}")
    release = find_release(app, app["release"])
    env = env_load(release["env"])
    return release, release_manifest(app, release, env), env
