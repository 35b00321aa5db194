"""The route53 provider against moto in server mode (a real HTTP endpoint on loopback, reached
through botocore's own AWS_ENDPOINT_URL with dummy credentials), plus botocore's Stubber for
what moto cannot show: moto's GetChange always answers INSYNC (moto/route53/responses.py
get_change), so the PENDING -> INSYNC wait is driven by stubbed answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import ANY, Stubber
from moto.server import ThreadedMotoServer

from cutover.adapters.dns import DnsError, DnsProvider, Record
from cutover.adapters.dns_route53 import ALIAS_TTL, Route53Provider
from cutover.sandbox import procs

ZONE = "shop.test"
SECRET_KEY = "dummy-secret-key-for-moto-0123456789"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = procs.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Dummy credentials the standard way (environment), moto reset between tests."""
    httpx.post(f"{moto_url}/moto-api/reset", timeout=120).raise_for_status()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADUMMYFORMOTO0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return moto_url


def route53() -> Any:
    return boto3.client("route53")


def make_zone(name: str = ZONE, *, private: bool = False) -> str:
    kwargs: dict[str, Any] = {"Name": name, "CallerReference": uuid.uuid4().hex}
    if private:
        vpc = boto3.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        kwargs["HostedZoneConfig"] = {"PrivateZone": True}
        kwargs["VPC"] = {"VPCRegion": REGION, "VPCId": vpc}
    zone_id: str = route53().create_hosted_zone(**kwargs)["HostedZone"]["Id"]
    return zone_id.rsplit("/", 1)[-1]


def put(zone_id: str, name: str, rtype: str, ttl: int, *values: str) -> None:
    route53().change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": rtype,
                        "TTL": ttl,
                        "ResourceRecords": [{"Value": v} for v in values],
                    },
                }
            ]
        },
    )


def raw_sets(zone_id: str, name: str) -> list[dict[str, Any]]:
    sets = route53().list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return [s for s in sets if s["Name"].rstrip(".") == name]


def load_balancer(name: str = "convox-router") -> dict[str, Any]:
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    lb: dict[str, Any] = boto3.client("elbv2").create_load_balancer(
        Name=name, Subnets=subnets, Type="network"
    )["LoadBalancers"][0]
    return lb


# --- get / set / read back ---------------------------------------------------------------


def test_get_then_set_reads_back_the_new_ttl_and_target(aws: str) -> None:
    zone_id = make_zone()
    put(zone_id, f"www.{ZONE}", "CNAME", 3600, "shop-42.herokudns.example.")
    provider: DnsProvider = Route53Provider(ZONE, timeout=30)
    record = provider.get("www", "CNAME")
    assert record == Record(f"www.{ZONE}", "CNAME", 3600, ["shop-42.herokudns.example."])
    assert provider.get("www", "A") is None

    provider.set(Record(f"www.{ZONE}", "CNAME", 60, ["shop-42.herokudns.example."]))
    assert provider.get(f"www.{ZONE}.", "CNAME") == Record(
        f"www.{ZONE}", "CNAME", 60, ["shop-42.herokudns.example."]
    )
    provider.set(Record(f"www.{ZONE}", "CNAME", 60, ["router.rack.example."]))
    (only,) = raw_sets(zone_id, f"www.{ZONE}")
    assert only["Type"] == "CNAME" and only["TTL"] == 60
    assert [rr["Value"] for rr in only["ResourceRecords"]] == ["router.rack.example."]


def test_an_a_record_replaces_a_cname_in_one_change_batch(aws: str) -> None:
    zone_id = make_zone()
    put(zone_id, f"api.{ZONE}", "CNAME", 300, "old.example.")
    provider = Route53Provider(ZONE)
    provider.set(Record("api", "A", 60, ["192.0.2.10", "192.0.2.11"]))
    sets = raw_sets(zone_id, f"api.{ZONE}")
    assert [(s["Type"], s["TTL"]) for s in sets] == [("A", 60)]
    assert provider.get("api", "A") == Record(f"api.{ZONE}", "A", 60, ["192.0.2.10", "192.0.2.11"])


