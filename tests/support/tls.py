"""Throwaway certificates for loopback servers, and what a TLS server presents."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    """A trustme CA and, in PEM files, that CA, a server certificate chain and its key."""

    ca: trustme.CA = field(repr=False)
    ca_file: Path
    cert_file: Path
    key_file: Path


def write_tls_files(folder: Path) -> TlsFiles:
    """A new CA and a certificate for 127.0.0.1 and localhost, written to ``folder``
    (``ca.pem``, ``cert.pem`` holding the whole chain, ``key.pem``)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(folder / "key.pem"))
    for index, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(folder / "cert.pem"), append=index > 0)
    return TlsFiles(ca, folder / "ca.pem", folder / "cert.pem", folder / "key.pem")


def peer_dns_names(port: int, server_name: str, context: ssl.SSLContext) -> list[str]:
    """The DNS subject alternative names of the certificate the server on loopback ``port``
    presents for SNI ``server_name`` (the handshake must verify against ``context``)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as sock,
    ):
        cert = sock.getpeercert()
    assert cert is not None
    sans = cert.get("subjectAltName", ())
    return [str(pair[1]) for pair in sans if isinstance(pair, tuple) and pair[0] == "DNS"]
