"""Fixtures with real sandbox servers: PostgreSQL clusters and a Knot DNS server.

Every server a fixture starts is stopped by that fixture's finalizer, whether the test passed or
not. Tests using these fixtures start real processes: mark them ``@pytest.mark.slow``.

- ``sandbox_base``: a session-wide private folder (0700) for servers. It is made with
  ``tempfile.mkdtemp`` under /tmp rather than pytest's ``tmp_path_factory``: pytest's base folder
  is 0700 and, when tests run as root, the ``postgres`` user must traverse every folder above a
  data directory; we widen only our own folder (an ACL entry), never pytest's.
- ``pg_factory``: ``pg_factory(name)`` initialises and starts a cluster ``<base>/pg/<name>``
  (log in ``<base>/<name>.log``); all are stopped at the end of the session.
- ``pg_source`` / ``pg_target``: two running clusters for the whole session. They are shared:
  work in a database of your own (``pg_database``), never stop them.
- ``pg_database``: ``pg_database(cluster, prefix="app")`` creates a login role and a database it
  owns, both with unique names, and returns an :class:`AppDatabase`.
- ``sandbox`` / ``app`` / ``deployed``: a private convox stand-in rack (see convox_support).
- ``tls_files`` / ``start_emulator`` / ``cli`` / ``backing_db``: the Heroku API emulator as a
  subprocess and the real heroku CLI against it (see heroku_support).
- ``knot_server``: a fresh Knot DNS server per test for zone ``example.test`` holding
  ``www A 192.0.2.10`` (TTL 300), ``app CNAME app-1234.herokudns.example.`` (TTL 3600) and an
  apex TXT record; TSIG-signed updates allowed (``tsig_name``/``tsig_secret``).
  ``knot_factory(zone, records)`` starts more.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from convox_support import app, deployed, sandbox
from heroku_support import backing_db, cli, start_emulator, tls_files
from support.databases import AppDatabase, make_database

from cutover.sandbox import procs
from cutover.sandbox.knot import KnotServer, RecordSpec
from cutover.sandbox.pgcluster import PgCluster

KNOT_ZONE = "example.test"
KNOT_RECORDS: list[RecordSpec] = [
    ("www", "A", 300, "192.0.2.10"),
    ("app", "CNAME", 3600, "app-1234.herokudns.example."),
    ("@", "TXT", 300, '"v=spf1 -all"'),
]

# The convox stand-in's fixtures (convox_support) and the Heroku emulator's (heroku_support).
__all__ = ["app", "backing_db", "cli", "deployed", "sandbox", "start_emulator", "tls_files"]

PgFactory = Callable[[str], PgCluster]
KnotFactory = Callable[..., KnotServer]


@pytest.fixture
def pg_database() -> Callable[..., AppDatabase]:
    """Create a uniquely named role and database on a cluster: ``pg_database(cluster)``."""

    def make(cluster: PgCluster, prefix: str = "app") -> AppDatabase:
        return make_database(cluster, prefix, password=secrets.token_urlsafe(12))

    return make


@pytest.fixture
def knot_factory(tmp_path: Path) -> Iterator[KnotFactory]:
    """Start Knot servers in ``tmp_path``; each is stopped when the test ends."""
    servers: list[KnotServer] = []

    def make(zone: str = KNOT_ZONE, records: Sequence[RecordSpec] = KNOT_RECORDS) -> KnotServer:
        folder = tmp_path / f"knot{len(servers)}"
        last: Exception | None = None
        for _ in range(3):  # the free port can be taken between the check and knotd's bind
            try:
                server = KnotServer.create(folder, procs.free_port(), zone, list(records))
            except Exception as exc:
                last = exc
                shutil.rmtree(folder, ignore_errors=True)
                continue
            servers.append(server)
            return server
        assert last is not None
        raise last

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def knot_server(knot_factory: KnotFactory) -> KnotServer:
    """A running Knot DNS server serving KNOT_ZONE with KNOT_RECORDS, TSIG updates allowed."""
    return knot_factory()
