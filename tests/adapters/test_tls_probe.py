"""cutover/adapters/tls.py against real TLS servers on loopback: what the certificate served
for a name covers, whether it chains to a trusted root, when it expires; and the findings an
operator reads (names covered, the expiry date, the issuer)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cutover.adapters.tls import findings, name_matches, probe

NAME = "www.example.test"


@contextmanager
def tls_server(cert_file: Path, key_file: Path) -> Iterator[str]:
    """A TLS server on loopback presenting ``cert_file`` to every client; its address."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _leaf(ca: trustme.CA, folder: Path, *names: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(*names)
    cert, key = folder / "leaf.pem", folder / "leaf-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def _expired_leaf(ca: trustme.CA, folder: Path, name: str) -> tuple[Path, Path]:
    """Built with cryptography's x509 builder: valid last year only, signed by ``ca``."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400))
        .not_valid_after(now - timedelta(days=35))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_file, key_file = folder / "expired.pem", folder / "expired-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def ca(tmp_path: Path) -> trustme.CA:
    authority = trustme.CA(organization_name="test root")
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return authority


def test_a_certificate_covering_the_name_from_a_trusted_root_has_no_findings(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert, key = _leaf(ca, tmp_path, NAME)
    with tls_server(cert, key) as address:
        served = probe(NAME, address, ca_files=[str(tmp_path / "ca.pem")])
    assert served.names == [NAME]
    assert served.trusted
    assert findings(served, NAME, min_days=14) == []


def test_a_certificate_not_covering_the_name_lists_the_names_it_covers(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert, key = _leaf(ca, tmp_path, "router.rack.example", "*.rack.example")
    with tls_server(cert, key) as address:
        served = probe(NAME, address, ca_files=[str(tmp_path / "ca.pem")])
    found = findings(served, NAME, min_days=14)
    assert len(found) == 1
    assert "does not cover it" in found[0]
    assert "router.rack.example, *.rack.example" in found[0]


def test_an_expired_certificate_is_reported_with_its_date(ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = _expired_leaf(ca, tmp_path, NAME)
    with tls_server(cert, key) as address:
        served = probe(NAME, address, ca_files=[str(tmp_path / "ca.pem")])
    expired_on = (datetime.now(UTC) - timedelta(days=35)).strftime("%Y-%m-%d")
    assert findings(served, NAME, min_days=14) == [
        f"the certificate served for {NAME} expired on {expired_on}"
    ]


def test_a_certificate_expiring_within_min_days_is_reported(ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = _leaf(ca, tmp_path, NAME)
    with tls_server(cert, key) as address:
        served = probe(NAME, address, ca_files=[str(tmp_path / "ca.pem")])
    later = served.not_after - timedelta(days=3)  # as if three days before it expires
    found = findings(served, NAME, min_days=14, now=later)
    assert found == [
        f"the certificate served for {NAME} expires on {served.not_after:%Y-%m-%d}, within "
        "14 days (tls.min_days)"
    ]


def test_an_untrusted_issuer_is_named(tmp_path: Path) -> None:
    stranger = trustme.CA(organization_name="unknown issuer")
    cert, key = _leaf(stranger, tmp_path, NAME)
    with tls_server(cert, key) as address:
        served = probe(NAME, address, ca_files=[])
    assert not served.trusted
    found = findings(served, NAME, min_days=14)
    assert len(found) == 1
    assert "does not chain to a trusted root" in found[0]
    assert served.issuer in found[0]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("www.example.test", "WWW.example.test", True),
        ("*.example.test", "www.example.test", True),
        ("*.example.test", "a.b.example.test", False),
        ("*.example.test", "example.test", False),
        ("w*.example.test", "www.example.test", False),
    ],
)
def test_name_matching_follows_rfc_6125(pattern: str, name: str, matches: bool) -> None:
    assert name_matches(pattern, name) is matches
