"""Certificates for custom domains: issued only once the name resolves to the router.

Facts: a v3 rack issues a service's ``domain:`` names with cert-manager and Let's Encrypt's
HTTP-01 challenge (``provider/k8s/certificate.go``, ``template/app/service.yml.tmpl`` ingress
annotations): until the name resolves to the rack's router the challenge fails and the router
keeps serving its default certificate, which does not cover the name.

The stand-in: after a rollout, a rack-side job per domain (:mod:`.jobs`, kind ``certs``) asks the
sandbox DNS server (``Router.dns_host``/``dns_port``) for the name's CNAME every ``poll``
seconds; once it is the rack's router host it waits the rack timing ``certificate``, then issues
a certificate for the name from the sandbox CA into ``<settings>/router-certs/`` (the served web
process picks it by SNI) and records ``certificates[<name>] = {"status": "issued", ...}``.

Certificates the operator imports or generates (:mod:`.cmd_certs`) live in the rack's
``certs`` (``{id: {"domain", "domains", "expires", "status", "kind"}}``), their PEM files in
``<settings>/rack-certs/<id>.pem`` and ``<id>-key.pem`` (0600). A routed service whose manifest
says ``certificate: {id: ID}`` gets that certificate for its domains, copied into the router's
folder at each rollout and whenever it is issued, and no HTTP-01 job (the ingress names the
secret instead of asking cert-manager: provider/k8s/template/app/ingress.yml.tmpl). A
``--issuer letsencrypt`` certificate is issued by a rack-side job (kind ``dns01``): with a
Route53 solver whose ``dns-zones`` hold every domain it issues after the rack timing
``certificate``, without DNS being changed (DNS-01); otherwise cert-manager's default HTTP-01
solver applies and it waits, like the job above, for each name's CNAME to the router.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cutover.sandbox import procs
from cutover.sandbox.convox_fake import jobs
from cutover.sandbox.convox_fake.manifest import Manifest
from cutover.sandbox.convox_fake.model import rack_by_name
from cutover.sandbox.convox_fake.output import CliError, now_iso
from cutover.sandbox.convox_fake.runtime import web_service
from cutover.sandbox.convox_fake.store import Json, Store, timing

CERT_DIR = "router-certs"
RACK_CERT_DIR = "rack-certs"


def cert_dir(folder: Path) -> Path:
    return procs.ensure_private_dir(folder / CERT_DIR)


def ensure(store: Store, state: Json, rack_name: str, app: str, manifest: Manifest | None) -> None:
    """Under the lock: start a job for every domain of the routed service not issued yet."""
    web = web_service(manifest)
    router = state.get("router") or {}
    if web is None:
        return
    issued = state.setdefault("certificates", {})
    if web.certificate_id:
        for domain in web.domains:
            issued[domain] = {"status": "pending", "certificate": web.certificate_id}
        serve_certificate(store, state, rack_name, web.certificate_id)
        return
    if not router.get("ca_folder") or not router.get("dns_port"):
        return
    running = {j.get("id") for j in state.get("jobs") or [] if j.get("kind") == "certs"}
    for domain in web.domains:
        entry = issued.get(domain) or {}
        if domain in running or (entry.get("status") == "issued" and not entry.get("certificate")):
            continue
        issued[domain] = {"status": "pending", "requested": now_iso()}
        jobs.spawn(store, state, "certs", rack_name, app, domain)


def _cname(host: str, port: int, name: str) -> str:
    import dns.exception  # noqa: PLC0415 - only the certificate job asks DNS
    import dns.message  # noqa: PLC0415
    import dns.query  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415

    query = dns.message.make_query(f"{name.rstrip('.')}.", dns.rdatatype.CNAME)
    try:
        response = dns.query.udp(query, host, port=port, timeout=2.0)
    except (dns.exception.DNSException, OSError):
        return ""
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.CNAME:
            for record in rrset:
                return str(record.target).rstrip(".").lower()
    return ""


def run(store: Store, rack_name: str, domain: str) -> None:
    """The certificate job: wait for the CNAME to the router, then issue."""
    from cutover.sandbox.tls import SandboxCA  # noqa: PLC0415

    while True:
        with store.locked() as state:
            router = dict(state.get("router") or {})
            target = str(rack_by_name(state, rack_name).get("domain", "")).lower()
            poll, delay = timing(state, "poll"), timing(state, "certificate")
        dns_host = str(router.get("dns_host") or "127.0.0.1")
        if _cname(dns_host, int(router["dns_port"]), domain) == target:
            break
        time.sleep(poll)
    time.sleep(delay)  # the HTTP-01 challenge and the issuance
    folder = cert_dir(store.folder)
    SandboxCA.load(Path(str(router["ca_folder"]))).issue(
        [domain], folder / f"{domain}.pem", folder / f"{domain}-key.pem"
    )
    with store.locked() as state:
        state.setdefault("certificates", {})[domain] = {"status": "issued", "issued": now_iso()}
        jobs.finished(state, "certs", domain)


# -- certificates the operator imports or generates ------------------------------------------


def rack_certs(state: Json, rack_name: str) -> dict[str, Any]:
    certs: dict[str, Any] = rack_by_name(state, rack_name).setdefault("certs", {})
    return certs


def letsencrypt_config(state: Json, rack_name: str) -> dict[str, Any]:
    """The rack's ``letsencrypt-config`` (LetsEncryptConfigGet: defaults when none is stored)."""
    config: dict[str, Any] = rack_by_name(state, rack_name).setdefault(
        "letsencrypt", {"role": "", "solvers": []}
    )
    return config


