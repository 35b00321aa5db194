"""Issue 15: the convox adapter under the stand-in's injected faults (what the real CLI shows
for network trouble: cutover/sandbox/convox_fake/faults.py cites the sources).

A rack whose ``database`` resource is a local TCP listener that holds connections open, like a
PostgreSQL server waiting for the client's startup message, so the proxy's probe goes through.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, group_gone
from support.convox_rack import convox_rack

from cutover.adapters import convoxproxy
from cutover.adapters.convox import ConvoxAdapter
from cutover.errors import CommandError, CutoverError
from cutover.runner import Runner
from cutover.sandbox import convox_fake
from cutover.sandbox.convox_fake import PostgresBackend, faults
from cutover.secrets import SecretMasker

APP, RACK = "myapp", "sandbox"
MANIFEST = "resources:\n  database:\n    type: postgres\nservices:\n  web:\n    build: .\n"
MANIFEST += "    port: 3000\n    resources:\n      - database\n"


class Harness:
    def __init__(self, tmp: Path, audit: ListAudit, backend_port: int) -> None:
        self.config = tmp / "convox"
        self.bin = tmp / "bin"
        self.source = tmp / "src"
        self.source.mkdir()
        (self.source / "convox.yml").write_text(MANIFEST, encoding="utf-8")
        self.backend = PostgresBackend("127.0.0.1", backend_port, "app", "pw-5e1f0c9a", "app")
        self.audit = audit
        self.sleeps: list[float] = []
        masker = SecretMasker()
        self.runner = Runner(
            masker,
            audit=audit,
            base_env={"CONVOX_CONFIG": str(self.config), ARGV_LOG_ENV: str(tmp / "argv.jsonl")},
            path_prefix=[str(self.bin)],
            _sleep=self.sleeps.append,
        )
        self.adapter = ConvoxAdapter(self.runner, masker, APP, RACK)

    def fault(self, fault: dict[str, object]) -> None:
        convox_fake.add_fault(self.config, fault)

    def fired(self) -> list[str]:
        return [f"{f['command']}: {f['kind']}" for f in faults.fired(self.config)]

    def proxy_pids(self) -> list[int]:
        return [
            int(e["pid"])
            for e in self.audit.of("command-start")
            if e["argv"][1:3] == ["resources", "proxy"]
        ]


@pytest.fixture
def holding_backend() -> Iterator[int]:
    """A TCP server that accepts and holds every connection open until the test ends."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for sock in [server, *held]:
            sock.close()


@pytest.fixture
def hx(tmp_path: Path, audit: ListAudit, holding_backend: int) -> Iterator[Harness]:
    harness = Harness(tmp_path, audit, holding_backend)
    with convox_rack(harness.bin, harness.config, name=RACK, postgres=harness.backend):
        yield harness


def deployed(hx: Harness) -> Harness:
    hx.adapter.create_app()
    hx.adapter.deploy(hx.source, "convox.yml", "faults test")
    return hx


def test_a_refused_deploy_is_sent_again_and_succeeds(hx: Harness) -> None:
    """`convox deploy` refused before BuildCreate (nothing started on the rack): repeated."""
    hx.adapter.create_app()
    hx.fault(faults.refused("deploy", op="Post", path="/apps/myapp/objects/tmp/source.tgz"))
    release = hx.adapter.deploy(hx.source, "convox.yml", "faults test")
    assert release.startswith("R")
    assert hx.fired() == ["deploy: refused"]
    retry = hx.audit.of("retry")
    assert len(retry) == 1 and "exit code 1" in retry[0]["reason"]
    first = hx.audit.of("command")[-2]
    assert first["outcome"] == "failed" and "connect: connection refused" in first["stderr_tail"]
    assert len(hx.adapter.builds()) == 1  # one build on the rack, not two


def test_a_5xx_on_env_set_is_not_repeated(hx: Harness) -> None:
    """`env set` makes a release each time; a 502 may have reached the rack: not repeated."""
    hx.adapter.create_app()
    hx.fault(faults.server_error("env set", status=502))
    with pytest.raises(CommandError) as caught:
        hx.adapter.env_set({"A": "1"})
    assert caught.value.returncode == 1 and not caught.value.transient
    assert "502 Bad Gateway" in caught.value.stderr_tail
    assert hx.audit.of("retry") == []


