"""HTTP transport and command line of the Heroku API emulator.

The API listener is plain HTTP on 127.0.0.1 (the CLI reuses ``HEROKU_HOST``'s scheme and port for
the Data API); the backup listener is HTTPS (``pg:backups:url`` must hand out ``https://``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import socket
import ssl
import struct
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from cutover.sandbox import procs
from cutover.sandbox.heroku_api import backups
from cutover.sandbox.heroku_api.backups import log_path
from cutover.sandbox.heroku_api.common import LOOPBACK, ApiError, Request, Response
from cutover.sandbox.heroku_api.emulator import Emulator
from cutover.sandbox.heroku_api.state import load_state

MAX_BODY = 1 << 20


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        emulator: Emulator,
        label: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.emulator = emulator
        self.label = label
        self.tls = tls
        super().__init__(address, _RequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshakes happen in the connection's thread, never in the accept loop.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        sock = cast(socket.socket, request)
        sock.settimeout(30)
        try:
            wrapped = self.tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a failed handshake closes the wrapper; the raw socket is closed by the caller
        try:
            super().finish_request(wrapped, client_address)
        finally:
            with contextlib.suppress(OSError):
                wrapped.shutdown(socket.SHUT_RDWR)
            wrapped.close()


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    server_version = "cutover-heroku-emulator"
    sys_version = ""
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default log (it would print raw request lines)."""

    def _serve(self) -> None:
        server = cast(_Server, self.server)
        status = 500
        try:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ApiError(413, "request_too_large", "Request body too large.")
            body = self.rfile.read(length) if length > 0 else b""
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            if server.tls is None:
                response = server.emulator.handle_api(request)
            else:
                response = server.emulator.handle_backup(request)
        except ApiError as exc:
            response = exc.response()
        except Exception as exc:
            sys.stderr.write(f"{server.label} internal error: {type(exc).__name__}\n")
            response = Response.json(
                500, {"id": "internal_server_error", "message": "Internal server error."}
            )
        status = response.status
        if response.drop:
            self._drop()
            where = log_path(urlsplit(self.path).path)
            sys.stderr.write(f"{server.label} {self.command} {where} reset\n")
            sys.stderr.flush()
            return
        try:
            self._write(response)
        finally:
            sys.stderr.write(
                f"{server.label} {self.command} {log_path(urlsplit(self.path).path)} {status}\n"
            )
            sys.stderr.flush()

    def _drop(self) -> None:
        """Close the connection with a TCP reset and no answer (a "reset" fault): what a client
        sees when a load balancer or the network drops it (Node: ECONNRESET, "socket hang up")."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _write(self, response: Response) -> None:
        size = response.file.stat().st_size if response.file else len(response.body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(size))
        self.send_header("Request-Id", str(uuid.uuid4()))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        if response.file is not None:
            with response.file.open("rb") as handle:
                remaining = size
                while remaining > 0:
                    chunk = handle.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        else:
            self.wfile.write(response.body)

    do_GET = _serve
    do_HEAD = _serve
    do_POST = _serve
    do_PATCH = _serve
    do_PUT = _serve
    do_DELETE = _serve


# --------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cutover.sandbox.heroku_api",
        description="Local Heroku Platform API + Data API emulator for the real heroku CLI.",
    )
    parser.add_argument("--state", type=Path, required=True, help="state JSON file (0600)")
    parser.add_argument("--port", type=int, required=True, help="API port on 127.0.0.1")
    parser.add_argument("--backup-port", type=int, required=True, help="HTTPS backup port")
    parser.add_argument("--tls-cert", type=Path, required=True, help="PEM certificate chain")
    parser.add_argument("--tls-key", type=Path, required=True, help="PEM private key")
    parser.add_argument("--pid-file", type=Path, help="written once the ports are bound")
    parser.add_argument("--pg-dump", default="pg_dump", help="pg_dump binary (default: PATH)")
    return parser.parse_args(argv)


class EmulatorServers:
    """Both listeners of one emulator, served from background threads of this process.

    ``port``/``backup_port`` 0 picks free ports (read them back from the attributes once
    constructed: the sockets are bound in the constructor).
    """

    def __init__(
        self,
        state_path: Path,
        *,
        port: int,
        backup_port: int,
        tls_cert: Path,
        tls_key: Path,
        pg_dump: str = "pg_dump",
    ) -> None:
        self.stop_event = threading.Event()
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(str(tls_cert), str(tls_key))
        self.emulator = Emulator(
            state_path.resolve(), backup_port=backup_port, pg_dump=pg_dump, stop=self.stop_event
        )
        self._api = _Server((LOOPBACK, port), self.emulator, "api")
        try:
            self._backup = _Server((LOOPBACK, backup_port), self.emulator, "backup", tls=tls)
        except BaseException:
            self._api.server_close()
            raise
        self.port: int = self._api.server_address[1]
        self.backup_port: int = self._backup.server_address[1]
        self.emulator.backup_port = self.backup_port
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Serve; resume the captures a previous emulator on this state left unfinished and
        make the dumps of seeded scheduled backups (both in the background)."""
        backups.resume_unfinished(self.emulator)
        backups.materialize_seeded(self.emulator)
        for server in (self._api, self._backup):
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving (wakes requests held by a delay fault) and close the sockets."""
        self.stop_event.set()
        for server in (self._api, self._backup):
            if self._threads:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        for worker in self.emulator.workers:  # backup threads see stop_event and kill pg_dump
            worker.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    state_path: Path = args.state.resolve()
    try:  # fail early, without a traceback, on a missing or broken state file
        load_state(state_path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        sys.stderr.write(f"heroku emulator: cannot read the state file {state_path}: {reason}\n")
        return 2
    state_path.chmod(0o600)
    try:  # the same for the TLS files and the ports: a message and exit 2, no traceback
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(args.tls_cert), str(args.tls_key))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        sys.stderr.write(
            f"heroku emulator: cannot load the TLS certificate {args.tls_cert} "
            f"and key {args.tls_key}: {reason}\n"
        )
        return 2
    try:
        servers = EmulatorServers(
            state_path,
            port=args.port,
            backup_port=args.backup_port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            pg_dump=args.pg_dump,
        )
    except OSError as exc:
        sys.stderr.write(
            f"heroku emulator: cannot listen on {LOOPBACK} ports {args.port} (API) and "
            f"{args.backup_port} (backups): {exc.strerror or exc}\n"
        )
        return 2
    stopping = procs.stop_on_signals()
    servers.start()
    pid_file: Path | None = args.pid_file
    if pid_file is not None:
        # Atomically (temp file + rename): callers poll for the file to appear and read the pid
        # at once; a file created empty and written afterwards was read as "" (a flaky start).
        procs.write_private(pid_file, f"{os.getpid()}\n")
    sys.stderr.write(
        f"heroku emulator listening on {servers.base_url} "
        f"(backups on https://{LOOPBACK}:{servers.backup_port})\n"
    )
    sys.stderr.flush()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        servers.stop()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
        sys.stderr.write("heroku emulator stopped\n")
        sys.stderr.flush()
    return 0