def test_zone_found_by_name_reports_its_delegation_set(aws: str) -> None:
    zone_id = make_zone()
    expected = route53().get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
    provider = Route53Provider(ZONE)
    assert provider.nameservers() == [n.rstrip(".").lower() for n in expected]
    assert provider.nameservers()  # a public zone has its servers
    assert provider.zone_id == zone_id
    assert provider.synced_by_provider is True and provider.apex() == "alias"


def test_two_public_zones_of_the_same_name_are_refused_until_zone_id_is_set(aws: str) -> None:
    first, second = make_zone(), make_zone()
    with pytest.raises(DnsError, match=r"2 public hosted zones named shop\.test") as err:
        Route53Provider(ZONE).get("www", "CNAME")
    assert first in str(err.value) and second in str(err.value)
    assert "dns.route53.zone_id" in (err.value.resolution or "")
    put(second, f"www.{ZONE}", "CNAME", 300, "x.example.")
    assert Route53Provider(ZONE, zone_id=second).get("www", "CNAME") is not None
    assert Route53Provider(ZONE, zone_id=f"/hostedzone/{first}").get("www", "CNAME") is None


def test_a_private_zone_is_not_taken_for_the_public_one(aws: str) -> None:
    private = make_zone(private=True)
    with pytest.raises(DnsError, match="only a private hosted zone") as err:
        Route53Provider(ZONE).nameservers()
    assert private in str(err.value)
    public = make_zone()
    assert Route53Provider(ZONE).hosted_zone()["HostedZone"]["Id"].endswith(public)


def test_missing_zone_and_wrong_zone_id_say_what_is_wrong(aws: str) -> None:
    with pytest.raises(DnsError, match=r"no Route 53 hosted zone named shop\.test"):
        Route53Provider(ZONE).get("www", "CNAME")
    other = make_zone("other.test")
    with pytest.raises(DnsError, match=rf"{other} is other\.test, not dns\.zone shop\.test"):
        Route53Provider(ZONE, zone_id=other).get("www", "CNAME")
    with pytest.raises(DnsError, match="not inside Route 53 hosted zone"):
        Route53Provider(ZONE).fqdn("www.elsewhere.test")


# --- the apex ----------------------------------------------------------------------------


def test_the_apex_becomes_an_alias_to_the_routers_load_balancer(aws: str) -> None:
    zone_id = make_zone()
    lb = load_balancer()
    provider = Route53Provider(ZONE)
    provider.set(Record(ZONE, "CNAME", 60, [lb["DNSName"] + "."], alias=True))
    sets = [s for s in raw_sets(zone_id, ZONE) if s["Type"] == "A"]
    assert len(sets) == 1
    alias = sets[0]
    assert alias["AliasTarget"]["HostedZoneId"] == lb["CanonicalHostedZoneId"]
    assert alias["AliasTarget"]["DNSName"].rstrip(".") == lb["DNSName"]
    assert "TTL" not in alias
    record = provider.get("@", "A")
    assert record == Record(ZONE, "A", ALIAS_TTL, [lb["DNSName"] + "."], alias=True)
    assert "alias to load balancer" in provider.describe_set(Record(ZONE, "CNAME", 60, ["x."]))


def test_an_apex_target_that_is_no_load_balancer_stops_with_the_alternatives(aws: str) -> None:
    make_zone()
    load_balancer()
    with pytest.raises(
        DnsError, match=r"router\.convox\.example is not the DNS name of a load"
    ) as err:
        Route53Provider(ZONE).set(Record("@", "CNAME", 60, ["router.convox.example."]))
    assert "www-style" in (err.value.resolution or "")
    assert f"region {REGION}" in str(err.value)


# --- INSYNC ------------------------------------------------------------------------------


