"""Shared fixtures for the adapter contract tests (tests/adapters/).

The adapters are always driven through the real :class:`cutover.runner.Runner`, with

- ``audit``: a list-collecting audit sink (``audit.events`` holds ``(kind, fields)`` pairs), so a
  test reads exactly what cutover would write to its audit log;
- ``argv_log``: a file the runner appends every child's raw argv to (the
  ``CUTOVER_TEST_ARGV_LOG`` test hook), checked with ``assert_argv_clean``;
- ``tls_files``: a throwaway CA (trustme) and a certificate for 127.0.0.1/localhost;
- ``pg_source``/``pg_target``/``pg_database``: real PostgreSQL clusters (session-wide, shared:
  work in a database of your own; from tests/conftest.py) and per-test databases. Tests using
  them are ``slow``.

Helpers live in adapter_support.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from adapter_support import ListAudit
from support.databases import AppDatabase, make_database
from support.tls import TlsFiles, write_tls_files


@pytest.fixture
def audit() -> ListAudit:
    return ListAudit()


@pytest.fixture
def argv_log(tmp_path: Path) -> Path:
    """The file the runner's ``CUTOVER_TEST_ARGV_LOG`` hook writes (put it in base_env)."""
    return tmp_path / "argv.jsonl"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a server certificate (chain + key files) for 127.0.0.1 and localhost."""
    return write_tls_files(tmp_path_factory.mktemp("adapter-tls"))


@pytest.fixture
def pg_database() -> Callable[..., AppDatabase]:
    """``pg_database(cluster, prefix="app")``: a new login role and a database it owns."""
    return make_database
