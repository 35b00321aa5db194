"""tls-ready: the production name's certificate at the router, before the window.

Convox issues a custom domain's certificate with Let's Encrypt HTTP-01 by default
(provider/k8s/certificate.go, cert-manager), which succeeds only once the name points at the
router: after the flip users would meet a certificate error until issuance. tls-ready, after
add-domain and before confirm-window (so before switch-dns), connects to the router (the sandbox's
rehearsal address where it gives one, else the Router host of ``convox rack`` on 443) with SNI
set to the production name and checks that the certificate covers the name, chains to a trusted
root (system store plus ``tls.ca_file`` / the sandbox CA) and does not expire within
``tls.min_days``; then that the smoke paths answer with that Host (and carry ``tls.marker``).

``tls.mode`` (playbook_dns.TlsSection) says how the certificate gets there; add-domain obtains it
(:func:`obtain_certificate`) and names it in convox.yml (``certificate: {id}``,
pkg/manifest/service.go) before its deploy:

* ``import``: ``convox certs import <pub> <key> [--chain F] --id``. The key is read from
  ``tls.key_file`` or the variable ``tls.key_env``; from a variable it is written to a 0600 file
  in a 0700 temporary folder, removed right after: it never reaches argv, state or logs.
* ``dns01``: ``convox letsencrypt dns route53 add`` (unless that solver id exists with the same
  zones), ``convox certs generate DOMAIN --issuer letsencrypt --id``, then ``convox certs
  --generated`` until its Status is not ``Not Ready`` (issuance is asynchronous).
* ``http01``: nothing before the flip. tls-ready says plainly that the name will serve a
  certificate error from switch-dns until issuance, and needs consent (``tls.accept_gap: true``
  or yes at its gate); the smoke paths are then checked without verifying the certificate, and
  verify-site measures the gap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import ssl
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cutover.errors import CutoverError, InvalidInput
from cutover.fsutil import atomic_write
from cutover.playbook_dns import TlsSection
from cutover.steps.app import smoke_checks
from cutover.steps.base import Context, Step, StepOutputs, cmd
from cutover.steps.preflight import PreflightOutputs

if TYPE_CHECKING:
    from cutover.adapters.tls import ServedCertificate

NOT_READY = "Not Ready"


def router_address(ctx: Context, router: str) -> str:
    """Where the router answers: the sandbox's rehearsal address for it, else ``router:443``."""
    return ctx.http.resolve.get(router) or f"{router}:443"


def ca_files(ctx: Context) -> list[str]:
    """Roots trusted besides the system store: ``tls.ca_file`` and the sandbox CA."""
    files = []
    if ctx.model.tls.ca_file:
        path = ctx.playbook.resolve(ctx.model.tls.ca_file)
        try:  # a file that is not there or holds no certificate: the field, not the certificate
            ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInput(
                f"{ctx.playbook.path}: tls.ca_file: {path} is not a readable PEM CA file "
                f"({getattr(exc, 'strerror', None) or exc})"
            ) from None
        files.append(str(path))
    if ctx.http.ca_file:
        files.append(ctx.http.ca_file)
    return files


@dataclass(frozen=True)
class CertificateCheck:
    cert: ServedCertificate
    problems: list[str]
    address: str

    @property
    def gap(self) -> bool:
        """HTTP-01 before the flip: the router has no certificate for the name yet."""
        return not self.cert.covers(self.cert.sni)


def check_certificate(ctx: Context, router: str) -> CertificateCheck:
    from cutover.adapters.tls import findings, probe  # noqa: PLC0415 - adapters load when used

    assert ctx.model.dns
    name = ctx.model.dns.record
    address = router_address(ctx, router)
    cert = probe(name, address, ca_files=ca_files(ctx))
    return CertificateCheck(cert, findings(cert, name, min_days=ctx.model.tls.min_days), address)


def marker_problem(tls: TlsSection, headers: dict[str, str], text: str) -> str | None:
    """Why a response does not show it came from Convox (``tls.marker``), or None."""
    marker = tls.marker
    if marker is None:
        return None
    if marker.header and marker.value is not None:
        got = headers.get(marker.header.lower())
        if got != marker.value:
            return f"header {marker.header} is {got!r}, not {marker.value!r} (tls.marker)"
    if marker.body and marker.body not in text:
        return f"the body lacks {marker.body!r} (tls.marker)"
    return None


