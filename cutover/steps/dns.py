"""DNS steps: lower-ttl (a day ahead), switch-dns, verify-dns, verify-site."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cutover.errors import CutoverError
from cutover.steps.app import run_http_checks, smoke_checks
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.data import mark_target_live
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.records import DnsRecord, LowerTtlOutputs, LowerTtlProgress
from cutover.steps.window import MaintenanceOnOutputs

if TYPE_CHECKING:
    from cutover.adapters.dns import Record

_DNS_FIELDS = ("dns",)


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _skip_without_dns(model: Any) -> str | None:
    return None if model.dns else "no dns section in the playbook"


def current_record(ctx: Context) -> Record | None:
    assert ctx.model.dns and ctx.dns
    name = ctx.model.dns.record
    return ctx.dns.get(name, "CNAME") or ctx.dns.get(name, "A") or ctx.dns.get(name, "AAAA")


def _router(step: Step, ctx: Context) -> str:
    pre = step.read(ctx, PreflightOutputs)
    router = (pre.router if pre else "") or ctx.convox.router()
    return _norm(str(router))


def _record(name: str, rtype: str, ttl: int, values: list[str]) -> Record:
    from cutover.adapters.dns import Record  # noqa: PLC0415 - adapters load when a step runs (start-up time)

    return Record(name, rtype, ttl, values)


class LowerTtl(Step):
    id = "lower-ttl"
    title = "Lower the DNS TTL (a day ahead)"
    outputs = LowerTtlOutputs
    fields = _DNS_FIELDS

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [
            f"DNS query {dns.record} (current record and TTL)",
            f"DNS update: {dns.record} same value, TTL {dns.ttl}  (if the TTL is higher)",
        ]

    def check(self, ctx: Context) -> LowerTtlOutputs | None:
        assert ctx.model.dns
        record = current_record(ctx)
        if record is None:
            raise CutoverError(
                f"{ctx.model.dns.record} has no CNAME or A record to migrate",
                resolution="Check dns.record and dns.zone in the playbook.",
            )
        saved = self.remembered(ctx, LowerTtlProgress)
        if record.ttl <= ctx.model.dns.ttl:
            return LowerTtlOutputs(
                original=saved.original or DnsRecord.of(record),
                lowered_at=saved.lowered_at or ctx.clock(),
                ttl=record.ttl,
            )
        ctx.extras[self.id] = record
        return None

    def apply(self, ctx: Context) -> LowerTtlOutputs:
        assert ctx.model.dns and ctx.dns
        record: Record | None = ctx.extras.pop(self.id, None) or current_record(ctx)
        if record is None:
            raise CutoverError(f"{ctx.model.dns.record} has no record to lower")
        original = self.remembered(ctx, LowerTtlProgress).original or DnsRecord.of(record)
        lowered_at = ctx.clock()
        # Saved before the change: a crash right after it still knows the original TTL.
        ctx.save(LowerTtlProgress(original=original, lowered_at=lowered_at))
        ctx.dns.set(_record(record.name, record.rtype, ctx.model.dns.ttl, list(record.values)))
        ctx.note(f"{record.name} {record.rtype} TTL {record.ttl} -> {ctx.model.dns.ttl}")
        return LowerTtlOutputs(original=original, lowered_at=lowered_at, ttl=ctx.model.dns.ttl)


class SwitchDnsProgress(Progress):
    previous: DnsRecord | None = None  # saved before the change
    at: float | None = None


class SwitchDnsOutputs(StepOutputs):
    """``previous``: the record traffic left (rollback points it back); ``at``: when."""

    step_id = "switch-dns"
    router: str
    previous: DnsRecord | None
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
        record = current_record(ctx)
        router = _router(self, ctx)
        if record and record.rtype == "CNAME" and [_norm(v) for v in record.values] == [router]:
            saved = self.remembered(ctx, SwitchDnsProgress)
            return SwitchDnsOutputs(
                router=router, previous=saved.previous, at=saved.at or ctx.clock()
            )
        ctx.extras[self.id] = record
        return None

    def apply(self, ctx: Context) -> SwitchDnsOutputs:
        assert ctx.model.dns and ctx.dns
        router = _router(self, ctx)
        record = ctx.extras.pop(self.id, None) or current_record(ctx)
        previous = self.remembered(ctx, SwitchDnsProgress).previous or (
            DnsRecord.of(record) if record else None
        )
        ctx.save(SwitchDnsProgress(previous=previous))
        mark_target_live(ctx)  # the guard in the world: no sync overwrites a live database
        ttl = min(ctx.model.dns.ttl, record.ttl) if record else ctx.model.dns.ttl
        ctx.dns.set(_record(ctx.model.dns.record, "CNAME", ttl, [router + "."]))
        ctx.note(
            f"{ctx.model.dns.record} CNAME {router} (TTL {ttl}); was "
            + (f"{previous.type} {', '.join(previous.values)}" if previous else "none")
        )
        return SwitchDnsOutputs(router=router, previous=previous, at=ctx.clock())


class VerifyDnsOutputs(StepOutputs):
    step_id = "verify-dns"
    answer: str
    ttl: int


class VerifyDns(Step):
    id = "verify-dns"
    title = "Wait for DNS to answer with the router"
    in_window = True
    outputs = VerifyDnsOutputs
    reads = (PreflightOutputs,)
    fields = _DNS_FIELDS

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [
            f"DNS query {dns.record} CNAME until it is the router "
            f"(up to {dns.propagation_timeout}s)"
        ]

    def apply(self, ctx: Context) -> VerifyDnsOutputs:
        assert ctx.model.dns
        router = _router(self, ctx)
        deadline = time.monotonic() + ctx.model.dns.propagation_timeout
        while True:
            record = current_record(ctx)
            seen = [_norm(v) for v in record.values] if record else []
            if record and record.rtype == "CNAME" and seen == [router]:
                ctx.note(f"{ctx.model.dns.record} answers CNAME {router}")
                return VerifyDnsOutputs(answer=router, ttl=record.ttl)
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"{ctx.model.dns.record} still answers {', '.join(seen) or 'nothing'} "
                    f"after {ctx.model.dns.propagation_timeout}s, expected CNAME {router}",
                    resolution="Check the record at your DNS provider, then `cutover run`.",
                )
            ctx.sleep(2)


class VerifySiteOutputs(StepOutputs):
    step_id = "verify-site"
    checks: list[str]
    downtime_seconds: float | None  # maintenance on to site verified


class VerifySite(Step):
    id = "verify-site"
    title = "Verify the site serves from Convox"
    in_window = True
    outputs = VerifySiteOutputs
    reads = (PreflightOutputs, MaintenanceOnOutputs)
    fields = ("dns.record", "smoke")

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [
            f"GET https://{dns.record}{c.path}  expect {c.status}" for c in smoke_checks(ctx)[0]
        ]

    def apply(self, ctx: Context) -> VerifySiteOutputs:
        assert ctx.model.dns
        record = ctx.model.dns.record
        router = _router(self, ctx)
        # Follow the CNAME to the router explicitly: where the router has a rehearsal address
        # (the sandbox), connect there while verifying the certificate for the real name. A
        # client of its own: the shared one is left as it is.
        target = ctx.http.resolve.get(router)
        http = ctx.http
        if target:
            from cutover.adapters.http import HttpClient  # noqa: PLC0415 - adapters load when a step runs (start-up time)

            http = HttpClient(
                ctx.masker, resolve={**ctx.http.resolve, record: target}, ca_file=ctx.http.ca_file
            )
        checks, timeout = smoke_checks(ctx)
        results = run_http_checks(ctx, http, record, checks, timeout)
        maintenance = self.read(ctx, MaintenanceOnOutputs)
        downtime = round(ctx.clock() - maintenance.at, 1) if maintenance else None
        return VerifySiteOutputs(checks=results, downtime_seconds=downtime)
