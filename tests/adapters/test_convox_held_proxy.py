"""A ``convox resources proxy`` held for the run (ConvoxAdapter.hold_proxy, convoxproxy.Held):
later uses go through it without a new start while it works, and a broken one is replaced.

Real parts: the convox stand-in's proxy (cutover/sandbox/convox_fake: it dials the backend per
connection and prints ``ERROR:`` for a failed one while it keeps running, as pkg/cli/proxy.go
``proxyConnection`` does) in front of a real PostgreSQL cluster, and psql through it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, assert_argv_clean, group_gone
from support.convox_rack import convox_rack
from support.databases import make_database
from support.waiting import wait_for

from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError
from cutover.runner import Runner
from cutover.sandbox import convox_fake
from cutover.sandbox.convox_fake import PostgresBackend, faults
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

pytestmark = pytest.mark.slow

APP = "myapp"
RACK = "sandbox"
# The rack stays asynchronous, only shorter (convox_fake.store.DEFAULT_TIMINGS).
TIMINGS = {"build_created": 0.2, "build_running": 0.5, "rollout": 0.5, "resource_start": 0.5}
MANIFEST = "resources:\n  database:\n    type: postgres\nservices:\n  web:\n    build: .\n"


@dataclass
class Rack:
    adapter: ConvoxAdapter
    audit: ListAudit
    config: Path
    pg: PostgresAdapter
    password: str

    def proxy_starts(self) -> list[int]:
        """The pids of every ``convox resources proxy`` started so far."""
        return [
            int(e["pid"])
            for e in self.audit.of("command-start")
            if e["argv"][:3] == ["convox", "resources", "proxy"]
        ]

    def select_one(self, port: int) -> list[list[str]]:
        conn = ConnInfo.from_url(self.adapter.resource_url("database", reuse=True))
        return self.pg.psql(conn.via("127.0.0.1", port), "SELECT 1;")


@pytest.fixture
def rack(tmp_path: Path, audit: ListAudit, argv_log: Path, pg_source: PgCluster) -> Iterator[Rack]:
    db = make_database(pg_source, "held")
    backend = PostgresBackend(
        host="127.0.0.1", port=pg_source.port, user=db.owner, password=db.password, dbname=db.dbname
    )
    bin_dir, config = tmp_path / "bin", tmp_path / "convox"
    with convox_rack(bin_dir, config, name=RACK, postgres=backend, timings=TIMINGS):
        source = tmp_path / "src"
        source.mkdir()
        (source / "convox.yml").write_text(MANIFEST, encoding="utf-8")
        masker = SecretMasker()
        runner = Runner(
            masker,
            audit=audit,
            base_env={"CONVOX_CONFIG": str(config), ARGV_LOG_ENV: str(argv_log)},
            path_prefix=[str(bin_dir)],
        )
        adapter = ConvoxAdapter(runner, masker, APP, RACK)
        adapter.create_app()
        adapter.deploy(source, "convox.yml", "held proxy test")
        try:
            yield Rack(adapter, audit, config, PostgresAdapter(runner, masker), db.password)
        finally:
            adapter.close()
    assert_argv_clean(argv_log, [db.password])


def test_later_uses_go_through_the_held_proxy_and_close_stops_it(rack: Rack) -> None:
    held = rack.adapter.hold_proxy("database", speaks="postgres")
    for _ in range(3):  # final-sync, verify-data, switch-dns
        with rack.adapter.proxy("database", speaks="postgres") as port:
            assert port == held
            assert rack.select_one(port) == [["1"]]
    (pid,) = rack.proxy_starts()
    assert not group_gone(pid, timeout=0.2), "a use stopped the held proxy"
    assert [e["pid"] for e in rack.audit.of("proxy-reused")] == [pid] * 3
    rack.adapter.close()
    assert group_gone(pid), "close() left the held proxy running"
    assert rack.password not in rack.audit.text()


def test_a_held_proxy_that_died_is_replaced_for_the_use(rack: Rack) -> None:
    held = rack.adapter.hold_proxy("database", speaks="postgres")
    (first,) = rack.proxy_starts()
    os.killpg(first, signal.SIGKILL)
    assert group_gone(first)
    with rack.adapter.proxy("database", speaks="postgres") as port:
        assert port != held
        assert rack.select_one(port) == [["1"]]
        (_, second) = rack.proxy_starts()
    assert group_gone(second), "the replacement is the use's own: stopped after it"
    with rack.adapter.proxy("database", speaks="postgres") as port:  # not held any more
        assert rack.select_one(port) == [["1"]]
    assert len(rack.proxy_starts()) == 3
    (dropped,) = rack.audit.of("proxy-dropped")
    assert dropped["pid"] == first and dropped["reason"] == "it has ended"


def test_a_held_proxy_that_accepts_but_no_longer_tunnels_is_replaced(rack: Rack) -> None:
    """A stopped process still has its listening socket: the kernel accepts the probe, nothing
    answers PostgreSQL's SSLRequest. Used, it would hang the step; it is dropped instead."""
    held = rack.adapter.hold_proxy("database", speaks="postgres")
    (first,) = rack.proxy_starts()
    os.killpg(first, signal.SIGSTOP)
    try:
        with rack.adapter.proxy("database", speaks="postgres") as port:
            assert port != held
            assert rack.select_one(port) == [["1"]]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first, signal.SIGCONT)
    (dropped,) = rack.audit.of("proxy-dropped")
    assert dropped["reason"] == "a probe found it silent"
    assert group_gone(first), "the silent held proxy is stopped"


