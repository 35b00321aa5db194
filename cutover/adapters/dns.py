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
    #: Cloudflare's proxy ("orange cloud") flag; None for providers without such a thing.
    proxied: bool | None = None
    #: A provider alias or flattened record standing in for a CNAME at the zone apex.
    alias: bool = False


class DnsProvider(Protocol):
    """What cutover needs from a DNS provider."""

    #: True when :meth:`set` returns only once the provider reports the change on all its
    #: authoritative servers (route53's GetChange ``INSYNC``).
    synced_by_provider: bool

    def nameservers(self) -> list[str]:
        """Host names of the zone's authoritative servers, as the provider knows them."""
        ...

    def apex(self) -> str | None:
        """How a CNAME-like record at the zone apex is written: "alias", "flattening" or None
        (impossible with this provider)."""
        ...

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
    #: What the sandbox (env.json "dns") says to check: its authoritative servers (host:port)
    #: and its recursive resolvers; the playbook's dns.nameservers/resolvers come first.
    sandbox_nameservers: list[str] = field(default_factory=list)
    sandbox_resolvers: list[str] | None = None

    #: An RFC 2136 server answers an update once it has applied it itself; its secondaries
    #: follow by NOTIFY and zone transfer, so propagation must be checked by querying them.
    synced_by_provider = False

    def apex(self) -> str | None:
        """RFC 2136 writes plain records: no CNAME (nor alias) can live at the apex."""
        return None

    def nameservers(self) -> list[str]:
        """The zone's NS set as served by the primary (host names, no trailing dot)."""
        record = query_authoritative(
            self.server, self.port, _display(self.origin), "NS", timeout=self.timeout
        )
        if record is None:
            raise DnsError(
                f"{self.server}:{self.port} serves no NS records for zone {_display(self.origin)}"
            )
        return [value.rstrip(".") for value in record.values]

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

    def _authority(self) -> str | None:
        """None when the server answers the zone's SOA authoritatively, else what it does."""
        origin = _display(self.origin)
        try:
            soa = query_authoritative(self.server, self.port, origin, "SOA", timeout=self.timeout)
        except DnsError as exc:
            return str(exc)
        return None if soa is not None else f"it serves no SOA record for {origin}"

    def _diagnose(self, rcode: dns.rcode.Rcode) -> str:
        """Why the server refused a correctly signed update: what it said, and what a SOA query
        (AA flag) shows about whether it is authoritative for the zone at all."""
        origin = _display(self.origin)
        if rcode == dns.rcode.NOTZONE:
            return f"the name is not inside zone {origin} as the server knows it"
        if rcode == dns.rcode.SERVFAIL:
            return "the server failed to apply it; see the server's log"
        if rcode not in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            return "see the server's log"
        problem = self._authority()
        if problem is not None:
            return (
                f"the server is not authoritative for zone {origin} ({problem}): point "
                "dns.server at the zone's primary"
            )
        if rcode == dns.rcode.NOTAUTH:
            return f"the server did not accept key {self.key_name!r} for zone {origin}"
        # The answer was signed with our key (dnspython checked it), so the key is known and the
        # server is authoritative: knotd 3.2.6 answers exactly this while the zone is frozen
        # (`knotc zone-freeze`, tests/adapters/test_dns_errors.py). BIND answers REFUSED for an
        # update-policy that denies the key, which cutover cannot tell apart from here.
        return (
            f"the server is authoritative for {origin} and accepted key {self.key_name!r}, but "
            "takes no updates for the zone now: the zone is frozen (Knot: `knotc zone-status "
            f"{origin}` shows it; `knotc zone-thaw {origin}`), it is a secondary, or its "
            "update policy denies this name"
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
            # Knot answers NOTAUTH with TSIG error BADKEY both for a key it does not know and
            # for a key its ACL does not allow to update this zone (knotd 3.2: ACL check before
            # the update is queued; seen with a second key outside the update ACL).
            raise DnsError(
                f"DNS update of {name} refused by {where}: NOTAUTH with TSIG error BADKEY: the "
                f"server does not know key {self.key_name!r} (algorithm {self.algorithm}) or its "
                f"ACL does not allow that key to update zone {_display(self.origin)}"
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
        except dns.exception.FormError as exc:
            if "requires a TSIG" not in str(exc):
                raise DnsError(f"DNS update of {name} to {where} failed: {exc}") from None
            # An unsigned answer to a signed update: the server rejected it before looking at
            # the key, as knotd does (NOTAUTH, unsigned) for a zone it does not serve.
            problem = self._authority()
            raise DnsError(
                f"DNS update of {name} refused by {where} with an unsigned answer: "
                + (
                    f"the server is not authoritative for zone {_display(self.origin)} "
                    f"({problem}); point dns.server at the zone's primary"
                    if problem
                    else "see the server's log"
                )
            ) from None
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsError(f"DNS update of {name} to {where} failed: {exc}") from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            raise DnsError(
                f"DNS update of {name} refused by {where}: {dns.rcode.to_text(rcode)} "
                f"({self._diagnose(rcode)})"
            )
        current = self.get(record.name, record.rtype)
        wanted = sorted(rdata.to_text() for rdata in self._rdatas(record))
        if current is None or current.values != wanted or current.ttl != record.ttl:
            seen = "nothing" if current is None else f"{current.values} (TTL {current.ttl}s)"
            raise DnsError(
                f"DNS update of {name} {record.rtype.upper()} was accepted by {where} but the "
                f"server now serves {seen} instead of {wanted} (TTL {record.ttl}s)"
            )
