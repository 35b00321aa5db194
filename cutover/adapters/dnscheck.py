"""Ask a set of DNS servers the same question: every authoritative server of a zone (did the
change reach each of them?) or a set of recursive resolvers (what do users' resolvers answer,
cached TTL included?).

Servers are ``host``, ``host:port`` or ``[v6]:port`` (port 53 by default). Authoritative servers
come from the playbook's ``dns.nameservers`` (or the sandbox's) or else from the provider's NS
host names, resolved through the system resolver. Each answer is kept per server, so a step can
say which server lags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from cutover.adapters.dns import DnsError, DnsProvider, Record, query_authoritative

__all__ = [
    "Answer",
    "Server",
    "addresses_of",
    "ask_authoritative",
    "ask_record",
    "ask_recursive",
    "authoritative_servers",
    "parse_server",
]


@dataclass(frozen=True)
class Server:
    """One server to ask: an address (or host name), a port and how to name it to the user."""

    host: str
    port: int = 53
    name: str = ""

    def __str__(self) -> str:
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"{self.name} ({where})" if self.name and self.name != self.host else where


@dataclass(frozen=True)
class Answer:
    """What one server answered: the record set (None: none there) or why there is no answer."""

    server: Server
    record: Record | None
    error: str | None = None


def parse_server(text: str) -> Server:
    """``host``, ``host:port`` or ``[v6]:port`` -> :class:`Server` (validated by the playbook)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return Server(host, int(rest[1:]) if rest.startswith(":") else 53)
    if text.count(":") > 1:  # a bare IPv6 address
        return Server(text, 53)
    host, _, port = text.partition(":")
    return Server(host, int(port) if port else 53)


def _addresses(host: str) -> list[str]:
    resolver = dns.resolver.Resolver()
    found: list[str] = []
    for rtype in ("A", "AAAA"):
        try:
            found += [rdata.to_text() for rdata in resolver.resolve(host, rtype)]
        except dns.exception.DNSException:
            continue
    return found


def addresses_of(host: str, resolvers: Sequence[Server]) -> list[str]:
    """``host``'s A and AAAA addresses as the resolvers give them (all of them, CNAMEs
    followed by each resolver), else as the system resolver does when none is given."""
    if not resolvers:
        return _addresses(host)
    qname = dns.name.from_text(host.rstrip(".") + ".")
    found: list[str] = []
    for server in resolvers:
        for rtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                response, _ = dns.query.udp_with_fallback(
                    dns.message.make_query(qname, rtype), server.host, port=server.port, timeout=3.0
                )
            except (OSError, dns.exception.DNSException):
                continue  # that resolver lags or is down: verify-dns names it
            # The answer section holds the CNAME chain, then the addresses at its end.
            found += [
                r.to_text() for rrset in response.answer if rrset.rdtype == rtype for r in rrset
            ]
    return found


def authoritative_servers(provider: DnsProvider, overrides: Sequence[str]) -> list[Server]:
    """The servers to check: ``overrides`` (host:port) when given, else every address of every
    NS host the provider reports (port 53). Raises :class:`DnsError` when none can be found."""
    if overrides:
        return [parse_server(item) for item in overrides]
    servers: list[Server] = []
    unresolved: list[str] = []
    for host in provider.nameservers():
        addresses = _addresses(host)
        if not addresses:
            unresolved.append(host)
        servers += [Server(address, 53, host) for address in addresses]
    if unresolved:
        raise DnsError(
            "cannot find the address of name server(s) " + ", ".join(unresolved) + " of the zone"
        )
    if not servers:
        raise DnsError("the provider reports no name servers for the zone")
    return servers


def ask_authoritative(
    servers: Sequence[Server], name: str, rtype: str, *, timeout: float = 3.0
) -> list[Answer]:
    """Ask each server directly (no recursion; the AA flag required) for ``name``/``rtype``."""
    answers: list[Answer] = []
    for server in servers:
        try:
            record = query_authoritative(server.host, server.port, name, rtype, timeout=timeout)
        except DnsError as exc:
            answers.append(Answer(server, None, str(exc)))
        else:
            answers.append(Answer(server, record))
    return answers


def _recursive(server: Server, name: str, rtype: str, timeout: float) -> Record | None:
    qname = dns.name.from_text(name.rstrip(".") + ".")
    qtype = dns.rdatatype.from_text(rtype.upper())
    query = dns.message.make_query(qname, qtype)  # RD set: the resolver recurses (or answers
    # from its cache, with the TTL left)
    try:
        response, _ = dns.query.udp_with_fallback(
            query, server.host, port=server.port, timeout=timeout
        )
    except dns.exception.Timeout:
        raise DnsError(f"no answer from resolver {server} within {timeout:g}s") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise DnsError(f"cannot query resolver {server}: {exc}") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        raise DnsError(f"resolver {server} answered {dns.rcode.to_text(rcode)} for {name}")
    for rrset in response.answer:
        if rrset.name == qname and rrset.rdtype == qtype:
            return Record(
                name=qname.to_text(omit_final_dot=True),
                rtype=rtype.upper(),
                ttl=rrset.ttl,
                values=sorted(rdata.to_text() for rdata in rrset),
            )
    return None


def ask_recursive(
    servers: Sequence[Server], name: str, rtype: str, *, timeout: float = 3.0
) -> list[Answer]:
    """Ask each recursive resolver (recursion desired) for ``name``/``rtype``."""
    answers: list[Answer] = []
    for server in servers:
        try:
            answers.append(Answer(server, _recursive(server, name, rtype, timeout)))
        except DnsError as exc:
            answers.append(Answer(server, None, str(exc)))
    return answers


def ask_record(servers: Sequence[Server], name: str, *, recursive: bool) -> list[Answer]:
    """What each server has at ``name``: its CNAME, else its A, else its AAAA record set (the
    record types cutover moves), asked directly or, with ``recursive``, of a resolver."""
    ask = ask_recursive if recursive else ask_authoritative
    found: dict[Server, Answer] = {}
    pending = list(servers)
    for rtype in ("CNAME", "A", "AAAA"):
        for answer in ask(pending, name, rtype):
            if answer.server not in found or answer.record is not None:
                found[answer.server] = answer
        pending = [s for s in pending if found[s].record is None and found[s].error is None]
        if not pending:
            break
    return [found[server] for server in servers]
