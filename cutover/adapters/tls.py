"""What certificate a server presents for a name, and what is wrong with it.

``probe`` connects to ``address`` (the router: ``host:port``), sends ``name`` as SNI like a
browser asking for the production name, and reads the certificate without trusting it first (so
a wrong one can be described); a second handshake checks that it chains to a trusted root: the
system store, plus the ``ca_files`` where the playbook or the sandbox gives one. ``findings`` turns
that into what an operator must fix: the names it covers when the name is not among them, the
date when it expired or expires within ``min_days``, the issuer when it is not trusted.

Name matching follows RFC 6125 section 6.4: the subjectAltName DNS names only (the common name
is not consulted when a SAN extension exists, as browsers do), case-insensitive, a ``*`` only as
the whole left-most label, matching exactly one label.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from cutover.errors import CutoverError

DEFAULT_PORT = 443


@dataclass(frozen=True)
class ServedCertificate:
    """The leaf certificate a server presented for ``sni``."""

    sni: str
    address: str
    names: list[str]
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    trusted: bool
    trust_error: str = ""

    def covers(self, name: str) -> bool:
        return any(name_matches(pattern, name) for pattern in self.names)

    def summary(self) -> str:
        return (
            f"certificate for {', '.join(self.names) or self.subject} issued by {self.issuer}, "
            f"valid until {self.not_after:%Y-%m-%d %H:%M} UTC"
        )


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 6.4.3: a wildcard only as the whole left-most label, for one label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    head, _, rest = name.partition(".")
    return bool(head) and rest == pattern[2:]


def split_address(address: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (host, port); port 443 by default."""
    if address.startswith("["):
        host, _, port = address[1:].partition("]")
        return host, int(port.lstrip(":") or DEFAULT_PORT)
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, DEFAULT_PORT


def _dn(name: x509.Name) -> str:
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        values = name.get_attributes_for_oid(oid)
        if values:
            return str(values[0].value)
    return name.rfc4514_string() or "(empty name)"


def _san(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(cn[0].value)] if cn else []
    san = ext.value
    assert isinstance(san, x509.SubjectAlternativeName)
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def _handshake(context: ssl.SSLContext, address: str, sni: str, timeout: float) -> bytes:
    host, port = split_address(address)
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise CutoverError(f"{address} presented no certificate for {sni}")
    return der


def trust_context(ca_files: list[str], *, check_hostname: bool = False) -> ssl.SSLContext:
    """The system store, plus ``ca_files``; the name is checked separately (RFC 6125 above)
    unless ``check_hostname`` (an HTTPS client's context)."""
    context = ssl.create_default_context()
    for ca_file in ca_files:
        context.load_verify_locations(cafile=ca_file)
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def probe(
    sni: str, address: str, *, ca_files: list[str] | None = None, timeout: float = 10.0
) -> ServedCertificate:
    """Connect to ``address`` with SNI ``sni``; describe the certificate presented."""
    look = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    look.check_hostname = False
    look.verify_mode = ssl.CERT_NONE  # read first, judge below: a wrong certificate is described
    try:
        der = _handshake(look, address, sni, timeout)
    except (OSError, ssl.SSLError) as exc:
        raise CutoverError(
            f"cannot reach {address} over TLS for {sni}: {exc}",
            resolution="Check the router address (`convox rack`) and that the app is deployed.",
        ) from None
    cert = x509.load_der_x509_certificate(der)
    trusted, error = True, ""
    try:
        _handshake(trust_context(ca_files or []), address, sni, timeout)
    except ssl.SSLCertVerificationError as exc:
        trusted, error = False, str(exc.verify_message or exc.reason or exc)
    except (OSError, ssl.SSLError) as exc:
        trusted, error = False, str(exc)
    return ServedCertificate(
        sni=sni,
        address=address,
        names=_san(cert),
        subject=_dn(cert.subject),
        issuer=_dn(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        trusted=trusted,
        trust_error=error,
    )


def findings(
    cert: ServedCertificate, name: str, *, min_days: int, now: datetime | None = None
) -> list[str]:
    """What is wrong with ``cert`` for ``name``; empty when it is good to serve."""
    now = now or datetime.now(UTC)
    out: list[str] = []
    if not cert.covers(name):
        out.append(
            f"the certificate served for {name} does not cover it: it covers "
            f"{', '.join(cert.names) or '(no names)'} (issuer {cert.issuer})"
        )
    if cert.not_after <= now:
        out.append(f"the certificate served for {name} expired on {cert.not_after:%Y-%m-%d}")
    elif cert.not_after - now < timedelta(days=min_days):
        out.append(
            f"the certificate served for {name} expires on {cert.not_after:%Y-%m-%d}, within "
            f"{min_days} days (tls.min_days)"
        )
    if cert.not_before > now:
        out.append(f"the certificate served for {name} is not valid before {cert.not_before}")
    expiry_only = "expired" in cert.trust_error or "not yet valid" in cert.trust_error
    if not cert.trusted and not expiry_only:
        out.append(
            f"the certificate served for {name} does not chain to a trusted root: issuer "
            f"{cert.issuer} ({cert.trust_error})"
        )
    return out


@dataclass(frozen=True)
class SiteResponse:
    status: int
    headers: dict[str, str]
    text: str


def get(
    name: str,
    path: str,
    address: str,
    *,
    ca_files: list[str],
    verify: bool = True,
    timeout: float = 30.0,
) -> SiteResponse:
    """``GET https://NAME/PATH`` connecting to ``address`` (SNI and Host are ``name``), like
    curl's --connect-to; ``verify=False`` only where a certificate error is expected and the
    question is whether the router routes the name (tls-ready's HTTP-01 case)."""
    import httpx  # noqa: PLC0415 - only when a check runs (start-up time)

    context: ssl.SSLContext | bool = False
    if verify:
        context = ssl.create_default_context()
        for ca_file in ca_files:
            context.load_verify_locations(cafile=ca_file)
    host, port = split_address(address)
    connect = f"https://{host if ':' not in host else f'[{host}]'}:{port}{path}"
    try:
        with httpx.Client(
            verify=context, timeout=timeout, follow_redirects=False, trust_env=False
        ) as client:
            request = client.build_request(
                "GET", connect, headers={"Host": name}, extensions={"sni_hostname": name}
            )
            resp = client.send(request)
            return SiteResponse(
                resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.text[:65536]
            )
    except httpx.HTTPError as exc:
        raise CutoverError(f"GET https://{name}{path} via {address} failed: {exc}") from None