def test_only_the_main_thread_may_hold_a_proxy(rack: Rack) -> None:
    """A child gets SIGTERM when the thread that started it ends (runner._die_with_parent)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        refused = pool.submit(rack.adapter.hold_proxy, "database", "postgres").exception()
    assert isinstance(refused, RuntimeError)
    assert rack.proxy_starts() == []


def test_a_held_proxy_whose_tunnel_fails_is_replaced_for_the_use(rack: Rack) -> None:
    held = rack.adapter.hold_proxy("database", speaks="postgres")
    (first,) = rack.proxy_starts()
    # The next connection's dial fails while the proxy keeps running (faults.proxy_refused):
    # the probe before the use sees it closed.
    convox_fake.add_fault(rack.config, faults.proxy_refused())
    with rack.adapter.proxy("database", speaks="postgres") as port:
        assert port != held
        assert rack.select_one(port) == [["1"]]
    assert len(rack.proxy_starts()) == 2
    assert group_gone(first), "the held proxy whose tunnel failed is stopped"


def test_an_error_the_held_proxy_printed_in_use_fails_that_use_and_retires_it(rack: Rack) -> None:
    rack.adapter.hold_proxy("database", speaks="postgres")
    (first,) = rack.proxy_starts()
    use = rack.adapter.proxy("database", speaks="postgres")
    port = use.__enter__()
    convox_fake.add_fault(rack.config, faults.proxy_refused())
    with pytest.raises(CommandError):
        rack.select_one(port)
    # The proxy prints the dial's ERROR: after it closed the connection (pkg/cli/proxy.go
    # proxyConnection): wait until it is there, as a step's later work would.
    wait_for(lambda: "ERROR:" in held_stderr(rack), "the proxy's ERROR:", deadline=5)
    with pytest.raises(CutoverError, match="reported an error while in use"):
        use.__exit__(None, None, None)
    with rack.adapter.proxy("database", speaks="postgres") as port:
        assert rack.select_one(port) == [["1"]]
    assert len(rack.proxy_starts()) == 2
    assert group_gone(first), "the held proxy that printed ERROR: is stopped"


def held_stderr(rack: Rack) -> str:
    """What the held proxy printed on stderr so far (it is still held until the next use)."""
    (bg, _port) = rack.adapter._held._proxies["database"]
    return bg.stderr


def test_a_resource_url_is_read_again_unless_reuse_is_asked(rack: Rack) -> None:
    def reads() -> int:
        return sum(
            1 for e in rack.audit.of("command") if e["argv"][:3] == ["convox", "resources", "url"]
        )

    url = rack.adapter.resource_url("database")
    assert reads() == 1
    assert rack.adapter.resource_url("database", reuse=True) == url
    assert reads() == 1
    assert rack.adapter.resource_url("database") == url
    assert reads() == 2
