"""The emulator's state file: one JSON object (0600), atomic writes under a lock.

The file is re-read on every request so tests and other processes can edit it (through
:func:`update_state`, or any atomic replace). Every change is written atomically (temp file,
fsync, ``os.replace``) under a thread lock plus an ``flock`` on ``<state>.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.heroku_api.common import JSONDict

STATE_VERSION = 1

# What the emulator assumes when the state has no "timings" (a state written before they
# existed): instant dynos and backups, the old behaviour. default_state() writes the seed's.
_TIMING_DEFAULTS = {
    "backup_seconds": 0.0,
    "backup_progress_interval": 0.5,
    "dyno_start_seconds": 0.0,
    "dyno_stop_seconds": 0.0,
}

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.get(key)
        if lock is None:
            lock = _THREAD_LOCKS[key] = threading.Lock()
        return lock


def load_state(path: Path) -> JSONDict:
    """Read the state file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the state must be a JSON object")
    return data


def save_state(path: Path, state: JSONDict) -> None:
    """Write the state file atomically as 0600 (temp file, fsync, rename, fsync folder)."""
    procs.write_private(path, json.dumps(state, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def update_state(path: Path) -> Iterator[JSONDict]:
    """Read-modify-write the state under the lock the emulator uses; saved if no exception."""
    lock_path = path.with_name(path.name + ".lock")
    with _thread_lock(path):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = load_state(path)
            yield state
            save_state(path, state)
        finally:
            os.close(fd)  # closing releases the flock


def timing(state: JSONDict, name: str) -> float:
    """A duration knob from ``state["timings"]`` (seconds, never negative)."""
    timings = state.get("timings")
    value = timings.get(name) if isinstance(timings, dict) else None
    if value is None:
        value = _TIMING_DEFAULTS[name]
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        message = f"state timings.{name} must be a number of seconds, not {value!r}"
        raise ValueError(message) from None
