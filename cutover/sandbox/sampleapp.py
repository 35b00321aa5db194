"""The sandbox's sample web app: the application cutover moves from Heroku to Convox.

Run as ``python -m cutover.sandbox.sampleapp``; configured only by environment variables:

``PORT``
    TCP port to listen on (required).
``SAMPLEAPP_HOST``
    Address to bind (default ``127.0.0.1``; the sandbox never leaves loopback).
``TLS_CERT`` / ``TLS_KEY``
    PEM certificate (chain) and key: with both set it serves HTTPS, otherwise plain HTTP.
``TLS_CERT_DIR``
    Optional: certificates chosen by SNI, like a router's (``<name>.pem`` + ``<name>-key.pem``
    for the requested server name; files are re-read when they change); any other name gets
    ``TLS_CERT``.
``SANDBOX_HEROKU_STATE``
    Optional: the Heroku API emulator's state file. When it says the app (``APP``) is in
    maintenance, every request gets Heroku's maintenance page with HTTP 503, as Heroku's router
    answers for an app in maintenance mode (Heroku Dev Center, "Maintenance Mode"). Read per
    request, cached by modification time.
``DATABASE_URL``
    PostgreSQL URL checked by ``/healthz`` and read by ``/api/orders/count``.
``PLATFORM``
    ``heroku`` or ``convox``: reported by every page and in the ``X-Platform`` response header,
    so a test (and verify-site's ``tls.marker``) can tell which side answered.
``APP``
    The application name (reported).
``RELEASE`` (Convox) or ``HEROKU_RELEASE_VERSION`` (Heroku dyno metadata)
    The release (reported by ``/healthz``).

Routes: ``GET /healthz`` (JSON; 200 after a real ``SELECT 1``, 503 when the database check
fails), ``GET /`` (a small HTML page naming the platform), ``GET /api/orders/count`` (JSON count
of the ``orders`` table), ``POST /api/orders?reference=R`` (a write through the app: one order
for the first account, 201 with its id; 503 with ``"database": "read-only"`` when the database
refuses writes, SQLSTATE 25006, as a frozen Heroku database does during a cutover).
Request lines are logged to stderr. The database URL, and so its password, is never printed
or returned: a failure is reported by exception class only.
SIGTERM and SIGINT stop the server cleanly (exit 0): the open connections are shut down and
their threads joined (up to ``STOP_WAIT`` seconds) before the interpreter exits, since a daemon
thread still writing a log line to stderr then makes CPython abort ("Fatal Python error:
_enter_buffered_busy", exit -6).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cutover.sandbox import procs

__all__ = ["Settings", "main", "make_server"]

DB_CONNECT_TIMEOUT = 3
SOCKET_TIMEOUT = 30.0
STOP_WAIT = 5.0  # seconds the handler threads get to end after a stop


@dataclass(frozen=True)
class Settings:
    """What the app reads from its environment."""

    port: int
    host: str = "127.0.0.1"
    tls_cert: str = ""
    tls_key: str = ""
    database_url: str = ""
    platform: str = "unknown"
    app: str = ""
    release: str = ""
    tls_cert_dir: str = ""
    heroku_state: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        raw_port = env.get("PORT", "")
        if not raw_port.isdigit():
            raise ValueError(f"PORT must be a port number, got {raw_port!r}")
        return cls(
            port=int(raw_port),
            host=env.get("SAMPLEAPP_HOST") or "127.0.0.1",
            tls_cert=env.get("TLS_CERT", ""),
            tls_key=env.get("TLS_KEY", ""),
            database_url=env.get("DATABASE_URL", ""),
            platform=env.get("PLATFORM") or "unknown",
            app=env.get("APP", ""),
            release=env.get("RELEASE") or env.get("HEROKU_RELEASE_VERSION", ""),
            tls_cert_dir=env.get("TLS_CERT_DIR", ""),
            heroku_state=env.get("SANDBOX_HEROKU_STATE", ""),
        )

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)


class DatabaseUnavailable(Exception):
    """The database check failed; the message is safe to show (no URL, no password)."""


def _connect(url: str) -> Any:
    if not url:
        raise DatabaseUnavailable("DATABASE_URL is not set")
    import psycopg  # noqa: PLC0415 - only the database routes need it

    try:
        return psycopg.connect(url, connect_timeout=DB_CONNECT_TIMEOUT, autocommit=True)
    except psycopg.Error as exc:
        # psycopg's message can name the host and user; the class name is enough here.
        raise DatabaseUnavailable(type(exc).__name__) from None
    except Exception as exc:  # e.g. a malformed URL raises ProgrammingError or ValueError
        raise DatabaseUnavailable(type(exc).__name__) from None


def check_database(url: str) -> None:
    """Run ``SELECT 1`` on ``url``; raise DatabaseUnavailable on any failure."""
    import psycopg  # noqa: PLC0415

    with _connect(url) as conn:
        try:
            row = conn.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            raise DatabaseUnavailable(type(exc).__name__) from None
    if row is None or row[0] != 1:
        raise DatabaseUnavailable("SELECT 1 returned an unexpected result")


class ReadOnly(DatabaseUnavailable):
    """The database refused the write (SQLSTATE 25006, read_only_sql_transaction)."""


def place_order(url: str, reference: str) -> int:
    """Insert one order (the seed's Rails-like ``orders`` row, for the first account) and
    return its id. Raises ReadOnly when the database refuses writes, DatabaseUnavailable on any
    other failure."""
    import psycopg  # noqa: PLC0415

    with _connect(url) as conn:
        try:
            row = conn.execute(
                "INSERT INTO orders (account_id, reference, created_at, updated_at) "
                "SELECT min(id), %s, now(), now() FROM accounts RETURNING id",
                (reference,),
            ).fetchone()
        except psycopg.errors.ReadOnlySqlTransaction:
            raise ReadOnly("read-only") from None
        except psycopg.Error as exc:
            raise DatabaseUnavailable(type(exc).__name__) from None
    if row is None or row[0] is None:
        raise DatabaseUnavailable("the insert returned no id")
    return int(row[0])


def count_orders(url: str) -> int | None:
    """The number of rows in ``orders``, or None when there is no such table."""
    import psycopg  # noqa: PLC0415

    with _connect(url) as conn:
        try:
            found = conn.execute("SELECT to_regclass('orders') IS NOT NULL").fetchone()
            if not found or not found[0]:
                return None
            row = conn.execute("SELECT count(*) FROM orders").fetchone()
        except psycopg.Error as exc:
            raise DatabaseUnavailable(type(exc).__name__) from None
    return int(row[0]) if row else 0


# Heroku's default maintenance page (www.herokucdn.com/error-pages/maintenance.html), served with
# 503 for every request to an app in maintenance.
MAINTENANCE_PAGE = (
    b'<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
    b"<title>Offline for Maintenance</title>\n</head>\n<body>\n"
    b"<h1>Offline for Maintenance</h1>\n"
    b"<p>This app is undergoing maintenance right now. Please check back later.</p>\n"
    b"</body>\n</html>\n"
)


class Maintenance:
    """Whether the Heroku emulator's state puts ``app`` in maintenance (cached by mtime)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def on(self, app: str) -> bool:
        if not self.path:
            return False
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            return False
        with self._lock:
            if self._seen is None or self._seen[0] != mtime:
                try:
                    with open(self.path, encoding="utf-8") as handle:
                        state = json.load(handle)
                    flag = bool(state["apps"][app]["app"]["maintenance"])
                except (OSError, ValueError, KeyError, TypeError):
                    return self._seen[1] if self._seen else False  # mid-write: keep the last
                self._seen = (mtime, flag)
            return self._seen[1]


class SniCertificates:
    """Per-name TLS contexts from a folder (``<name>.pem``, ``<name>-key.pem``), by mtime."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._contexts: dict[str, tuple[float, ssl.SSLContext]] = {}
        self._lock = threading.Lock()

    def context(self, name: str) -> ssl.SSLContext | None:
        if not name or "/" in name or name.startswith("."):
            return None
        cert = os.path.join(self.folder, f"{name}.pem")
        key = os.path.join(self.folder, f"{name}-key.pem")
        try:
            mtime = max(os.stat(cert).st_mtime, os.stat(key).st_mtime)
        except OSError:
            return None
        with self._lock:
            known = self._contexts.get(name)
            if known is None or known[0] != mtime:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(cert, key)
                known = self._contexts[name] = (mtime, context)
            return known[1]

    def select(
        self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> None:
        """``sni_callback``: switch to the name's certificate when there is one."""
        try:
            chosen = self.context((name or "").lower())
        except (ssl.SSLError, OSError):
            chosen = None
        if chosen is not None:
            sock.context = chosen


class Handler(BaseHTTPRequestHandler):
    """The routes; ``self.server.settings`` holds the configuration."""

    server_version = "cutover-sampleapp/1"
    protocol_version = "HTTP/1.1"

    @property
    def settings(self) -> Settings:
        server = self.server
        assert isinstance(server, SampleServer)
        return server.settings

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Platform", self.settings.platform)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Mapping[str, object]) -> None:
        body = (json.dumps(payload, sort_keys=True) + "\n").encode()
        self._send(status, body, "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        server = self.server
        assert isinstance(server, SampleServer)
        if server.maintenance.on(self.settings.app):
            self._send(503, MAINTENANCE_PAGE, "text/html; charset=utf-8")
        elif path == "/healthz":
            self._healthz()
        elif path == "/":
            self._index()
        elif path == "/api/orders/count":
            self._orders_count()
        else:
            self._json(404, {"error": "not found", "path": path})

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        server = self.server
        assert isinstance(server, SampleServer)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))
        if server.maintenance.on(self.settings.app):
            self._send(503, MAINTENANCE_PAGE, "text/html; charset=utf-8")
        elif path == "/api/orders":
            self._place_order(urllib.parse.parse_qs(query).get("reference", [""])[0])
        else:
            self._json(404, {"error": "not found", "path": path})

    def _place_order(self, reference: str) -> None:
        payload: dict[str, object] = dict(self._identity())
        reference = reference or f"web-{uuid.uuid4().hex[:16]}"
        try:
            order = place_order(self.settings.database_url, reference)
        except ReadOnly:
            payload.update(database="read-only", error="the database refuses writes")
            self._json(503, payload)
            return
        except DatabaseUnavailable as exc:
            payload.update(database="error", error=str(exc))
            self._json(503, payload)
            return
        payload.update(id=order, reference=reference)
        self._json(201, payload)

    def _identity(self) -> dict[str, str]:
        s = self.settings
        return {"platform": s.platform, "app": s.app, "release": s.release}

    def _healthz(self) -> None:
        payload: dict[str, str] = self._identity()
        try:
            check_database(self.settings.database_url)
        except DatabaseUnavailable as exc:
            payload.update(status="error", database="error", error=str(exc))
            self._json(503, payload)
            return
        payload.update(status="ok", database="ok")
        self._json(200, payload)

    def _index(self) -> None:
        s = self.settings
        platform = html.escape(s.platform)
        app = html.escape(s.app or "sample app")
        body = (
            '<!doctype html>\n<html><head><meta charset="utf-8">'
            f"<title>{app} on {platform}</title></head>\n"
            f"<body><h1>{app}</h1><p>Served by <strong>{platform}</strong>"
            f" (release {html.escape(s.release or 'unknown')}).</p></body></html>\n"
        ).encode()
        self._send(200, body, "text/html; charset=utf-8")

    def _orders_count(self) -> None:
        payload: dict[str, object] = dict(self._identity())
        try:
            count = count_orders(self.settings.database_url)
        except DatabaseUnavailable as exc:
            payload.update(database="error", error=str(exc))
            self._json(503, payload)
            return
        if count is None:
            payload.update(error="no orders table")
            self._json(404, payload)
            return
        payload.update(count=count)
        self._json(200, payload)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(
            f"{self.settings.platform} {self.address_string()} - "
            f"[{self.log_date_time_string()}] {format % args}\n"
        )


