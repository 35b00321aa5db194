"""A refused RFC 2136 update says why, from what a REAL Knot server (3.2, Debian 12) answers:

* a frozen zone (``knotc zone-freeze``): REFUSED, signed with our key, while the server answers
  the zone's SOA authoritatively;
* a key the server knows but whose ACL does not allow updates: NOTAUTH with TSIG error BADKEY
  (knotd checks the ACL before it queues the update), the same answer as for an unknown key;
* a zone the server does not serve: NOTAUTH, unsigned, and its SOA query is REFUSED.
"""

from __future__ import annotations

import base64
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.adapters.dns import DnsError, Record, Rfc2136Provider
from cutover.sandbox import procs
from cutover.sandbox.knot import CONF_FILE, KnotServer

pytestmark = pytest.mark.slow

ZONE = "example.test"
OTHER_KEY = "readonly-key"


@pytest.fixture
def knot() -> Iterator[tuple[KnotServer, str]]:
    """A Knot server whose config also knows OTHER_KEY, outside every ACL."""
    base = Path(tempfile.mkdtemp(prefix="cutover-dnserr-"))
    server = KnotServer.create(
        base / "k", procs.free_port(), ZONE, [("www", "A", 300, "192.0.2.1")]
    )
    try:
        server.stop()
        other = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        conf = server.folder / CONF_FILE
        text = conf.read_text(encoding="utf-8").replace(
            "\nacl:",
            f"  - id: {OTHER_KEY}\n    algorithm: hmac-sha256\n    secret: {other}\n\nacl:",
            1,
        )
        procs.write_private(conf, text)
        server.start()
        yield server, other
    finally:
        server.stop()


def _provider(
    server: KnotServer, zone: str = ZONE, key: str = "", secret: str = ""
) -> Rfc2136Provider:
    return Rfc2136Provider(
        "127.0.0.1",
        server.port,
        zone,
        key or server.tsig_name,
        secret or server.tsig_secret,
    )


def test_a_frozen_zone_is_reported_as_frozen_not_as_an_acl_problem(
    knot: tuple[KnotServer, str],
) -> None:
    server, _ = knot
    # -b (knotc(8): "zone event trigger commands wait until the event is finished"): the freeze
    # is an event; without it a loaded machine can take the update before the zone is frozen.
    server.control("-b", "zone-freeze", ZONE)
    with pytest.raises(DnsError) as err:
        _provider(server).set(Record("www", "A", 60, ["192.0.2.2"]))
    text = str(err.value)
    assert "REFUSED" in text
    assert f"authoritative for {ZONE} and accepted key '{server.tsig_name}'" in text
    assert "the zone is frozen" in text and f"knotc zone-thaw {ZONE}" in text
    assert "ACL" not in text
    server.control("-b", "zone-thaw", ZONE)
    _provider(server).set(Record("www", "A", 60, ["192.0.2.2"]))  # thawed: accepted


def test_a_key_the_acl_does_not_allow_is_named_as_such(knot: tuple[KnotServer, str]) -> None:
    server, other = knot
    with pytest.raises(DnsError) as err:
        _provider(server, key=OTHER_KEY, secret=other).set(Record("www", "A", 60, ["192.0.2.3"]))
    text = str(err.value)
    assert "NOTAUTH with TSIG error BADKEY" in text
    assert f"its ACL does not allow that key to update zone {ZONE}" in text
    assert "frozen" not in text
    assert other not in text


def test_a_zone_the_server_does_not_serve_is_not_authoritative(
    knot: tuple[KnotServer, str],
) -> None:
    server, _ = knot
    with pytest.raises(DnsError) as err:
        _provider(server, zone="other.test").set(Record("www", "A", 60, ["192.0.2.4"]))
    text = str(err.value)
    assert "not authoritative for zone other.test" in text
    assert "answered REFUSED for other.test SOA" in text
    assert "point dns.server at the zone's primary" in text
