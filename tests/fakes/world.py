"""The world file every fake shares, the call log, and the fault and kill hooks.

The world is one JSON document (path in ``FAKE_WORLD``). Fakes run concurrently (a
``convox resources proxy`` stays up while ``psql`` runs), so every read-modify-write holds an
exclusive ``flock`` on ``<world>.lock`` and writes through a temp file + ``os.replace``.

Every call is appended to ``FAKE_CALLS`` as one JSON line: the argv (tool name first), the stdin
the tool read (only tools that read stdin), whether stdin was at EOF, the names (never the values)
of the interesting environment variables present, pid, ppid, cwd and time.

Hooks, from the environment of the call (cutover passes its own environment on) or from the
world's ``hooks`` object (``{"fail": "...", "kill_parent": "..."}``); several specs are separated
by ``;``:

``FAKE_KILL_PARENT=PATTERN[@N]:before|after``
    When the N-th (default first) call matching PATTERN runs, ``kill -9`` the fake's parent (the
    cutover process; its command line is checked) before or after applying the call's effect.
``FAKE_FAIL=PATTERN[@N]:once|always|hang``
    ``once``: the N-th matching call fails with the tool's real error text (heroku: a 500
    ``internal_server_error``, rc 2, which cutover treats as transient); ``always``: every
    matching call from the N-th on fails (convox: ``ERROR: err1``, rc 1); ``hang``: the call
    sleeps until it is killed (or its parent dies).

``FAKE_DELAY=PATTERN=SECONDS``
    Every matching call sleeps SECONDS before doing its work, so steps take real time (the
    window-estimate tests; the real heroku CLI spends 1.2-2 s per call starting up: issue 11's
    demo). Several specs are separated by ``;``; the first matching one applies.

PATTERN is a tool name followed by the argv words that must start its arguments
(``heroku maintenance:on``, ``convox env set``, ``heroku ps:scale worker=0``, ``pg_restore
--clean``); ``#K``: the K-th call of the world (1-based, counted in ``FAKE_CALLS``); or
``step:ID``: any call made while step ID (or, in a rollback, its undo) is ``running`` in cutover's
state file (``FAKE_STATE``),
so ``step:deploy:before`` kills cutover before the first command of the deploy step.

Counts live in the world, so they carry over from a killed run to its resume: a hook fires once
(at its N-th match) however many runs it takes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

# Every fake call is a new process: this module avoids pathlib, hashlib and urllib at import time
# (together ~20 ms a call). Paths are plain strings (``os.PathLike`` accepted).

WORLD_VAR = "FAKE_WORLD"
CALLS_VAR = "FAKE_CALLS"
STATE_VAR = "FAKE_STATE"
FAIL_VAR = "FAKE_FAIL"
KILL_VAR = "FAKE_KILL_PARENT"
DELAY_VAR = "FAKE_DELAY"

# Environment variables whose presence (never value) is recorded with each call.
RECORDED_ENV_PREFIXES = (
    "PG",
    "HEROKU_",
    "CONVOX_",
    "RACK_URL",
    "GIT_CONFIG_GLOBAL",
    "DATABASE_URL",
    "CUTOVER_",
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# -- the world file --------------------------------------------------------------------------
def world_path() -> str:
    value = os.environ.get(WORLD_VAR)
    if not value:
        sys.stderr.write(f"fake: {WORLD_VAR} is not set\n")
        raise SystemExit(70)
    return value


def _read_text(path: str | os.PathLike[str]) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


@contextlib.contextmanager
def _flock(path: str | os.PathLike[str]) -> Iterator[None]:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    return dict(json.loads(_read_text(path)))


def _write(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_world(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    path = path or world_path()
    with _flock(path):
        return _read(path)


@contextlib.contextmanager
def update_world(path: str | os.PathLike[str] | None = None) -> Iterator[dict[str, Any]]:
    """Read the world under the lock, yield it for changes, write it back."""
    path = path or world_path()
    with _flock(path):
        data = _read(path)
        yield data
        _write(path, data)


def write_world(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    with _flock(path):
        _write(path, data)


def fake_id(prefix: str, number: int) -> str:
    """A deterministic id like the rack's (``R`` + 10 uppercase letters)."""
    import hashlib  # noqa: PLC0415 - see the note on imports at the top

    digest = hashlib.sha256(f"{prefix}-{number}".encode()).digest()
    return prefix + "".join(_LETTERS[b % 26] for b in digest[:10])


def next_number(world: dict[str, Any], counter: str) -> int:
    seq = world.setdefault("seq", {})
    seq[counter] = int(seq.get(counter, 0)) + 1
    return int(seq[counter])


# -- the call log ------------------------------------------------------------------------------
def stdin_state() -> str:
    """``eof`` when stdin is closed (or /dev/null), ``open`` when a read would block."""
    try:
        # A closed pipe or /dev/null is readable (EOF) at once; only an open pipe times out.
        ready, _, _ = select.select([0], [], [], 0.2)
    except (OSError, ValueError):
        return "closed"
    if not ready:
        return "open"
    try:
        data = os.read(0, 1)
    except OSError:
        return "closed"
    return "eof" if not data else "data"


def record_call(tool: str, args: list[str], stdin: str | None, stdin_status: str) -> int:
    """Append this call to FAKE_CALLS; return its 1-based index."""
    path = os.environ.get(CALLS_VAR) or f"{world_path()}.calls"
    record = {
        "argv": [tool, *args],
        "stdin": stdin,
        "stdin_state": stdin_status,
        "env": sorted(k for k in os.environ if k.startswith(RECORDED_ENV_PREFIXES)),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "t": time.time(),
    }
    line = json.dumps(record) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.lseek(fd, 0, os.SEEK_SET)
        count = 0
        while chunk := os.read(fd, 1 << 16):
            count += chunk.count(b"\n")
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return count + 1


