"""Tests for cutover.sandbox.procs with real processes (the interpreter is the fake daemon)."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.waiting import wait_for

from cutover.sandbox import procs

PY = sys.executable


def _log_has(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text(encoding="utf-8")


@pytest.fixture
def spawned() -> Iterator[list[int]]:
    """Pids a test started: every one is stopped (and reaped) when the test ends."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        procs.stop_pid(pid, timeout=2.0)


def _spawn(
    spawned: list[int],
    code: str,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    pid = procs.spawn_daemon([PY, "-c", code], log_path=log, env=env, cwd=cwd)
    spawned.append(pid)
    return pid


def test_free_port_is_free_for_tcp_and_udp() -> None:
    port = procs.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))


def test_free_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    # A port inside ip_local_port_range can be taken as the source port of any outgoing
    # connection between the check and the daemon's bind (a CI run lost the Heroku API that way).
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [procs.free_port() for _ in range(40)]
    assert len(set(ports)) == len(ports)
    assert all(port < ephemeral_low for port in ports) or ephemeral_low - 20000 < 1000


def test_wait_for_port_returns_once_something_listens() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        procs.wait_for_port("127.0.0.1", server.getsockname()[1], timeout=2.0)


def test_wait_for_port_times_out_with_address_in_message() -> None:
    port = procs.free_port()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"127\.0\.0\.1:{port} within 0\.3s"):
        procs.wait_for_port("127.0.0.1", port, timeout=0.3)
    assert time.monotonic() - started < 3


def test_wait_for_port_fails_fast_when_the_daemon_dies(tmp_path: Path, spawned: list[int]) -> None:
    log = tmp_path / "dies.log"
    pid = _spawn(spawned, "import sys; print('bad config'); sys.exit(3)", log)
    with pytest.raises(procs.DaemonDiedError, match="bad config"):
        procs.wait_for_port("127.0.0.1", procs.free_port(), timeout=10, pid=pid, log_path=log)


def test_spawn_daemon_detaches_logs_and_stops(tmp_path: Path, spawned: list[int]) -> None:
    log = tmp_path / "daemon.log"
    code = (
        "import os, sys, time\n"
        "print('session-leader', os.getsid(0) == os.getpid())\n"
        "print('stdin', repr(sys.stdin.read()))\n"
        "print('env', os.environ.get('MARK'), 'HOME' in os.environ)\n"
        "print('cwd', os.getcwd())\n"
        "print('to-stderr', file=sys.stderr, flush=True)\n"
        "sys.stdout.flush()\n"
        "time.sleep(60)\n"
    )
    pid = _spawn(spawned, code, log, env={"MARK": "x"}, cwd=tmp_path)
    wait_for(_log_has(log, "to-stderr"))
    text = log.read_text(encoding="utf-8")
    assert "session-leader True" in text
    assert "stdin ''" in text
    assert "env x False" in text  # env replaces the environment, it is not merged
    assert f"cwd {tmp_path}" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert procs.pid_alive(pid)
    procs.stop_pid(pid)
    assert not procs.pid_alive(pid)


def test_log_is_appended_not_truncated(tmp_path: Path, spawned: list[int]) -> None:
    log = tmp_path / "append.log"
    log.write_text("earlier run\n", encoding="utf-8")
    log.chmod(0o644)
    pid = _spawn(spawned, "print('later run')", log)
    wait_for(lambda: not procs.pid_alive(pid))
    assert log.read_text(encoding="utf-8") == "earlier run\nlater run\n"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_stop_pid_stops_the_whole_process_group(tmp_path: Path, spawned: list[int]) -> None:
    log = tmp_path / "group.log"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "print('child', child.pid, flush=True)\n"
        "child.wait()\n"
    )
    pid = _spawn(spawned, code, log)
    wait_for(_log_has(log, "child "))
    grandchild = int(log.read_text(encoding="utf-8").split()[1])
    spawned.append(grandchild)
    assert procs.pid_alive(grandchild)
    procs.stop_pid(pid, timeout=5)
    assert not procs.pid_alive(pid)
    wait_for(lambda: not procs.pid_alive(grandchild), deadline=5)


