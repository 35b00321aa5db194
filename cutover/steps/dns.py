"""DNS steps: lower-ttl (a day ahead), switch-dns, verify-dns, verify-site."""

from __future__ import annotations

import time
from typing import Any

from cutover.adapters.dns import Record
from cutover.adapters.http import HttpClient
from cutover.errors import CutoverError
from cutover.steps.app import run_http_checks, smoke_checks
from cutover.steps.base import Context, Outputs, Step, cmd


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _skip_without_dns(model: Any) -> str | None:
    return None if model.dns else "no dns section in the playbook"


def current_record(ctx: Context) -> Record | None:
    assert ctx.model.dns and ctx.dns
    name = ctx.model.dns.record
    return ctx.dns.get(name, "CNAME") or ctx.dns.get(name, "A") or ctx.dns.get(name, "AAAA")


def _as_dict(record: Record) -> dict[str, Any]:
    return {"name": record.name, "type": record.rtype, "ttl": record.ttl,
            "values": list(record.values)}


def _router(ctx: Context) -> str:
    router = ctx.outputs("preflight").get("router") or ctx.convox.router()
    return _norm(str(router))


class LowerTtl(Step):
    id = "lower-ttl"
    title = "Lower the DNS TTL (a day ahead)"

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [f"DNS query {dns.record} (current record and TTL)",
                f"DNS update: {dns.record} same value, TTL {dns.ttl}  (if the TTL is higher)"]

    def check(self, ctx: Context) -> Outputs | None:
        assert ctx.model.dns
        record = current_record(ctx)
        if record is None:
            raise CutoverError(f"{ctx.model.dns.record} has no CNAME or A record to migrate",
                               resolution="Check dns.record and dns.zone in the playbook.")
        saved = ctx.state.remembered(self.id, "original")
        if record.ttl <= ctx.model.dns.ttl:
            original = saved or _as_dict(record)
            return {"original": original,
                    "lowered_at": ctx.state.remembered(self.id, "lowered_at") or ctx.clock(),
                    "ttl": record.ttl}
        ctx.extras[self.id] = record
        return None

    def apply(self, ctx: Context) -> Outputs:
        assert ctx.model.dns and ctx.dns
        record: Record | None = ctx.extras.pop(self.id, None) or current_record(ctx)
        if record is None:
            raise CutoverError(f"{ctx.model.dns.record} has no record to lower")
        original = ctx.state.remembered(self.id, "original") or _as_dict(record)
        lowered_at = ctx.clock()
        # Saved before the change: a crash right after it still knows the original TTL.
        ctx.progress({"original": original, "lowered_at": lowered_at})
        ctx.dns.set(Record(record.name, record.rtype, ctx.model.dns.ttl, list(record.values)))
        ctx.note(f"{record.name} {record.rtype} TTL {record.ttl} -> {ctx.model.dns.ttl}")
        return {"original": original, "lowered_at": lowered_at, "ttl": ctx.model.dns.ttl}


class SwitchDns(Step):
    id = "switch-dns"
    title = "Point the CNAME at the Convox router"
    gate = "Point the production DNS record at the Convox router now?"

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [cmd(ctx.convox.argv("rack", app=False)) + "   (router host)",
                f"DNS update: {dns.record} CNAME <router> TTL {dns.ttl}"]

    def gate_text(self, ctx: Context) -> str:
        dns = ctx.model.dns
        assert dns
        return (f"Point {dns.record} at the Convox router "
                f"({ctx.outputs('preflight').get('router', 'router')}) now?")

    def check(self, ctx: Context) -> Outputs | None:
        assert ctx.model.dns
        record = current_record(ctx)
        router = _router(ctx)
        if record and record.rtype == "CNAME" and [_norm(v) for v in record.values] == [router]:
            previous = ctx.state.remembered(self.id, "previous")
            return {"router": router, "previous": previous,
                    "at": ctx.state.remembered(self.id, "at") or ctx.clock()}
        ctx.extras[self.id] = record
        return None

    def apply(self, ctx: Context) -> Outputs:
        assert ctx.model.dns and ctx.dns
        router = _router(ctx)
        record = ctx.extras.pop(self.id, None) or current_record(ctx)
        previous = ctx.state.remembered(self.id, "previous") or (
            _as_dict(record) if record else None)
        ctx.progress({"previous": previous})
        ttl = min(ctx.model.dns.ttl, record.ttl) if record else ctx.model.dns.ttl
        ctx.dns.set(Record(ctx.model.dns.record, "CNAME", ttl, [router + "."]))
        ctx.note(f"{ctx.model.dns.record} CNAME {router} (TTL {ttl}); was "
                 + (f"{previous['type']} {', '.join(previous['values'])}" if previous else "none"))
        return {"router": router, "previous": previous, "at": ctx.clock()}


class VerifyDns(Step):
    id = "verify-dns"
    title = "Wait for DNS to answer with the router"

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [f"DNS query {dns.record} CNAME until it is the router "
                f"(up to {dns.propagation_timeout}s)"]

    def apply(self, ctx: Context) -> Outputs:
        assert ctx.model.dns
        router = _router(ctx)
        deadline = time.monotonic() + ctx.model.dns.propagation_timeout
        while True:
            record = current_record(ctx)
            seen = [_norm(v) for v in record.values] if record else []
            if record and record.rtype == "CNAME" and seen == [router]:
                ctx.note(f"{ctx.model.dns.record} answers CNAME {router}")
                return {"answer": router, "ttl": record.ttl}
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"{ctx.model.dns.record} still answers {', '.join(seen) or 'nothing'} "
                    f"after {ctx.model.dns.propagation_timeout}s, expected CNAME {router}",
                    resolution="Check the record at your DNS provider, then `cutover run`.")
            ctx.sleep(2)


class VerifySite(Step):
    id = "verify-site"
    title = "Verify the site serves from Convox"

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [f"GET https://{dns.record}{c.path}  expect {c.status}"
                for c in smoke_checks(ctx)[0]]

    def apply(self, ctx: Context) -> Outputs:
        assert ctx.model.dns
        record = ctx.model.dns.record
        router = _router(ctx)
        # Follow the CNAME to the router explicitly: where the router has a rehearsal address
        # (the sandbox), connect there while verifying the certificate for the real name.
        target = ctx.http.resolve.get(router)
        http = ctx.http
        if target:
            http = HttpClient(ctx.masker, resolve={**ctx.http.resolve, record: target},
                              ca_file=ctx.http.ca_file)
        saved, ctx.http = ctx.http, http
        try:
            checks, timeout = smoke_checks(ctx)
            results = run_http_checks(ctx, record, checks, timeout)
        finally:
            ctx.http = saved
        started = ctx.outputs("maintenance-on").get("at")
        downtime = round(ctx.clock() - float(started), 1) if started else None
        return {"checks": results, "downtime_seconds": downtime}
