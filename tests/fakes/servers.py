"""Servers a test runs in its own process next to the fakes.

* :class:`HttpsServer`: one HTTPS server (certificate from a throwaway CA) that is both the backup
  storage behind ``heroku pg:backups:url`` (``/backup.dump`` with the URL's signature checked)
  and the deployed app: ``GET /healthz`` answers 200 for a Convox service domain once the app
  has an active release, and for a custom domain once the active release's manifest lists it.
  cutover reaches it through the sandbox ``resolve`` map, verifying the certificate for the real
  names.
* :class:`DnsTap`: a UDP/TCP relay in front of a real Knot server. cutover talks to the tap; the
  tap counts every RFC 2136 update Knot accepted and can run a callback (``kill -9`` cutover)
  right after Knot applied an update and before cutover sees the answer: a deterministic crash
  between a DNS change and its checkpoint.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from fakes.postgres import dump_bytes
from fakes.world import read_world

# -- HTTPS -------------------------------------------------------------------------------------


def _service_hosts(world: dict[str, Any]) -> dict[str, bool]:
    """Every host name the deployed apps answer for -> whether it serves now."""
    hosts: dict[str, bool] = {}
    domain = world["convox"]["rack_domain"]
    for app_name, app in world["convox"]["apps"].items():
        release = next((r for r in app["releases"] if r["id"] == app.get("active")), None)
        build = next((b for b in app["builds"] if release and b["id"] == release["build"]), None)
        manifest = yaml.safe_load(build["manifest"]) if build else {}
        for svc, spec in ((manifest or {}).get("services") or {}).items():
            if not (spec or {}).get("port"):
                continue
            hosts[f"{svc}.{app_name}.{domain}"] = True
            custom = (spec or {}).get("domain") or []
            for name in custom if isinstance(custom, list) else str(custom).split(","):
                hosts[str(name).strip()] = True
    return hosts


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        self.server.requests.append(f"{self.headers.get('Host')} {self.requestline}")

    def _send(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        url = urlsplit(self.path)
        world = read_world(self.server.world_path)
        if host == "127.0.0.1" and url.path == "/backup.dump":
            signature = (parse_qs(url.query).get("X-Amz-Signature") or [""])[0]
            backup = next((b for b in world["heroku"]["backups"] if b["token"] == signature), None)
            if backup is None:
                self._send(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
                return
            body = dump_bytes(world["heroku"]["database"]["dbname"], backup["data"])
            self._send(200, body, "application/octet-stream")
            return
        hosts = _service_hosts(world)
        if host in hosts and url.path in ("/", "/healthz"):
            self._send(200, b"ok\n")
        elif host in hosts:
            self._send(404, b"not found\n")
        else:
            self._send(503, f"no service for {host}\n".encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    world_path: Path
    requests: list[str]


@dataclass
class HttpsServer:
    """With the world's ``convox.certificate_delay`` (seconds), a custom domain gets the
    router's default certificate (not covering it) until that long after the first handshake
    asking for it, as a real router does until the certificate is issued once DNS points at
    it."""

    world_path: Path
    cert_file: Path
    key_file: Path
    router_cert_file: Path | None = None
    _server: _Server | None = None
    _thread: threading.Thread | None = None
    _first_asked: dict[str, float] = field(default_factory=dict)

    def _certificate_pending(self, name: str) -> bool:
        world = read_world(self.world_path)
        delay = float(world["convox"].get("certificate_delay") or 0)
        hosts = _service_hosts(world)
        if not delay or name not in hosts or name.endswith(world["convox"]["rack_domain"]):
            return False
        first = self._first_asked.setdefault(name, time.monotonic())
        return time.monotonic() < first + delay

    def _named_certificate(self, name: str) -> ssl.SSLContext | None:
        """The certificate an active release's service names for ``name`` (``certificate:
        {id}`` in its manifest, imported with the fake ``convox certs import``)."""
        world = read_world(self.world_path)
        for app in world["convox"]["apps"].values():
            release = next((r for r in app["releases"] if r["id"] == app.get("active")), None)
            build = next(
                (b for b in app["builds"] if release and b["id"] == release["build"]), None
            )
            manifest = (yaml.safe_load(build["manifest"]) if build else None) or {}
            for spec in (manifest.get("services") or {}).values():
                spec = spec or {}
                custom = spec.get("domain") or []
                names = custom if isinstance(custom, list) else str(custom).split(",")
                ident = (spec.get("certificate") or {}).get("id")
                folder = self.world_path.parent / "certs"
                issued = (folder / f"{ident}.pem").exists()  # a DNS-01 one may still be pending
                if ident and issued and name in [str(n).strip() for n in names]:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(
                        str(folder / f"{ident}.pem"), str(folder / f"{ident}-key.pem")
                    )
                    return context
        return None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[str]:
        assert self._server is not None
        return self._server.requests

    def start(self) -> HttpsServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.router_cert_file is not None:
            default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            default.load_cert_chain(str(self.router_cert_file))

            def pick(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
                named = self._named_certificate(name) if name else None
                if named is not None:
                    sock.context = named
                elif name and self._certificate_pending(name):
                    sock.context = default

            context.sni_callback = pick  # type: ignore[assignment]
        # The handshake happens in the request's thread, so a slow client blocks nobody.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        server.world_path = self.world_path
        server.requests = []
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


# -- DNS ---------------------------------------------------------------------------------------
_OPCODE_UPDATE = 5


def _opcode(message: bytes) -> int:
    return (message[2] >> 3) & 0xF if len(message) > 3 else -1


def _rcode(message: bytes) -> int:
    return message[3] & 0xF if len(message) > 3 else -1


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@dataclass
class DnsTap:
    """Relay DNS on 127.0.0.1:port (UDP and TCP) to ``upstream_port``; count accepted updates."""

    upstream_port: int
    on_update: Callable[[int], None] | None = None
    updates: list[float] = field(default_factory=list)
    port: int = 0
    _udp: socket.socket | None = None
    _tcp: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> DnsTap:
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        tcp.listen(16)
        udp.settimeout(0.1)
        tcp.settimeout(0.1)
        self._udp, self._tcp, self.port = udp, tcp, udp.getsockname()[1]
        for target in (self._serve_udp, self._serve_tcp):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def _serve_udp(self) -> None:
        assert self._udp is not None
        while not self._stop.is_set():
            try:
                query, client = self._udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                    up.settimeout(3)
                    up.sendto(query, ("127.0.0.1", self.upstream_port))
                    answer, _ = up.recvfrom(65535)
                self._udp.sendto(answer, client)
            except OSError:
                continue

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._relay_tcp, args=(conn,), daemon=True)
            thread.start()

    def _relay_tcp(self, conn: socket.socket) -> None:
        with (
            contextlib.suppress(OSError, ConnectionError),
            conn,
            socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5) as up,
        ):
            conn.settimeout(5)
            while True:
                size = struct.unpack("!H", _recv_exact(conn, 2))[0]
                query = _recv_exact(conn, size)
                up.sendall(struct.pack("!H", size) + query)
                answer_size = struct.unpack("!H", _recv_exact(up, 2))[0]
                answer = _recv_exact(up, answer_size)
                if _opcode(query) == _OPCODE_UPDATE and _rcode(answer) == 0:
                    with self._lock:
                        self.updates.append(time.time())
                        number = len(self.updates)
                    if self.on_update is not None:
                        self.on_update(number)
                conn.sendall(struct.pack("!H", answer_size) + answer)
