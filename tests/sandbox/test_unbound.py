"""The sandbox's recursive resolver: unbound with a stub-zone to a real Knot server caches the
old answer for its TTL (unbound.conf(5): stub-zone, stub-addr IP@port)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from cutover.adapters.dns import Record, Rfc2136Provider
from cutover.adapters.dnscheck import Server, ask_recursive
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotServer
from cutover.sandbox.unbound import UnboundServer

pytestmark = pytest.mark.slow

ZONE = "example.test"
NAME = "www." + ZONE


def test_resolver_serves_the_cached_answer_until_its_ttl_runs_out() -> None:
    base = Path(tempfile.mkdtemp(prefix="cutover-unbound-"))
    knot = KnotServer.create(
        base / "k", procs.free_port(), ZONE, [("www", "CNAME", 3, "old.example.net.")]
    )
    try:
        resolver = UnboundServer.create(base / "u", procs.free_port(), ZONE, [knot.port])
        try:
            assert UnboundServer.load(resolver.folder).stubs == [knot.port]
            server = Server("127.0.0.1", resolver.port)
            first = ask_recursive([server], NAME, "CNAME")[0].record
            assert first is not None and first.values == ["old.example.net."]
            Rfc2136Provider("127.0.0.1", knot.port, ZONE, knot.tsig_name, knot.tsig_secret).set(
                Record("www", "CNAME", 3, ["new.example.net."])
            )
            cached = ask_recursive([server], NAME, "CNAME")[0].record
            assert cached is not None and cached.values == ["old.example.net."]
            assert cached.ttl <= 3  # the TTL counts down in the cache
            deadline = time.monotonic() + 30
            while True:
                now = ask_recursive([server], NAME, "CNAME")[0].record
                if now is not None and now.values == ["new.example.net."]:
                    break
                assert time.monotonic() < deadline, "unbound never dropped the cached answer"
                time.sleep(0.2)
            missing = ask_recursive([server], "nosuch." + ZONE, "CNAME")[0]
            assert missing.record is None and missing.error is None  # NXDOMAIN
        finally:
            resolver.stop()
        assert not resolver.is_running()
    finally:
        knot.stop()
