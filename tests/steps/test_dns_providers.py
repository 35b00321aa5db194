"""lower-ttl then switch-dns through the engine (engine/run.py _run_step: state file, audit log,
gate) with the providers make_dns builds from a playbook: route53 against moto's server and
cloudflare against the API stand-in, both on loopback. The credentials live only in the
environment, and neither the state file, the audit log nor the output ever holds them (not even
masked: the masker never had to hide them)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from rich.console import Console

from cutover.adapters.dns_cloudflare import BASE_URL_VAR
from cutover.engine import run as engine
from cutover.engine.audit import AuditLog
from cutover.engine.context import make_dns
from cutover.engine.plan import Action, Kind, new_state
from cutover.errors import InvalidInput, StepFailed
from cutover.playbook import load_playbook
from cutover.runner import Runner
from cutover.sandbox import procs
from cutover.sandbox.cloudflare_api import CloudflareApi
from cutover.sandbox.cloudflare_dns import CloudflareNameserver
from cutover.secrets import MASK, SecretMasker
from cutover.state import StateStore, Status
from cutover.steps.base import Context
from cutover.steps.dns import SwitchDns
from cutover.steps.ttl import LowerTtl
from cutover.ui import Ui

ZONE = "shop.test"
ROUTER = "router.rack.example"
CF_TOKEN = "cf-step-token-Qm4Tz8Rk2Wv6Yp1Ls3Hd"
AWS_SECRET = "aws-step-secret-Jc7Nx5Bg9Fe2Ua4Ko8"

PLAYBOOK = """
version: 1
heroku: {{app: acme-shop}}
convox: {{app: shop, rack: test}}
database: null
dns:
  provider: {provider}
  zone: {zone}
  record: {record}
  ttl: 60
  propagation_timeout: 30
{extra}
"""


@dataclass
class Run:
    ctx: Context
    store: StateStore
    audit: AuditLog
    ui: Ui
    output: io.StringIO

    def step(self, step: Any) -> None:
        action = Action(step, Kind.RUN, "pending")
        engine._run_step(
            self.ctx, self.store, self.audit, engine.RunOptions(yes=True), self.ui, action, 1, 2
        )

    def texts(self) -> str:
        """Everything cutover wrote: state file, audit log, terminal output."""
        return (
            self.store.path.read_text(encoding="utf-8")
            + (self.store.folder / "events.jsonl").read_text(encoding="utf-8")
            + self.output.getvalue()
        )


def start(tmp_path: Path, provider: str, record: str, extra: str = "") -> Run:
    path = tmp_path / "cutover.yml"
    path.write_text(
        PLAYBOOK.format(provider=provider, zone=ZONE, record=record, extra=extra), encoding="utf-8"
    )
    playbook = load_playbook(path)
    masker = SecretMasker()
    state = new_state(playbook)
    pre = state.step("preflight")
    pre.status = Status.DONE
    pre.outputs = {
        "heroku_cli": "heroku/11.10.0",
        "heroku_formation": {},
        "heroku_addons": [],
        "scheduler": False,
        "router": ROUTER,
        "rack": "test",
    }
    output = io.StringIO()
    ui = Ui(Console(file=output, width=200), masker, Console(file=output, width=200))
    ctx = Context(
        playbook=playbook,
        state=state,
        runner=Runner(masker),
        masker=masker,
        heroku=None,  # type: ignore[arg-type]
        convox=None,  # type: ignore[arg-type]
        postgres=None,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        dns=make_dns(playbook, masker, None),
        reporter=ui,
        work_dir=tmp_path / "work",
        sleep=lambda s: None,
    )
    folder = tmp_path / ".cutover"
    store = StateStore(folder, masker)
    store.save(state)
    return Run(ctx, store, AuditLog(folder, masker, state.run_id), ui, output)


# --- route53 -----------------------------------------------------------------------------


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
    httpx.post(f"{moto_url}/moto-api/reset", timeout=120).raise_for_status()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADUMMYFORSTEPS000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    client = boto3.client("route53")
    zone_id = client.create_hosted_zone(Name=ZONE, CallerReference=uuid.uuid4().hex)["HostedZone"][
        "Id"
    ]
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": f"www.{ZONE}",
                        "Type": "CNAME",
                        "TTL": 3600,
                        "ResourceRecords": [{"Value": "shop-42.herokudns.example."}],
                    },
                }
            ]
        },
    )
    return str(zone_id)


def www_in_route53(zone_id: str) -> dict[str, Any]:
    sets = boto3.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    (found,) = [s for s in sets["ResourceRecordSets"] if s["Name"] == f"www.{ZONE}."]
    return dict(found)


def test_route53_lower_ttl_then_switch(aws: str, tmp_path: Path) -> None:
    run = start(tmp_path, "route53", f"www.{ZONE}")
    assert run.ctx.masker.mask(f"key {AWS_SECRET}") == f"key {MASK}"  # make_dns registered it
    run.step(LowerTtl())
    assert www_in_route53(aws)["TTL"] == 60
    lowered = run.ctx.state.steps["lower-ttl"]
    assert lowered.status == Status.DONE
    assert lowered.outputs["original"] == {
        "name": f"www.{ZONE}",
        "type": "CNAME",
        "ttl": 3600,
        "values": ["shop-42.herokudns.example."],
    }
    run.step(SwitchDns())
    switched = www_in_route53(aws)
    assert switched["ResourceRecords"] == [{"Value": ROUTER + "."}] and switched["TTL"] == 60
    assert run.ctx.state.steps["switch-dns"].outputs["router"] == ROUTER
    text = run.texts()
    assert "switch-dns" in text and AWS_SECRET not in text and MASK not in text
    # Found applied on a second pass: the read through ListResourceRecordSets agrees.
    assert SwitchDns().check(run.ctx) is not None


# --- cloudflare --------------------------------------------------------------------------


@pytest.fixture
def cloudflare(monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudflareApi]:
    with CloudflareApi(CF_TOKEN) as api:
        zone_id = api.add_zone(ZONE)
        api.add_record(zone_id, f"www.{ZONE}", "CNAME", "shop-42.herokudns.example", 3600)
        api.add_record(zone_id, ZONE, "A", "192.0.2.1", 300)
        monkeypatch.setenv(BASE_URL_VAR, api.url)
        monkeypatch.setenv("SHOP_CF_TOKEN", CF_TOKEN)
        yield api


@pytest.fixture
def cf_nameserver(cloudflare: CloudflareApi) -> Iterator[CloudflareNameserver]:
    """Cloudflare's name servers answering from the API's records (the steps ask them)."""
    with CloudflareNameserver(cloudflare, flatten_to={ROUTER: (["192.0.2.80"], 60)}) as ns:
        yield ns


def cf_extra(ns: CloudflareNameserver) -> str:
    return (
        "  cloudflare: {token_env: SHOP_CF_TOKEN}\n"
        f"  nameservers: ['127.0.0.1:{ns.port}']\n  resolvers: []"
    )


@pytest.mark.parametrize("record", [f"www.{ZONE}", ZONE])
def test_cloudflare_lower_ttl_then_switch(
    cloudflare: CloudflareApi, cf_nameserver: CloudflareNameserver, tmp_path: Path, record: str
) -> None:
    run = start(tmp_path, "cloudflare", record, cf_extra(cf_nameserver))
    run.step(LowerTtl())
    assert [r["ttl"] for r in cloudflare.find(record)] == [60]
    run.step(SwitchDns())
    (now,) = cloudflare.find(record)
    assert (now["type"], now["content"], now["ttl"], now["proxied"]) == (
        "CNAME",
        ROUTER,
        60,
        False,
    )
    text = run.texts()
    assert CF_TOKEN not in text and MASK not in text
    assert SwitchDns().check(run.ctx) is not None


def test_cloudflare_proxied_record_stays_proxied_through_the_switch(
    cloudflare: CloudflareApi, tmp_path: Path
) -> None:
    zone_id = next(iter(cloudflare.zones))
    cloudflare.add_record(zone_id, f"shop.{ZONE}", "CNAME", "shop-42.herokudns.example", 1, True)
    run = start(tmp_path, "cloudflare", f"shop.{ZONE}", "  cloudflare: {token_env: SHOP_CF_TOKEN}")
    run.step(SwitchDns())
    (now,) = cloudflare.find(f"shop.{ZONE}")
    assert (now["content"], now["proxied"], now["ttl"]) == (ROUTER, True, 1)
    record = run.ctx.dns.get(f"shop.{ZONE}", "CNAME") if run.ctx.dns else None
    assert record is not None and record.proxied is True


def test_cloudflare_wrong_token_fails_the_step_with_the_apis_reason(
    cloudflare: CloudflareApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "cf-wrong-step-token-Hh3Jj5Kk7Ll9"
    monkeypatch.setenv("SHOP_CF_TOKEN", wrong)
    run = start(tmp_path, "cloudflare", f"www.{ZONE}", "  cloudflare: {token_env: SHOP_CF_TOKEN}")
    with pytest.raises(StepFailed) as err:
        run.step(LowerTtl())
    assert "10000: Authentication error" in str(err.value)
    assert "The token in SHOP_CF_TOKEN is wrong" in (err.value.resolution or "")
    state = run.store.load()
    assert state is not None and state.steps["lower-ttl"].status == Status.FAILED
    assert "Authentication error" in (state.steps["lower-ttl"].error or "")
    text = run.texts() + str(err.value) + (err.value.resolution or "")
    assert wrong not in text and CF_TOKEN not in text
    assert [r["ttl"] for r in cloudflare.find(f"www.{ZONE}")] == [3600]  # nothing changed


# --- the playbook's dns section ----------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "extra", "error"),
    [
        ("rfc2136", "", "provider rfc2136 has no alias or flattening"),
        ("manual", "", r"use provider route53 \(alias record\) or cloudflare"),
        ("route53", "  cloudflare: {token_env: X}", "dns.cloudflare is set but dns.provider is"),
        ("cloudflare", "  cloudflare: {token_env: 'not a name'}", "environment variable name"),
        ("cloudflare", "  cloudflare: {zone_id: zone-1}", "Cloudflare zone id"),
        # review: an id that names no zone was taken as "no id" (found by name instead), and
        # each field's message named the other's kind
        ("route53", "  route53: {zone_id: /hostedzone/}", r"zone_id: .*hosted zone id"),
        ("route53", "  route53: {zone_id: z-1}", r"zone_id: .*such as Z0"),
        ("route53", "  route53: {region: '-'}", r"region: .*AWS region name such as"),
        ("route53", "  route53: {region: 'Z0123'}", r"region: .*AWS region name such as"),
    ],
)
def test_the_playbook_refuses_what_the_provider_cannot_do(
    tmp_path: Path, provider: str, extra: str, error: str
) -> None:
    path = tmp_path / "cutover.yml"
    path.write_text(
        PLAYBOOK.format(provider=provider, zone=ZONE, record=ZONE, extra=extra), encoding="utf-8"
    )
    with pytest.raises(InvalidInput, match=error) as err:
        load_playbook(path)
    assert "dns" in str(err.value)


def test_the_apex_is_allowed_where_the_provider_has_alias_or_flattening(tmp_path: Path) -> None:
    path = tmp_path / "cutover.yml"
    for provider, extra in (
        ("route53", "  route53: {zone_id: Z0123, region: eu-west-1}"),
        ("cloudflare", "  cloudflare: {proxied: false}"),
    ):
        path.write_text(
            PLAYBOOK.format(provider=provider, zone=ZONE, record=ZONE, extra=extra),
            encoding="utf-8",
        )
        dns = load_playbook(path).model.dns
        assert dns is not None and dns.record == dns.zone == ZONE
    assert (
        dns is not None
        and dns.cloudflare is not None
        and dns.cloudflare.token_env == "CLOUDFLARE_API_TOKEN"
    )
    assert dns.cloudflare.proxied is False