def check_paths(ctx: Context, address: str, *, verify: bool) -> list[str]:
    """GET every smoke path on the production name through ``address`` until each answers as
    expected (status, contains, tls.marker) or smoke.timeout runs out."""
    from cutover.adapters.tls import get  # noqa: PLC0415 - adapters load when used

    assert ctx.model.dns
    name = ctx.model.dns.record
    checks, timeout = smoke_checks(ctx)
    results = []
    for check in checks:
        deadline = time.monotonic() + timeout
        while True:
            problem = None
            try:
                resp = get(name, check.path, address, ca_files=ca_files(ctx), verify=verify)
                last = f"HTTP {resp.status}"
                if resp.status != check.status:
                    problem = f"{last} (expected {check.status})"
                elif check.contains and check.contains not in resp.text:
                    problem = f"{last}, body lacks {check.contains!r}"
                else:
                    problem = marker_problem(ctx.model.tls, resp.headers, resp.text)
            except CutoverError as exc:
                problem = exc.brief
            if problem is None:
                break
            if time.monotonic() >= deadline:
                raise CutoverError(
                    f"GET https://{name}{check.path} through the router {address}: {problem}",
                    resolution="Check that add-domain's release is running (`convox ps`, "
                    "`convox logs`) and that tls.marker matches what the Convox app sends.",
                )
            ctx.sleep(min(3.0, max(0.2, timeout / 30)))
        results.append(f"{check.path}: {last}")
    return results


def mode_resolution(tls: TlsSection) -> str:
    if tls.mode == "import":
        return (
            "Import a certificate covering the name (tls.cert, tls.chain, tls.key_file or "
            "tls.key_env), then: cutover run --from add-domain"
        )
    if tls.mode == "dns01":
        return (
            "Check the Route53 solver (`convox letsencrypt dns route53 list`) and `convox certs "
            "--generated`, then: cutover run --from add-domain"
        )
    return (
        "Under http01 the certificate is issued only after the flip. To have one before it, "
        "use tls.mode import or dns01, then: cutover run --from add-domain"
    )


def gap_warning(name: str, check: CertificateCheck) -> str:
    return (
        f"tls.mode http01: the router has no certificate for {name} yet (it serves one for "
        f"{', '.join(check.cert.names) or 'no names'}). Let's Encrypt issues it only once the "
        f"name points at the router, so from switch-dns until issuance (usually a minute or "
        f"more) visitors of https://{name} get a certificate error."
    )


class TlsReadyOutputs(StepOutputs):
    step_id = "tls-ready"
    mode: str
    names: list[str]
    issuer: str
    expires: str
    checks: list[str]
    gap_expected: bool = False  # http01: no certificate until after the flip
    consent: str | None = None  # how the operator accepted that gap


