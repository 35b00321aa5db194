"""Faults: scripted failures a test injects into the next run(s) of a command.

Stored in the rack state (``faults``, added by :func:`cutover.sandbox.convox_fake.add_fault`).
"""

from __future__ import annotations

import time
from typing import NoReturn

from cutover.sandbox.convox_fake.output import Out
from cutover.sandbox.convox_fake.store import Json, Store


def hang() -> NoReturn:
    """Block forever, like the real proxy's main goroutine; only a signal ends it."""
    while True:
        time.sleep(3600)


def take(store: Store, name: str) -> Json | None:
    """Consume the first fault for ``command``.

    Keys: ``command`` (the command words, e.g. ``"resources proxy"``); ``times`` (default 1;
    -1 = forever); ``sleep`` (seconds, first); ``stdout``/``stderr`` (written verbatim);
    ``exit`` (default 1 when stdout, stderr or exit is given: the command is replaced);
    ``hang`` (block until killed, after the output); ``hang_before_listen`` (resources proxy:
    print the banner, then block without listening).
    """
    with store.locked() as state:
        queued: list[Json] = state.get("faults") or []
        for index, fault in enumerate(queued):
            if fault.get("command") != name:
                continue
            times = int(fault.get("times", 1))
            if times > 0:
                times -= 1
                if times == 0:
                    del queued[index]
                else:
                    fault["times"] = times
            return dict(fault)
    return None


def fire(fault: Json, out: Out) -> int | None:
    """Apply the generic part of a fault; an exit code if it replaces the command."""
    if fault.get("sleep"):
        time.sleep(float(fault["sleep"]))
    replaces = any(key in fault for key in ("stdout", "stderr", "exit"))
    if "stdout" in fault:
        out.write(str(fault["stdout"]))
    if "stderr" in fault:
        out.stderr.write(str(fault["stderr"]))
        out.stderr.flush()
    if fault.get("hang"):
        hang()
    return int(fault.get("exit", 1)) if replaces else None
