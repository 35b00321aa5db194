"""The TTL around the flip: lower-ttl (a day ahead, verified on every authoritative server),
wait-ttl (the flip waits until no resolver can hold the old TTL any more) and restore-ttl (the
original TTL back once the cutover is verified and has soaked)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cutover.errors import CutoverError, NotYet
from cutover.state import Status
from cutover.steps import dnswait
from cutover.steps.base import Context, Step, StepOutputs
from cutover.steps.dns import _record, _skip_without_dns, current_record, refuse_apex
from cutover.steps.records import (
    DNS_RECORD_FIELDS,
    DnsRecord,
    LowerTtlOutputs,
    LowerTtlProgress,
)

if TYPE_CHECKING:
    from cutover.adapters.dns import Record

_DNS_FIELDS = DNS_RECORD_FIELDS


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _left(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.999))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _fixed_ttl(record: Record) -> bool:
    """A route53 alias (an A record naming a load balancer): it has no TTL of its own
    (API_ResourceRecordSet.html) and must not be rewritten as a plain record."""
    return record.alias and record.rtype != "CNAME"


def _lowered(ttl: int) -> Any:
    return lambda record: record is not None and record.ttl <= ttl


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
            f"DNS query every authoritative name server until each serves TTL {dns.ttl} "
            f"(up to {dns.propagation_timeout}s)",
        ]

    def _current(self, ctx: Context) -> Record:
        assert ctx.model.dns
        refuse_apex(ctx)  # a day ahead, not first at the flip
        record = current_record(ctx)
        if record is None:
            raise CutoverError(
                f"{ctx.model.dns.record} has no CNAME or A record to migrate",
                resolution="Check dns.record and dns.zone in the playbook.",
            )
        return record

    def check(self, ctx: Context) -> LowerTtlOutputs | None:
        assert ctx.model.dns
        record = self._current(ctx)
        if record.proxied:  # nothing to lower (apply says why): done once apply noted it
            done = self.remembered(ctx, LowerTtlProgress)
            if done.original is None or done.lowered_at is None or not done.verified:
                return None
            return LowerTtlOutputs(
                original=done.original,
                lowered_at=done.lowered_at,
                ttl=record.ttl,
                verified=done.verified,
                verified_at=max(done.verified.values()),
            )
        if record.ttl > ctx.model.dns.ttl:
            ctx.extras[self.id] = record
            return None
        # Lowered at the primary: done when every name server serves it too (one look, no wait).
        from cutover.adapters.dnscheck import ask_record  # noqa: PLC0415 - adapters: at run time

        saved = self.remembered(ctx, LowerTtlProgress)
        servers = dnswait.nameservers(ctx)
        good = _lowered(ctx.model.dns.ttl)
        if servers is not None and not all(
            a.error is None and good(a.record)
            for a in ask_record(servers, ctx.model.dns.record, recursive=False)
        ):
            return None
        now = ctx.clock()
        verified = saved.verified or {str(s): now for s in servers or []}
        return LowerTtlOutputs(
            original=saved.original or DnsRecord.of(record),
            lowered_at=saved.lowered_at or now,
            ttl=record.ttl,
            verified=verified,
            verified_at=max(verified.values(), default=now),
        )

    def apply(self, ctx: Context) -> LowerTtlOutputs:
        assert ctx.model.dns and ctx.dns
        dns = ctx.model.dns
        record: Record = ctx.extras.pop(self.id, None) or self._current(ctx)
        saved = self.remembered(ctx, LowerTtlProgress)
        original = saved.original or DnsRecord.of(record)
        lowered_at = saved.lowered_at or ctx.clock()
        if record.proxied:
            return self._proxied(ctx, record, original, lowered_at)
        if record.ttl > dns.ttl:
            lowered_at = ctx.clock()
            # Saved before the change: a crash right after it still knows the original TTL.
            ctx.save(LowerTtlProgress(original=original, lowered_at=lowered_at))
            ctx.dns.set(_record(record.name, record.rtype, dns.ttl, list(record.values)))
            ctx.note(f"{record.name} {record.rtype} TTL {record.ttl} -> {dns.ttl}")
        servers = dnswait.nameservers(ctx)
        if servers is None:
            verified = {"provider": ctx.clock()}
        else:
            verified = dnswait.wait_for(
                ctx,
                servers,
                _lowered(dns.ttl),
                recursive=False,
                what=f"TTL {dns.ttl} or lower",
                timeout=dns.propagation_timeout,
                resolution="Check those servers' zone transfers from the primary (NOTIFY, "
                "IXFR/AXFR, their logs), then `cutover run` again: the step checks again.",
            )
        ctx.save(LowerTtlProgress(original=original, lowered_at=lowered_at, verified=verified))
        verified_at = max(verified.values())
        ctx.note(f"every name server serves TTL {dns.ttl} since {_iso(verified_at)}")
        return LowerTtlOutputs(
            original=original,
            lowered_at=lowered_at,
            ttl=dns.ttl,
            verified=verified,
            verified_at=verified_at,
        )

    def _proxied(
        self, ctx: Context, record: Record, original: DnsRecord, lowered_at: float
    ) -> LowerTtlOutputs:
        """Cloudflare proxies the name: resolvers get Cloudflare's own addresses with an
        automatic TTL (adapters/dns_cloudflare.py AUTO_TTL) that cannot be lowered, and the
        name servers never serve the record itself, so nothing is set and nothing awaited;
        wait-ttl still waits out that automatic TTL."""
        now = ctx.clock()
        ctx.note(
            f"{record.name} is proxied by Cloudflare: its TTL stays automatic ({record.ttl}s) "
            "and resolvers get Cloudflare's addresses, not the record; nothing to lower"
        )
        return LowerTtlOutputs(
            original=original,
            lowered_at=lowered_at,
            ttl=record.ttl,
            verified={"cloudflare proxy": now},
            verified_at=now,
        )


class WaitTtlOutputs(StepOutputs):
    step_id = "wait-ttl"
    caches_clear_at: float


class WaitTtl(Step):
    id = "wait-ttl"
    title = "Wait until resolvers dropped the old TTL"
    outputs = WaitTtlOutputs
    reads = (LowerTtlOutputs,)
    fields = ("dns.record", "window.ttl_wait_max")

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        return [
            "wait until the old TTL has passed since every name server served the lowered one "
            f"(refused at once when more than window.ttl_wait_max="
            f"{ctx.model.window.ttl_wait_max}s is left)"
        ]

    def _ready(self, ctx: Context) -> float:
        lowered = self.read(ctx, LowerTtlOutputs)
        if lowered is None:
            raise CutoverError(
                "lower-ttl has not run: no lowered TTL to wait for",
                resolution="Run it first: cutover run --until lower-ttl (a day ahead).",
            )
        return lowered.caches_clear_at

    def apply(self, ctx: Context) -> WaitTtlOutputs:
        ready = self._ready(ctx)
        remaining = ready - ctx.clock()
        limit = ctx.model.window.ttl_wait_max
        if remaining > limit:
            raise NotYet(
                f"resolvers may cache the old TTL until {_iso(ready)}: {_left(remaining)} left, "
                f"more than window.ttl_wait_max ({limit}s)",
                resolution=f"Run `cutover run` again after {_iso(ready)} "
                "(or raise window.ttl_wait_max to wait here).",
            )
        while remaining > 0:
            ctx.note(f"{_left(remaining)} left until caches drop the old TTL ({_iso(ready)})")
            ctx.sleep(min(remaining, 10.0))
            remaining = ready - ctx.clock()
        return WaitTtlOutputs(caches_clear_at=ready)


class RestoreTtlOutputs(StepOutputs):
    step_id = "restore-ttl"
    ttl: int
    restored_at: float


class RestoreTtl(Step):
    id = "restore-ttl"
    title = "Restore the original DNS TTL after the soak"
    outputs = RestoreTtlOutputs
    reads = (LowerTtlOutputs,)
    fields = ("dns.record", "dns.soak_seconds", "dns.propagation_timeout", "window.ttl_wait_max")

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [
            f"wait until dns.soak_seconds={dns.soak_seconds}s have passed since verify-site",
            f"DNS update: {dns.record} same value, the original TTL (lower-ttl outputs)",
            "DNS query every authoritative name server until each serves it",
        ]

    def _target(self, ctx: Context) -> int:
        lowered = self.read(ctx, LowerTtlOutputs)
        if lowered is None:
            raise CutoverError("lower-ttl has not run: no original TTL to restore")
        return lowered.original.ttl

    def check(self, ctx: Context) -> RestoreTtlOutputs | None:
        ttl = self._target(ctx)
        record = current_record(ctx)
        if record is not None and (record.ttl == ttl or _fixed_ttl(record)):
            return RestoreTtlOutputs(ttl=record.ttl, restored_at=ctx.clock())
        return None

    def _soaked_at(self, ctx: Context) -> float:
        assert ctx.model.dns
        st = ctx.state.steps.get("verify-site")
        finished = st.finished_at if st is not None and st.status == Status.DONE else None
        if finished is None:
            raise CutoverError(
                "verify-site is not done: the TTL stays low until the cutover is verified",
                resolution="Finish the cutover first (cutover run), or `cutover rollback`.",
            )
        return datetime.fromisoformat(finished).timestamp() + ctx.model.dns.soak_seconds

    def apply(self, ctx: Context) -> RestoreTtlOutputs:
        dns = ctx.model.dns
        assert dns and ctx.dns
        ttl = self._target(ctx)
        ready = self._soaked_at(ctx)
        remaining = ready - ctx.clock()
        if remaining > ctx.model.window.ttl_wait_max:
            raise NotYet(
                f"the cutover is verified; the original TTL ({ttl}s) goes back after the soak "
                f"(dns.soak_seconds), at {_iso(ready)}: {_left(remaining)} left",
                resolution=f"Run `cutover run` again after {_iso(ready)}: only restore-ttl "
                "is left.",
            )
        while remaining > 0:
            ctx.note(f"{_left(remaining)} left of the soak before the TTL goes back")
            ctx.sleep(min(remaining, 10.0))
            remaining = ready - ctx.clock()
        record = current_record(ctx)
        if record is None:
            raise CutoverError(
                f"{dns.record} has no record to restore the TTL of",
                resolution="Check the record at your DNS provider; `cutover rollback` points "
                "it back at Heroku.",
            )
        if _fixed_ttl(record):
            ctx.note(
                f"{record.name} is a provider alias whose TTL the provider fixes "
                f"({record.ttl}s): no TTL to restore"
            )
            return RestoreTtlOutputs(ttl=record.ttl, restored_at=ctx.clock())
        if record.ttl != ttl:
            ctx.dns.set(_record(record.name, record.rtype, ttl, list(record.values)))
            ctx.note(f"{record.name} {record.rtype} TTL {record.ttl} -> {ttl}")
        servers = dnswait.nameservers(ctx)
        if servers is not None:
            dnswait.wait_for(
                ctx,
                servers,
                lambda found: found is not None and found.ttl == ttl,
                recursive=False,
                what=f"TTL {ttl}",
                timeout=dns.propagation_timeout,
                resolution="Check those servers' zone transfers, then `cutover run` again "
                "(the cutover itself is done; `cutover rollback` would point the record back).",
            )
        return RestoreTtlOutputs(ttl=ttl, restored_at=ctx.clock())
