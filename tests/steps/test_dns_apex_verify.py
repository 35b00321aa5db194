"""verify-dns at the zone apex, against a REAL Knot server and a REAL unbound resolver
(cutover/sandbox/knot.py, unbound.py). A route53 alias or a Cloudflare flattened CNAME at the
apex is served as A records: the addresses of the name it stands in for (Route 53's alias
"responds with the IP addresses" of the load balancer, API_AliasTarget.html; Cloudflare: "CNAME
flattening ... returns an IP address instead of the CNAME", dns/cname-flattening). So an
authoritative server or resolver answers for the router when its apex A record holds the
router name's addresses; the provider's own view (an alias or CNAME record naming the router)
is never what a DNS query returns."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.adapters.dns import Record, Rfc2136Provider
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.playbook_dns import DnsSection
from cutover.runner import Runner
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotServer
from cutover.sandbox.unbound import UnboundServer
from cutover.secrets import SecretMasker
from cutover.steps.base import Context
from cutover.steps.dnsverify import VerifyDns
from cutover.steps.dnswait import check_now

pytestmark = pytest.mark.slow

ZONE = "example.test"
ROUTER = "router.example.test"  # inside the zone: the sandbox resolver can resolve it
ROUTER_IP = "192.0.2.10"
HEROKU_IP = "192.0.2.1"


class Flattening(Rfc2136Provider):
    """Knot as the name servers of a provider that flattens a CNAME at the apex: the
    provider reports the CNAME it holds (like dns_cloudflare.get), DNS serves addresses."""

    def __init__(self, primary: KnotServer) -> None:
        super().__init__("127.0.0.1", primary.port, ZONE, primary.tsig_name, primary.tsig_secret)
        self.flattened = False

    def apex(self) -> str | None:
        return "flattening"

    def get(self, name: str, rtype: str) -> Record | None:
        if self.flattened and rtype == "CNAME":
            return Record(ZONE, "CNAME", 60, [ROUTER + "."], alias=True)
        return super().get(name, rtype)


class Rack:
    def router(self) -> str:
        return ROUTER


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def servers() -> Iterator[tuple[KnotServer, UnboundServer]]:
    base = Path(tempfile.mkdtemp(prefix="cutover-apex-"))
    knot_port, unbound_port = procs.free_port(), procs.free_port()
    knot = KnotServer.create(
        base / "k", knot_port, ZONE, [("@", "A", 2, HEROKU_IP), ("router", "A", 60, ROUTER_IP)]
    )
    try:
        resolver = UnboundServer.create(base / "u", unbound_port, ZONE, [knot.port])
        try:
            yield knot, resolver
        finally:
            resolver.stop()
    finally:
        knot.stop()


def _context(
    tmp_path: Path, provider: Flattening, knot: KnotServer, resolver: UnboundServer
) -> Context:
    base = Playbook.model_validate(
        {"version": 1, "heroku": {"app": "myapp"}, "convox": {"app": "myapp", "rack": "test"}}
    )
    # The playbook refuses the apex for rfc2136 (no flattening): built around that check.
    section = DnsSection(
        provider="rfc2136",
        zone=ZONE,
        record=f"www.{ZONE}",
        propagation_timeout=10,
        nameservers=[f"127.0.0.1:{knot.port}"],
        resolvers=[f"127.0.0.1:{resolver.port}"],
    )
    dns = DnsSection.model_construct(**{**section.__dict__, "record": ZONE})
    playbook = LoadedPlaybook(tmp_path / "cutover.yml", base.model_copy(update={"dns": dns}), {})
    masker = SecretMasker()
    return Context(
        playbook=playbook,
        state=new_state(playbook),
        runner=Runner(masker, None),
        masker=masker,
        heroku=None,  # type: ignore[arg-type]
        convox=Rack(),  # type: ignore[arg-type]
        postgres=None,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        dns=provider,
        reporter=Notes(),
        work_dir=tmp_path,
        sleep=lambda s: None,
    )


def test_verify_dns_at_the_apex_accepts_the_routers_addresses_and_not_herokus(
    tmp_path: Path, servers: tuple[KnotServer, UnboundServer]
) -> None:
    knot, resolver = servers
    provider = Flattening(knot)
    ctx = _context(tmp_path, provider, knot, resolver)
    with pytest.raises(CutoverError) as err:  # still Heroku's address: it lags, named
        VerifyDns().apply(ctx)
    assert f"127.0.0.1:{knot.port}" in err.value.brief and HEROKU_IP in err.value.brief
    # The flattened CNAME as the name servers serve it (resolver caches expire: TTL 2).
    Rfc2136Provider("127.0.0.1", knot.port, ZONE, knot.tsig_name, knot.tsig_secret).set(
        Record(ZONE, "A", 2, [ROUTER_IP])
    )
    provider.flattened = True
    ctx = _context(tmp_path, provider, knot, resolver)
    outputs = VerifyDns().apply(ctx)
    assert list(outputs.servers) == [f"127.0.0.1:{knot.port}"]
    assert list(outputs.resolvers) == [f"127.0.0.1:{resolver.port}"]


def test_cutover_verify_dns_at_the_apex_counts_the_routers_addresses(
    tmp_path: Path, servers: tuple[KnotServer, UnboundServer]
) -> None:
    knot, resolver = servers
    provider = Flattening(knot)
    before = _context(tmp_path, provider, knot, resolver)
    lines, problems = check_now(before, ROUTER)
    assert lines[0] == f"{ZONE}: wanted CNAME {ROUTER}"
    assert len(problems) == 2 and all(HEROKU_IP in p for p in problems)
    Rfc2136Provider("127.0.0.1", knot.port, ZONE, knot.tsig_name, knot.tsig_secret).set(
        Record(ZONE, "A", 2, [ROUTER_IP])
    )
    provider.flattened = True
    ctx = _context(tmp_path, provider, knot, resolver)
    deadline = time.monotonic() + 30  # the resolver's cached answer (TTL 2) expires
    while (problems := check_now(ctx, ROUTER)[1]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert problems == []
