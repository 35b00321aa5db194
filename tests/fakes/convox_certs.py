"""The fake ``convox certs`` and ``certs import`` (pkg/cli/certs.go): ``certs`` prints
``ID  DOMAIN  EXPIRES  Status`` (Status ``Ready``); ``certs import <pub> <key> [--chain F]
[--id]`` reads both files in the CLI (``open F: no such file or directory`` when missing) and
prints ``Importing certificate... OK, <id>``, only the id on stdout with ``--id``. The rack keeps
``tls.crt`` as ``<pub>\\n<chain>`` (provider/k8s/certificate.go CertificateCreate); the world
keeps it as files next to itself, and :class:`fakes.servers.HttpsServer` serves it for the
domains of a service whose manifest names it (``certificate: {id}``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
    rows = [
        [ident, c["domain"], _expires(c["expires"]), "Ready"]
        for ident, c in sorted(read_world()["convox"].get("certs", {}).items())
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