def read_calls(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in _read_text(path).splitlines() if line]


# -- hooks -------------------------------------------------------------------------------------
class Hook(NamedTuple):
    text: str
    tool: str | None  # None for "#K" and "step:ID"
    words: tuple[str, ...]
    call_index: int | None
    step: str | None
    occurrence: int
    action: str

    def matches(self, tool: str, args: list[str], index: int, running: str | None) -> bool:
        if self.call_index is not None:
            return index == self.call_index
        if self.step is not None:
            return running == self.step
        return tool == self.tool and tuple(args[: len(self.words)]) == self.words


def running_step() -> str | None:
    """The step cutover's state file shows as running (FAKE_STATE), if any."""
    path = os.environ.get(STATE_VAR)
    if not path:
        return None
    try:
        state = json.loads(_read_text(path))
    except (OSError, ValueError):
        return None
    steps = state.get("steps", {})
    running = [sid for sid, st in steps.items() if st.get("status") == "running"]
    if not running:  # `cutover rollback`: the step whose undo is running (cutover/state.py)
        undos = (state.get("rollback") or {}).get("steps", {})
        running = [sid for sid, st in undos.items() if st.get("status") == "running"]
    return running[0] if len(running) == 1 else None


def parse_hooks(text: str, actions: tuple[str, ...]) -> list[Hook]:
    hooks = []
    for raw in text.split(";"):
        spec = raw.strip()
        if not spec:
            continue
        pattern, _, action = spec.rpartition(":")
        if action not in actions or not pattern:
            raise SystemExit(f"fake: bad hook {spec!r} (actions: {', '.join(actions)})")
        occurrence = 1
        head, at, nth = pattern.rpartition("@")
        if at and nth.isdigit():
            pattern, occurrence = head, int(nth)
        if pattern.startswith("#"):
            hooks.append(Hook(spec, None, (), int(pattern[1:]), None, occurrence, action))
        elif pattern.startswith("step:"):
            hooks.append(Hook(spec, None, (), None, pattern[5:], occurrence, action))
        else:
            tool, *words = pattern.split()
            hooks.append(Hook(spec, tool, tuple(words), None, None, occurrence, action))
    return hooks


def active_hooks(world: dict[str, Any]) -> tuple[list[Hook], list[Hook]]:
    """(fail hooks, kill hooks) from the environment and the world."""
    configured = world.get("hooks") or {}
    fail_text = ";".join(filter(None, [os.environ.get(FAIL_VAR), configured.get("fail")]))
    kill_text = ";".join(filter(None, [os.environ.get(KILL_VAR), configured.get("kill_parent")]))
    return (
        parse_hooks(fail_text, ("once", "always", "hang")),
        parse_hooks(kill_text, ("before", "after")),
    )


def fired_hooks(tool: str, args: list[str], index: int) -> tuple[str | None, str | None]:
    """Count this call against every hook; return (fail action, kill moment) that fire now."""
    with update_world() as world:
        fails, kills = active_hooks(world)
        counts = world.setdefault("hook_counts", {})
        fail: str | None = None
        kill: str | None = None
        running = running_step() if any(h.step for h in [*fails, *kills]) else None
        for hook in [*fails, *kills]:
            if not hook.matches(tool, args, index, running):
                continue
            counts[hook.text] = seen = int(counts.get(hook.text, 0)) + 1
            if hook in fails:
                if (hook.action == "always" and seen >= hook.occurrence) or seen == hook.occurrence:
                    fail = fail or hook.action
            elif seen == hook.occurrence:
                kill = kill or hook.action
        return fail, kill


def parent_is_cutover() -> int:
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ")
    except OSError:
        cmdline = b""
    # Only ever `python -m cutover ...`: a hook must not kill a test runner or a shell.
    if b" -m cutover " not in cmdline + b" ":
        raise SystemExit(f"fake: refusing to kill parent {ppid}: not cutover ({cmdline[:200]!r})")
    return ppid


def kill_parent(tool: str, args: list[str], moment: str, index: int) -> None:
    """kill -9 the cutover process that ran this fake, and note it in the world."""
    ppid = parent_is_cutover()
    with update_world() as world:
        world.setdefault("kills", []).append(
            {
                "pid": ppid,
                "argv": [tool, *args],
                "moment": moment,
                "call": index,
                "step": running_step(),
                "t": time.time(),
            }
        )
    os.kill(ppid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            status = _read_text(f"/proc/{ppid}/stat")
        except OSError:
            break
        if ") Z " in status:
            break
        time.sleep(0.01)


def note_effect(world: dict[str, Any], effect: str) -> None:
    """Log an applied side effect (what the tests count: nothing may be applied twice)."""
    world.setdefault("effects", []).append({"effect": effect, "t": time.time()})


def register_process(kind: str, tool: str, args: list[str]) -> None:
    """Note a long-running fake (proxy, hang) so a test's teardown can stop any left over."""
    with update_world() as world:
        world.setdefault("processes", []).append(
            {"pid": os.getpid(), "kind": kind, "argv": [tool, *args], "t": time.time()}
        )


def exit_when_orphaned(poll: float = 0.1) -> None:
    """Block until this process's parent is gone (test hygiene for never-ending fakes)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(poll)


def configured_delay(tool: str, args: list[str]) -> float:
    """Seconds this call should take (``FAKE_DELAY``), 0 when no spec matches."""
    for raw in os.environ.get(DELAY_VAR, "").split(";"):
        pattern, sep, seconds = raw.strip().rpartition("=")
        if not sep:
            continue
        want_tool, *words = pattern.split()
        if want_tool == tool and tuple(args[: len(words)]) == tuple(words):
            return float(seconds)
    return 0.0
