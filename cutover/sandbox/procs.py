"""Process and file helpers for the daemons the sandbox starts.

Daemons are started as children of the calling process (in their own session) and their
``Popen`` objects are kept in a module registry, so that stopping them also reaps them: on this
kind of machine PID 1 does not reap orphans, and an unreaped child would linger as a zombie.
Pids that this process did not start (read back from a pid file) are signalled and polled only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from cutover.fsutil import atomic_write, ensure_private_dir

__all__ = [
    "DaemonDiedError",
    "ensure_private_dir",
    "free_port",
    "log_tail",
    "pid_alive",
    "spawn_daemon",
    "stop_on_signals",
    "stop_pid",
    "wait_for_exit",
    "wait_for_port",
    "write_atomic",
    "write_private",
]

_POLL_INTERVAL = 0.05

# Daemons started by this process, by pid: kept so they can be reaped (and so that the garbage
# collector never warns about a still-running child).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class DaemonDiedError(RuntimeError):
    """A daemon exited while we were waiting for it to become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free for both TCP and UDP on ``host`` and handed out once.

    The port comes from below the kernel's ephemeral range (``ip_local_port_range``): a port the
    kernel picked with ``bind(0)`` lies inside that range, where every outgoing connection takes
    its source port too, so between the check and the daemon's own bind a psql or HTTP client of
    another test could take it (seen in CI: the Heroku API emulator never listened). Below the
    range only an explicit bind can take it, and a registry shared by every process of this user
    (a file under the temp folder, locked with ``flock``) keeps two sandboxes started at once from
    being handed the same port within an hour.
    """
    low, high = _port_window()
    with _port_registry() as taken:
        for _ in range(200):
            port = random.randrange(low, high)
            if port in taken or not _bindable(host, port):
                continue
            taken[port] = time.time()
            return port
    raise OSError(f"no port free for both TCP and UDP on {host} in {low}-{high - 1}")


_PORT_HOLD_SECONDS = 3600.0


def _port_window() -> tuple[int, int]:
    """Ports ``[low, high)`` for sandbox daemons: 20000 up to the ephemeral range's start."""
    ephemeral_low = 32768
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        ephemeral_low = int(text.split()[0])
    if ephemeral_low - 20000 < 1000:  # an unusual range: fall back to one above it
        return 61000, 65535
    return 20000, ephemeral_low


def _bindable(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind((host, port))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _port_registry() -> Iterator[dict[int, float]]:
    """The ports handed out in the last hour by any process of this user, locked while open."""
    path = Path(tempfile.gettempdir()) / f"cutover-sandbox-ports-{os.getuid()}.json"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            raw = json.loads(handle.read() or "{}")
        except ValueError:
            raw = {}
        now = time.time()
        taken = {
            int(k): float(v)
            for k, v in (raw.items() if isinstance(raw, dict) else [])
            if str(k).isdigit() and isinstance(v, (int, float)) and now - v < _PORT_HOLD_SECONDS
        }
        yield taken
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(taken))