def _pem_paths(folder: Path, ident: str) -> tuple[Path, Path]:
    base = procs.ensure_private_dir(folder / RACK_CERT_DIR)
    return base / f"{ident}.pem", base / f"{ident}-key.pem"


def _describe(pem: str) -> dict[str, Any]:
    """certificateFromSecret: the first PEM block's CN, DNS names and NotAfter."""
    from cryptography import x509  # noqa: PLC0415 - only certificate commands parse PEM
    from cryptography.x509.oid import ExtensionOID, NameOID  # noqa: PLC0415

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise CliError("invalid certificate") from None
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        names = []
    return {
        "domain": str(cn[0].value) if cn else "",
        "domains": names,
        "expires": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def store_certificate(
    store: Store,
    state: Json,
    rack_name: str,
    ident: str,
    chain_pem: str,
    key_pem: str,
    **extra: Any,
) -> None:
    """Keep a certificate (leaf + chain) and its key as the rack's secret ``ident``."""
    described = _describe(chain_pem.lstrip())
    cert_path, key_path = _pem_paths(store.folder, ident)
    procs.write_private(key_path, key_pem)
    procs.write_private(cert_path, chain_pem.lstrip())
    entry = rack_certs(state, rack_name).setdefault(ident, {})
    entry.update(described, status="", **extra)
    serve_certificate(store, state, rack_name, ident)


def self_signed(store: Store, state: Json, rack_name: str, ident: str, domain: str) -> None:
    """common.CertificateSelfSigned: a self-signed certificate for one domain."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    store_certificate(
        store,
        state,
        rack_name,
        ident,
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem,
        kind="self-signed",
    )


def request_letsencrypt(
    store: Store, state: Json, rack_name: str, ident: str, domains: list[str]
) -> None:
    """A cert-manager Certificate: Not Ready until the rack-side job issues it."""
    rack_certs(state, rack_name)[ident] = {
        "domain": "",
        "domains": domains,
        "expires": "",
        "status": "Not Ready",
        "kind": "letsencrypt",
        "requested": now_iso(),
    }
    jobs.spawn(store, state, "dns01", rack_name, "", ident)


def listing(state: Json, rack_name: str, *, generated: bool) -> list[dict[str, Any]]:
    """CertificateList: every issued certificate; with ``--generated`` also Not Ready ones."""
    out = []
    for ident, entry in rack_certs(state, rack_name).items():
        if entry.get("status") == "Not Ready" and not generated:
            continue
        out.append({"id": ident, **entry})
    return out


def serve_certificate(store: Store, state: Json, rack_name: str, ident: str) -> None:
    """Copy certificate ``ident`` into the router's folder for every domain whose service names
    it (``certificate: {id}``), once it is issued."""
    entry = rack_certs(state, rack_name).get(ident)
    cert_path, key_path = _pem_paths(store.folder, ident)
    if not entry or entry.get("status") == "Not Ready" or not cert_path.exists():
        return
    folder = cert_dir(store.folder)
    for domain, served in (state.get("certificates") or {}).items():
        if served.get("certificate") != ident:
            continue
        procs.write_private(folder / f"{domain}-key.pem", key_path.read_text(encoding="utf-8"))
        procs.write_atomic(folder / f"{domain}.pem", cert_path.read_text(encoding="utf-8"))
        served.update(status="issued", issued=now_iso())


def _solved_by_dns(state: Json, rack_name: str, domains: list[str]) -> bool:
    zones = [
        str(zone).rstrip(".").lower()
        for solver in letsencrypt_config(state, rack_name)["solvers"]
        if isinstance(solver.get("route53"), dict)
        for zone in solver.get("dns-zones") or []
    ]
    return all(any(d.lower() == z or d.lower().endswith("." + z) for z in zones) for d in domains)


def run_letsencrypt(store: Store, rack_name: str, ident: str) -> None:
    """The cert-manager Certificate job: DNS-01 when a solver covers the zones, else HTTP-01."""
    from cutover.sandbox.tls import SandboxCA  # noqa: PLC0415

    while True:
        with store.locked() as state:
            router = dict(state.get("router") or {})
            domains = list(rack_certs(state, rack_name)[ident]["domains"])
            target = str(rack_by_name(state, rack_name).get("domain", "")).lower()
            poll, delay = timing(state, "poll"), timing(state, "certificate")
            by_dns = _solved_by_dns(state, rack_name, domains)
        if by_dns:
            break
        if router.get("dns_port") and all(
            _cname(str(router.get("dns_host") or "127.0.0.1"), int(router["dns_port"]), d) == target
            for d in domains
        ):
            break
        time.sleep(poll)
    time.sleep(delay)  # the challenge and the issuance
    cert_path, key_path = _pem_paths(store.folder, ident)
    SandboxCA.load(Path(str(router["ca_folder"]))).issue(domains, cert_path, key_path)
    with store.locked() as state:
        chain = cert_path.read_text(encoding="utf-8")
        entry = rack_certs(state, rack_name)[ident]
        entry.update(_describe(chain), status="", issued=now_iso())
        serve_certificate(store, state, rack_name, ident)
        jobs.finished(state, "dns01", ident)
