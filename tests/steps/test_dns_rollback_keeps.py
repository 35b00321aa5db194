"""Rolling switch-dns back restores everything the switch replaced at the name, against the
Cloudflare stand-in (sandbox/cloudflare_api.py): the record's proxy flag (a proxied Heroku
record comes back proxied even when the playbook switched the router record unproxied), and
the AAAA records a CNAME (Cloudflare's flattened apex CNAME; route53's apex alias likewise,
adapters/dns_route53.py set) deletes beside the A record."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from cutover.errors import InvalidInput
from cutover.sandbox.cloudflare_api import CloudflareApi
from cutover.state import Status, StepState
from cutover.steps.base import dump
from cutover.steps.dns import SwitchDns
from cutover.steps.dnsverify import VerifyDns
from cutover.steps.preflight import Preflight
from cutover.steps.records import DnsRecord, LowerTtlOutputs
from cutover.steps.ttl import LowerTtl, RestoreTtl
from steps.test_dns_providers import ZONE, aws, cloudflare, moto_url, start

__all__ = ["aws", "cloudflare", "moto_url"]  # fixtures, used by name

EXTRA = "  cloudflare: {token_env: SHOP_CF_TOKEN, proxied: false}"


def test_rollback_gives_a_proxied_record_its_proxy_back(
    cloudflare: CloudflareApi, tmp_path: Path
) -> None:
    zone_id = next(iter(cloudflare.zones))
    cloudflare.add_record(zone_id, f"shop.{ZONE}", "CNAME", "shop-42.herokudns.example", 1, True)
    run = start(tmp_path, "cloudflare", f"shop.{ZONE}", EXTRA)
    run.step(SwitchDns())
    (now,) = cloudflare.find(f"shop.{ZONE}")
    assert now["proxied"] is False  # the playbook's wish for the router record
    assert SwitchDns().undo_needed(run.ctx) is not None
    SwitchDns().undo(run.ctx)
    (back,) = cloudflare.find(f"shop.{ZONE}")
    assert (back["type"], back["content"], back["proxied"]) == (
        "CNAME",
        "shop-42.herokudns.example",
        True,
    )
    assert SwitchDns().undo_needed(run.ctx) is None


def test_rollback_at_the_apex_restores_the_ipv6_addresses_too(
    cloudflare: CloudflareApi, tmp_path: Path
) -> None:
    zone_id = next(iter(cloudflare.zones))
    cloudflare.add_record(zone_id, ZONE, "AAAA", "2001:db8::1", 300)
    run = start(tmp_path, "cloudflare", ZONE, EXTRA)
    run.step(SwitchDns())
    assert [r["type"] for r in cloudflare.find(ZONE)] == ["CNAME"]  # A and AAAA gone
    reason = SwitchDns().undo_needed(run.ctx)
    assert reason is not None
    SwitchDns().undo(run.ctx)
    back = sorted((r["type"], r["content"]) for r in cloudflare.find(ZONE))
    assert back == [("A", "192.0.2.1"), ("AAAA", "2001:db8::1")]
    assert SwitchDns().undo_needed(run.ctx) is None


def test_lower_ttl_on_a_proxied_record_claims_no_lowered_ttl_and_waits_for_none(
    cloudflare: CloudflareApi, tmp_path: Path
) -> None:
    """Cloudflare serves a proxied name as its own addresses with an automatic TTL (300 s,
    dns/proxy-status/proxied-records): the TTL cannot be lowered, nor would any name server
    ever serve 60 s for it, so lower-ttl says so instead of claiming 300 -> 60 and waiting."""
    zone_id = next(iter(cloudflare.zones))
    cloudflare.add_record(zone_id, f"shop.{ZONE}", "CNAME", "shop-42.herokudns.example", 1, True)
    run = start(tmp_path, "cloudflare", f"shop.{ZONE}", EXTRA)
    run.step(LowerTtl())
    (now,) = cloudflare.find(f"shop.{ZONE}")
    assert (now["ttl"], now["proxied"]) == (1, True)
    out = run.output.getvalue()
    assert "-> 60" not in out
    assert "proxied" in out and "automatic" in out
    lowered = run.ctx.state.steps["lower-ttl"].outputs
    assert lowered["original"]["proxied"] is True and lowered["ttl"] == 300
    assert LowerTtl().check(run.ctx) is not None


def test_preflight_refuses_a_cloudflare_playbook_whose_token_variable_is_unset(
    cloudflare: CloudflareApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by preflight, not first at switch-dns inside the window."""
    monkeypatch.delenv("SHOP_CF_TOKEN")
    run = start(tmp_path, "cloudflare", f"www.{ZONE}", EXTRA)
    with pytest.raises(InvalidInput) as err:
        Preflight().apply(run.ctx)
    assert "SHOP_CF_TOKEN" in err.value.brief and "dns.cloudflare.token_env" in err.value.brief


