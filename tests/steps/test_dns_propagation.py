"""lower-ttl, wait-ttl, verify-dns and restore-ttl against two REAL Knot servers (a primary and a
secondary fed by NOTIFY + IXFR, cutover/sandbox/knot.py) and a REAL caching resolver (unbound,
cutover/sandbox/unbound.py). The secondary is made to lag with ``knotc zone-freeze`` (Knot's
reference: a frozen zone holds "refresh" and every zone-changing event until ``zone-thaw``)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cutover.adapters.dns import Record, Rfc2136Provider, query_authoritative
from cutover.adapters.dnscheck import Server, ask_recursive
from cutover.engine.plan import new_state
from cutover.errors import CutoverError, NotYet
from cutover.playbook import load_playbook
from cutover.runner import Runner
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotServer
from cutover.sandbox.unbound import UnboundServer
from cutover.secrets import SecretMasker
from cutover.state import Status, StepState
from cutover.steps.base import Context, dump
from cutover.steps.dnsverify import VerifyDns
from cutover.steps.records import DnsRecord, LowerTtlOutputs
from cutover.steps.ttl import LowerTtl, RestoreTtl, WaitTtl

pytestmark = pytest.mark.slow

ZONE = "example.test"
RECORD = "www.example.test"
HEROKU = "myapp.herokudns.test"
ROUTER = "router.convox.test"
ORIGINAL_TTL = 4

PLAYBOOK = """
version: 1
heroku: {{app: myapp}}
convox: {{app: myapp, rack: test}}
dns:
  provider: rfc2136
  zone: example.test
  record: www.example.test
  ttl: 1
  propagation_timeout: {timeout}
  soak_seconds: {soak}
  nameservers: [{nameservers}]
  resolvers: [{resolvers}]
window:
  ttl_wait_max: {wait_max}
