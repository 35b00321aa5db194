"""DNS step switch-dns and the record helpers the other DNS steps share (verify-dns:
steps/dnsverify.py; lower-ttl, wait-ttl, restore-ttl: steps/ttl.py; verify-site: steps/site.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import Field

from cutover.errors import CutoverError
from cutover.state import Status
from cutover.steps import dnswait, mysql
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.records import DNS_RECORD_FIELDS, DnsRecord

if TYPE_CHECKING:
    from cutover.adapters.dns import Record
    from cutover.adapters.dnscheck import Server
    from cutover.adapters.postgres import ConnInfo

_DNS_FIELDS = DNS_RECORD_FIELDS


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _skip_without_dns(model: Any) -> str | None:
    return None if model.dns else "no dns section in the playbook"


def current_record(ctx: Context) -> Record | None:
    assert ctx.model.dns and ctx.dns
    name = ctx.model.dns.record
    return ctx.dns.get(name, "CNAME") or ctx.dns.get(name, "A") or ctx.dns.get(name, "AAAA")


def at_apex(ctx: Context) -> bool:
    assert ctx.model.dns
    return _norm(ctx.model.dns.record) == _norm(ctx.model.dns.zone)


def apex_problem(ctx: Context) -> str | None:
    """Why the record cannot be pointed at the router (it is the zone apex and the provider
    has no alias or flattening there), or None. Asked before the window (lower-ttl) and again
    at switch-dns, never first at the flip."""
    if not at_apex(ctx) or ctx.dns is None or ctx.dns.apex() is not None:
        return None
    assert ctx.model.dns
    return (
        f"{ctx.model.dns.record} is the zone apex, where DNS allows no CNAME, and the "
        f"{ctx.model.dns.provider} provider has no alias or CNAME flattening to stand in for one"
    )


def refuse_apex(ctx: Context) -> None:
    problem = apex_problem(ctx)
    if problem is not None:
        raise CutoverError(
            problem,
            resolution="Move the site to a name below the apex (www.<zone>) and redirect the "
            "apex there, or use a provider with apex aliases (dns.provider: route53, alias A "
            "record; cloudflare, CNAME flattening).",
        )


def points_at(record: Record | None, router: str) -> bool:
    """The record sends traffic to the router: a CNAME to it, or a provider's apex alias."""
    return (
        record is not None
        and (record.rtype == "CNAME" or record.alias)
        and [_norm(v) for v in record.values] == [router]
    )


def switched(ctx: Context, record: Record | None, router: str) -> bool:
    """``points_at``, or an apex alias naming the router's load balancer (route53 shows the
    alias by the load balancer's own DNS name, not the router name `convox rack` gives)."""
    if points_at(record, router):
        return True
    alias_name = getattr(ctx.dns, "alias_name", None)
    if record is None or not record.alias or alias_name is None:
        return False
    return [_norm(v) for v in record.values] == [_norm(str(alias_name(router)))]


def _router(step: Step, ctx: Context) -> str:
    pre = step.read(ctx, PreflightOutputs)
    router = (pre.router if pre else "") or ctx.convox.router()
    return _norm(str(router))


def _record(name: str, rtype: str, ttl: int, values: list[str]) -> Record:
    from cutover.adapters.dns import Record  # noqa: PLC0415 - adapters load when a step runs (start-up time)

    return Record(name, rtype, ttl, values)


def _router_record(ctx: Context, ttl: int, router: str) -> Record:
    """CNAME to the router; at the apex a CNAME the provider writes as its alias/flattening."""
    assert ctx.model.dns
    record = _record(ctx.model.dns.record, "CNAME", ttl, [router + "."])
    record.alias = at_apex(ctx)
    return record


@contextmanager
def convox_database(ctx: Context) -> Iterator[ConnInfo]:
    """The Convox database through ``convox resources proxy`` (the playbook has a database)."""
    from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs

    db = ctx.model.database
    assert db is not None
    target = ConnInfo.from_url(ctx.convox.resource_url(db.resource, reuse=True))
    ctx.masker.add(target.password)
    with ctx.convox.proxy(db.resource, speaks="postgres") as port:
        yield target.via("127.0.0.1", port)


