"""The cloudflare provider against the local stand-in of Cloudflare's API v4
(cutover/sandbox/cloudflare_api.py: the documented routes and envelope, a bearer token check,
records in memory), reached over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cutover.adapters.dns import DnsError, DnsProvider, Record
from cutover.adapters.dns_cloudflare import (
    API_URL,
    AUTO_TTL,
    BASE_URL_VAR,
    CloudflareProvider,
    api_url,
)
from cutover.sandbox.cloudflare_api import CloudflareApi

TOKEN = "cf-test-token-Zx81kq0Wb3uT7mVn2Lp9"
ZONE = "shop.test"


@pytest.fixture
def api() -> Iterator[CloudflareApi]:
    with CloudflareApi(TOKEN) as server:
        zone_id = server.add_zone(ZONE, ["kim.ns.cloudflare.com", "lee.ns.cloudflare.com"])
        server.add_record(zone_id, f"www.{ZONE}", "CNAME", "shop-42.herokudns.example", 3600)
        server.add_record(zone_id, ZONE, "A", "192.0.2.1", 300)
        server.add_record(zone_id, f"api.{ZONE}", "A", "192.0.2.7", 1)
        server.add_record(zone_id, f"api.{ZONE}", "A", "192.0.2.8", 1)
        yield server


def provider(api: CloudflareApi, token: str | None = TOKEN, **kwargs: object) -> CloudflareProvider:
    return CloudflareProvider(ZONE, token, base_url=api.url, **kwargs)  # type: ignore[arg-type]


def test_get_then_set_overwrites_the_record_in_place(api: CloudflareApi) -> None:
    dns: DnsProvider = provider(api)
    before = dns.get("www", "CNAME")
    assert before == Record(
        f"www.{ZONE}", "CNAME", 3600, ["shop-42.herokudns.example."], proxied=False
    )
    (old,) = api.find(f"www.{ZONE}")
    dns.set(Record(f"www.{ZONE}", "CNAME", 60, ["shop-42.herokudns.example."]))
    assert dns.get("www", "CNAME") == Record(
        f"www.{ZONE}", "CNAME", 60, ["shop-42.herokudns.example."], proxied=False
    )
    dns.set(Record(f"www.{ZONE}", "CNAME", 60, ["router.rack.example."]))
    (new,) = api.find(f"www.{ZONE}")
    assert new["id"] == old["id"]  # PUT: the same record, overwritten
    assert (new["content"], new["ttl"], new["proxied"]) == ("router.rack.example", 60, False)
    assert [m for m, _, _ in api.requests].count("PUT") == 2


def test_ttl_1_reads_as_automatic_300_seconds_and_a_set_is_all_values(api: CloudflareApi) -> None:
    dns = provider(api)
    record = dns.get("api", "A")
    assert record == Record(f"api.{ZONE}", "A", AUTO_TTL, ["192.0.2.7", "192.0.2.8"], proxied=False)
    dns.set(Record("api", "A", 120, ["192.0.2.9"]))
    assert [(r["content"], r["ttl"]) for r in api.find(f"api.{ZONE}")] == [("192.0.2.9", 120)]


def test_a_proxied_record_is_reported_and_stays_proxied_through_a_switch(
    api: CloudflareApi,
) -> None:
    zone_id = next(iter(api.zones))
    api.add_record(zone_id, f"shop.{ZONE}", "CNAME", "shop-42.herokudns.example", proxied=True)
    dns = provider(api)
    record = dns.get("shop", "CNAME")
    assert record is not None and record.proxied is True and record.ttl == AUTO_TTL
    change = Record(f"shop.{ZONE}", "CNAME", 60, ["router.rack.example."])
    assert "proxied as it is now" in dns.describe_set(change)
    dns.set(change)
    (now,) = api.find(f"shop.{ZONE}")
    assert (now["content"], now["proxied"], now["ttl"]) == ("router.rack.example", True, 1)
    assert dns.get("shop", "CNAME") == Record(
        f"shop.{ZONE}", "CNAME", AUTO_TTL, ["router.rack.example."], proxied=True
    )


def test_the_playbook_can_turn_the_proxy_off_at_the_switch(api: CloudflareApi) -> None:
    zone_id = next(iter(api.zones))
    api.add_record(zone_id, f"shop.{ZONE}", "CNAME", "shop-42.herokudns.example", proxied=True)
    dns = provider(api, proxied=False)
    change = Record(f"shop.{ZONE}", "CNAME", 60, ["router.rack.example."])
    assert "DNS only (not proxied)" in dns.describe_set(change)
    assert "resolvers get Cloudflare's addresses" in provider(api, proxied=True).describe_set(
        change
    )
    dns.set(change)
    (now,) = api.find(f"shop.{ZONE}")
    assert (now["proxied"], now["ttl"]) == (False, 60)


def test_a_cname_at_the_apex_replaces_the_a_record_and_is_flattened(api: CloudflareApi) -> None:
    dns = provider(api)
    assert dns.apex() == "flattening" and dns.synced_by_provider is False
    change = Record(ZONE, "CNAME", 60, ["router.rack.example."], alias=True)
    assert "flattens a CNAME at the zone apex" in dns.describe_set(change)
    dns.set(change)
    assert [(r["type"], r["content"]) for r in api.find(ZONE)] == [("CNAME", "router.rack.example")]
    record = dns.get("@", "CNAME")
    assert record is not None and record.alias is True and record.values == ["router.rack.example."]
    assert dns.get("@", "A") is None


def test_an_a_record_replaces_a_cname(api: CloudflareApi) -> None:
    provider(api).set(Record("www", "A", 60, ["192.0.2.20"]))
    assert [(r["type"], r["content"]) for r in api.find(f"www.{ZONE}")] == [("A", "192.0.2.20")]


def test_zone_by_name_or_id_and_its_name_servers(api: CloudflareApi) -> None:
    zone_id = next(iter(api.zones))
    dns = provider(api)
    assert dns.nameservers() == ["kim.ns.cloudflare.com", "lee.ns.cloudflare.com"]
    assert dns.zone_id == zone_id
    assert ("GET", "/client/v4/zones", None) in api.requests
    assert provider(api, zone_id=zone_id).get("www", "CNAME") is not None
    other = api.add_zone("other.test")
    with pytest.raises(DnsError, match=rf"zone {other} is other\.test, not dns\.zone shop\.test"):
        provider(api, zone_id=other).get("www", "CNAME")
    with pytest.raises(DnsError, match=r"no Cloudflare zone named elsewhere\.test"):
        CloudflareProvider("elsewhere.test", TOKEN, base_url=api.url).get("www", "CNAME")


def test_a_wrong_token_is_reported_from_the_api_errors_without_the_token(
    api: CloudflareApi,
) -> None:
    wrong = "cf-wrong-token-AAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(DnsError) as err:
        provider(api, wrong, token_env="CF_TOKEN").get("www", "CNAME")
    text = str(err.value) + (err.value.resolution or "")
    assert "refused (HTTP 403): 10000: Authentication error" in str(err.value)
    assert "The token in CF_TOKEN is wrong" in (err.value.resolution or "")
    assert wrong not in text and TOKEN not in text
    assert wrong not in repr(provider(api, wrong))


def test_a_missing_token_names_the_variable_before_any_request(api: CloudflareApi) -> None:
    with pytest.raises(DnsError, match="environment variable CF_DNS_TOKEN is not set"):
        provider(api, None, token_env="CF_DNS_TOKEN").get("www", "CNAME")
    assert api.requests == []


def test_the_token_travels_only_in_the_authorization_header(api: CloudflareApi) -> None:
    dns = provider(api)
    dns.set(Record("www", "CNAME", 60, ["router.rack.example."]))
    assert api.requests
    for method, path, body in api.requests:
        assert TOKEN not in path and TOKEN not in str(body), method
    assert TOKEN not in dns.describe_set(Record("www", "CNAME", 60, ["x."]))


def test_an_out_of_range_ttl_is_refused_before_any_change(api: CloudflareApi) -> None:
    with pytest.raises(DnsError, match="Cloudflare accepts 60 to 86400 seconds, or 1"):
        provider(api).set(Record("www", "CNAME", 30, ["router.rack.example."]))
    assert [m for m, _, _ in api.requests if m != "GET"] == []


def test_the_base_url_override_is_for_a_loopback_stand_in_only() -> None:
    assert api_url({}) == API_URL
    assert api_url({BASE_URL_VAR: "http://127.0.0.1:8123/client/v4/"}) == (
        "http://127.0.0.1:8123/client/v4"
    )
    with pytest.raises(DnsError, match="loopback"):
        api_url({BASE_URL_VAR: "https://api.example.com/client/v4"})


# --- the stand-in keeps the documented rules ------------------------------------------------


def test_the_stand_in_refuses_a_bad_token_and_a_cname_beside_an_a_record(
    api: CloudflareApi,
) -> None:
    zone_id = next(iter(api.zones))
    answer = httpx.get(f"{api.url}/zones", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 403
    assert answer.json() == {
        "success": False,
        "errors": [{"code": 10000, "message": "Authentication error"}],
        "messages": [],
        "result": None,
    }
    clash = httpx.post(
        f"{api.url}/zones/{zone_id}/dns_records",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"type": "CNAME", "name": ZONE, "content": "x.example", "ttl": 1},
    )
    assert clash.status_code == 400 and clash.json()["success"] is False
    listed = httpx.get(
        f"{api.url}/zones/{zone_id}/dns_records",
        params={"type": "A", "name.exact": f"api.{ZONE}", "per_page": 1},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert listed["result_info"]["total_count"] == 2 and listed["result_info"]["total_pages"] == 2
    assert len(listed["result"]) == 1


# --- review (issue 12): what Cloudflare's reference says the adapter must respect ------------


def test_zones_are_asked_for_within_the_documented_page_size(api: CloudflareApi) -> None:
    """List Zones (operationId zones-get, cloudflare/api-schemas openapi.yaml): per_page
    minimum 5, maximum 50; the adapter asked for 100."""
    refused = httpx.get(
        f"{api.url}/zones",
        params={"name": ZONE, "per_page": 100},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert refused.status_code == 400 and refused.json()["success"] is False
    assert provider(api).nameservers() == ["kim.ns.cloudflare.com", "lee.ns.cloudflare.com"]


def test_a_value_already_there_keeps_its_record_instead_of_being_written_over_its_twin(
    api: CloudflareApi,
) -> None:
    """Cloudflare refuses a second record with the same type, name and content (81058, "An
    identical record already exists."): overwriting 192.0.2.7 with 192.0.2.8 while 192.0.2.8
    still exists is refused, so records are matched to the wanted values by content first."""
    before = {r["content"]: r["id"] for r in api.find(f"api.{ZONE}")}
    zone_id = next(iter(api.zones))
    twin = httpx.post(
        f"{api.url}/zones/{zone_id}/dns_records",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"type": "A", "name": f"api.{ZONE}", "content": "192.0.2.7", "ttl": 1},
    )
    assert twin.status_code == 400
    assert twin.json()["errors"] == [
        {"code": 81058, "message": "An identical record already exists."}
    ]
    provider(api).set(Record(f"api.{ZONE}", "A", 60, ["192.0.2.8", "192.0.2.7"]))
    after = {r["content"]: (r["id"], r["ttl"]) for r in api.find(f"api.{ZONE}")}
    assert after == {"192.0.2.7": (before["192.0.2.7"], 60), "192.0.2.8": (before["192.0.2.8"], 60)}
    assert [m for m, _, _ in api.requests if m in ("POST", "DELETE")] == ["POST"]  # the twin


@pytest.mark.parametrize("bad", ["cf-bad\r\ntoken-Zx81kq0Wb3uT7", "cf-bäd-token-Zx81kq0Wb3uT7"])
def test_a_token_with_control_or_non_ascii_characters_is_refused_without_showing_it(
    api: CloudflareApi, bad: str
) -> None:
    """httpx/h11 quote an illegal header value in their exception ("Illegal header value
    b'Bearer ...'"), and a non-ASCII one raised a bare UnicodeEncodeError."""
    with pytest.raises(DnsError) as err:
        provider(api, bad, token_env="CF_TOKEN").get("www", "CNAME")
    text = str(err.value) + (err.value.resolution or "") + repr(err.value)
    assert "CF_TOKEN" in text
    assert "cf-b" not in text and "Zx81" not in text
    assert api.requests == []


def test_a_token_pasted_with_a_trailing_newline_still_works(api: CloudflareApi) -> None:
    assert provider(api, TOKEN + "\n").nameservers() == [
        "kim.ns.cloudflare.com",
        "lee.ns.cloudflare.com",
    ]
