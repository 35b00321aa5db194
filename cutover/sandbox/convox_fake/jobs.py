"""Rack-side work: builds and rollouts run on the rack, not in the CLI.

On a real rack ``convox build`` POSTs the build and polls it (``pkg/cli/builds.go`` ``build()``)
and ``releases promote`` asks the rack to promote and then waits for the app
(``pkg/cli/releases.go`` ``releasePromote``, ``pkg/common/provider.go``): the work happens on the
rack and goes on when the CLI is killed. The stand-in runs that work as a detached process (its
own session, stdin closed, output in ``<settings>/sandbox-logs/``): ``python -m
cutover.sandbox.convox_fake.jobs KIND SETTINGS RACK APP ID``. A job records its pid in the state
(``jobs``) and removes it when done; :func:`stop_jobs` stops the ones still running.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.convox_fake.store import PASSTHROUGH_ENV, Json, Store, log_dir

JOB_MODULE = "cutover.sandbox.convox_fake.jobs"


def spawn(store: Store, state: Json, kind: str, rack: str, app: str, ident: str) -> int:
    """Start a job (called under the state lock, ``state`` being the locked state)."""
    pid = procs.spawn_daemon(
        [sys.executable, "-m", JOB_MODULE, kind, str(store.folder), rack, app, ident],
        log_path=log_dir(store.folder) / f"job-{kind}-{app}-{ident}.log",
        env={k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ},
        cwd=store.folder,
    )
    state.setdefault("jobs", []).append(
        {"pid": pid, "kind": kind, "rack": rack, "app": app, "id": ident}
    )
    return pid


def finished(state: Json, kind: str, ident: str) -> None:
    """Forget a job (it calls this itself, under the lock, as its last state change)."""
    state["jobs"] = [
        j for j in state.get("jobs") or [] if (j.get("kind"), j.get("id")) != (kind, ident)
    ]


def _is_job(pid: int) -> bool:
    try:
        return JOB_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_jobs(state: Json) -> list[int]:
    """Stop every job still running (under the lock); return their pids."""
    stopped = []
    for job in state.pop("jobs", None) or []:
        pid = int(job.get("pid") or 0)
        if pid > 0 and procs.pid_alive(pid) and _is_job(pid):
            procs.stop_pid(pid, timeout=5.0)
            stopped.append(pid)
    return stopped


def main(argv: list[str]) -> int:
    from cutover.sandbox.convox_fake import buildjob, certs, rollout, timers  # noqa: PLC0415

    kind, folder, rack, app, ident = argv
    store = Store(Path(folder))
    if kind == "build":
        buildjob.run(store, rack, app, ident)
    elif kind == "rollout":
        rollout.run(store, rack, app, ident)
    elif kind == "certs":
        certs.run(store, rack, ident)
    elif kind == "dns01":
        certs.run_letsencrypt(store, rack, ident)
    elif kind == "timers":
        timers.run(store, rack, app, ident)
    else:
        print(f"unknown job kind {kind!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main(sys.argv[1:]))