def test_verify_dns_of_a_proxied_record_takes_the_providers_read_back(
    cloudflare: CloudflareApi, tmp_path: Path
) -> None:
    """Name servers and resolvers answer a proxied name with Cloudflare's own addresses, never
    the router's CNAME: waiting for it would fail verify-dns inside the window every time."""
    zone_id = next(iter(cloudflare.zones))
    cloudflare.add_record(zone_id, f"shop.{ZONE}", "CNAME", "shop-42.herokudns.example", 1, True)
    run = start(tmp_path, "cloudflare", f"shop.{ZONE}", "  cloudflare: {token_env: SHOP_CF_TOKEN}")
    run.step(SwitchDns())
    run.step(VerifyDns())
    assert run.ctx.state.steps["verify-dns"].status == Status.DONE
    assert "proxied by Cloudflare" in run.output.getvalue()


def test_switch_dns_finds_its_route53_apex_alias_done(aws: str, tmp_path: Path) -> None:
    """Route 53 shows the apex alias by its load balancer's DNS name (router-<rack>,
    terraform/router/aws/main.tf at convox 9e02452), never the router name `convox rack`
    gives: the check must still see the switch as done (a resume, or `cutover run` again)."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"eu-west-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    boto3.client("elbv2").create_load_balancer(Name="router-test", Subnets=subnets, Type="network")
    boto3.client("route53").change_resource_record_sets(
        HostedZoneId=aws,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": f"{ZONE}.",
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "192.0.2.1"}],
                    },
                }
            ]
        },
    )
    run = start(tmp_path, "route53", ZONE, "  route53: {region: eu-west-1}")
    run.step(SwitchDns())
    record = run.ctx.dns.get(ZONE, "A") if run.ctx.dns else None
    assert record is not None and record.alias
    assert SwitchDns().check(run.ctx) is not None


def test_restore_ttl_leaves_a_route53_apex_alias_alone(aws: str, tmp_path: Path) -> None:
    """An alias record has no TTL of its own (API_ResourceRecordSet.html): restore-ttl must
    not rewrite it as a plain A record holding the load balancer's name."""
    test_switch_dns_finds_its_route53_apex_alias_done(aws, tmp_path)
    run = start(tmp_path, "route53", ZONE, "  route53: {region: eu-west-1}")
    original = DnsRecord(name=ZONE, type="A", ttl=300, values=["192.0.2.1"])
    lowered = LowerTtlOutputs(original=original, lowered_at=0.0, ttl=60)
    run.ctx.state.steps["lower-ttl"] = StepState(status=Status.DONE, outputs=dump(lowered))
    run.ctx.state.steps["verify-site"] = StepState(
        status=Status.DONE, finished_at="2026-01-01T00:00:00+00:00"
    )
    assert RestoreTtl().check(run.ctx) is not None
    RestoreTtl().apply(run.ctx)
    record = run.ctx.dns.get(ZONE, "A") if run.ctx.dns else None
    assert record is not None and record.alias
