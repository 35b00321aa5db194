"""Waiting for a DNS change to reach every server that must serve it: the zone's authoritative
servers (lower-ttl, verify-dns, restore-ttl) and recursive resolvers (verify-dns), each polled
until it answers what is wanted, with progress "n of m"; a timeout names the servers that lag.
Adapters (dnspython) load when a step runs (start-up time, tests/unit/test_layers.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cutover.errors import CutoverError
from cutover.steps.base import Context

if TYPE_CHECKING:
    from cutover.adapters.dns import Record
    from cutover.adapters.dnscheck import Answer, Server

POLL_SECONDS = 1.0
# Public resolvers verify-dns asks when the playbook names none (Cloudflare, Google, Quad9).
DEFAULT_RESOLVERS = ("1.1.1.1", "8.8.8.8", "9.9.9.9")
ROLLBACK_HINT = (
    "Users may see a broken site: `cutover rollback` points the record back at Heroku and ends "
    "the maintenance window."
)


def nameserver_overrides(ctx: Context) -> list[str]:
    """``dns.nameservers`` of the playbook, else the sandbox's (carried by its provider)."""
    assert ctx.model.dns
    return list(ctx.model.dns.nameservers) or list(getattr(ctx.dns, "sandbox_nameservers", []))


def resolver_list(ctx: Context) -> list[str]:
    """``dns.resolvers`` of the playbook; unset: the sandbox's, else the public defaults."""
    assert ctx.model.dns
    if ctx.model.dns.resolvers is not None:
        return list(ctx.model.dns.resolvers)
    sandbox: list[str] | None = getattr(ctx.dns, "sandbox_resolvers", None)
    return list(sandbox) if sandbox is not None else list(DEFAULT_RESOLVERS)


def nameservers(ctx: Context) -> list[Server] | None:
    """The authoritative servers to check; None when the provider proved propagation itself
    (route53's INSYNC) and no server can be found to check it again (said in the output)."""
    from cutover.adapters.dns import DnsError  # noqa: PLC0415 - see the module's note
    from cutover.adapters.dnscheck import authoritative_servers  # noqa: PLC0415

    assert ctx.dns is not None
    try:
        return authoritative_servers(ctx.dns, nameserver_overrides(ctx))
    except DnsError as exc:
        if getattr(ctx.dns, "synced_by_provider", False):
            ctx.note(
                f"cannot query the zone's name servers ({exc.brief}); the provider reported the "
                "change on all its servers, which counts as verified"
            )
            return None
        raise CutoverError(
            f"cannot find the authoritative name servers to check: {exc.brief}",
            resolution="List them in the playbook: dns.nameservers: [host:port, ...].",
        ) from None


def wait_for(
    ctx: Context,
    servers: Sequence[Server],
    good: Callable[[Record | None], bool],
    *,
    recursive: bool,
    what: str,
    timeout: float,
    resolution: str,
) -> dict[str, float]:
    """Poll every server until ``good`` holds for its answer; return when each got there
    (server text -> clock time). On timeout raise naming each lagging server and its answer."""
    from cutover.adapters.dnscheck import ask_record  # noqa: PLC0415 - see the module's note

    assert ctx.model.dns
    name = ctx.model.dns.record
    kind = "resolvers" if recursive else "name servers"
    done: dict[str, float] = {}
    last: dict[str, Answer] = {}
    deadline = time.monotonic() + timeout
    total = len(servers)
    reported = -1
    while True:
        pending = [s for s in servers if str(s) not in done]
        for answer in ask_record(pending, name, recursive=recursive):
            key = str(answer.server)
            last[key] = answer
            if answer.error is None and good(answer.record):
                done[key] = ctx.clock()
        if len(done) != reported:
            reported = len(done)
            ctx.progress(len(done), total, unit=kind)
            ctx.note(f"{len(done)} of {total} {kind} serve {what}")
        if len(done) == total:
            return done
        if time.monotonic() > deadline:
            lagging = [
                f"{key} ({_seen(last.get(key))})"
                for key in (str(s) for s in servers)
                if key not in done
            ]
            raise CutoverError(
                f"{len(lagging)} of {total} {kind} still do not serve {what} for {name} after "
                f"{timeout:g}s: " + "; ".join(lagging),
                resolution=resolution,
            )
        ctx.sleep(POLL_SECONDS)


def _seen(answer: Answer | None) -> str:
    if answer is None:
        return "not asked"
    if answer.error is not None:
        return answer.error
    if answer.record is None:
        return "no record"
    record = answer.record
    return f"{record.rtype} {', '.join(record.values)} TTL {record.ttl}"


def check_now(ctx: Context, router: str | None) -> tuple[list[str], list[str]]:
    """``cutover verify --dns``: ask every authoritative server and resolver once (no waiting).
    Wanted: the router (after switch-dns, ``router`` given), else what the primary serves.
    Returns (one line per server, the problems)."""
    from cutover.adapters.dnscheck import ask_record, parse_server  # noqa: PLC0415
    from cutover.steps.dns import answers_router, current_record  # noqa: PLC0415 - cycle

    assert ctx.model.dns
    name = ctx.model.dns.record
    primary = current_record(ctx)
    resolvers = [parse_server(item) for item in resolver_list(ctx)]
    if router is not None and primary is not None and primary.proxied:
        return [
            f"{name}: proxied by Cloudflare: name servers and resolvers answer Cloudflare's "
            f"addresses; the provider holds {_seen_record(primary)}"
        ], []
    if router is not None:
        wanted = f"CNAME {router}"
        good = answers_router(ctx, router, resolvers)
    else:
        wanted = _seen_record(primary)

        def good(record: Record | None) -> bool:
            return _seen_record(record) == wanted

    lines = [f"{name}: wanted {wanted}"]
    problems: list[str] = []
    servers = nameservers(ctx) or []
    for kind, group, recursive in (
        ("name server", servers, False),
        ("resolver", resolvers, True),
    ):
        for answer in ask_record(group, name, recursive=recursive):
            seen = _seen(answer)
            # A resolver's cached TTL counts down: compare its value, not its TTL.
            ok = answer.error is None and (
                good(answer.record)
                if not recursive or router is not None
                else _values(answer.record) == _values(primary)
            )
            lines.append(f"  {'ok ' if ok else 'LAG'} {kind} {answer.server}: {seen}")
            if not ok:
                problems.append(f"{kind} {answer.server} serves {seen}")
    return lines, problems


def _seen_record(record: Record | None) -> str:
    if record is None:
        return "no record"
    return f"{record.rtype} {', '.join(record.values)} TTL {record.ttl}"


def _values(record: Record | None) -> tuple[str, list[str]] | None:
    return None if record is None else (record.rtype, sorted(record.values))
