"""Nothing runs twice: the app's non-web services and timers stay held on Convox until the switch.

Before the switch, Heroku's workers and Scheduler jobs run; a Convox release with the same live
keys must not run them too. What the rack offers, from the convox source (commit in
``cutover/adapters/convox_cli.json``):

* A promote sets each service's replicas to ``CoalesceInt(runtime count, scale.count.min)``
  (provider/k8s/release.go ``releaseTemplateServices``; pkg/common/coalesce.go): a runtime count
  of 0 (``convox scale S --count 0``) is *not* kept by the next promote, the manifest's count
  comes back. Only ``scale.count: 0`` in the promoted manifest keeps a service at zero across
  promotes (``scale: {count: 0}`` parses to min 0 max 0: pkg/manifest/yaml.go
  ``ServiceScaleCount``; valid without autoscale: pkg/manifest/validate.go). A service with
  ``scale.min``/``scale.max`` or autoscale gets its count from them (pkg/manifest/manifest.go
  ``ApplyDefaults``), so a held service keeps only its sizing (cpu, memory, gpu, limit).
* Timers are Kubernetes CronJobs rendered from the manifest's ``timers:``
  (provider/k8s/template/app/timer.yml.tmpl); pkg/manifest/timer.go has no suspend field and
  the CLI no timer command, so the only way to hold a timer is to leave it out of the promoted
  manifest; the promote's apply prunes what a release no longer declares.
* ``agent: true`` services are DaemonSets, which have no replicas (template/app/service.yml.tmpl
  renders ``replicas`` only without an agent): they cannot be held, and are refused.

So deploy and add-domain build from a *staged* manifest written next to the playbook's
(``convox.yml`` -> ``convox.cutover.yml``, inside the source folder because the rack reads the
manifest from the uploaded source: pkg/build/build.go): the same file, with every service but
the web one at ``scale.count: 0`` and without ``timers:``. After each promote, the scale table
is read back and a held service the rack still runs (an adopted app's runtime count, which the
coalesce keeps) is scaled to 0. start-workers (steps/workers.py), after the switch is verified,
scales each held service to the formation recorded from Heroku (a runtime count that is not 0
survives later promotes), then, when the manifest has timers, builds and promotes the staged
manifest with the timers back and only the services whose Heroku formation is 0 still at
``scale.count: 0``.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cutover.errors import InvalidInput
from cutover.fsutil import atomic_write

STAGED_SUFFIX = ".cutover.yml"
# The scale keys that decide a count (pkg/manifest/yaml.go ServiceScale, manifest.go
# ApplyDefaults): a held service drops them and keeps its sizing.
_COUNT_KEYS = ("count", "min", "max", "autoscale", "keda", "targets")
HEADER = (
    "# Written by cutover from {source}: do not edit (it is rewritten before every cutover\n"
    "# build). Services other than {web} held at scale.count 0{timers} until the switch;\n"
    "# see `cutover plan`, steps deploy, add-domain and start-workers.\n"
)


def staged_name(manifest: str) -> str:
    """The staged manifest beside the playbook's, relative to the source like it."""
    path = Path(manifest)
    return str(path.with_name(path.name.removesuffix(".yml").removesuffix(".yaml") + STAGED_SUFFIX))


def service_names(data: Mapping[str, Any]) -> list[str]:
    return [str(name) for name in (data.get("services") or {})]


def timer_names(data: Mapping[str, Any]) -> list[str]:
    timers = data.get("timers")
    return [str(name) for name in timers] if isinstance(timers, dict) else []


def manifest_count(spec: Any) -> int:
    """The replicas a first promote gives a service (pkg/manifest: no scale keys -> 1; an int or
    ``"N"``/``"N-M"`` -> N; a map's ``count`` likewise, or ``min``)."""
    scale = spec.get("scale") if isinstance(spec, dict) else None
    if scale is None:
        return 1
    count: Any = scale.get("count", scale.get("min", 1)) if isinstance(scale, dict) else scale
    if isinstance(count, dict):
        count = count.get("min", 0)
    text = str(count).strip()
    head = text.split("-", 1)[0].rstrip("+") if text[:1] != "-" else text
    try:
        return int(head)
    except ValueError:
        return 1


def held_spec(name: str, spec: Any, where: str) -> dict[str, Any]:
    """``spec`` with ``scale.count: 0`` (module doc); an agent service is refused."""
    body = dict(spec) if isinstance(spec, dict) else {}
    if body.get("agent") is True or (
        isinstance(body.get("agent"), dict) and body["agent"].get("enabled") is True
    ):
        raise InvalidInput(
            f"{where}: services.{name} is an agent (a DaemonSet on every node): cutover cannot "
            "hold it at zero until the switch (agents have no scale.count)",
            resolution=f"Remove `agent` from services.{name}, or deploy it yourself after the "
            "cutover.",
        )
    scale = body.get("scale")
    sizing = (
        {k: v for k, v in scale.items() if k not in _COUNT_KEYS} if isinstance(scale, dict) else {}
    )
    body["scale"] = {"count": 0, **sizing}
    return body


def staged_manifest(
    data: Mapping[str, Any],
    web: str,
    where: str,
    *,
    release_to: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The manifest to build: every service but ``web`` held and no timers; or, with
    ``release_to`` (start-workers), timers kept and only the services whose count there is 0
    held."""
    out = dict(data)
    services = dict(data.get("services") or {})
    for name, spec in services.items():
        if str(name) == web:
            continue
        if release_to is None or release_to.get(str(name), 1) == 0:
            services[name] = held_spec(str(name), spec, where)
    out["services"] = services
    if release_to is None:
        out.pop("timers", None)
    return out


def write_staged(
    source: Path,
    manifest: str,
    data: Mapping[str, Any],
    web: str,
    *,
    release_to: Mapping[str, int] | None = None,
) -> str:
    """Write the staged manifest (atomically, with the playbook manifest's mode); return its
    name relative to ``source`` for ``-m``."""
    name = staged_name(manifest)
    original = source / manifest
    staged = staged_manifest(data, web, str(original), release_to=release_to)
    held_timers = timer_names(data) if release_to is None else []
    header = HEADER.format(
        source=manifest,
        web=web,
        timers=f", timers {', '.join(held_timers)} left out" if held_timers else "",
    )
    text = header + yaml.safe_dump(staged, sort_keys=False, default_flow_style=False)
    mode = stat.S_IMODE(original.stat().st_mode) if original.exists() else 0o644
    atomic_write(source / name, text, mode=mode)
    return name
