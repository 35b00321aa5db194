"""The sandbox's DNS: the zone on two authoritative Knot servers (a primary taking TSIG-signed
RFC 2136 updates and a secondary it NOTIFYs, fed by IXFR) and a caching resolver (unbound) with a
stub-zone to both, so lower-ttl and verify-dns check several servers and a real cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cutover.sandbox.knot import KnotServer, RecordSpec
from cutover.sandbox.unbound import UnboundServer

# Ports (and pids) under these names in sandbox.json; "dns" is the primary.
PRIMARY, SECONDARY, RESOLVER = "dns", "dns2", "resolver"


def start(
    folder: Path,
    ports: dict[str, int],
    pids: dict[str, int],
    zone: str,
    records: Sequence[RecordSpec],
    say: Callable[[str], None],
) -> KnotServer:
    """Start the three servers on the ports named PRIMARY, SECONDARY and RESOLVER in ``ports``;
    record their pids in ``pids``; return the primary."""
    say(f"Knot DNS for {zone}: primary 127.0.0.1:{ports[PRIMARY]}, secondary :{ports[SECONDARY]}")
    knot = KnotServer.create(
        folder / PRIMARY, ports[PRIMARY], zone, records, notify_ports=[ports[SECONDARY]]
    )
    assert knot.pid is not None
    pids[PRIMARY] = knot.pid
    secondary = KnotServer.create_secondary(folder / SECONDARY, ports[SECONDARY], knot)
    assert secondary.pid is not None
    pids[SECONDARY] = secondary.pid
    say(f"unbound (caching resolver for {zone}) on 127.0.0.1:{ports[RESOLVER]}")
    resolver = UnboundServer.create(
        folder / RESOLVER, ports[RESOLVER], zone, [ports[PRIMARY], ports[SECONDARY]]
    )
    assert resolver.pid is not None
    pids[RESOLVER] = resolver.pid
    return knot


def check_servers(ports: dict[str, int]) -> dict[str, list[str]]:
    """What env.json's "dns" box lists for the steps to check (engine/context.py make_dns)."""
    return {
        "nameservers": [f"127.0.0.1:{ports[PRIMARY]}", f"127.0.0.1:{ports[SECONDARY]}"],
        "resolvers": [f"127.0.0.1:{ports[RESOLVER]}"],
    }
