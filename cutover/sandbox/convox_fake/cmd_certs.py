"""``convox certs``, ``certs import``, ``certs generate`` and ``letsencrypt dns route53 add/list``.

From the convox source (commit in ``cutover/adapters/convox_cli.json``):

* ``pkg/cli/certs.go``: ``certs`` prints the table ``ID  DOMAIN  EXPIRES  Status`` (EXPIRES is
  ``common.Ago(Expiration)``, e.g. ``2 months from now``; Status ``CoalesceString(status,
  "Ready")``); ``certs import <pub> <key> [--chain FILE] [--id]`` reads the files in the CLI
  (``os.ReadFile``: a missing one fails there) and prints ``Importing certificate... OK, <id>``;
  ``certs generate <domain>... [--issuer letsencrypt] [--duration D] [--id]`` prints
  ``Generating certificate... OK, <id>``; with ``--id`` everything but the id goes to stderr.
  ``letsencrypt dns route53 add --id N --dns-zones a,b --role ARN [--hosted-zone-id] [--region]``
  refuses ``invalid id or id is not provided`` (id <= 0), ``dns zones are required``,
  ``route53 access role is required`` (``pkg/structs/dns.go`` Validate) and ``id required or
  provided id is already in use``, then prints ``OK``; ``list`` prints ``ID  DNS-ZONES
  HOSTED-ZONE-ID  REGION  ROLE``. Errors are ``ERROR: <message>``, exit 1.
* ``provider/k8s/certificate.go``: an import is a ``kubernetes.io/tls`` secret named
  ``cert-<5 random>`` (GenerateName) whose listing shows the leaf's CN, DNS names and NotAfter;
  ``generate`` without ``--issuer`` makes a self-signed certificate for exactly one domain;
  with ``--issuer letsencrypt`` (at most 10 domains) it creates a cert-manager Certificate
  ``cert-<sha1(domains joined by "-")>`` that is issued asynchronously: until then only
  ``certs --generated`` lists it, Status ``Not Ready``, DOMAIN empty (``Spec.CommonName``).

The rack-side issuance and the router's use of certificates are in :mod:`.certs`.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

from cutover.sandbox.convox_fake import certs
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.output import CliError, ago, table

# Kubernetes' GenerateName suffix alphabet (apimachinery utilrand: no vowels, no confusables).
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
ISSUER_LETSENCRYPT = "letsencrypt"


def _read(ctx: Ctx, name: str) -> str:
    path = Path(name) if Path(name).is_absolute() else ctx.cwd / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"open {name}: no such file or directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"read {name}: {exc}") from None


def cmd_certs(ctx: Ctx) -> None:
    generated = ctx.flag("generated")
    with ctx.store.locked() as state:
        rack_name, _ = ctx.rack(state)
        listed = certs.listing(state, rack_name, generated=generated)
    rows = [
        [c["id"], c.get("domain", ""), ago(str(c.get("expires", ""))), c.get("status") or "Ready"]
        for c in sorted(listed, key=lambda c: str(c["id"]).upper())
    ]
    ctx.out.write(table(["ID", "DOMAIN", "EXPIRES", "Status"], rows))


def cmd_certs_import(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    pub = _read(ctx, ctx.arg(0))
    key = _read(ctx, ctx.arg(1))
    chain = _read(ctx, ctx.string("chain")) if ctx.string("chain") else ""
    ctx.out.startf("Importing certificate")
    ident = "cert-" + "".join(random.choice(_K8S_ALPHABET) for _ in range(5))
    with ctx.store.locked() as state:
        rack_name, _ = ctx.rack(state)
        # tls.crt is "<pub>\n<chain>" (CertificateCreate); the listing reads its first block.
        certs.store_certificate(ctx.store, state, rack_name, ident, f"{pub}\n{chain}", key)
    ctx.out.ok(ident)
    if ctx.flag("id"):
        ctx.out.print_id(ident)


def cmd_certs_generate(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    issuer = ctx.string("issuer")
    duration = ctx.string("duration")
    ctx.out.startf("Generating certificate")
    domains = [d.strip() for d in ctx.args]
    if not issuer:
        if len(domains) != 1:
            raise CliError("must specify only one domain")
        with ctx.store.locked() as state:
            rack_name, _ = ctx.rack(state)
            ident = "cert-" + "".join(random.choice(_K8S_ALPHABET) for _ in range(5))
            certs.self_signed(ctx.store, state, rack_name, ident, domains[0])
    elif issuer == ISSUER_LETSENCRYPT:
        if len(domains) > 10:
            raise CliError("can not specify more than 10 domain name")
        if duration and not re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", duration):
            raise CliError(f'invalid duration: time: invalid duration "{duration}"')
        ident = "cert-" + hashlib.sha1("-".join(domains).encode()).hexdigest()  # noqa: S324 - the rack's id
        with ctx.store.locked() as state:
            rack_name, _ = ctx.rack(state)
            if ident in certs.rack_certs(state, rack_name):
                raise CliError(f'certificates.cert-manager.io "{ident}" already exists')
            certs.request_letsencrypt(ctx.store, state, rack_name, ident, domains)
    else:
        raise CliError("invalid issuer")
    ctx.out.ok(ident)
    if ctx.flag("id"):
        ctx.out.print_id(ident)


def _solver_fields(ctx: Ctx) -> dict[str, object]:
    zones = [z.strip() for z in ctx.string("dns-zones").split(",") if z.strip()]
    if not zones:
        raise CliError("dns zones are required")
    if not ctx.string("role"):
        raise CliError("route53 access role is required")
    return {
        "dns-zones": zones,
        "route53": {
            "hosted-zone-id": ctx.string("hosted-zone-id"),
            "region": ctx.string("region"),
            "role": ctx.string("role"),
        },
    }


def cmd_route53_add(ctx: Ctx) -> None:
    ident = ctx.number("id") or 0
    if ident <= 0:
        raise CliError("invalid id or id is not provided")
    solver: dict[str, object] = {"id": ident, **_solver_fields(ctx)}
    with ctx.store.locked() as state:
        rack_name, _ = ctx.rack(state)
        config = certs.letsencrypt_config(state, rack_name)
        if any(int(s.get("id", 0)) == ident for s in config["solvers"]):
            raise CliError("id required or provided id is already in use")
        config["solvers"].append(solver)
    ctx.out.ok()


def cmd_route53_list(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        rack_name, _ = ctx.rack(state)
        solvers = list(certs.letsencrypt_config(state, rack_name)["solvers"])
    rows = []
    for solver in solvers:
        route53 = solver.get("route53")
        if isinstance(route53, dict):
            rows.append(
                [
                    str(solver.get("id", "")),
                    ",".join(solver.get("dns-zones") or []),
                    str(route53.get("hosted-zone-id") or ""),
                    str(route53.get("region") or ""),
                    str(route53.get("role") or ""),
                ]
            )
    ctx.out.write(table(["ID", "DNS-ZONES", "HOSTED-ZONE-ID", "REGION", "ROLE"], rows))