def mark_live(ctx: Context) -> None:
    """Write ``cutover:live <time> writes=<N> synced=<time>`` on the Convox database (before
    the DNS update): no sync overwrites a live database (pgstaging.guard), and a rollback
    compares the final sync's write count N with the database's now (adapters/pglive.py)."""
    from cutover.adapters import pglive  # noqa: PLC0415 - adapters load when a step runs

    if ctx.model.database is None:
        return
    with convox_database(ctx) as conn:
        text = pglive.mark_live_after_sync(ctx.postgres, conn)
        ctx.note(f"marked {conn.dbname} on {ctx.model.database.resource} live: {text}")


def convox_writes_since_sync(ctx: Context) -> tuple[int | None, str]:
    """Row writes the Convox database took since the final sync (None: cannot be told) and
    what was found; (0, ...) when the playbook has no database. For `cutover rollback`."""
    from cutover.adapters import pglive  # noqa: PLC0415 - adapters load when a step runs

    if ctx.model.database is None:
        return 0, "no database in the playbook"
    with convox_database(ctx) as conn:
        return pglive.writes_since_sync(ctx.postgres, conn)


def _same(record: Record | None, wanted: DnsRecord) -> bool:
    return (
        record is not None
        and record.rtype == wanted.type.upper()
        and record.ttl == wanted.ttl
        and sorted(_norm(v) for v in record.values) == sorted(_norm(v) for v in wanted.values)
        and (wanted.proxied is None or bool(record.proxied) == wanted.proxied)
    )


def _replaced_too(ctx: Context, previous: DnsRecord | None) -> list[DnsRecord]:
    """The address records beside ``previous`` that the router's CNAME (or apex alias or
    flattening) deletes: the AAAA next to an apex A record (adapters/dns_route53.py and
    dns_cloudflare.py set). Rollback puts them back too."""
    assert ctx.model.dns and ctx.dns
    found = []
    for rtype in ("A", "AAAA"):
        if previous is not None and previous.type.upper() == rtype:
            continue
        record = ctx.dns.get(ctx.model.dns.record, rtype)
        if record is not None:
            found.append(DnsRecord.of(record))
    return found


def _as_record(wanted: DnsRecord) -> Record:
    record = _record(wanted.name, wanted.type, wanted.ttl, list(wanted.values))
    record.proxied = wanted.proxied  # Cloudflare's proxy as it was, not the playbook's wish
    return record


def _show(record: Record | DnsRecord | None) -> str:
    if record is None:
        return "no record"
    rtype = record.rtype if not isinstance(record, DnsRecord) else record.type
    return f"{rtype} {', '.join(record.values)} TTL {record.ttl}"


class SwitchDnsProgress(Progress):
    previous: DnsRecord | None = None  # saved before the change
    also: list[DnsRecord] = Field(default_factory=list)  # address records it deletes
    at: float | None = None


class SwitchDnsOutputs(StepOutputs):
    """``previous``: the record traffic left (rollback points it back); ``at``: when."""

    step_id = "switch-dns"
    router: str
    previous: DnsRecord | None
    also: list[DnsRecord] = Field(default_factory=list)
    at: float


