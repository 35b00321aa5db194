"""The rack's ``redis`` resources, emulated on one real redis-server (the sandbox's).

Facts: ``provider/k8s/template/resource/redis.yml.tmpl`` (convox 9e02452): the resource's
config map holds ``URL: redis://resource-<name>.<ns>...:6379`` with ``USER``, ``PASS`` and
``NAME`` empty (no password, no database number); the pod runs ``redis:<options.version>``,
default ``4.0.10`` (``provider/k8s/release.go`` ``resourceDefaultImages``), and starts empty.
Like postgres (cutover/sandbox/convox_fake/provision.py), it is created at the first promote
that declares it: ``pending`` until the rack timing ``resource_start`` has passed, then the
rollout job empties the backend (a new pod has no data) and marks it ``running``; until then
``resources proxy`` refuses its connections (cmd_resources.py ``_ready``).

Sandbox limits (said at the promote, not Convox's): one redis-server of one version backs
every redis resource, so a declared version of another major.minor is refused, and a second
redis resource in the same rack is refused too (they would share the keys).
"""

from __future__ import annotations

import re
import time
from typing import Any

from cutover.sandbox.convox_fake.manifest import ResourceDef
from cutover.sandbox.convox_fake.output import CliError
from cutover.sandbox.convox_fake.store import Json, timing


def backend(state: Json) -> Json | None:
    found = (state.get("resource_backends") or {}).get("redis")
    return found if isinstance(found, dict) and found.get("port") else None


def _connect(backend: Json) -> Any:
    import redis  # noqa: PLC0415 - only a rack with a redis backend needs it

    return redis.Redis(
        host=str(backend.get("host", "127.0.0.1")), port=int(backend["port"]), socket_timeout=10
    )


def _major_minor(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:2])


def server_version(backend: Json) -> str:
    """The backend's redis_version (asked once, then remembered in the state)."""
    if isinstance(backend.get("server_version"), str):
        return str(backend["server_version"])
    try:
        conn = _connect(backend)
        try:
            version = str(conn.info("server")["redis_version"])
        finally:
            conn.close()
    except Exception as exc:
        raise CliError(f"sandbox redis backend unreachable: {type(exc).__name__}") from None
    backend["server_version"] = version
    return version


def plan_record(state: Json, app: Json, resource: ResourceDef, version: str) -> Json:
    """The pending record of a new redis resource (plan(), under the lock)."""
    found = backend(state)
    assert found is not None
    installed = server_version(found)
    if _major_minor(version) != _major_minor(installed)[: len(_major_minor(version))]:
        default = "" if resource.options.get("version") else " (the default, no options.version)"
        raise CliError(
            f"sandbox limit (not a Convox one): resource {resource.name} declares Redis "
            f"version {version}{default}, and the sandbox runs only Redis {installed}; set "
            f'options.version: "{".".join(installed.split(".")[:2])}" in convox.yml'
        )
    others = [
        name
        for name, rec in (app.get("resources") or {}).items()
        if rec.get("type") == resource.type and name != resource.name
    ]
    if others:
        raise CliError(
            f"sandbox limit (not a Convox one): a second redis resource ({resource.name}, "
            f"besides {others[0]}) would share the sandbox's one redis-server"
        )
    host, port = str(found.get("host", "127.0.0.1")), int(found["port"])
    return {
        "status": "pending",
        "ready_at": time.time() + timing(state, "resource_start"),
        "host": host,
        "port": port,
        "url": f"redis://{host}:{port}",
    }


def create(record: Json) -> None:
    """The new pod's empty Redis: the backend emptied."""
    conn = _connect({"host": record["host"], "port": record["port"]})
    try:
        conn.flushall()
    finally:
        conn.close()
