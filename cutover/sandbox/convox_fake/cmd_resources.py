"""Commands about resources: resources, resources info/url/proxy.

Facts: ``pkg/cli/resources.go`` (the proxy prints ``proxying localhost:L to H:R``, then
``connect: L`` per connection, and never returns), ``provider/k8s/resource.go``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from cutover.sandbox.convox_fake import faults
from cutover.sandbox.convox_fake.cmd_services import active
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.faults import hang
from cutover.sandbox.convox_fake.manifest import ResourceDef, active_manifest
from cutover.sandbox.convox_fake.model import env_load, find_release, get_app
from cutover.sandbox.convox_fake.output import CliError, Out, info, table
from cutover.sandbox.convox_fake.resources import is_overlay, resource_url
from cutover.sandbox.convox_fake.store import Json, Store


def _resource(ctx: Ctx, state: Json, name: str) -> tuple[ResourceDef, str]:
    """(resource, url) as ``ResourceGet`` (provider/k8s/resource.go): the active release's
    manifest must declare it (``no such resource``), and the rack must have created it at a
    promote (else the k8s error about its missing config map)."""
    _, rack = ctx.rack(state)
    app = get_app(rack, ctx.app_name())
    _, manifest, env = active_manifest(app)
    resource = manifest.resource(name) if manifest else None
    if resource is None:
        raise CliError(f"no such resource: {name}")
    if not is_overlay(resource, env) and name not in (app.get("resources") or {}):
        raise CliError(f'configmaps "resource-{re.sub(r"[^a-z0-9-]", "", name)}" not found')
    return resource, resource_url(state, app, resource, env)


def _ready(ctx: Ctx, name: str) -> bool:
    """Whether the resource accepts connections yet (provision.py: ``pending`` until made)."""
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        record = (get_app(rack, ctx.app_name()).get("resources") or {}).get(name) or {}
    return bool(record.get("status", "running") == "running")


def cmd_resources(ctx: Ctx) -> None:
    """``ResourceList``: the resources the rack created (pending ones too), not overlaid ones."""
    rows = []
    with ctx.store.locked() as state:
        _, _, app, manifest = active(ctx, state)
        env = env_load(find_release(app, app["release"])["env"]) if manifest else {}
        for name, record in sorted((app.get("resources") or {}).items()):
            resource = ResourceDef(name, str(record.get("type", "")))
            if is_overlay(resource, env):
                continue  # the promote that overlaid it pruned the rack's own
            rows.append([name, resource.type, resource_url(state, app, resource, env)])
    ctx.out.write(table(["NAME", "TYPE", "URL"], rows))


def cmd_resources_info(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        resource, url = _resource(ctx, state, ctx.args[0])
    rows = [("Name", resource.name), ("Type", resource.type)]
    if url:
        rows.append(("URL", url))
    ctx.out.write(info(rows))


def cmd_resources_url(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        resource, url = _resource(ctx, state, ctx.args[0])
    if not url:
        raise CliError(f"no url for resource: {resource.name}")
    ctx.out.write(url + "\n")


def _pipe(
    source: socket.socket,
    sink: socket.socket,
    done: threading.Event,
    drop: Callable[[int], bool] | None = None,
) -> None:
    """Copy ``source`` to ``sink``; ``drop(bytes so far)`` true ends both ends at once (a
    websocket to the rack that died: the local connection is closed, nothing printed)."""
    carried = 0
    try:
        while data := source.recv(65536):
            sink.sendall(data)
            carried += len(data)
            if drop is not None and drop(carried):
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                break
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        if done.is_set():
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
        done.set()


def _dropper(store: Store) -> Callable[[int], bool] | None:
    """For a connection opened while a ``proxy_drop`` fault is queued: a test of the bytes
    carried that consumes the fault (and says drop) once they reach its threshold."""
    fault = faults.pending(store, faults.PROXY_CONNECTION, "drop_after_bytes")
    if fault is None:
        return None
    threshold = int(fault["drop_after_bytes"])
    taken = False

    def drop(carried: int) -> bool:
        nonlocal taken
        if taken or carried < threshold:
            return False
        taken = True
        return faults.take(store, faults.PROXY_CONNECTION, only="drop_after_bytes") is not None

    return drop


def _tunnel(
    client: socket.socket,
    host: str,
    port: int,
    out: Out,
    ready: Callable[[], bool],
    store: Store,
) -> None:
    if faults.take(store, faults.PROXY_CONNECTION, only="refuse") is not None:
        # The websocket to the rack cannot be dialled (pkg/cli/proxy.go proxyConnection:
        # c.Error, the proxy keeps running).
        out.error(f"dial tcp {faults.RACK_DIAL}: connect: connection refused")
        client.close()
        return
    if not ready():  # the resource's pod is not up yet: nothing listens behind its service
        out.error(f"dial tcp {host}:{port}: connect: connection refused")
        client.close()
        return
    try:
        upstream = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        out.error(f"dial tcp {host}:{port}: connect: {reason}")
        client.close()
        return
    upstream.settimeout(None)
    done = threading.Event()
    drop = _dropper(store)
    threading.Thread(target=_pipe, args=(client, upstream, done, drop), daemon=True).start()
    threading.Thread(target=_pipe, args=(upstream, client, done), daemon=True).start()


def cmd_resources_proxy(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        resource, url = _resource(ctx, state, ctx.args[0])
    if not url:
        raise CliError(f"no url for resource: {resource.name}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        remote = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        remote = None
    if remote is None:
        raise CliError(f"unknown port for url: {url}")
    local = ctx.number("port") or remote
    ctx.out.write(f"proxying localhost:{local} to {host}:{remote}\n")
    if ctx.fault and ctx.fault.get("hang_before_listen"):
        hang()
    try:
        server = socket.create_server(("127.0.0.1", local), backlog=64)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        ctx.out.error(f"listen tcp 127.0.0.1:{local}: bind: {reason}")
        hang()
    while True:
        client, _ = server.accept()
        ctx.out.write(f"connect: {local}\n")
        ready = functools.partial(_ready, ctx, resource.name)
        threading.Thread(
            target=_tunnel, args=(client, host, remote, ctx.out, ready, ctx.store), daemon=True
        ).start()