class SwitchDns(Step):
    id = "switch-dns"
    title = "Point the CNAME at the Convox router"
    in_window = True
    outputs = SwitchDnsOutputs
    reads = (PreflightOutputs,)
    fields = _DNS_FIELDS
    gate = "Point the production DNS record at the Convox router now?"
    moves_traffic = True

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [
            cmd(ctx.convox.argv("rack", app=False)) + "   (router host)",
            f"DNS update: {dns.record} CNAME <router> TTL {dns.ttl}",
        ] + (
            [
                "psql (through convox resources proxy): COMMENT ON DATABASE <db> IS "
                "'cutover:live <time>'   (before the DNS update)"
            ]
            if ctx.model.database
            else []
        )

    def gate_text(self, ctx: Context) -> str:
        dns = ctx.model.dns
        assert dns
        pre = self.read(ctx, PreflightOutputs)
        return f"Point {dns.record} at the Convox router ({pre.router if pre else 'router'}) now?"

    def check(self, ctx: Context) -> SwitchDnsOutputs | None:
        assert ctx.model.dns
        refuse_apex(ctx)
        record = current_record(ctx)
        router = _router(self, ctx)
        if switched(ctx, record, router):
            saved = self.remembered(ctx, SwitchDnsProgress)
            return SwitchDnsOutputs(
                router=router, previous=saved.previous, also=saved.also, at=saved.at or ctx.clock()
            )
        ctx.extras[self.id] = record
        return None

    def apply(self, ctx: Context) -> SwitchDnsOutputs:
        with rollback_hint():
            return self._switch(ctx)

    def _switch(self, ctx: Context) -> SwitchDnsOutputs:
        assert ctx.model.dns and ctx.dns
        router = _router(self, ctx)
        record = ctx.extras.pop(self.id, None) or current_record(ctx)
        saved = self.remembered(ctx, SwitchDnsProgress)
        previous = saved.previous or (DnsRecord.of(record) if record else None)
        also = saved.also if saved.previous else _replaced_too(ctx, previous)
        ctx.save(SwitchDnsProgress(previous=previous, also=also))
        mark_live(ctx)  # the guard in the world: no sync overwrites a live database
        mysql.mark_live(ctx)  # the same for a MySQL add-on's copy (steps/mysql.py)
        ttl = min(ctx.model.dns.ttl, record.ttl) if record else ctx.model.dns.ttl
        ctx.dns.set(_router_record(ctx, ttl, router))
        ctx.note(
            f"{ctx.model.dns.record} CNAME {router} (TTL {ttl}); was "
            + (f"{previous.type} {', '.join(previous.values)}" if previous else "none")
        )
        return SwitchDnsOutputs(router=router, previous=previous, also=also, at=ctx.clock())

    # -- rollback: the record back to what this step replaced, the database no longer live ----
    undo_title = "Point the DNS record back at Heroku"

    def _previous(self, ctx: Context) -> DnsRecord | None:
        return self.remembered(ctx, SwitchDnsProgress).previous

    def _also(self, ctx: Context) -> list[DnsRecord]:
        return self.remembered(ctx, SwitchDnsProgress).also

    def _started(self, ctx: Context) -> bool:
        st = ctx.state.steps.get(self.id)
        return (st is not None and st.status != Status.PENDING) or self.id in ctx.state.history

    def undo_needed(self, ctx: Context) -> str | None:
        if ctx.model.dns is None or not self._started(ctx):
            return None
        from cutover.adapters import pglive  # noqa: PLC0415 - adapters load when a step runs

        reasons = []
        previous = self._previous(ctx)
        if ctx.dns is not None:
            record = current_record(ctx)
            if previous is None:
                if switched(ctx, record, _router(self, ctx)):
                    reasons.append(f"{ctx.model.dns.record} points at the Convox router")
            elif not _same(record, previous):
                reasons.append(
                    f"{ctx.model.dns.record} answers {_show(record)}, not the recorded "
                    f"{_show(previous)}"
                )
            for other in self._also(ctx):
                if not _same(ctx.dns.get(ctx.model.dns.record, other.type), other):
                    reasons.append(f"{ctx.model.dns.record} lacks its {_show(other)}")
        if ctx.model.database is not None:
            with convox_database(ctx) as conn:
                live, comment = pglive.read_live(ctx.postgres, conn)
            if live is not None:
                reasons.append(f"the Convox database is marked live ('{comment}')")
        return "; ".join(reasons) or None

    def undo_describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        previous = self._previous(ctx)
        lines = [
            f"DNS update: {dns.record} {_show(previous)}  (the record switch-dns replaced)"
            if previous
            else f"DNS: {dns.record} had no record before switch-dns (remove it by hand)",
            *(
                f"DNS update: {dns.record} {_show(other)}  (deleted beside it)"
                for other in self._also(ctx)
            ),
            f"DNS query {dns.record} until it answers that (up to {dns.propagation_timeout}s)",
        ]
        if ctx.model.database:
            lines.append(
                "psql (through convox resources proxy): COMMENT ON DATABASE <db> IS "
                "'cutover:synced <time> writes=<N>'   (the marker the final sync left)"
            )
        return lines

    def undo(self, ctx: Context) -> None:
        from cutover.adapters import pglive  # noqa: PLC0415 - adapters load when a step runs

        dns = ctx.model.dns
        assert dns
        previous = self._previous(ctx)
        if ctx.dns is not None and not _same(current_record(ctx), self._need(ctx, previous)):
            assert previous is not None
            self._put_back(ctx, previous)
            self._read_back(ctx, previous)
            ctx.note(f"{dns.record} is {_show(previous)} again")
        for other in self._also(ctx) if ctx.dns is not None else []:
            assert ctx.dns is not None
            if not _same(ctx.dns.get(dns.record, other.type), other):
                self._put_back(ctx, other)
                ctx.note(f"{dns.record} has its {_show(other)} again")
        if ctx.model.database is not None:
            with convox_database(ctx) as conn:
                text = pglive.unmark_live(ctx.postgres, conn)
            if text:
                ctx.note(f"the Convox database is no longer marked live: {text}")

    def _put_back(self, ctx: Context, wanted: DnsRecord) -> None:
        assert ctx.model.dns and ctx.dns
        try:
            ctx.dns.set(_as_record(wanted.model_copy(update={"name": ctx.model.dns.record})))
        except CutoverError as exc:
            raise CutoverError(
                f"cannot point {ctx.model.dns.record} back: {exc.brief}",
                details=exc.details,
                resolution="Fix the cause (or set the record by hand), then run "
                "`cutover rollback` again: it finds the record restored and goes on.",
            ) from None

    def _need(self, ctx: Context, previous: DnsRecord | None) -> DnsRecord:
        if previous is None:
            assert ctx.model.dns
            raise CutoverError(
                f"{ctx.model.dns.record} had no CNAME, A or AAAA record before switch-dns: "
                "cutover cannot delete the one it created",
                resolution="Delete or set the record at your DNS provider, then run "
                "`cutover rollback` again.",
            )
        return previous

    def _read_back(self, ctx: Context, previous: DnsRecord) -> None:
        """Like verify-dns: poll the authoritative answer until it is the restored record."""
        dns = ctx.model.dns
        assert dns
        deadline = time.monotonic() + dns.propagation_timeout
        while True:
            record = current_record(ctx)
            if _same(record, previous):
                return
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"{dns.record} still answers {_show(record)} after "
                    f"{dns.propagation_timeout}s, expected {_show(previous)}",
                    resolution="Check the record at your DNS provider, then run "
                    "`cutover rollback` again.",
                )
            ctx.sleep(2)


def answers_router(
    ctx: Context, router: str, resolvers: list[Server]
) -> Callable[[Record | None], bool]:
    """Whether a DNS answer for dns.record sends users to the router: a CNAME to it, or at
    the apex, where an alias (route53) or flattened CNAME (cloudflare) is served as the
    addresses the router's name has (asked of the resolvers, else the system's), those."""
    from cutover.adapters.dnscheck import addresses_of  # noqa: PLC0415 - adapters at run time

    addresses = {_norm(v) for v in addresses_of(router, resolvers)} if at_apex(ctx) else set()

    def routed(found: Record | None) -> bool:
        if addresses and found is not None and found.rtype in ("A", "AAAA"):
            return bool(addresses & {_norm(v) for v in found.values})
        return points_at(found, router)

    return routed


@contextmanager
def rollback_hint() -> Iterator[None]:
    """A DNS failure inside the window: its resolution names `cutover rollback`."""
    try:
        yield
    except CutoverError as exc:
        if "cutover rollback" in exc.resolution:
            raise
        raise CutoverError(
            exc.brief,
            details=exc.details,
            resolution=(exc.resolution + " " if exc.resolution else "") + dnswait.ROLLBACK_HINT,
        ) from None