def test_reads_are_repeated_on_any_network_trouble(hx: Harness) -> None:
    deployed(hx)
    hx.fault(faults.server_error("releases", status=503))
    hx.fault(faults.dial_timeout("releases"))
    assert hx.adapter.releases()  # the third attempt of three
    assert hx.fired() == ["releases: http 503", "releases: timeout"]
    assert len(hx.audit.of("retry")) == 2


def test_a_failed_rack_build_is_permanent_with_the_build_log(hx: Harness) -> None:
    hx.adapter.create_app()
    hx.fault(faults.build_failed("deploy"))
    with pytest.raises(CommandError) as caught:
        hx.adapter.deploy(hx.source, "convox.yml", "faults test")
    exc = caught.value
    assert exc.returncode == 1 and not exc.transient
    assert "ERROR: exit status 1" in exc.stderr_tail  # the rack's build log (pkg/build fail)
    assert exc.stderr_tail.rstrip().endswith("ERROR: build failed")  # pkg/cli/builds.go
    assert hx.audit.of("retry") == []
    assert [b["STATUS"] for b in hx.adapter.builds()] == ["failed"]


def test_a_hung_command_is_killed_at_its_timeout(hx: Harness) -> None:
    hx.fault(faults.hang_fault("rack"))
    with pytest.raises(CommandError) as caught:
        hx.adapter._run("rack", app=False, timeout=2)
    exc = caught.value
    assert exc.timed_out and not exc.transient
    assert "convox rack -r sandbox" in str(exc) and "timed out" in str(exc)
    (start,) = [e for e in hx.audit.of("command") if e["outcome"] == "timeout"]
    assert start["argv"][:2] == ["convox", "rack"]
    assert hx.fired() == ["rack: hang"]
    assert wait_until(lambda: not stand_ins(hx.config)), "the hung convox is still running"


def stand_ins(config: Path) -> list[int]:
    """Pids of convox stand-in processes of this rack (CONVOX_CONFIG in their environment)."""
    mark = f"CONVOX_CONFIG={config}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cutover.sandbox.convox_fake" in cmdline and mark in environ:
            found.append(int(proc.name))
    return found


def wait_until(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_proxy_whose_first_connection_is_refused_is_started_again(hx: Harness) -> None:
    deployed(hx)
    hx.fault(faults.proxy_refused())
    with hx.adapter.proxy("database", timeout=15) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # held open by the backend: the tunnel works
        pids = hx.proxy_pids()
    assert hx.fired() == ["resources proxy:connection: proxy refused"]
    assert len(pids) == 2
    assert all(group_gone(pid) for pid in pids)


def test_a_proxy_refused_forever_fails_clearly_after_three_starts(hx: Harness) -> None:
    deployed(hx)
    hx.fault(faults.proxy_refused(times=-1))
    with (
        pytest.raises(CutoverError) as caught,
        hx.adapter.proxy("database", timeout=15),
    ):
        pytest.fail("no proxy works: the block must not run")
    exc = caught.value
    assert f"({convoxproxy.ATTEMPTS} attempts)" in str(exc)
    assert "connect: connection refused" in str(exc)
    assert "convox resources info database -a myapp -r sandbox" in (exc.resolution or "")
    assert "cutover run" in (exc.resolution or "")
    pids = hx.proxy_pids()
    assert len(pids) == convoxproxy.ATTEMPTS
    assert all(group_gone(pid) for pid in pids)
    assert len(hx.sleeps) == convoxproxy.ATTEMPTS - 1


def test_a_proxy_drop_closes_one_connection_silently_and_the_proxy_stays(hx: Harness) -> None:
    """stdsdk copyFromWS: the websocket's error is discarded; the local connection is closed."""
    deployed(hx)
    hx.fault(faults.proxy_drop(after_bytes=1000))
    with hx.adapter.proxy("database", timeout=15) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"x" * 4000)
            sock.settimeout(5)
            assert sock.recv(1) == b""  # closed by the proxy
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"x" * 4000)
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # the next connection is carried again
    assert hx.fired() == ["resources proxy:connection: proxy drop"]
    assert len(hx.proxy_pids()) == 1
