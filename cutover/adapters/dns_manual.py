"""The ``manual`` DNS provider: cutover reads records through the system resolver and tells the
operator exactly which change to make; the step finds the change applied when run again."""

from __future__ import annotations

import dns.exception
import dns.rdatatype
import dns.resolver

from cutover.adapters.dns import Record
from cutover.errors import CutoverError


class ManualDnsProvider:
    def __init__(self, zone: str) -> None:
        self.zone = zone

    def get(self, name: str, rtype: str) -> Record | None:
        resolver = dns.resolver.Resolver()
        try:
            answer = resolver.resolve(name, rtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout):
            return None
        rrset = answer.rrset
        if rrset is None or rrset.rdtype != dns.rdatatype.from_text(rtype):
            return None
        return Record(name, rtype, int(rrset.ttl), [r.to_text() for r in rrset])

    def set(self, record: Record) -> None:
        raise CutoverError(
            f"set this record at your DNS provider: {self.describe_set(record)}",
            resolution="Then run `cutover run` again: the step finds the change and goes on.",
        )

    def describe_set(self, record: Record) -> str:
        return f"{record.name} {record.rtype} {' '.join(record.values)} TTL {record.ttl}"