"""


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


class Rack:
    def router(self) -> str:
        return ROUTER


@dataclass
class Zone:
    primary: KnotServer
    secondary: KnotServer
    resolver: UnboundServer
    tmp: Path
    hooks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def provider(self) -> Rfc2136Provider:
        return Rfc2136Provider(
            "127.0.0.1", self.primary.port, ZONE, self.primary.tsig_name, self.primary.tsig_secret
        )

    def freeze(self) -> None:
        self.secondary.control("zone-freeze", ZONE)

    def thaw(self) -> None:
        self.secondary.control("zone-thaw", ZONE)

    def context(
        self, *, timeout: int = 20, soak: int = 0, wait_max: int = 60, resolvers: bool = True
    ) -> tuple[Context, Notes]:
        path = self.tmp / "cutover.yml"
        servers = f"'127.0.0.1:{self.primary.port}', '127.0.0.1:{self.secondary.port}'"
        path.write_text(
            PLAYBOOK.format(
                timeout=timeout,
                soak=soak,
                wait_max=wait_max,
                nameservers=servers,
                resolvers=f"'127.0.0.1:{self.resolver.port}'" if resolvers else "",
            ),
            encoding="utf-8",
        )
        playbook = load_playbook(path)
        notes = Notes()
        masker = SecretMasker()

        def sleep(seconds: float) -> None:
            if self.hooks:
                self.hooks.pop(0)()
            time.sleep(min(seconds, 0.5))

        ctx = Context(
            playbook=playbook,
            state=new_state(playbook),
            runner=Runner(masker, None),
            masker=masker,
            heroku=None,  # type: ignore[arg-type]
            convox=Rack(),  # type: ignore[arg-type]
            postgres=None,  # type: ignore[arg-type]
            http=None,  # type: ignore[arg-type]
            dns=self.provider,
            reporter=notes,
            work_dir=self.tmp / "work",
            sleep=sleep,
        )
        return ctx, notes

    def serves(self, server: KnotServer, want: Callable[[Record | None], bool]) -> None:
        deadline = time.monotonic() + 30
        while not want(query_authoritative("127.0.0.1", server.port, RECORD, "CNAME")):
            assert time.monotonic() < deadline, "the secondary never caught up"
            time.sleep(0.1)


@pytest.fixture
def zone() -> Iterator[Zone]:
    # knotd's control socket path must stay under 108 bytes: a short folder of its own.
    base = Path(tempfile.mkdtemp(prefix="cutover-dns-"))
    primary_port, secondary_port, resolver_port = (procs.free_port() for _ in range(3))
    primary = KnotServer.create(
        base / "p",
        primary_port,
        ZONE,
        [("www", "CNAME", ORIGINAL_TTL, HEROKU + ".")],
        notify_ports=[secondary_port],
    )
    servers: list[KnotServer | UnboundServer] = [primary]
    try:
        secondary = KnotServer.create_secondary(base / "s", secondary_port, primary)
        servers.append(secondary)
        resolver = UnboundServer.create(base / "u", resolver_port, ZONE, [primary.port])
        servers.append(resolver)
        (base / "t").mkdir()
        yield Zone(primary, secondary, resolver, base / "t")
    finally:
        for server in reversed(servers):
            server.stop()


def _record(step: object, ctx: Context, outputs: LowerTtlOutputs) -> None:
    ctx.state.steps["lower-ttl"] = StepState(status=Status.DONE, outputs=dump(outputs))


def _site_done(ctx: Context, finished_at: str) -> None:
    ctx.state.steps["verify-site"] = StepState(status=Status.DONE, finished_at=finished_at)


def test_lower_ttl_waits_for_the_lagging_secondary_then_records_each_server(zone: Zone) -> None:
    zone.freeze()
    zone.hooks.append(zone.thaw)  # the secondary catches up after the first poll
    ctx, notes = zone.context()
    step = LowerTtl()
    assert step.check(ctx) is None
    out = step.apply(ctx)
    assert out.original == DnsRecord(
        name=RECORD, type="CNAME", ttl=ORIGINAL_TTL, values=[HEROKU + "."]
    )
    primary, secondary = f"127.0.0.1:{zone.primary.port}", f"127.0.0.1:{zone.secondary.port}"
    assert set(out.verified) == {primary, secondary}
    assert out.verified[secondary] > out.verified[primary]  # it lagged: verified later
    assert out.verified_at == out.verified[secondary]
    assert "1 of 2 name servers serve TTL 1 or lower" in notes.lines
    assert "2 of 2 name servers serve TTL 1 or lower" in notes.lines
    # Done now: a second look finds it in place on both servers.
    assert step.check(ctx) is not None


def test_a_lowered_ttl_missing_on_one_name_server_fails_lower_ttl_naming_it(zone: Zone) -> None:
    zone.freeze()
    ctx, _notes = zone.context(timeout=2)
    step = LowerTtl()
    assert step.check(ctx) is None
    with pytest.raises(CutoverError) as err:
        step.apply(ctx)
    text = str(err.value)
    assert f"1 of 2 name servers still do not serve TTL 1 or lower for {RECORD}" in text
    assert f"127.0.0.1:{zone.secondary.port} (CNAME {HEROKU}. TTL {ORIGINAL_TTL})" in text
    assert f"127.0.0.1:{zone.primary.port} (" not in text
    assert "zone transfers" in err.value.resolution


def test_wait_ttl_refuses_at_once_with_the_time_left(zone: Zone) -> None:
    ctx, _notes = zone.context(wait_max=60)
    now = time.time()
    original = DnsRecord(name=RECORD, type="CNAME", ttl=86400, values=[HEROKU + "."])
    verified = now - 90  # lowered and verified 90 s ago: a day less 90 s left
    _record(
        None, ctx, LowerTtlOutputs(original=original, lowered_at=now, ttl=1, verified_at=verified)
    )
    step = WaitTtl()
    assert step.check(ctx) is None
    started = time.monotonic()
    with pytest.raises(NotYet) as err:  # not a failure: exit 5, the step stays pending
        step.apply(ctx)
    assert err.value.exit_code == 5
    assert time.monotonic() - started < 30  # refused, not waited
    assert "left, more than window.ttl_wait_max (60s)" in err.value.brief
    assert "23h58m" in err.value.brief
    assert "Run `cutover run` again after" in err.value.resolution


def test_wait_ttl_waits_out_a_short_remainder_and_is_free_once_passed(zone: Zone) -> None:
    ctx, notes = zone.context(wait_max=60)
    now = time.time()
    original = DnsRecord(name=RECORD, type="CNAME", ttl=2, values=[HEROKU + "."])
    _record(None, ctx, LowerTtlOutputs(original=original, lowered_at=now, ttl=1, verified_at=now))
    out = WaitTtl().apply(ctx)
    assert out.caches_clear_at == pytest.approx(now + 2)
    assert time.time() >= now + 2
    assert any("left until caches drop the old TTL" in line for line in notes.lines)
    # A day later (here: now) it costs nothing: it returns at once, with nothing to find
    # applied (a wait has no effect; check() would make "found applied" depend on timing).
    assert WaitTtl().check(ctx) is None
    before = len(notes.lines)
    assert WaitTtl().apply(ctx).caches_clear_at == pytest.approx(now + 2)
    assert not any("left until caches" in line for line in notes.lines[before:])


def test_verify_dns_waits_for_the_secondary_and_the_resolver_cache(zone: Zone) -> None:
    resolver = Server("127.0.0.1", zone.resolver.port)
    cached = ask_recursive([resolver], RECORD, "CNAME")[0].record
    assert cached is not None and cached.values == [HEROKU + "."]  # unbound caches the old one
    zone.freeze()
    zone.provider.set(Record(RECORD, "CNAME", 1, [ROUTER + "."]))
    zone.hooks.append(zone.thaw)
    ctx, notes = zone.context(timeout=30)
    out = VerifyDns().apply(ctx)
    assert out.answer == ROUTER
    assert set(out.servers) == {
        f"127.0.0.1:{zone.primary.port}",
        f"127.0.0.1:{zone.secondary.port}",
    }
    assert list(out.resolvers) == [str(resolver)]
    assert "1 of 2 name servers serve CNAME " + ROUTER in notes.lines
    assert "0 of 1 resolvers serve CNAME " + ROUTER in notes.lines  # the cached old answer
    assert "1 of 1 resolvers serve CNAME " + ROUTER in notes.lines


def test_verify_dns_timeout_names_the_lagging_server_and_the_rollback(zone: Zone) -> None:
    zone.freeze()
    zone.provider.set(Record(RECORD, "CNAME", 1, [ROUTER + "."]))
    ctx, _notes = zone.context(timeout=2, resolvers=False)
    with pytest.raises(CutoverError) as err:
        VerifyDns().apply(ctx)
    assert f"127.0.0.1:{zone.secondary.port} (CNAME {HEROKU}. TTL {ORIGINAL_TTL})" in str(err.value)
    assert f"127.0.0.1:{zone.primary.port}" not in err.value.brief
    assert "cutover rollback" in err.value.resolution


def test_restore_ttl_sets_the_original_back_after_the_soak_and_is_idempotent(zone: Zone) -> None:
    zone.provider.set(Record(RECORD, "CNAME", 1, [ROUTER + "."]))
    ctx, _notes = zone.context(soak=1)
    original = DnsRecord(name=RECORD, type="CNAME", ttl=ORIGINAL_TTL, values=[HEROKU + "."])
    now = time.time()
    _record(None, ctx, LowerTtlOutputs(original=original, lowered_at=now, ttl=1, verified_at=now))
    step = RestoreTtl()
    with pytest.raises(CutoverError, match="verify-site is not done"):
        step.apply(ctx)
    _site_done(ctx, "2000-01-01T00:00:00+00:00")
    assert step.check(ctx) is None
    out = step.apply(ctx)
    assert out.ttl == ORIGINAL_TTL
    zone.serves(zone.secondary, lambda r: r is not None and r.ttl == ORIGINAL_TTL)
    record = query_authoritative("127.0.0.1", zone.primary.port, RECORD, "CNAME")
    assert record == Record(RECORD, "CNAME", ORIGINAL_TTL, [ROUTER + "."])
    assert step.check(ctx) is not None  # done: a second run changes nothing


def test_restore_ttl_refuses_before_the_soak_has_passed(zone: Zone) -> None:
    ctx, _notes = zone.context(soak=7200, wait_max=60)
    original = DnsRecord(name=RECORD, type="CNAME", ttl=ORIGINAL_TTL, values=[HEROKU + "."])
    now = time.time()
    _record(None, ctx, LowerTtlOutputs(original=original, lowered_at=now, ttl=1, verified_at=now))
    _site_done(ctx, "2999-01-01T00:00:00+00:00")
    with pytest.raises(NotYet, match="goes back after the soak"):
        RestoreTtl().apply(ctx)
