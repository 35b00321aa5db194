"""Tests for the sandbox CA: persistence, and real TLS handshakes trusting only ca.pem."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from cutover.sandbox.tls import SandboxCA


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> bytes:
    """Run one TLS exchange on loopback; return what the client read (raises on failure)."""
    errors: list[BaseException] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"pong")
            except (OSError, ssl.SSLError) as exc:
                errors.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_ctx.wrap_socket(raw, server_hostname=hostname) as tls,
            ):
                return tls.recv(4)
        finally:
            thread.join(10)
            assert not thread.is_alive()


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_create_persists_and_load_reads_back(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    ca = SandboxCA.create(folder)
    assert ca.ca_file == folder / "ca.pem"
    assert ca.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert _mode(folder) == 0o700
    assert _mode(folder / "ca-key.pem") == 0o600
    loaded = SandboxCA.load(folder)
    assert loaded.ca_file.read_bytes() == ca.ca_file.read_bytes()
    # create() again keeps the CA that clients already trust.
    again = SandboxCA.create(folder)
    assert again.ca_file.read_bytes() == ca.ca_file.read_bytes()
    assert "PRIVATE" not in repr(ca)


def test_load_without_a_ca_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ca-key\.pem"):
        SandboxCA.load(tmp_path)


def test_issue_needs_a_name(tmp_path: Path) -> None:
    ca = SandboxCA.create(tmp_path / "ca")
    with pytest.raises(ValueError, match="at least one"):
        ca.issue([], tmp_path / "c.pem", tmp_path / "k.pem")


def test_issued_certificate_verifies_against_ca_pem_only(tmp_path: Path) -> None:
    SandboxCA.create(tmp_path / "ca")
    # Issue from a CA re-loaded from disk, as a later process would.
    ca = SandboxCA.load(tmp_path / "ca")
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    ca.issue(["localhost", "api.heroku.sandbox.test", "127.0.0.1"], cert, key)
    assert _mode(key) == 0o600
    assert "PRIVATE KEY" in key.read_text()
    assert "PRIVATE" not in cert.read_text()

    server_ctx = _server_context(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(ca.ca_file))  # no system roots
    for hostname in ("localhost", "api.heroku.sandbox.test", "127.0.0.1"):
        assert _handshake(server_ctx, client_ctx, hostname) == b"pong"

    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(server_ctx, client_ctx, "other.sandbox.test")


def test_a_client_trusting_another_ca_refuses_the_certificate(tmp_path: Path) -> None:
    ca = SandboxCA.create(tmp_path / "ca")
    other = SandboxCA.create(tmp_path / "other")
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    ca.issue(["localhost"], cert, key)
    client_ctx = ssl.create_default_context(cafile=str(other.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        _handshake(_server_context(cert, key), client_ctx, "localhost")