class TlsReady(Step):
    id = "tls-ready"
    title = "Check the production name's certificate at the router"
    outputs = TlsReadyOutputs
    reads = (PreflightOutputs,)
    fields = ("dns.record", "tls", "smoke")

    def applies(self, model: Any) -> str | None:
        return None if model.dns else "no dns section in the playbook"

    def _router(self, ctx: Context) -> str:
        pre = self.read(ctx, PreflightOutputs)
        return str((pre.router if pre else "") or ctx.convox.router()).rstrip(".").lower()

    def describe(self, ctx: Context) -> list[str]:
        assert ctx.model.dns
        tls, name = ctx.model.tls, ctx.model.dns.record
        lines = [
            f"TLS to the router with SNI {name}: covers {name}, chains to a trusted root, "
            f"valid for at least {tls.min_days} days (tls.mode {tls.mode})",
            *(f"GET https://{name}{c.path} through the router" for c in smoke_checks(ctx)[0]),
        ]
        if tls.mode == "http01" and not tls.accept_gap:
            lines.append("gate (http01, no certificate yet): accept the certificate gap")
        return lines

    def _check(self, ctx: Context) -> CertificateCheck:
        cached = ctx.extras.get(self.id)
        if isinstance(cached, CertificateCheck):
            return cached
        check = check_certificate(ctx, self._router(ctx))
        ctx.extras[self.id] = check
        return check

    def gate_question(self, ctx: Context) -> str | None:
        assert ctx.model.dns
        tls = ctx.model.tls
        if tls.mode != "http01" or tls.accept_gap:
            return None
        check = self._check(ctx)
        if not check.gap:
            return None
        return gap_warning(ctx.model.dns.record, check) + " Accept that gap?"

    def apply(self, ctx: Context) -> TlsReadyOutputs:
        assert ctx.model.dns
        tls, name = ctx.model.tls, ctx.model.dns.record
        check = ctx.extras.pop(self.id, None)
        if not isinstance(check, CertificateCheck):
            check = check_certificate(ctx, self._router(ctx))
        gap = tls.mode == "http01" and check.gap
        consent = None
        if gap:
            ctx.note(gap_warning(name, check))
            consent = "tls.accept_gap" if tls.accept_gap else "gate"
        elif check.problems:
            raise CutoverError(
                f"the router does not serve a usable certificate for {name}",
                details="\n".join([*check.problems, f"served: {check.cert.summary()}"]),
                resolution=mode_resolution(tls),
            )
        else:
            ctx.note(f"{name}: {check.cert.summary()}")
        results = check_paths(ctx, check.address, verify=not gap)
        return TlsReadyOutputs(
            mode=tls.mode,
            names=check.cert.names,
            issuer=check.cert.issuer,
            expires=check.cert.not_after.isoformat(),
            checks=results,
            gap_expected=gap,
            consent=consent,
        )


# -- obtaining the certificate (add-domain, before its deploy) ----------------------------------


@contextlib.contextmanager
def key_path(ctx: Context) -> Iterator[Path]:
    """The private key as a file for ``convox certs import``: ``tls.key_file`` as it is, or
    ``tls.key_env``'s value in a 0600 file in a 0700 temporary folder, removed afterwards."""
    tls = ctx.model.tls
    if tls.key_file:
        path = ctx.playbook.resolve(tls.key_file)
        if not path.is_file():
            raise InvalidInput(f"{ctx.playbook.path}: tls.key_file: {path} is not a file")
        yield path
        return
    assert tls.key_env
    value = os.environ.get(tls.key_env, "")
    if "PRIVATE KEY-----" not in value:
        raise InvalidInput(
            f"tls.key_env: the environment variable {tls.key_env} holds no PEM private key",
            resolution=f'export {tls.key_env}="$(cat server.key)" and run again.',
        )
    for line in value.splitlines():  # the base64 body lines, should any be echoed
        if len(line) >= 16 and "-----" not in line:
            ctx.masker.add(line)
    # Named after the project: a folder an earlier run left (kill -9 skips the removal below)
    # is this project's and is removed now, under the run lock, before the new one is made.
    project = hashlib.sha256(str(ctx.playbook.state_dir).encode()).hexdigest()[:12]
    prefix = f"cutover-key-{project}-"
    for left in Path(tempfile.gettempdir()).glob(prefix + "*"):
        shutil.rmtree(left, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix))  # mkdtemp: 0700
    try:
        path = folder / "key.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value if value.endswith("\n") else value + "\n")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _existing_file(ctx: Context, field: str, value: str | None) -> Path | None:
    if not value:
        return None
    path = ctx.playbook.resolve(value)
    if not path.is_file():
        raise InvalidInput(f"{ctx.playbook.path}: {field}: {path} is not a file")
    return path


def import_certificate(ctx: Context) -> str:
    tls = ctx.model.tls
    cert = _existing_file(ctx, "tls.cert", tls.cert)
    assert cert is not None
    chain = _existing_file(ctx, "tls.chain", tls.chain)
    with key_path(ctx) as key:
        ident = ctx.convox.certs_import(cert, key, chain)
    ctx.note(f"imported {cert.name} as certificate {ident}")
    return ident


