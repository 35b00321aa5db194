"""Tests for cutover.adapters.dns: name handling and secrecy offline, updates against real knotd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.adapters.dns import (
    DnsError,
    DnsProvider,
    Record,
    Rfc2136Provider,
    query_authoritative,
)
from cutover.adapters.dns_manual import ManualDnsProvider
from cutover.errors import CutoverError
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotServer

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
ZONE = "shop.test"


def _offline(secret: str = SECRET, port: int = 53) -> Rfc2136Provider:
    return Rfc2136Provider("127.0.0.1", port, ZONE, "cutover-key", secret, timeout=0.3)


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[KnotServer]:
    """A real knotd for ZONE (the shared fixtures live in tests/sandbox/conftest.py)."""
    server = KnotServer.create(
        tmp_path / "knot",
        procs.free_port(),
        ZONE,
        [
            ("www", "CNAME", 3600, "shop-42.herokudns.example."),
            ("api", "A", 300, "192.0.2.7"),
            ("api", "TXT", 300, '"keep me"'),
        ],
        tsig_name="cutover-key",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def provider(knot: KnotServer) -> Rfc2136Provider:
    return Rfc2136Provider("127.0.0.1", knot.port, knot.zone, knot.tsig_name, knot.tsig_secret)


# --- offline ------------------------------------------------------------------------------


def test_provider_satisfies_the_protocol() -> None:
    provider: DnsProvider = _offline()
    assert provider.describe_set(Record("www", "CNAME", 60, ["x.example"]))


def test_names_resolve_inside_the_zone() -> None:
    provider = _offline()
    expected = "www.shop.test."
    for name in ("www", "www.shop.test", "www.shop.test.", "WWW.Shop.Test"):
        assert provider.fqdn(name).to_text().lower() == expected
    assert provider.fqdn("@").to_text() == "shop.test."
    assert provider.fqdn("shop.test").to_text() == "shop.test."
    with pytest.raises(DnsError, match=r"not inside zone shop\.test"):
        provider.fqdn("www.other.test")


def test_secret_never_shows_in_repr_description_or_errors() -> None:
    provider = _offline()
    record = Record("www", "CNAME", 60, ["router.convox.example"])
    assert SECRET not in repr(provider)
    description = provider.describe_set(record)
    assert SECRET not in description
    assert "www.shop.test" in description and "TTL 60s" in description
    assert "TSIG key cutover-key" in description
    assert "router.convox.example" in description

    broken = "not//base64!!" + SECRET
    with pytest.raises(DnsError) as caught:
        _offline(secret=broken).set(record)
    assert "cutover-key" in str(caught.value)
    assert broken not in str(caught.value) and SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_bad_input_is_a_dns_error() -> None:
    provider = _offline()
    with pytest.raises(DnsError, match="unknown DNS record type"):
        provider.set(Record("www", "NOPE", 60, ["x"]))
    with pytest.raises(DnsError, match="no value"):
        provider.set(Record("www", "A", 60, []))
    with pytest.raises(DnsError, match="invalid A value"):
        provider.set(Record("www", "A", 60, ["not-an-ip"]))


def test_an_unreachable_server_is_a_dns_error() -> None:
    port = procs.free_port()
    with pytest.raises(DnsError, match=rf"127\.0\.0\.1:{port}"):
        _offline(port=port).get("www", "A")
    with pytest.raises(DnsError, match=r"failed|no answer"):
        _offline(port=port).set(Record("www", "A", 60, ["192.0.2.1"]))


# --- against knotd ------------------------------------------------------------------------


@pytest.mark.slow
def test_get_returns_the_served_rrset_with_its_ttl(provider: Rfc2136Provider) -> None:
    assert provider.get("www", "CNAME") == Record(
        "www.shop.test", "CNAME", 3600, ["shop-42.herokudns.example."]
    )
    assert provider.get("api.shop.test.", "A") == Record("api.shop.test", "A", 300, ["192.0.2.7"])
    assert provider.get("www", "A") is None  # a CNAME is there, not an A rrset
    assert provider.get("missing", "A") is None


@pytest.mark.slow
def test_set_replaces_the_rrset_and_lowers_the_ttl(provider: Rfc2136Provider) -> None:
    provider.set(Record("www", "CNAME", 60, ["router.convox.example"]))
    assert provider.get("www", "CNAME") == Record(
        "www.shop.test", "CNAME", 60, ["router.convox.example."]
    )
    # Setting it again is harmless (the step may be re-run after a crash).
    provider.set(Record("www", "CNAME", 60, ["router.convox.example"]))


@pytest.mark.slow
def test_switching_between_cname_and_addresses(provider: Rfc2136Provider) -> None:
    provider.set(Record("www", "A", 120, ["192.0.2.2", "192.0.2.1"]))
    assert provider.get("www", "CNAME") is None
    assert provider.get("www", "A") == Record("www.shop.test", "A", 120, ["192.0.2.1", "192.0.2.2"])

    # Nothing may live beside a CNAME: the TXT record at that name goes too, and says so.
    cname = Record("api", "CNAME", 60, ["router.convox.example."])
    assert "replace all records at api.shop.test" in provider.describe_set(cname)
    provider.set(cname)
    assert provider.get("api", "A") is None
    assert provider.get("api", "TXT") is None
    assert provider.get("api", "CNAME") is not None

    provider.set(Record("api", "AAAA", 60, ["2001:db8::1"]))
    assert provider.get("api", "CNAME") is None
    with pytest.raises(DnsError, match="apex"):
        provider.set(Record("@", "CNAME", 60, ["router.convox.example."]))


@pytest.mark.slow
def test_set_other_types_replaces_only_that_type(provider: Rfc2136Provider) -> None:
    provider.set(Record("@", "TXT", 300, ['"v=spf1 include:convox.example -all"']))
    assert provider.get("@", "TXT") == Record(
        "shop.test", "TXT", 300, ['"v=spf1 include:convox.example -all"']
    )
    assert provider.get("@", "SOA") is not None


@pytest.mark.slow
def test_wrong_key_name_or_secret_is_refused(knot: KnotServer) -> None:
    record = Record("www", "CNAME", 60, ["evil.example."])
    wrong_name = Rfc2136Provider("127.0.0.1", knot.port, ZONE, "other-key", knot.tsig_secret)
    with pytest.raises(DnsError, match="BADKEY") as caught:
        wrong_name.set(record)
    assert knot.tsig_secret not in str(caught.value)
    wrong_secret = Rfc2136Provider("127.0.0.1", knot.port, ZONE, knot.tsig_name, SECRET)
    with pytest.raises(DnsError, match="BADSIG"):
        wrong_secret.set(record)
    assert query_authoritative("127.0.0.1", knot.port, "www.shop.test", "CNAME") == Record(
        "www.shop.test", "CNAME", 3600, ["shop-42.herokudns.example."]
    )


@pytest.mark.slow
def test_query_authoritative_outside_the_served_zone(knot: KnotServer) -> None:
    with pytest.raises(DnsError, match="REFUSED"):
        query_authoritative("127.0.0.1", knot.port, "www.example.org", "A")
    with pytest.raises(DnsError, match="unknown DNS record type"):
        query_authoritative("127.0.0.1", knot.port, "www.shop.test", "BOGUS")


@pytest.mark.slow
def test_manual_provider_reads_the_authoritative_ttl_and_never_writes(knot: KnotServer) -> None:
    manual = ManualDnsProvider(ZONE, servers=["127.0.0.1"], port=knot.port)
    record = manual.get(f"www.{ZONE}", "CNAME")
    assert record is not None
    assert record.ttl == 3600  # the zone's TTL, not a cache's countdown
    assert record.values == ["shop-42.herokudns.example."]
    change = Record(f"www.{ZONE}", "CNAME", 60, ["router.example.net."])
    with pytest.raises(CutoverError) as info:
        manual.set(change)
    assert "www.shop.test CNAME router.example.net. TTL 60" in str(info.value)
    assert manual.get(f"www.{ZONE}", "CNAME") == record


def test_manual_provider_names_the_zone_when_no_server_answers() -> None:
    manual = ManualDnsProvider(ZONE, servers=["127.0.0.1"], port=procs.free_port())
    with pytest.raises(CutoverError, match=r"no authoritative server of shop\.test"):
        manual.get(f"www.{ZONE}", "CNAME")
