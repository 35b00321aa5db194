"""The Cloudflare name-server stand-in answers as Cloudflare documents (see its module)."""

from __future__ import annotations

from cutover.adapters.dns import Record, query_authoritative
from cutover.sandbox.cloudflare_api import CloudflareApi
from cutover.sandbox.cloudflare_dns import ANYCAST, CloudflareNameserver


def test_dns_only_proxied_and_flattened_apex_answers() -> None:
    with CloudflareApi("cf-token-for-the-ns-test-Zx81") as api:
        zone = api.add_zone("shop.test")
        api.add_record(zone, "www.shop.test", "CNAME", "old.herokudns.example", 1)
        api.add_record(zone, "cdn.shop.test", "CNAME", "origin.example", 120, True)
        api.add_record(zone, "shop.test", "CNAME", "router.rack.example", 3600)
        flat = {"router.rack.example": (["192.0.2.80", "2001:db8::80"], 60)}
        with CloudflareNameserver(api, flatten_to=flat) as ns:

            def ask(name: str, rtype: str) -> Record | None:
                return query_authoritative("127.0.0.1", ns.port, name, rtype)

            # DNS-only CNAME off the apex: the CNAME itself, automatic TTL read as 300.
            assert ask("www.shop.test", "CNAME") == Record(
                "www.shop.test", "CNAME", 300, ["old.herokudns.example."]
            )
            # Proxied: Cloudflare's addresses with TTL 300, never the CNAME.
            assert ask("cdn.shop.test", "A") == Record(
                "cdn.shop.test", "A", 300, sorted(ANYCAST["A"])
            )
            assert ask("cdn.shop.test", "CNAME") is None
            # Apex: flattened to the target's addresses, the lower TTL of the two.
            assert ask("shop.test", "A") == Record("shop.test", "A", 60, ["192.0.2.80"])
            assert ask("shop.test", "AAAA") == Record("shop.test", "AAAA", 60, ["2001:db8::80"])
            assert ask("shop.test", "CNAME") is None
            assert ask("nothing.shop.test", "A") is None  # NXDOMAIN
