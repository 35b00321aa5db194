"""Tests for the sandbox's Knot DNS server (real knotd, real kdig)."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.update
import pytest

from cutover.adapters.dns import DnsError, Record, Rfc2136Provider, query_authoritative
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotError, KnotServer


def _provider(server: KnotServer, secret: str | None = None) -> Rfc2136Provider:
    return Rfc2136Provider(
        "127.0.0.1",
        server.port,
        server.zone,
        server.tsig_name,
        server.tsig_secret if secret is None else secret,
    )


def _kdig(server: KnotServer, name: str, rtype: str) -> list[list[str]]:
    result = subprocess.run(
        ["kdig", "@127.0.0.1", "-p", str(server.port), name, rtype, "+noall", "+answer"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return [line.split() for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_serves_the_zone_and_its_records(knot_server: KnotServer) -> None:
    assert knot_server.is_running()
    www = query_authoritative("127.0.0.1", knot_server.port, "www.example.test", "A")
    assert www == Record("www.example.test", "A", 300, ["192.0.2.10"])
    soa = query_authoritative("127.0.0.1", knot_server.port, "example.test", "SOA")
    assert soa is not None and soa.values[0].startswith("ns1.example.test. hostmaster.")
    assert _kdig(knot_server, "app.example.test", "CNAME") == [
        ["app.example.test.", "3600", "IN", "CNAME", "app-1234.herokudns.example."]
    ]


@pytest.mark.slow
def test_signed_update_lowers_ttl_and_switches_the_cname(knot_server: KnotServer) -> None:
    provider = _provider(knot_server)
    provider.set(Record("app", "CNAME", 60, ["router.convox.sandbox.test"]))
    assert _kdig(knot_server, "app.example.test", "CNAME") == [
        ["app.example.test.", "60", "IN", "CNAME", "router.convox.sandbox.test."]
    ]
    assert provider.get("app.example.test", "CNAME") == Record(
        "app.example.test", "CNAME", 60, ["router.convox.sandbox.test."]
    )
    # zonefile-sync: -1 keeps updates in the journal; the zone file stays as written.
    zone_file = knot_server.folder / "zones" / "example.test.zone"
    assert "app-1234.herokudns.example." in zone_file.read_text()


@pytest.mark.slow
def test_a_wrong_tsig_secret_is_refused_clearly(knot_server: KnotServer) -> None:
    wrong = "A" * 43 + "="
    with pytest.raises(DnsError) as caught:
        _provider(knot_server, wrong).set(Record("app", "CNAME", 60, ["evil.example."]))
    message = str(caught.value)
    assert "BADSIG" in message and "cutover-sandbox" in message and "secret is wrong" in message
    assert wrong not in message and knot_server.tsig_secret not in message
    assert _kdig(knot_server, "app.example.test", "CNAME")[0][-1] == "app-1234.herokudns.example."


@pytest.mark.slow
def test_an_unsigned_update_is_not_authorised(knot_server: KnotServer) -> None:
    update = dns.update.UpdateMessage("example.test.")
    update.add("evil", 60, "A", "192.0.2.66")
    response = dns.query.tcp(update, "127.0.0.1", port=knot_server.port, timeout=5)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert query_authoritative("127.0.0.1", knot_server.port, "evil.example.test", "A") is None


@pytest.mark.slow
def test_state_file_is_private_and_loads_back(knot_server: KnotServer) -> None:
    assert stat.S_IMODE(knot_server.state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((knot_server.folder / "knotd.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE(knot_server.folder.stat().st_mode) == 0o700
    assert KnotServer.load(knot_server.state_file) == knot_server
    assert KnotServer.load(knot_server.folder) == knot_server
    assert knot_server.tsig_secret not in repr(knot_server)
    with pytest.raises(KnotError, match="still runs"):
        KnotServer.create(knot_server.folder, procs.free_port(), "example.test", [])
    assert KnotServer.load(knot_server.folder) == knot_server


@pytest.mark.slow
def test_stop_leaves_no_process(knot_factory: Callable[..., KnotServer]) -> None:
    server = knot_factory("stop.test", [("www", "A", 60, "192.0.2.1")])
    pid = server.pid
    assert pid is not None and procs.pid_alive(pid)
    # Stop from the saved description, as `cutover sandbox down` would.
    loaded = KnotServer.load(server.state_file)
    loaded.stop()
    assert not procs.pid_alive(pid)
    assert KnotServer.load(server.state_file).pid is None
    query = dns.message.make_query("stop.test.", "SOA")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, "127.0.0.1", port=server.port, timeout=0.3)
    loaded.stop()  # stopping twice is fine


def test_a_folder_too_deep_for_the_control_socket_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    with pytest.raises(KnotError, match="too deep"):
        KnotServer.create(deep, procs.free_port(), "example.test", [])
    assert not deep.exists()