def generate_certificate(ctx: Context) -> str:
    """DNS-01 through convox's Route53 solver; waits until it is issued."""
    assert ctx.model.dns
    tls, name = ctx.model.tls, ctx.model.dns.record
    zones = tls.dns_zones or [ctx.model.dns.zone]
    solvers = {row["ID"]: row for row in ctx.convox.route53_solvers()}
    existing = solvers.get(str(tls.solver_id))
    if existing is None:
        assert tls.role
        ctx.convox.route53_add(tls.solver_id, zones, tls.role, tls.hosted_zone_id, tls.region)
    elif sorted(existing["DNS-ZONES"].split(",")) != sorted(zones):
        raise CutoverError(
            f"the rack's Route53 solver {tls.solver_id} solves {existing['DNS-ZONES']}, not "
            f"{','.join(zones)}",
            resolution="Pick a free tls.solver_id, or update it: convox letsencrypt dns "
            f"route53 update --id {tls.solver_id} --dns-zones {','.join(zones)} --role ...",
        )
    # The rack names it cert-<sha1 of the domains joined by "-"> (provider/k8s/certificate.go).
    ident = "cert-" + hashlib.sha1(name.encode()).hexdigest()  # noqa: S324 - convox's id, not security
    rows = {row["ID"]: row for row in ctx.convox.certificates(generated=True)}
    if ident not in rows:
        ident = ctx.convox.certs_generate(name)
    deadline = time.monotonic() + tls.issue_timeout
    while True:
        row = {r["ID"]: r for r in ctx.convox.certificates(generated=True)}.get(ident)
        if row is not None and row["Status"] != NOT_READY:
            break
        if time.monotonic() >= deadline:
            raise CutoverError(
                f"certificate {ident} for {name} was not issued within {tls.issue_timeout}s "
                "(tls.issue_timeout)",
                resolution="Check the solver's role and zones (`convox letsencrypt dns route53 "
                "list`) and the rack's cert-manager logs, then: cutover run --from add-domain",
            )
        ctx.sleep(5.0 if tls.issue_timeout > 60 else 1.0)
    ctx.note(f"certificate {ident} for {name} issued (DNS-01)")
    return ident


def certificate_source(ctx: Context) -> str | None:
    """What the certificate is made from, to tell a re-run whether the one obtained earlier
    still fits: the sha256 of the certificate and chain files (import), or the name (dns01)."""
    tls = ctx.model.tls
    if tls.mode == "import":
        digest = hashlib.sha256()
        for field, value in (("tls.cert", tls.cert), ("tls.chain", tls.chain)):
            path = _existing_file(ctx, field, value)
            if path is not None:
                digest.update(path.read_bytes())
        return "sha256:" + digest.hexdigest()
    if tls.mode == "dns01":
        assert ctx.model.dns
        return "dns01:" + ctx.model.dns.record
    return None


def obtain_certificate(
    ctx: Context, saved: str | None, saved_source: str | None
) -> tuple[str | None, str | None]:
    """(the certificate id the web service must name, its source), or (None, None) under
    http01 (the rack's default). ``saved``: the id an earlier attempt obtained from
    ``saved_source``, re-used while the source is the same and the rack still lists it."""
    mode = ctx.model.tls.mode
    if mode == "http01":
        return None, None
    source = certificate_source(ctx)
    if (
        saved
        and saved_source == source
        and any(row["ID"] == saved for row in ctx.convox.certificates(generated=True))
    ):
        return saved, source
    ident = import_certificate(ctx) if mode == "import" else generate_certificate(ctx)
    return ident, source


def deployed_certificate(
    ctx: Context, deployed: dict[str, Any], web: str, source: str | None
) -> str | None:
    """add-domain's check (import/dns01): the certificate the deployed web service names, when
    it was obtained from today's source (``source``, recorded) and the rack has it issued
    (``convox certs --generated``); None otherwise."""
    if ctx.model.tls.mode == "http01" or source != certificate_source(ctx):
        return None  # another certificate file (or none recorded): obtain it again
    svc = (deployed.get("services") or {}).get(web) or {}
    cert = svc.get("certificate") if isinstance(svc, dict) else None
    ident = str(cert.get("id") or "") if isinstance(cert, dict) else ""
    if not ident:
        return None
    rows = ctx.convox.certificates(generated=True)
    return ident if any(r["ID"] == ident and r["Status"] != NOT_READY for r in rows) else None


