"""The proxy probe's first message (cutover/adapters/convoxproxy.py HELLO): a real PostgreSQL
answers the SSLRequest at once, a tunnel that closes is told apart, and with no first message a
silent server is "open" only after the wait (the old behaviour, kept for Redis and MySQL)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from cutover.adapters import convoxproxy
from cutover.sandbox.pgcluster import PgCluster


def test_postgres_answers_the_hello_with_one_byte(pg_source: PgCluster) -> None:
    """PostgreSQL docs, "Message Formats": SSLRequest is Int32(8) Int32(80877103); the server
    replies 'S' (will do TLS) or 'N'."""
    with socket.create_connection(("127.0.0.1", pg_source.port), timeout=10) as sock:
        sock.sendall(convoxproxy.POSTGRES_HELLO)
        assert sock.recv(1) in (b"S", b"N")
    assert convoxproxy.probe(pg_source.port, wait=30, hello=convoxproxy.POSTGRES_HELLO) == "open"


@pytest.fixture
def closing_server() -> Iterator[int]:
    """A listener that closes every connection it accepts (a tunnel whose dial failed)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def test_a_tunnel_that_closes_is_closed_with_or_without_a_hello(closing_server: int) -> None:
    assert convoxproxy.probe(closing_server, wait=5) == "closed"
    hello = convoxproxy.POSTGRES_HELLO
    assert convoxproxy.probe(closing_server, wait=5, hello=hello) == "closed"


def test_nothing_listening_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])  # bound, never listening
        assert convoxproxy.probe(port, hello=convoxproxy.POSTGRES_HELLO) == "refused"


def test_a_silent_server_is_open_only_by_waiting_without_a_hello() -> None:
    """MySQL and Redis get no first message: a server that waits for its client is "open" once
    the wait passed without a close."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def hold() -> None:
        conn, _ = server.accept()
        held.append(conn)  # never answers, never closes

    threading.Thread(target=hold, daemon=True).start()
    try:
        assert convoxproxy.probe(int(server.getsockname()[1]), wait=0.2) == "open"
    finally:
        for conn in held:
            conn.close()
        server.close()


def test_only_postgres_gets_a_first_message() -> None:
    """A TLS-only Redis takes a plain PING for a failed handshake and closes: no hello for it."""
    assert set(convoxproxy.HELLO) == {"postgres"}
