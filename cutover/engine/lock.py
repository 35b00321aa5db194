"""One lock per state folder, held for a whole run or rollback.

The lock file holds who took it (pid, host, user, since, command). The kernel lock (flock) on it
is what decides: it is released when the holder dies, even by kill -9, so a crashed run never
blocks a resume. A lock file left by a dead process on this host is taken over and the take-over
is logged; one from another host is refused until ``cutover unlock --force``.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.errors import LockedError
from cutover.fsutil import ensure_private_dir, make_private, unwritable
from cutover.state import now_iso

LOCK_FILE = "lock"


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    user: str
    since: str
    command: str

    def describe(self) -> str:
        return (
            f"pid {self.pid} on {self.host} (user {self.user}, since {self.since}): {self.command}"
        )


def _me(command: str) -> Holder:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Holder(os.getpid(), socket.gethostname(), user, now_iso(), command)


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        data: dict[str, Any] = json.loads(raw.decode() or "null") or {}
        return Holder(
            int(data["pid"]),
            str(data["host"]),
            str(data["user"]),
            str(data["since"]),
            str(data.get("command", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None


class RunLock:
    """``with RunLock(folder, "cutover run"):`` or acquire()/release()."""

    def __init__(self, folder: Path, command: str) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self.command = command
        self._fd: int | None = None
        self.took_over: Holder | None = None

    def acquire(self) -> None:
        try:
            ensure_private_dir(self.folder)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise unwritable(self.folder, exc, f"lock file {LOCK_FILE}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(
                "another cutover holds the lock on this state: "
                + (holder.describe() if holder else "holder unknown"),
                resolution="Wait for it to finish. If that process is gone, run `cutover unlock`.",
            ) from None
        previous = _read_holder(fd)
        me = _me(self.command)
        if previous is not None and previous.host != me.host:
            os.close(fd)
            raise LockedError(
                f"the lock was taken on another host: {previous.describe()}",
                resolution="If that run is finished or dead, run `cutover unlock --force`.",
            )
        if previous is not None and previous.pid != me.pid:
            self.took_over = previous
        try:
            make_private(fd)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(me.__dict__).encode())
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)  # the flock goes with it: no run holds a lock it could not record
            raise unwritable(self.folder, exc, f"lock file {LOCK_FILE}") from None
        self._fd = fd

    def release(self) -> None:
        """Empty the lock file, then drop the flock. The file is never deleted while locked:
        a process blocked on the old inode could otherwise lock it while a third process
        creates and locks a new file, and two runs would hold "the" lock."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def unlock(folder: Path, *, force: bool) -> str:
    """Clear a lock whose process is gone; with force, also another host's lock (never one
    held by a live process on this host). Returns what was done."""
    path = folder / LOCK_FILE
    if not path.exists():
        return "no lock is held"
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _read_holder(fd) is None:
            return "no lock is held"
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    fd = os.open(path, os.O_RDWR)
    try:
        holder = _read_holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            live = False
        except BlockingIOError:
            live = True
        if not live and holder is not None and holder.host == socket.gethostname():
            live = False  # flock is free: the holder died (its pid may have been reused)
        elif not live and holder is not None and holder.host != socket.gethostname() and not force:
            raise LockedError(
                f"the lock belongs to another host: {holder.describe()}",
                resolution="cutover cannot see whether it is alive; use --force if you are sure.",
            )
        if live and (holder is None or holder.host == socket.gethostname()):
            # The flock is held by a process on this host: a run is going on. Clearing its
            # lock would let a second run start beside it (duplicate builds and backups), so
            # even --force is refused; --force stays for another host's lock, which cutover
            # cannot see.
            who = holder.describe() if holder else "holder not yet recorded"
            raise LockedError(
                f"the lock is held by a live process on this host: {who}",
                resolution="Let it finish or stop it (Ctrl-C, or kill that pid); --force does "
                "not clear a lock whose holder is alive on this host.",
            )
        if live and not force:
            raise LockedError(
                "the lock is held by a live process: "
                + (holder.describe() if holder else "holder unknown"),
                resolution="Let it finish or stop it (Ctrl-C). `cutover unlock --force` clears "
                "the lock anyway, which is unsafe while that run goes on.",
            )
        try:
            path.unlink()
        except OSError as exc:
            raise unwritable(folder, exc, f"lock file {LOCK_FILE}") from None
    finally:
        os.close(fd)
    what = holder.describe() if holder else "unknown holder"
    return f"lock cleared ({'forced; ' if live else ''}{what})"