def test_stop_pid_escalates_to_sigkill(tmp_path: Path, spawned: list[int]) -> None:
    log = tmp_path / "stubborn.log"
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring', flush=True)\n"
        "time.sleep(60)\n"
    )
    pid = _spawn(spawned, code, log)
    wait_for(_log_has(log, "ignoring"))
    started = time.monotonic()
    procs.stop_pid(pid, timeout=0.3)
    assert not procs.pid_alive(pid)
    assert time.monotonic() - started < 5


def test_stop_pid_and_pid_alive_accept_missing_processes() -> None:
    missing = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    assert not procs.pid_alive(missing)
    assert not procs.pid_alive(0)
    procs.stop_pid(missing)


def test_pid_alive_treats_a_zombie_as_dead() -> None:
    child = subprocess.Popen([PY, "-c", "pass"])
    try:
        stat_file = Path(f"/proc/{child.pid}/stat")
        wait_for(lambda: stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z")
        assert not procs.pid_alive(child.pid)
    finally:
        child.wait()


def test_stop_pid_works_on_a_process_spawn_daemon_did_not_start() -> None:
    # As for a pid read back from a pid file: stop_pid must not rely on its own registry.
    # (setsid execs in place, so the group leader is our child and we can reap it at the end.)
    child = subprocess.Popen(["setsid", "sleep", "60"])
    try:
        wait_for(lambda: os.getpgid(child.pid) == child.pid)
        assert procs.pid_alive(child.pid)
        procs.stop_pid(child.pid, timeout=5)
        assert not procs.pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_spawn_daemon_as_another_user(tmp_path: Path, spawned: list[int]) -> None:
    log = tmp_path / "as-postgres.log"
    account = pwd.getpwnam("postgres")
    pid = procs.spawn_daemon(
        ["sh", "-c", 'id -un; echo "home=$HOME"; exec sleep 60'],
        log_path=log,
        env={"PATH": os.environ["PATH"]},
        cwd=Path("/"),
        user="postgres",
    )
    spawned.append(pid)
    wait_for(_log_has(log, "home="))
    assert log.read_text(encoding="utf-8").split() == ["postgres", f"home={account.pw_dir}"]
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    assert set(uids) == {str(account.pw_uid)}
    assert set(gids) == {str(account.pw_gid)}
    # The log stays root's and private; the daemon writes through the descriptor it was given.
    assert log.stat().st_uid == 0
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_write_private_is_atomic_and_0600(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o644)
    procs.write_private(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_atomic_uses_the_given_mode(tmp_path: Path) -> None:
    target = tmp_path / "ca.pem"
    procs.write_atomic(target, "cert", 0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_ensure_private_dir_creates_and_tightens(tmp_path: Path) -> None:
    nested = procs.ensure_private_dir(tmp_path / "a" / "b")
    assert nested.is_dir()
    assert stat.S_IMODE(nested.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    procs.ensure_private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert procs.log_tail(log) == ""
    log.write_text("".join(f"line {i}\n" for i in range(50)), encoding="utf-8")
    assert procs.log_tail(log, 2) == "line 48\nline 49"


# The signal arrives while the main thread holds the event's lock: exactly where a daemon's
# ``stop.wait(...)`` loop spends a few bytecodes each turn. A handler that called
# ``stop.set()`` itself blocked there forever (the Heroku emulator outlived SIGTERM in CI).
_SIGNAL_INSIDE_WAIT = """
import os, signal, sys
from cutover.sandbox import procs
stop = procs.stop_on_signals()
with stop._cond:  # what Event.wait holds between two bytecodes
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # bytecodes: the handler runs here, lock held
        pass
sys.exit(0 if stop.wait(10) else 3)
"""


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_stop_on_signals_sets_the_event_even_when_the_signal_lands_inside_its_wait(
    signum: str,
) -> None:
    code = _SIGNAL_INSIDE_WAIT.replace("SIGTERM", signum)
    done = subprocess.run([PY, "-c", code], timeout=30, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
