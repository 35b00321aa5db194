"""DNS steps: lower-ttl (a day ahead), switch-dns, verify-dns (verify-site: steps/site.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cutover.errors import CutoverError
from cutover.state import Status
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.records import DnsRecord, LowerTtlOutputs, LowerTtlProgress

if TYPE_CHECKING:
    from cutover.adapters.dns import Record
    from cutover.adapters.postgres import ConnInfo

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


@contextmanager
def convox_database(ctx: Context) -> Iterator[ConnInfo]:
    """The Convox database through ``convox resources proxy`` (the playbook has a database)."""
    from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs

    db = ctx.model.database
    assert db is not None
    target = ConnInfo.from_url(ctx.convox.resource_url(db.resource))
    ctx.masker.add(target.password)
    with ctx.convox.proxy(db.resource) as port:
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
    )


def _show(record: Record | DnsRecord | None) -> str:
    if record is None:
        return "no record"
    rtype = record.rtype if not isinstance(record, DnsRecord) else record.type
    return f"{rtype} {', '.join(record.values)} TTL {record.ttl}"


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
        mark_live(ctx)  # the guard in the world: no sync overwrites a live database
        ttl = min(ctx.model.dns.ttl, record.ttl) if record else ctx.model.dns.ttl
        ctx.dns.set(_record(ctx.model.dns.record, "CNAME", ttl, [router + "."]))
        ctx.note(
            f"{ctx.model.dns.record} CNAME {router} (TTL {ttl}); was "
            + (f"{previous.type} {', '.join(previous.values)}" if previous else "none")
        )
        return SwitchDnsOutputs(router=router, previous=previous, at=ctx.clock())

    # -- rollback: the record back to what this step replaced, the database no longer live ----
    undo_title = "Point the DNS record back at Heroku"

    def _previous(self, ctx: Context) -> DnsRecord | None:
        return self.remembered(ctx, SwitchDnsProgress).previous

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
                if (
                    record is not None
                    and record.rtype == "CNAME"
                    and [_norm(v) for v in record.values] == [_router(self, ctx)]
                ):
                    reasons.append(f"{ctx.model.dns.record} points at the Convox router")
            elif not _same(record, previous):
                reasons.append(
                    f"{ctx.model.dns.record} answers {_show(record)}, not the recorded "
                    f"{_show(previous)}"
                )
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
            try:
                ctx.dns.set(_record(dns.record, previous.type, previous.ttl, previous.values))
            except CutoverError as exc:
                raise CutoverError(
                    f"cannot point {dns.record} back: {exc.brief}",
                    details=exc.details,
                    resolution="Fix the cause (or set the record by hand), then run "
                    "`cutover rollback` again: it finds the record restored and goes on.",
                ) from None
            self._read_back(ctx, previous)
            ctx.note(f"{dns.record} is {_show(previous)} again")
        if ctx.model.database is not None:
            with convox_database(ctx) as conn:
                text = pglive.unmark_live(ctx.postgres, conn)
            if text:
                ctx.note(f"the Convox database is no longer marked live: {text}")

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
