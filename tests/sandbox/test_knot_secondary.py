"""The sandbox's Knot pair: a secondary fed by NOTIFY + IXFR from the primary, made to lag with
``knotc zone-freeze`` and caught up by ``zone-thaw`` (Knot 3.2 reference, knotc(8))."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.adapters.dns import Record, Rfc2136Provider, query_authoritative
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotError, KnotServer

pytestmark = pytest.mark.slow

ZONE = "example.test"


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_secondary_follows_by_notify_lags_while_frozen_and_catches_up() -> None:
    base = Path(tempfile.mkdtemp(prefix="cutover-knot2-"))
    secondary_port = procs.free_port()
    primary = KnotServer.create(
        base / "p",
        procs.free_port(),
        ZONE,
        [("www", "CNAME", 3600, "old.example.net.")],
        notify_ports=[secondary_port],
    )
    try:
        with pytest.raises(KnotError, match="does not NOTIFY port"):
            KnotServer.create_secondary(base / "x", procs.free_port(), primary)
        secondary = KnotServer.create_secondary(base / "s", secondary_port, primary)
        try:
            assert KnotServer.load(secondary.folder).primary_port == primary.port
            provider = Rfc2136Provider(
                "127.0.0.1", primary.port, ZONE, primary.tsig_name, primary.tsig_secret
            )

            def on_secondary() -> Record | None:
                return query_authoritative("127.0.0.1", secondary.port, "www." + ZONE, "CNAME")

            assert on_secondary() == Record("www." + ZONE, "CNAME", 3600, ["old.example.net."])
            provider.set(Record("www", "CNAME", 60, ["old.example.net."]))
            _until(lambda: on_secondary().ttl == 60, "NOTIFY did not bring the change")  # type: ignore[union-attr]

            assert secondary.control("zone-freeze", ZONE).strip() == "OK"
            provider.set(Record("www", "CNAME", 60, ["new.example.net."]))
            time.sleep(2)  # NOTIFY has had time to arrive: the frozen zone did not transfer
            assert on_secondary() == Record("www." + ZONE, "CNAME", 60, ["old.example.net."])

            secondary.control("zone-thaw", ZONE)
            _until(
                lambda: on_secondary() == Record("www." + ZONE, "CNAME", 60, ["new.example.net."]),
                "the thawed secondary did not catch up",
            )
            with pytest.raises(KnotError, match=r"knotc zone-freeze nosuch\.test failed"):
                secondary.control("zone-freeze", "nosuch.test")
        finally:
            secondary.stop()
    finally:
        primary.stop()
