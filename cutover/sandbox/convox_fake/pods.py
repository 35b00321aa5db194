"""One-off pods (``convox run``): real detached processes recorded on the app.

A pod record (``app["runs"]``) holds its id, service, release, command, start time, the pid of
its process (the leader of its own process group) and the pid of a command exec'd in it.
``convox ps`` lists the live ones (``provider/k8s/process.go`` ``ProcessList`` lists every pod of
the app); :func:`stop` is ``ProcessStop``; :func:`stop_all` ends them with the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Mapping
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.convox_fake.model import get_app, rack_by_name
from cutover.sandbox.convox_fake.output import POD_ALPHABET, CliError, now_iso
from cutover.sandbox.convox_fake.store import Json, Store, log_dir


def _pod_id(service: str) -> str:
    """``GenerateName: <service>-``: five random characters (provider/k8s/process.go)."""
    return f"{service}-" + "".join(random.choice(POD_ALPHABET) for _ in range(5))


def start(
    store: Store,
    rack: str,
    app: str,
    service: str,
    release: str,
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    sleep: int = 0,
) -> str:
    """Start a pod (detached, own session) running ``argv``, or with ``sleep`` a pod whose
    command is ``sleep <sleep>`` and which, when that ends, kills the commands exec'd in it
    (their pids, appended to its groups file by :func:`record_exec`). Return its id."""
    pod = _pod_id(service)
    groups = log_dir(store.folder) / f"exec-groups-{pod}"
    if sleep:
        argv = [
            "sh",
            "-c",
            f'sleep {int(sleep)}; for g in $(cat "$0" 2>/dev/null); do kill -KILL -- "-$g"; done',
            str(groups),
        ]
    try:
        pid = procs.spawn_daemon(
            argv, log_path=log_dir(store.folder) / f"pod-{pod}.log", env=dict(env), cwd=cwd
        )
    except OSError as exc:
        raise CliError(f"exec: {exc.strerror}") from None
    with store.locked() as state:
        get_app(rack_by_name(state, rack), app).setdefault("runs", []).append(
            {
                "id": pod,
                "service": service,
                "release": release,
                "status": "running",
                "started": now_iso(),
                "command": f"sleep {sleep}" if sleep else " ".join(argv),
                "pid": pid,
                "groups": str(groups),
            }
        )
    return pod


def _find(state: Json, pod: str) -> Json | None:
    for rack in state["racks"]:
        for app in (rack.get("apps") or {}).values():
            for record in app.get("runs") or []:
                if record["id"] == pod:
                    assert isinstance(record, dict)
                    return record
    return None


def exec_log(store: Store, pod: str) -> Path:
    return log_dir(store.folder) / f"exec-{pod}.log"


def record_exec(store: Store, pod: str, pid: int) -> None:
    """Remember a command exec'd in the pod (its own session: pid = process group)."""
    with store.locked() as state:
        record = _find(state, pod)
        if record is not None:
            record["exec_pid"] = pid
            groups = Path(str(record["groups"]))
    with groups.open("a", encoding="utf-8") as handle:
        handle.write(f"{pid}\n")


def alive(record: Json) -> bool:
    return procs.pid_alive(int(record.get("pid") or 0))


def stop(store: Store, rack: str, app: str, pod: str) -> bool:
    """``ProcessStop`` (provider/k8s/process.go: the pod is deleted): end the pod's process
    group and every command exec'd in it (a deleted pod's containers take all their processes
    with them), and forget it. False if there is no such pod."""
    with store.locked() as state:
        runs = get_app(rack_by_name(state, rack), app).get("runs") or []
        record = next((r for r in runs if r["id"] == pod), None)
        if record is not None:
            runs.remove(record)
    if record is None:
        return False
    if alive(record):
        procs.stop_pid(int(record["pid"]), timeout=5.0)
    try:
        groups = Path(str(record.get("groups") or "")).read_text(encoding="utf-8").split()
    except OSError:
        groups = []
    for group in groups:  # what the pod's sleeper does when its sleep ends
        if group.isdigit():
            with contextlib.suppress(OSError):
                os.killpg(int(group), signal.SIGKILL)
    return True


def stop_all(state: Json) -> list[int]:
    """End every pod (under the lock); return the pids."""
    stopped = []
    for rack in state["racks"]:
        for app in (rack.get("apps") or {}).values():
            for record in app.pop("runs", None) or []:
                for key in ("pid", "exec_pid"):
                    pid = int(record.get(key) or 0)
                    if pid > 0 and procs.pid_alive(pid):
                        procs.stop_pid(pid, timeout=5.0)
                        stopped.append(pid)
    return stopped
