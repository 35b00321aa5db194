"""verify-dns: wait until every authoritative name server and every recursive resolver answers
dns.record with the router (switch-dns in steps/dns.py changes the record; the waiting itself
is steps/dnswait.py)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cutover.steps import dnswait
from cutover.steps.base import Context, Step, StepOutputs
from cutover.steps.dns import (
    _DNS_FIELDS,
    _router,
    _skip_without_dns,
    answers_router,
    current_record,
    rollback_hint,
)
from cutover.steps.preflight import PreflightOutputs


class VerifyDnsOutputs(StepOutputs):
    """``servers``/``resolvers``: when each answered the router (server text -> clock time)."""

    step_id = "verify-dns"
    answer: str
    ttl: int
    servers: dict[str, float] = Field(default_factory=dict)
    resolvers: dict[str, float] = Field(default_factory=dict)


class VerifyDns(Step):
    id = "verify-dns"
    title = "Wait for DNS to answer with the router"
    in_window = True
    outputs = VerifyDnsOutputs
    reads = (PreflightOutputs,)
    fields = (*_DNS_FIELDS, "dns.resolvers", "dns.propagation_timeout")

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        resolvers = dnswait.resolver_list(ctx)
        return [
            f"DNS query {dns.record} on every authoritative name server until each answers the "
            f"router (up to {dns.propagation_timeout}s)",
            (
                f"DNS query {dns.record} through the resolvers {', '.join(resolvers)} until "
                f"each answers the router (cached answers expire; up to "
                f"{dns.propagation_timeout}s)"
            )
            if resolvers
            else "no recursive resolver to ask (dns.resolvers: [])",
        ]

    def apply(self, ctx: Context) -> VerifyDnsOutputs:
        with rollback_hint():
            return self._verify(ctx)

    def _verify(self, ctx: Context) -> VerifyDnsOutputs:
        from cutover.adapters.dnscheck import parse_server  # noqa: PLC0415 - adapters at run time

        dns = ctx.model.dns
        assert dns
        router = _router(self, ctx)
        timeout = float(dns.propagation_timeout)
        record = current_record(ctx)
        if record is not None and record.proxied:
            ctx.note(
                f"{dns.record} is proxied by Cloudflare: name servers and resolvers answer "
                "Cloudflare's own addresses, before the switch as after it; the provider's "
                "read-back at switch-dns is the proof"
            )
            return VerifyDnsOutputs(answer=router, ttl=record.ttl)
        servers = dnswait.nameservers(ctx)
        resolvers = [parse_server(item) for item in dnswait.resolver_list(ctx)]
        routed = answers_router(ctx, router, resolvers)

        authoritative = (
            {}
            if servers is None
            else dnswait.wait_for(
                ctx,
                servers,
                routed,
                recursive=False,
                what=f"CNAME {router}",
                timeout=timeout,
                resolution="Check those servers' zone transfers from the primary. "
                + dnswait.ROLLBACK_HINT,
            )
        )
        recursive = (
            dnswait.wait_for(
                ctx,
                resolvers,
                routed,
                recursive=True,
                what=f"CNAME {router}",
                timeout=timeout,
                resolution="Those resolvers still cache the old record (its TTL) or cannot "
                "reach the zone; wait and run `cutover run` again. " + dnswait.ROLLBACK_HINT,
            )
            if resolvers
            else {}
        )
        ctx.note(
            f"{dns.record} answers CNAME {router} on {len(authoritative)} name server(s) and "
            f"{len(recursive)} resolver(s)"
        )
        return VerifyDnsOutputs(
            answer=router,
            ttl=record.ttl if record else dns.ttl,
            servers=authoritative,
            resolvers=recursive,
        )
