"""Cloudflare's authoritative name servers, for tests: answers from a :class:`CloudflareApi`'s
records over UDP on loopback, as Cloudflare documents its answers.

Facts (developers.cloudflare.com):
* proxied records answer with Cloudflare's anycast addresses, TTL 300, never the origin or the
  CNAME (dns/proxy-status; dns/cname-flattening/cname-flattening-diagram: "If the CNAME record
  is proxied in Cloudflare, the answer is made up of multiple Cloudflare IPs and its Time to
  Live (TTL) is set to 300"); two A and two AAAA (dns/zone-setups/zone-transfers/
  cloudflare-as-primary/transfer-criteria);
* a DNS-only CNAME at the zone apex is flattened: the target's addresses, TTL the lower of the
  target's and the CNAME's; a target without addresses gives an empty answer (NODATA)
  (dns/cname-flattening); elsewhere a DNS-only CNAME is answered as the CNAME;
* "automatic" TTL (1 in the API) is 300 s (dns/manage-dns-records/reference/ttl).
The stand-in knows no resolver: the targets a flattened apex may point at, and their addresses,
are given as ``flatten_to``. Differences from the real thing: UDP only, no DNSSEC, no EDNS.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from cutover.sandbox.cloudflare_api import CloudflareApi

__all__ = ["CloudflareNameserver"]

AUTO_TTL = 300
ANYCAST = {
    "A": ["104.16.132.229", "104.16.133.229"],
    "AAAA": ["2606:4700::6810:84e5", "2606:4700::6810:85e5"],
}


@dataclass
class CloudflareNameserver:
    """``with CloudflareNameserver(api) as ns:`` answers on ``127.0.0.1:ns.port``."""

    api: CloudflareApi
    flatten_to: dict[str, tuple[list[str], int]] = field(default_factory=dict)
    port: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> CloudflareNameserver:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                wire, peer = self._sock.recvfrom(4096)
            except OSError:
                return  # closed
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                query = None  # a malformed query is dropped, as servers do
            if query is not None:
                self._sock.sendto(self.answer(query).to_wire(), peer)

    def _zone_of(self, name: str) -> str | None:
        zones = [z["name"] for z in self.api.zones.values()]
        inside = [z for z in zones if name == z or name.endswith("." + z)]
        return max(inside, key=len) if inside else None

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The response to ``query`` (one question), authoritative for the API's zones."""
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        qtype = dns.rdatatype.to_text(question.rdtype)
        zone = self._zone_of(name)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        with self.api.lock:
            here = [dict(r) for r in self.api.records.values() if r["name"].lower() == name]
        if not here:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        values, ttl, rtype = self._values(here, qtype, apex=name == zone)
        if values:
            rrset = dns.rrset.from_text_list(question.name, ttl, dns.rdataclass.IN, rtype, values)
            response.answer.append(rrset)
        return response

    def _values(  # noqa: PLR0911 - one return per documented kind of answer
        self, here: list[dict[str, object]], qtype: str, *, apex: bool
    ) -> tuple[list[str], int, str]:
        def ttl_of(record: dict[str, object]) -> int:
            ttl = int(str(record["ttl"]))
            return AUTO_TTL if ttl == 1 else ttl

        if any(r["proxied"] for r in here):
            if qtype in ANYCAST:
                return ANYCAST[qtype], AUTO_TTL, qtype
            return [], 0, qtype  # a proxied name shows no CNAME: NODATA
        cnames = [r for r in here if r["type"] == "CNAME"]
        if cnames:
            target = str(cnames[0]["content"]).rstrip(".").lower()
            if not apex:
                return [target + "."], ttl_of(cnames[0]), "CNAME"
            if qtype not in ("A", "AAAA") or target not in self.flatten_to:
                return [], 0, qtype  # flattened: never the CNAME; no addresses: NODATA
            addresses, target_ttl = self.flatten_to[target]
            wanted = [a for a in addresses if (":" in a) == (qtype == "AAAA")]
            return wanted, min(target_ttl, ttl_of(cnames[0])), qtype
        same = [r for r in here if r["type"] == qtype]
        if not same:
            return [], 0, qtype
        return [str(r["content"]) for r in same], ttl_of(same[0]), qtype
