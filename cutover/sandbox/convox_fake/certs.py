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
"""

from __future__ import annotations

import time
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.convox_fake import jobs
from cutover.sandbox.convox_fake.manifest import Manifest
from cutover.sandbox.convox_fake.model import rack_by_name
from cutover.sandbox.convox_fake.output import now_iso
from cutover.sandbox.convox_fake.runtime import web_service
from cutover.sandbox.convox_fake.store import Json, Store, timing

CERT_DIR = "router-certs"


def cert_dir(folder: Path) -> Path:
    return procs.ensure_private_dir(folder / CERT_DIR)


def ensure(store: Store, state: Json, rack_name: str, app: str, manifest: Manifest | None) -> None:
    """Under the lock: start a job for every domain of the routed service not issued yet."""
    web = web_service(manifest)
    router = state.get("router") or {}
    if web is None or not router.get("ca_folder") or not router.get("dns_port"):
        return
    issued = state.setdefault("certificates", {})
    running = {j.get("id") for j in state.get("jobs") or [] if j.get("kind") == "certs"}
    for domain in web.domains:
        if domain in running or (issued.get(domain) or {}).get("status") == "issued":
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