class SampleServer(ThreadingHTTPServer):
    """A threaded HTTP(S) server; the TLS handshake happens in the request's own thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tls_context: ssl.SSLContext | None = None
        self.maintenance = Maintenance(settings.heroku_state)
        if settings.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
            if settings.tls_cert_dir:
                context.sni_callback = SniCertificates(settings.tls_cert_dir).select
            self.tls_context = context
        # The connections being served and their threads (daemon threads are not tracked by
        # socketserver): stop_connections() ends both.
        self._serving: dict[threading.Thread, socket.socket] = {}
        self._serving_lock = threading.Lock()
        super().__init__((settings.host, settings.port), Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """socketserver.ThreadingMixIn's, with the thread registered before it starts
        (stop_connections() sees every connection accepted before the stop) beside a duplicate
        of its socket: wrap_socket detaches the accepted socket's descriptor, and shutdown()
        through a duplicate ends the connection itself. The duplicate is closed with the
        thread, so its descriptor number is never another connection's."""
        thread = threading.Thread(
            target=self._serve_registered, args=(request, client_address), daemon=True
        )
        with self._serving_lock:
            self._serving[thread] = request.dup()
        thread.start()

    def _serve_registered(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._serving_lock:  # closed under the lock: stop_connections never meets a
                watch = self._serving.pop(threading.current_thread(), None)  # reused number
                if watch is not None:
                    watch.close()

    def stop_connections(self, wait: float = STOP_WAIT) -> None:
        """Shut down every open connection (a keep-alive client's thread returns from its read)
        and join their threads, ``wait`` seconds in all."""
        with self._serving_lock:
            serving = dict(self._serving)
            for sock in serving.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + wait
        for thread in serving:
            thread.join(max(0.0, deadline - time.monotonic()))

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        sock.settimeout(SOCKET_TIMEOUT)
        if self.tls_context is not None:
            try:
                sock = self.tls_context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                sys.stderr.write(f"{self.settings.platform} TLS handshake failed: {exc}\n")
                return
        try:
            super().finish_request(sock, client_address)
        finally:
            if sock is not request:
                with contextlib.suppress(OSError):
                    sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


def make_server(settings: Settings) -> SampleServer:
    """Bind the server (raises OSError if the port is taken)."""
    return SampleServer(settings)


def main(environ: Mapping[str, str] | None = None) -> int:
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
        server = make_server(settings)
    except (ValueError, OSError, ssl.SSLError) as exc:
        sys.stderr.write(f"sampleapp: cannot start: {exc}\n")
        return 1

    if threading.current_thread() is threading.main_thread():
        # Not Thread.start() in the handler: it takes a lock the main thread may hold while
        # it starts a request's thread (see procs.stop_on_signals).
        stop = procs.stop_on_signals()

        def shut_down_on_stop() -> None:
            stop.wait()
            server.shutdown()

        threading.Thread(target=shut_down_on_stop, daemon=True).start()
    scheme = "https" if settings.tls else "http"
    sys.stderr.write(
        f"sampleapp: listening on {scheme}://{settings.host}:{settings.port} "
        f"(platform={settings.platform} app={settings.app} release={settings.release})\n"
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.stop_connections()
    sys.stderr.write("sampleapp: stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
