"""Contract tests of cutover.adapters.http.HttpClient against local HTTPS servers (trustme CAs).

All fast: the servers run in this process on loopback. ``resolve`` overrides (host name ->
127.0.0.1:port) must still verify the certificate for the real host name, sent as SNI.
``test_ca_file_does_not_use_deprecated_api`` pins that HttpClient never passes httpx 0.28's
deprecated ``verify=<str>`` (an error under this suite's ``filterwarnings = error``).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from cutover.adapters.http import HttpClient, Response
from cutover.errors import CutoverError
from cutover.sandbox import procs
from cutover.secrets import MASK, SecretMasker

PAYLOAD = os.urandom(1_500_000)  # more than one 1 MiB chunk
SITE = "shop.example.test"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        path = self.path.split("?")[0]
        if path.endswith("/ok.dump"):
            self._send(200, PAYLOAD)
        elif path.endswith("/empty.dump"):
            self._send(200, b"")
        elif path.endswith("/truncated.dump"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:5000])
            self.wfile.flush()
            self.close_connection = True
        elif path == "/hello":
            self._send(200, f"hello {self.headers.get('Host', '')}".encode())
        else:
            self._send(404, b'{"id":"not_found","message":"No such backup."}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        self.requests: list[tuple[str, str]] = []
        self.sni: list[str | None] = []
        self.context = context
        context.sni_callback = self._on_sni
        super().__init__(("127.0.0.1", 0), _Handler)

    def _on_sni(self, sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        self.sni.append(name)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            wrapped = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


@dataclass
class Https:
    server: _Server
    port: int
    ca_file: Path
    requests: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"


ServerFactory = Callable[..., Https]


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """``https_server(*names, ca=None)``: an HTTPS server with a certificate for ``names``."""
    servers: list[_Server] = []

    def start(*names: str, ca: trustme.CA | None = None) -> Https:
        ca = ca or trustme.CA()
        leaf = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        server = _Server(context)
        servers.append(server)
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        ca_file = tmp_path / f"ca{len(servers)}.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return Https(server, int(server.server_address[1]), ca_file, server.requests)

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------------------
# download()


def test_download_ok(https_server: ServerFactory, tmp_path: Path) -> None:
    srv = https_server()
    masker = SecretMasker()
    dest = tmp_path / "dl" / "latest.dump"
    size, digest = HttpClient(masker, ca_file=str(srv.ca_file)).download(
        srv.url("/backups/tok/ok.dump"), dest
    )
    assert size == len(PAYLOAD) and digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert dest.read_bytes() == PAYLOAD
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700
    assert _leftovers(dest.parent) == ["latest.dump"]


def test_download_404_leaves_no_file_and_masks_the_url(
    https_server: ServerFactory, tmp_path: Path
) -> None:
    srv = https_server()
    masker = SecretMasker()
    url = srv.url("/backups/s3cr3t-t0ken-abcdef/missing.dump")
    masker.add(url)
    dest = tmp_path / "dl" / "latest.dump"
    with pytest.raises(CutoverError, match="HTTP 404") as caught:
        HttpClient(masker, ca_file=str(srv.ca_file)).download(url, dest)
    assert "s3cr3t-t0ken" not in str(caught.value) and MASK in str(caught.value)
    assert _leftovers(dest.parent) == []


def test_download_truncated_body_leaves_no_file(
    https_server: ServerFactory, tmp_path: Path
) -> None:
    srv = https_server()
    dest = tmp_path / "dl" / "latest.dump"
    with pytest.raises(CutoverError) as caught:
        HttpClient(SecretMasker(), ca_file=str(srv.ca_file)).download(
            srv.url("/backups/tok/truncated.dump"), dest
        )
    assert type(caught.value) is CutoverError
    assert _leftovers(dest.parent) == []


def test_download_empty_body_is_refused(https_server: ServerFactory, tmp_path: Path) -> None:
    srv = https_server()
    dest = tmp_path / "dl" / "latest.dump"
    with pytest.raises(CutoverError, match="empty"):
        HttpClient(SecretMasker(), ca_file=str(srv.ca_file)).download(
            srv.url("/backups/tok/empty.dump"), dest
        )
    assert _leftovers(dest.parent) == []


def test_download_untrusted_certificate(https_server: ServerFactory, tmp_path: Path) -> None:
    srv = https_server()
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    dest = tmp_path / "dl" / "latest.dump"
    with pytest.raises(CutoverError, match="downloading the backup failed") as caught:
        HttpClient(SecretMasker(), ca_file=str(other_ca)).download(
            srv.url("/backups/tok/ok.dump"), dest
        )
    assert "certificate" in str(caught.value).lower()
    assert _leftovers(dest.parent) == []
    assert srv.requests == []  # the request never got past the handshake


def test_download_untrusted_by_default(https_server: ServerFactory, tmp_path: Path) -> None:
    """Without ca_file the system/certifi roots are used: a private CA is not trusted."""
    srv = https_server()
    dest = tmp_path / "dl" / "latest.dump"
    with pytest.raises(CutoverError, match="certificate"):
        HttpClient(SecretMasker()).download(srv.url("/backups/tok/ok.dump"), dest)
    assert _leftovers(dest.parent) == []


# --------------------------------------------------------------------------------------------
# get() with resolve overrides (SNI)


def test_get_with_resolve_verifies_the_real_name(https_server: ServerFactory) -> None:
    srv = https_server(SITE)
    client = HttpClient(
        SecretMasker(), resolve={SITE: f"127.0.0.1:{srv.port}"}, ca_file=str(srv.ca_file)
    )
    response = client.get(f"https://{SITE}/hello")
    assert response == Response(f"https://{SITE}/hello", 200, f"hello {SITE}")
    assert srv.server.sni == [SITE]
    assert srv.requests == [("/hello", SITE)]

    # An explicit port in the URL travels in the Host header; the override still decides
    # where to connect.
    response = client.get(f"https://{SITE}:8443/hello")
    assert response.status == 200 and response.text == f"hello {SITE}:8443"


def test_get_with_resolve_refuses_a_certificate_for_another_name(
    https_server: ServerFactory,
) -> None:
    srv = https_server("other.example.test")
    client = HttpClient(
        SecretMasker(), resolve={SITE: f"127.0.0.1:{srv.port}"}, ca_file=str(srv.ca_file)
    )
    with pytest.raises(CutoverError, match=f"GET https://{SITE}/hello failed") as caught:
        client.get(f"https://{SITE}/hello")
    assert "certificate" in str(caught.value).lower() or "hostname" in str(caught.value).lower()
    assert srv.server.sni == [SITE] and srv.requests == []


def test_get_reports_status_without_raising(https_server: ServerFactory) -> None:
    srv = https_server()
    client = HttpClient(SecretMasker(), ca_file=str(srv.ca_file))
    response = client.get(srv.url("/nope"))
    assert response.status == 404 and "not_found" in response.text


def test_get_error_masks_credentials_in_the_url() -> None:
    """Error messages never carry secrets (cutover/secrets.py): a URL with a password or a
    registered token must be masked in get()'s error, as download() does."""
    port = procs.free_port()  # nothing listens: connection refused
    masker = SecretMasker()
    with pytest.raises(CutoverError) as caught:
        HttpClient(masker, timeout=5).get(f"https://user:hunter2-pass@127.0.0.1:{port}/health")
    assert "hunter2-pass" not in str(caught.value)


def test_ca_file_does_not_use_deprecated_api(https_server: ServerFactory) -> None:
    """HttpClient(ca_file=...) must build an SSLContext: httpx 0.28 deprecates verify=<str>
    (a DeprecationWarning, an error under this suite's filterwarnings)."""
    srv = https_server()
    assert HttpClient(SecretMasker(), ca_file=str(srv.ca_file)).get(srv.url("/hello")).status == 200