def _stubbed(provider: Route53Provider, statuses: list[str]) -> Stubber:
    """Route 53 answers as documented (API_GetChange.html), PENDING first."""
    client = provider.client()
    stub = Stubber(client)
    zone = {"Id": "/hostedzone/Z1", "Name": f"{ZONE}.", "CallerReference": "r"}
    stub.add_response(
        "get_hosted_zone",
        {"HostedZone": zone, "DelegationSet": {"NameServers": ["ns-1.awsdns-01.org"]}},
        {"Id": "Z1"},
    )
    for rtype in ("A", "AAAA"):
        stub.add_response(
            "list_resource_record_sets",
            {"ResourceRecordSets": [], "IsTruncated": False, "MaxItems": "1"},
            {
                "HostedZoneId": "Z1",
                "StartRecordName": f"www.{ZONE}.",
                "StartRecordType": rtype,
                "MaxItems": "1",
            },
        )
    info = {"Id": "/change/C0FFEE", "SubmittedAt": "2026-11-30T12:00:00Z"}
    if not statuses:
        return stub
    stub.add_response(
        "change_resource_record_sets",
        {"ChangeInfo": {**info, "Status": statuses[0]}},
        {"HostedZoneId": "Z1", "ChangeBatch": ANY},
    )
    for status in statuses[1:]:
        stub.add_response(
            "get_change", {"ChangeInfo": {**info, "Status": status}}, {"Id": "/change/C0FFEE"}
        )
    return stub


def test_set_waits_for_insync_polling_get_change(aws: str) -> None:
    naps: list[float] = []
    provider = Route53Provider(ZONE, zone_id="Z1", poll=3.0, sleep=naps.append)
    stub = _stubbed(provider, ["PENDING", "PENDING", "INSYNC"])
    stub.add_response(
        "list_resource_record_sets",
        {
            "ResourceRecordSets": [
                {
                    "Name": f"www.{ZONE}.",
                    "Type": "CNAME",
                    "TTL": 60,
                    "ResourceRecords": [{"Value": "router.example."}],
                }
            ],
            "IsTruncated": False,
            "MaxItems": "1",
        },
        {
            "HostedZoneId": "Z1",
            "StartRecordName": f"www.{ZONE}.",
            "StartRecordType": "CNAME",
            "MaxItems": "1",
        },
    )
    with stub:
        provider.set(Record("www", "CNAME", 60, ["router.example."]))
        stub.assert_no_pending_responses()
    assert naps == [3.0, 3.0]  # two GetChange calls after the PENDING answer


def test_a_change_still_pending_at_the_timeout_names_the_change(aws: str) -> None:
    provider = Route53Provider(ZONE, zone_id="Z1", timeout=0, sleep=lambda s: None)
    stub = _stubbed(provider, ["PENDING", "PENDING"])
    with (
        stub,
        pytest.raises(
            DnsError, match=r"change /change/C0FFEE for www\.shop\.test is still PENDING"
        ) as err,
    ):
        provider.set(Record("www", "CNAME", 60, ["router.example."]))
    assert "aws route53 get-change --id C0FFEE" in (err.value.resolution or "")


# --- credentials -------------------------------------------------------------------------