def obtain_describe(ctx: Context) -> list[str]:
    assert ctx.model.dns
    tls, name = ctx.model.tls, ctx.model.dns.record
    if tls.mode == "import":
        key = "<tls.key_file>" if tls.key_file else f"<0600 temp file from ${tls.key_env}>"
        argv = ctx.convox.certs_import_argv(str(tls.cert), key, tls.chain)
        return [cmd(argv), "convox.yml: services.<web>.certificate.id = <the id printed>"]
    if tls.mode == "dns01":
        zones = tls.dns_zones or [ctx.model.dns.zone]
        add = ctx.convox.route53_add_argv(
            tls.solver_id, zones, tls.role or "", tls.hosted_zone_id, tls.region
        )
        return [
            cmd(ctx.convox.argv("letsencrypt", "dns", "route53", "list", app=False)),
            cmd(add) + "   (unless that solver exists)",
            cmd(ctx.convox.certs_generate_argv(name)),
            cmd(ctx.convox.certs_argv(generated=True)) + "   (until it is no longer Not Ready)",
            "convox.yml: services.<web>.certificate.id = <its id>",
        ]
    return []


def set_certificate_in_manifest(path: Path, service: str, ident: str) -> bool:
    """``certificate: {id: IDENT}`` under ``services.SERVICE`` in convox.yml, editing the text
    (comments and layout kept). False when it already says so."""
    import yaml  # noqa: PLC0415

    def current(text: str) -> str:
        svc = ((yaml.safe_load(text) or {}).get("services") or {}).get(service) or {}
        cert = svc.get("certificate") if isinstance(svc, dict) else None
        return str(cert.get("id", "")) if isinstance(cert, dict) else ""

    text = path.read_text(encoding="utf-8")
    if current(text) == ident:
        return False
    lines = text.splitlines(keepends=True)
    # Only under the top-level services: (another section may hold a key spelled the same).
    section = next((i for i, ln in enumerate(lines) if re.match(r"^services:\s*(#.*)?$", ln)), None)
    start = None
    for i in range(len(lines) if section is None else section + 1, len(lines)):
        if re.match(r"^\S", lines[i]) and not lines[i].startswith("#"):
            break  # the next top-level section
        if re.match(rf"^(\s+){re.escape(service)}:\s*(#.*)?$", lines[i]):
            start = i
            break
    if start is None:
        raise CutoverError(f"{path}: service {service!r} not found under services:")
    parent = len(lines[start]) - len(lines[start].lstrip())
    body = [
        j
        for j in range(start + 1, len(lines))
        if lines[j].strip() and not lines[j].lstrip().startswith("#")
    ]
    end = next((j for j in body if len(lines[j]) - len(lines[j].lstrip()) <= parent), len(lines))
    inside = [j for j in body if j < end]
    child = (
        lines[inside[0]][: len(lines[inside[0]]) - len(lines[inside[0]].lstrip())]
        if inside
        else " " * (parent + 2)
    )
    step = child[parent:] or "  "
    cert_line = next((j for j in inside if lines[j].startswith(f"{child}certificate:")), None)
    if cert_line is None:
        lines.insert(start + 1, f"{child}certificate:\n{child}{step}id: {ident}\n")
    else:
        id_line = next(
            (j for j in inside if j > cert_line and re.match(rf"^{child}\s+id:", lines[j])), None
        )
        if id_line is not None:
            indent = lines[id_line][: len(lines[id_line]) - len(lines[id_line].lstrip())]
            lines[id_line] = f"{indent}id: {ident}\n"
        else:
            lines.insert(cert_line + 1, f"{child}{step}id: {ident}\n")
            lines[cert_line] = f"{child}certificate:\n"
    new = "".join(lines)
    if current(new) != ident:
        raise CutoverError(
            f"could not set the certificate in {path}; add `certificate: {{id: {ident}}}` "
            f"under services.{service} by hand"
        )
    atomic_write(path, new, mode=stat.S_IMODE(path.stat().st_mode))
    return True
