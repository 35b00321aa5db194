"""DNS providers: read a record set and replace it.

Names are fully qualified (the trailing dot is optional); ``"@"`` is the zone apex and, for
convenience, a single label such as ``"www"`` is taken relative to the provider's zone. Record
values are written in zone-file text; names inside values (a CNAME target) are always absolute,
as in every DNS provider's API, so ``router.example.net`` never becomes
``router.example.net.<zone>``.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update

from cutover.errors import CutoverError

__all__ = [
    "DnsError",
    "DnsProvider",
    "Record",
    "Rfc2136Provider",
    "query_authoritative",
]

# Setting one of these removes a CNAME at the name; setting a CNAME removes everything there.
_ADDRESS_TYPES = ("A", "AAAA", "CNAME")


class DnsError(CutoverError):
    """A DNS query or update failed; the text never contains a key secret."""


@dataclass
class Record:
    """One record set: fully qualified name (no trailing dot), type, TTL and values."""

    name: str
    rtype: str
    ttl: int
    values: list[str]
    # Cloudflare's orange cloud (None where a provider has no such thing).
    proxied: bool | None = None
    # A provider alias/flattened record standing in for a CNAME at the zone apex.
    alias: bool = False


class DnsProvider(Protocol):
    """What cutover needs from a DNS provider."""

    def get(self, name: str, rtype: str) -> Record | None:
        """Return the record set at ``name`` of type ``rtype``, or None if there is none."""
        ...

    def set(self, record: Record) -> None:
        """Replace the record set ``record.name``/``record.rtype`` with ``record``."""
        ...

    def describe_set(self, record: Record) -> str:
        """Describe what :meth:`set` would do, without any secret."""
        ...


def _rdtype(rtype: str) -> dns.rdatatype.RdataType:
    try:
        return dns.rdatatype.from_text(rtype.upper())
    except dns.exception.DNSException:
        raise DnsError(f"unknown DNS record type {rtype!r}") from None


def _absolute(name: str) -> dns.name.Name:
    try:
        return dns.name.from_text(name.rstrip(".") + ".") if name != "." else dns.name.root
    except dns.exception.DNSException as exc:
        raise DnsError(f"invalid DNS name {name!r}: {exc}") from None


def _display(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _values_of(rrset: dns.rrset.RRset) -> list[str]:
    return sorted(rdata.to_text() for rdata in rrset)


def query_authoritative(
    server: str, port: int, name: str, rtype: str, *, timeout: float = 5.0
) -> Record | None:
    """Ask ``server:port`` directly for ``name``/``rtype``; None if it has no such record set.

    Uses UDP and retries over TCP when the answer is truncated. Raises :class:`DnsError` if the
    server is unreachable, refuses the query or is not authoritative for the name.
    """
    qname = _absolute(name)
    qtype = _rdtype(rtype)
    query = dns.message.make_query(qname, qtype)
    query.flags &= ~dns.flags.RD
    try:
        response, _ = dns.query.udp_with_fallback(query, server, port=port, timeout=timeout)
    except dns.exception.Timeout:
        raise DnsError(
            f"no answer from DNS server {server}:{port} for {_display(qname)} {rtype.upper()} "
            f"within {timeout:g}s"
        ) from None
    except (OSError, dns.exception.DNSException) as exc:
        raise DnsError(
            f"cannot query DNS server {server}:{port} for {_display(qname)} {rtype.upper()}: {exc}"
        ) from None
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        raise DnsError(
            f"DNS server {server}:{port} answered {dns.rcode.to_text(rcode)} for "
            f"{_display(qname)} {rtype.upper()}"
        )
    if not response.flags & dns.flags.AA:
        raise DnsError(
            f"DNS server {server}:{port} is not authoritative for {_display(qname)} "
            "(no AA flag in its answer)"
        )
    for rrset in response.answer:
        if rrset.name == qname and rrset.rdtype == qtype:
            return Record(
                name=_display(qname), rtype=rtype.upper(), ttl=rrset.ttl, values=_values_of(rrset)
            )
    return None


@dataclass
class Rfc2136Provider:
    """A provider speaking RFC 2136 (dynamic update, TSIG-signed) to an authoritative server."""

    server: str
    port: int
    zone: str
    key_name: str
    key_secret: str = field(repr=False)
    algorithm: str = "hmac-sha256"
    timeout: float = 5.0

    @property
    def origin(self) -> dns.name.Name:
        """The zone as an absolute name."""
        return _absolute(self.zone)

    def fqdn(self, name: str) -> dns.name.Name:
        """Resolve ``name`` ("@", one label, or a full name) to an absolute name in the zone."""
        origin = self.origin
        if name in ("@", ""):
            return origin
        if "." not in name.rstrip("."):
            absolute = dns.name.Name((name.rstrip("."),)).concatenate(origin)
        else:
            absolute = _absolute(name)
        if not absolute.is_subdomain(origin):
            raise DnsError(
                f"{name} is not inside zone {_display(origin)} served by {self.server}:{self.port}"
            )
        return absolute

    def get(self, name: str, rtype: str) -> Record | None:
        """Query the authoritative server for ``name``/``rtype`` (TTL as served)."""
        return query_authoritative(
            self.server, self.port, _display(self.fqdn(name)), rtype, timeout=self.timeout
        )

    def _rdatas(self, record: Record) -> list[dns.rdata.Rdata]:
        rdtype = _rdtype(record.rtype)
        if not record.values:
            raise DnsError(f"no value given for {record.name} {record.rtype.upper()}")
        rdatas: list[dns.rdata.Rdata] = []
        for value in record.values:
            try:
                rdatas.append(
                    dns.rdata.from_text(
                        dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
                    )
                )
            except (dns.exception.DNSException, ValueError) as exc:
                raise DnsError(
                    f"invalid {record.rtype.upper()} value {value!r} for {record.name}: {exc}"
                ) from None
        return rdatas

    def _keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        try:
            keyring = dns.tsigkeyring.from_text({self.key_name: (self.algorithm, self.key_secret)})
        except (binascii.Error, ValueError, dns.exception.DNSException):
            # The exception text could quote the secret: say only which key is malformed.
            raise DnsError(
                f"TSIG key {self.key_name!r}: the secret is not valid base64 "
                f"or algorithm {self.algorithm!r} is unknown"
            ) from None
        return {name: key for name, key in keyring.items() if isinstance(key, dns.tsig.Key)}

    def _update_message(self, record: Record) -> dns.update.UpdateMessage:
        name = self.fqdn(record.name)
        rdtype = _rdtype(record.rtype)
        if record.ttl < 0:
            raise DnsError(f"negative TTL {record.ttl} for {record.name}")
        rdatas = self._rdatas(record)
        message = dns.update.UpdateMessage(
            self.origin, keyring=self._keyring(), keyname=_absolute(self.key_name)
        )
        rtype = record.rtype.upper()
        if rtype == "CNAME":
            if name == self.origin:
                raise DnsError(f"a CNAME cannot be set at the zone apex {_display(name)}")
            # Nothing may live beside a CNAME (a server silently ignores the add otherwise):
            # every record set at the name goes, in the same atomic update.
            message.delete(name)
        elif rtype in _ADDRESS_TYPES:
            message.delete(name, "CNAME")
            message.delete(name, rdtype)
        else:
            message.delete(name, rdtype)
        for rdata in rdatas:
            message.add(name, record.ttl, rdata)
        return message

    def describe_set(self, record: Record) -> str:
        """One line saying what :meth:`set` will change, where, and with which key name."""
        name = _display(self.fqdn(record.name))
        rtype = record.rtype.upper()
        if rtype == "CNAME":
            replaced = "all records"
        elif rtype in _ADDRESS_TYPES:
            replaced = f"{rtype} and CNAME records"
        else:
            replaced = f"{rtype} records"
        return (
            f"replace {replaced} at {name} with {rtype} {', '.join(record.values)} "
            f"(TTL {record.ttl}s) by RFC 2136 update to {self.server}:{self.port} "
            f"(zone {_display(self.origin)}, TSIG key {self.key_name})"
        )

    def set(self, record: Record) -> None:
        """Replace the record set with one TSIG-signed update over TCP, then read it back.

        A or AAAA also removes a CNAME at the name; a CNAME removes every record set there
        (nothing may live beside it). Raises :class:`DnsError` if the server refuses the update
        or serves something else afterwards.
        """
        message = self._update_message(record)
        where = f"{self.server}:{self.port}"
        name = _display(self.fqdn(record.name))
        try:
            response = dns.query.tcp(message, self.server, port=self.port, timeout=self.timeout)
        except dns.tsig.PeerBadKey:
            raise DnsError(
                f"DNS update of {name} refused by {where}: the server does not know TSIG key "
                f"{self.key_name!r} (BADKEY); check the key name and algorithm {self.algorithm}"
            ) from None
        except dns.tsig.PeerBadSignature:
            raise DnsError(
                f"DNS update of {name} refused by {where}: bad signature for TSIG key "
                f"{self.key_name!r} (BADSIG); the key secret is wrong"
            ) from None
        except dns.tsig.PeerBadTime:
            raise DnsError(
                f"DNS update of {name} refused by {where}: TSIG time check failed (BADTIME); "
                "check this machine's clock"
            ) from None
        except dns.exception.Timeout:
            raise DnsError(
                f"DNS update of {name}: no answer from {where} within {self.timeout:g}s"
            ) from None
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsError(f"DNS update of {name} to {where} failed: {exc}") from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = {
                dns.rcode.NOTAUTH: "the server did not accept the TSIG key for this zone",
                dns.rcode.REFUSED: "the server's ACL does not allow updates with this key",
                dns.rcode.NOTZONE: "the name is not in the zone",
            }.get(rcode, "see the server's log")
            raise DnsError(
                f"DNS update of {name} refused by {where}: {dns.rcode.to_text(rcode)} ({hint})"
            )
        current = self.get(record.name, record.rtype)
        wanted = sorted(rdata.to_text() for rdata in self._rdatas(record))
        if current is None or current.values != wanted or current.ttl != record.ttl:
            seen = "nothing" if current is None else f"{current.values} (TTL {current.ttl}s)"
            raise DnsError(
                f"DNS update of {name} {record.rtype.upper()} was accepted by {where} but the "
                f"server now serves {seen} instead of {wanted} (TTL {record.ttl}s)"
            )