def test_no_credentials_is_a_clear_message(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with pytest.raises(DnsError, match="no AWS credentials found") as err:
        Route53Provider(ZONE).get("www", "CNAME")
    assert "AWS_PROFILE" in str(err.value)


def test_an_aws_refusal_is_quoted_without_the_secret(aws: str) -> None:
    make_zone()
    with pytest.raises(DnsError) as err:
        Route53Provider(ZONE, zone_id="ZNOTTHERE").get("www", "CNAME")
    assert "NoSuchHostedZone" in str(err.value)
    assert SECRET_KEY not in str(err.value) and SECRET_KEY not in repr(err.value.__dict__)


def test_a_refused_change_batch_is_quoted_from_route53s_answer(aws: str) -> None:
    provider = Route53Provider(ZONE, zone_id="Z1", sleep=lambda s: None)
    stub = _stubbed(provider, [])
    stub.add_client_error(
        "change_resource_record_sets",
        service_error_code="InvalidChangeBatch",
        service_message="[RRSet with DNS name www.shop.test. is not permitted in zone shop.test.]",
        http_status_code=400,
    )
    with stub, pytest.raises(DnsError) as err:
        provider.set(Record("www", "CNAME", 60, ["router.example."]))
    assert str(err.value) == (
        "Route 53 ChangeResourceRecordSets www.shop.test CNAME refused: InvalidChangeBatch: "
        "[RRSet with DNS name www.shop.test. is not permitted in zone shop.test.]"
    )


# --- review (issue 12) ---------------------------------------------------------------------


@pytest.mark.parametrize("token", ["sess-token-Qw7Er9Ty1Ui3\n", "sess-token\r\nQw7Er9Ty1Ui3"])
def test_a_session_token_with_stray_characters_never_reaches_the_error(
    aws: str, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """botocore's HTTP client refuses an illegal header value by quoting it ("Invalid header
    value b'<X-Amz-Security-Token>\\n'"), and the BotoCoreError text went into the DnsError."""
    make_zone()
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    with pytest.raises(DnsError) as err:
        Route53Provider(ZONE).nameservers()
    text = str(err.value) + repr(err.value.__dict__)
    assert "Route 53 ListHostedZonesByName" in text
    assert "Qw7Er9Ty1Ui3" not in text and SECRET_KEY not in text


def test_the_apex_alias_replaces_the_ipv6_addresses_too(aws: str) -> None:
    """The alias A stands in for a CNAME, which replaces every address record at the name: an
    old AAAA left at the apex kept sending IPv6 clients to the old host after the switch."""
    zone_id = make_zone()
    lb = load_balancer()
    put(zone_id, ZONE, "A", 300, "192.0.2.1")
    put(zone_id, ZONE, "AAAA", 300, "2001:db8::1")
    provider = Route53Provider(ZONE)
    wanted = Record(ZONE, "CNAME", 60, [lb["DNSName"] + "."], alias=True)
    assert "deleting AAAA records there" in provider.describe_set(wanted)
    provider.set(wanted)
    kinds = sorted(s["Type"] for s in raw_sets(zone_id, ZONE) if s["Type"] not in ("NS", "SOA"))
    assert kinds == ["A"]
    assert provider.get("@", "AAAA") is None
    assert provider.get("@", "A") == Record(ZONE, "A", ALIAS_TTL, [lb["DNSName"] + "."], alias=True)


def test_a_convox_router_name_finds_the_racks_load_balancer_by_its_name(aws: str) -> None:
    """On AWS `convox rack` shows Router router.<DOMAIN> (provider/k8s/system.go SystemGet),
    DOMAIN being an alias.convox.com name for the router NLB (terraform/router/aws outputs.tf
    "endpoint"), never the load balancer's own DNS name; the NLB is named router-<rack>
    (terraform/router/aws/main.tf, aws-load-balancer-name) - convox at 9e02452."""
    zone_id = make_zone()
    load_balancer("other-lb")
    lb = load_balancer("router-prod")
    router = "router.0a1b2c3d4e5f.convox.cloud."
    Route53Provider(ZONE, rack="acme/prod").set(Record(ZONE, "CNAME", 60, [router], alias=True))
    (alias,) = [s for s in raw_sets(zone_id, ZONE) if s["Type"] == "A"]
    assert alias["AliasTarget"]["DNSName"].rstrip(".") == lb["DNSName"]
    assert alias["AliasTarget"]["HostedZoneId"] == lb["CanonicalHostedZoneId"]
    with pytest.raises(DnsError, match="router-staging") as err:  # another rack: no guess
        Route53Provider(ZONE, rack="staging").set(Record(ZONE, "CNAME", 60, [router], alias=True))
    assert "convox.rack" in (err.value.resolution or "")
