"""A webhook receiver on 127.0.0.1 for notification tests: records every POST it is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Received = list[dict[str, Any]]  # {"path": str, "body": <parsed JSON>, "type": Content-Type}


class _Recorder(BaseHTTPRequestHandler):
    status = 200
    received: Received

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length))
        type(self).received.append(
            {"path": self.path, "body": body, "type": self.headers["Content-Type"]}
        )
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def webhook_receiver(token: str, status: int = 200) -> Iterator[tuple[str, Received]]:
    """Serve until the block ends; yields the URL (``/hooks/<token>``, the secret part) and the
    list the posts are appended to. Every POST is answered with ``status``."""
    received: Received = []
    handler = type("Handler", (_Recorder,), {"status": status, "received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/{token}", received
    finally:
        server.shutdown()
        server.server_close()
