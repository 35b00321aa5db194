"""The ``manual`` DNS provider: the operator changes records at their DNS provider; cutover
says exactly which change to make, and reads the result from the zone's authoritative name
servers (a recursive resolver would show a cached answer whose TTL counts down)."""

from __future__ import annotations

import dns.exception
import dns.resolver

from cutover.adapters.dns import DnsError, Record, query_authoritative
from cutover.errors import CutoverError


class ManualDnsProvider:
    #: The operator makes the change; nothing reports when every server has it.
    synced_by_provider = False

    def __init__(self, zone: str, *, servers: list[str] | None = None, port: int = 53) -> None:
        self.zone = zone
        self.port = port
        self._servers = servers  # None: found through the zone's NS records

    def apex(self) -> str | None:
        """cutover cannot know whether the operator's provider has an alias: say it has not."""
        return None

    def nameservers(self) -> list[str]:
        """Host names of the zone's NS set, through the system resolver."""
        try:
            answer = dns.resolver.Resolver().resolve(self.zone, "NS")
        except dns.exception.DNSException as exc:
            raise DnsError(f"cannot find the name servers of {self.zone}: {exc}") from None
        return sorted(ns.to_text().rstrip(".") for ns in answer)

    def _nameservers(self) -> list[str]:
        """Addresses of the zone's NS hosts, looked up once through the system resolver."""
        if self._servers is None:
            resolver = dns.resolver.Resolver()
            servers: list[str] = []
            try:
                for ns in resolver.resolve(self.zone, "NS"):
                    host = ns.to_text()
                    for rtype in ("A", "AAAA"):
                        try:
                            servers += [a.to_text() for a in resolver.resolve(host, rtype)]
                        except dns.exception.DNSException:
                            continue
            except dns.exception.DNSException as exc:
                raise DnsError(f"cannot find the name servers of {self.zone}: {exc}") from None
            if not servers:
                raise DnsError(f"the name servers of {self.zone} have no addresses")
            self._servers = servers
        return self._servers

    def get(self, name: str, rtype: str) -> Record | None:
        last: Exception | None = None
        for server in self._nameservers():
            try:
                return query_authoritative(server, self.port, name, rtype)
            except DnsError as exc:
                last = exc
        raise DnsError(f"no authoritative server of {self.zone} answered for {name}: {last}")

    def set(self, record: Record) -> None:
        raise CutoverError(
            f"set this record at your DNS provider: {self.describe_set(record)}",
            resolution="Then run `cutover run` again: the step finds the change and goes on.",
        )

    def describe_set(self, record: Record) -> str:
        return f"{record.name} {record.rtype} {' '.join(record.values)} TTL {record.ttl}"