def wait_for_port(
    host: str, port: int, timeout: float, *, pid: int | None = None, log_path: Path | None = None
) -> None:
    """Wait until a TCP connection to ``host:port`` succeeds.

    With ``pid``, fail fast with :class:`DaemonDiedError` if that process exits meanwhile
    (``log_path`` adds the end of its log to the message).
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(1.0, max(timeout, 0.05))):
                return
        except OSError as exc:
            last_error = exc.strerror or str(exc)
        if pid is not None and not pid_alive(pid):
            raise DaemonDiedError(_died_message(pid, f"listening on {host}:{port}", log_path))
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing accepted TCP connections on {host}:{port} within {timeout:.1f}s "
                f"(last error: {last_error})"
            )
        time.sleep(_POLL_INTERVAL)


def _died_message(pid: int, waiting_for: str, log_path: Path | None) -> str:
    text = f"process {pid} exited before {waiting_for}"
    if log_path is not None:
        tail = log_tail(log_path)
        text += f"; end of {log_path}:\n{tail}" if tail else f"; {log_path} is empty"
    return text


def log_tail(path: Path, lines: int = 20) -> str:
    """Return the last ``lines`` lines of a log file (empty if it does not exist)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def spawn_daemon(
    argv: list[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start ``argv`` detached (new session), output appended to ``log_path``; return its pid.

    stdin is /dev/null. The log file is created 0600 by the caller's user and handed over as an
    open descriptor, so a daemon running as ``user`` can write it without owning it. With
    ``user`` (root only), the child switches uid, gid and supplementary groups before exec and
    gets that user's HOME, USER and LOGNAME.
    """
    child_env = dict(os.environ if env is None else env)
    uid: int | None = None
    gid: int | None = None
    groups: list[int] | None = None
    if user is not None:
        entry = pwd.getpwnam(user)
        if entry.pw_uid != os.geteuid():
            uid, gid = entry.pw_uid, entry.pw_gid
            groups = os.getgrouplist(user, entry.pw_gid)
        child_env.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(log_fd, 0o600)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
    finally:
        os.close(log_fd)
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _proc_state(pid: int) -> str | None:
    """Return the one-letter state of ``pid`` from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise
    # The command name is in parentheses and may itself contain spaces or parentheses.
    rest = raw[raw.rindex(b")") + 2 :].split()
    return rest[0].decode()


def _proc_pgrp(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = raw[raw.rindex(b")") + 2 :].split()
    return int(rest[2])


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is a daemon we started and it has exited; True if it has exited."""
    proc = _CHILDREN.get(pid)
    if proc is None:
        return False
    if proc.poll() is None:
        return False
    del _CHILDREN[pid]
    return True


def pid_alive(pid: int) -> bool:
    """Return True if ``pid`` runs; zombies (exited, not yet reaped) count as dead."""
    if pid <= 0:
        return False
    if _reap(pid):
        return False
    if Path("/proc/self/stat").exists():
        state = _proc_state(pid)
        return state is not None and state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Return True if any non-zombie process is in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if _proc_pgrp(pid) == pgid and pid_alive(pid):
            return True
    return False


def _send(pid: int, signum: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def stop_on_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    """Install handlers for ``signums`` (main thread only) and return the event they set.

    The handler itself only writes a byte to a pipe; a daemon thread reads it and sets the
    event. Calling ``Event.set()`` in the handler instead can deadlock: Python runs a handler
    in the main thread between two bytecodes, and when those are inside ``Event.wait()`` on
    the same event (the daemon's main loop) the thread already holds the event's
    non-reentrant lock, so ``set()`` blocks on it forever (a SIGTERM right after start-up
    left the Heroku emulator running; CI, stop 27).
    """
    stop = threading.Event()
    read_fd, write_fd = os.pipe()  # not inherited by children (PEP 446)
    os.set_blocking(write_fd, False)

    def relay() -> None:
        os.read(read_fd, 1)
        stop.set()

    threading.Thread(target=relay, name="stop-on-signal", daemon=True).start()

    def handler(signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: a stop is already pending
            os.write(write_fd, b"\0")

    for signum in signums:
        signal.signal(signum, handler)
    return stop


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; return True if it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def stop_pid(pid: int, timeout: float = 10.0, *, signum: int = signal.SIGTERM) -> None:
    """Stop ``pid``: ``signum`` (SIGTERM), wait up to ``timeout``, then SIGKILL.

    If ``pid`` leads a process group, the whole group gets the signals and is waited for.
    No error if the process is already gone; raises TimeoutError if even SIGKILL fails.
    """
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        # Already reaped; members of its group may remain (a pgid is never reused while used).
        group = _group_alive(pid)
    if not pid_alive(pid) and not (group and _group_alive(pid)):
        return

    def gone() -> bool:
        return not pid_alive(pid) and not (group and _group_alive(pid))

    _send(pid, signum, group)
    deadline = time.monotonic() + timeout
    while not gone() and time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
    if gone():
        return
    _send(pid, signal.SIGKILL, group)
    deadline = time.monotonic() + 5.0
    while not gone():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"process {pid} survived SIGKILL for 5s")
        time.sleep(_POLL_INTERVAL)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename, fsync folder)."""
    atomic_write(path, text, mode)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically as a 0600 file."""
    write_atomic(path, text, 0o600)
