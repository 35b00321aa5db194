"""The processes of one chaos trial: cutover itself, and whatever it left behind.

Every ``cutover`` the harness starts carries ``CHAOS_MARK=<token>`` in its environment. The
runner hands its children the parent's environment plus their own variables (cutover/runner.py:
"the parent's, plus the runner's base, plus the call's own"), so every process cutover started
(``convox resources proxy``, pg_dump, pg_restore, psql, the heroku CLI, redis copies...) carries
the mark, and so do their children; the rack's own work does not (the convox stand-in starts its
jobs and pods with only PASSTHROUGH_ENV or the app's env: convox_fake/jobs.py, runtime.py), nor
does anything the sandbox started. A SIGKILL to cutover's pid is what an operator's ``kill -9``
does: its children are not signalled by it (only those that asked the kernel to be, with
PR_SET_PDEATHSIG: cutover/runner.py ``_die_with_parent``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

MARK = "CHAOS_MARK"


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return needle in data.split(b"\0")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:160]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def marked(token: str) -> dict[int, str]:
    """Live processes (not zombies) carrying ``CHAOS_MARK=token``, but this one."""
    needle = f"{MARK}={token}".encode()
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        if _environ_has(pid, needle) and not _zombie(pid):
            out[pid] = cmdline(pid)
    return out


def leftovers(token: str, settle: float = 10.0) -> dict[int, str]:
    """The marked processes still alive after ``settle`` seconds (a child that is exiting on
    its own, e.g. a proxy whose client closed, is given that long)."""
    deadline = time.monotonic() + settle
    while True:
        found = marked(token)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def kill_all(token: str) -> None:
    """Stop what a trial left behind (after it was recorded), so the next trial starts clean."""
    for pid in marked(token):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
