"""The fake ``convox certs`` and ``certs import`` (pkg/cli/certs.go): ``certs`` prints
``ID  DOMAIN  EXPIRES  Status`` (Status ``Ready``); ``certs import <pub> <key> [--chain F]
[--id]`` reads both files in the CLI (``open F: no such file or directory`` when missing) and
prints ``Importing certificate... OK, <id>``, only the id on stdout with ``--id``. The rack keeps
``tls.crt`` as ``<pub>\\n<chain>`` (provider/k8s/certificate.go CertificateCreate); the world
keeps it as files next to itself, and :class:`fakes.servers.HttpsServer` serves it for the
domains of a service whose manifest names it (``certificate: {id}``)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from fakes.convox_store import Fail, Streams, table
from fakes.world import fake_id, next_number, note_effect, read_world, update_world, world_path


def _read(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Fail(f"open {name}: no such file or directory") from None


def _expires(ts: float) -> str:
    """common.Ago of a future NotAfter (go-humanize: ``N days from now``), coarsely."""
    days = int((ts - time.time()) // 86400)
    return f"{days} days from now" if days >= 2 else "now"


def certs_list(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    with update_world() as world:
        _issue_due(world)
        certs = dict(world["convox"].get("certs", {}))
    rows = [
        [ident, c["domain"], _expires(c["expires"]), c.get("status") or "Ready"]
        for ident, c in sorted(certs.items())
        if opts.get("generated") or c.get("status") != "Not Ready"
    ]
    s.out(table(["ID", "DOMAIN", "EXPIRES", "Status"], rows))
    return 0


def certs_import(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    pub, key = _read(positional[0]), _read(positional[1])
    chain = _read(str(opts["chain"])) if opts.get("chain") else ""
    s.out("Importing certificate... ")
    cert = x509.load_pem_x509_certificate(pub.encode())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        names = []
    with update_world() as world:
        ident = "cert-" + fake_id("", next_number(world, "cert")).lower()[-5:]
        folder = Path(world_path()).parent / "certs"
        folder.mkdir(mode=0o700, exist_ok=True)
        (folder / f"{ident}.pem").write_text(f"{pub}\n{chain}", encoding="utf-8")
        key_file = folder / f"{ident}-key.pem"
        key_file.touch(mode=0o600)
        key_file.write_text(key, encoding="utf-8")
        world["convox"].setdefault("certs", {})[ident] = {
            "domain": str(cn[0].value) if cn else "",
            "domains": names,
            "expires": cert.not_valid_after_utc.timestamp(),
            "imported": time.time(),
        }
        note_effect(world, "convox certs import")
    s.out(f"OK, {ident}\n")
    s.release_id(ident)
    return 0


# -- DNS-01 (certs generate --issuer letsencrypt, letsencrypt dns route53 add/list) -------------
# provider/k8s/certificate.go: the id is cert-<sha1 of the domains joined by "-">, issued
# asynchronously by cert-manager: ``certs --generated`` shows it "Not Ready" until then. The fake
# issues it ``certificate_delay_dns01`` seconds (world, default 1) after the request, from a CA
# of its own (``certs/letsencrypt-ca.pem``, which a test trusts with tls.ca_file), when a Route53
# solver's dns-zones hold the name.
def _letsencrypt_ca(folder: Path) -> trustme.CA:
    cert, key = folder / "letsencrypt-ca.pem", folder / "letsencrypt-ca-key.pem"
    if cert.exists() and key.exists():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    ca = trustme.CA(organization_name="fake letsencrypt")
    key.write_bytes(ca.private_key_pem.bytes())
    cert.write_bytes(ca.cert_pem.bytes())
    return ca


def _issue_due(world: dict[str, Any]) -> None:
    """Issue every requested certificate whose time has come (under the world lock)."""
    folder = Path(world_path()).parent / "certs"
    zones = [str(z) for s in world["convox"].get("solvers", []) for z in s.get("dns-zones") or []]
    for ident, entry in world["convox"].get("certs", {}).items():
        if entry.get("status") != "Not Ready" or time.time() < entry["ready_at"]:
            continue
        if not all(any(d == z or d.endswith("." + z) for z in zones) for d in entry["domains"]):
            continue  # no solver for the zone: cert-manager keeps trying
        folder.mkdir(mode=0o700, exist_ok=True)
        leaf = _letsencrypt_ca(folder).issue_cert(*entry["domains"])
        leaf.cert_chain_pems[0].write_to_path(str(folder / f"{ident}.pem"))
        key_file = folder / f"{ident}-key.pem"
        key_file.touch(mode=0o600)
        leaf.private_key_pem.write_to_path(str(key_file))
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        entry.update(status="", expires=cert.not_valid_after_utc.timestamp())


def certs_generate(
    positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None
) -> int:
    s.out("Generating certificate... ")
    if opts.get("issuer") != "letsencrypt":
        raise Fail("invalid issuer")
    domains = [d.strip() for d in positional]
    ident = "cert-" + hashlib.sha1("-".join(domains).encode()).hexdigest()
    with update_world() as world:
        certs = world["convox"].setdefault("certs", {})
        if ident in certs:
            raise Fail(f'certificates.cert-manager.io "{ident}" already exists')
        delay = float(world["convox"].get("certificate_delay_dns01", 1))
        certs[ident] = {
            "domain": "",
            "domains": domains,
            "expires": 0,
            "status": "Not Ready",
            "ready_at": time.time() + delay,
        }
        note_effect(world, "convox certs generate")
    s.out(f"OK, {ident}\n")
    s.release_id(ident)
    return 0


def route53_add(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    ident = int(opts.get("id") or 0)
    if ident <= 0:
        raise Fail("invalid id or id is not provided")
    zones = [z.strip() for z in str(opts.get("dns-zones") or "").split(",") if z.strip()]
    if not zones:
        raise Fail("dns zones are required")
    if not opts.get("role"):
        raise Fail("route53 access role is required")
    with update_world() as world:
        solvers = world["convox"].setdefault("solvers", [])
        if any(sv["id"] == ident for sv in solvers):
            raise Fail("id required or provided id is already in use")
        solvers.append({"id": ident, "dns-zones": zones, "role": str(opts["role"])})
        note_effect(world, "convox letsencrypt dns route53 add")
    s.out("OK\n")
    return 0


def route53_list(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    rows = [
        [str(sv["id"]), ",".join(sv["dns-zones"]), "", "", sv["role"]]
        for sv in read_world()["convox"].get("solvers", [])
    ]
    s.out(table(["ID", "DNS-ZONES", "HOSTED-ZONE-ID", "REGION", "ROLE"], rows))
    return 0
