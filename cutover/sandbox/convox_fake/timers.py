"""Timers: the rack fires each timer of the active release on its schedule.

Facts: provider/k8s/release.go (``ReleasePromote`` renders one CronJob per ``timers:`` entry of
the release's manifest, template/app/timer.yml.tmpl: ``schedule`` as written, the pod runs the
timer's ``command`` with its service's image and env; the promote's apply prunes the CronJobs
of timers a release no longer declares), pkg/manifest (5-field cron, UTC; ``?`` becomes
``*``: ``ApplyCompatibility``, done by :func:`.manifest.load_manifest`).

The stand-in runs one rack-side job (``timers``) per promoted release with timers: at each cron
minute (the rack timing ``timer_minute``, 60 s unless a test shortens it) it runs, for every
timer whose schedule matches the minute's UTC time, the command on this machine in the
build's source folder with the service's env (like ``convox run``), output in the rack's log
folder. The job ends when its release is no longer the app's active one (a later promote took
over: its own job fires that release's timers, or none).
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from cutover.sandbox import procs
from cutover.sandbox.convox_fake import jobs
from cutover.sandbox.convox_fake.manifest import release_manifest
from cutover.sandbox.convox_fake.model import (
    env_load,
    find_build,
    find_release,
    get_app,
    rack_by_name,
)
from cutover.sandbox.convox_fake.output import CliError
from cutover.sandbox.convox_fake.runtime import service_env
from cutover.sandbox.convox_fake.store import Store, log_dir, timing

# minute, hour, day of month, month, day of week (0 = Sunday; 7 too)
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field(spec: str, value: int, low: int, high: int) -> bool:
    for item in spec.split(","):
        part, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if part == "*":
            first, last = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            first, last = int(a), int(b)
        else:
            first = int(part)
            last = high if step > 1 else first
        if first <= value <= last and (value - first) % step == 0:
            return True
    return False


def matches(schedule: str, when: time.struct_time) -> bool:
    """Whether a 5-field cron ``schedule`` fires at the UTC minute ``when``."""
    fields = schedule.split()
    if len(fields) != 5:
        return False
    weekday = (when.tm_wday + 1) % 7  # struct_time: Monday is 0; cron: Sunday is 0
    values = (when.tm_min, when.tm_hour, when.tm_mday, when.tm_mon, weekday)
    try:
        hits = [
            _field(spec, value, low, high)
            for spec, value, (low, high) in zip(fields, values, _RANGES, strict=True)
        ]
        if not hits[4] and weekday == 0:
            hits[4] = _field(fields[4], 7, 0, 7)
    except ValueError:
        return False
    return all(hits)


def fire(store: Store, rack_name: str, app_name: str, release_id: str, when: float) -> bool:
    """Run the timers of ``release_id`` due at ``when``; False once it is not active."""
    started = []
    with store.locked() as state:
        try:
            app = get_app(rack_by_name(state, rack_name), app_name)
        except CliError:
            return False
        if app.get("release") != release_id:
            return False
        release = find_release(app, release_id)
        manifest = release_manifest(app, release, env_load(release["env"]))
        build = find_build(app, release["build"]) if release.get("build") else {}
        source = Path(str(build.get("dir", "")))
        cwd = source if build.get("dir") and source.is_dir() else store.folder
        for timer in manifest.timers if manifest else []:
            service = manifest.service(timer.service) if manifest else None
            if service is None or manifest is None:
                continue
            if not matches(timer.schedule, time.gmtime(when)):
                continue
            env = service_env(state, rack_name, app, release, manifest, service, os.environ)
            started.append((timer.name, shlex.split(timer.command), env))
    pids = []
    for name, argv, env in started:
        if argv:
            pid = procs.spawn_daemon(
                argv,
                log_path=log_dir(store.folder) / f"timer-{app_name}-{name}.log",
                env={**env, "TIMER": name},
                cwd=cwd,
            )
            pids.append({"pid": pid, "timer": name, "cmdline": argv[0]})
    if pids:
        with store.locked() as state:
            app = get_app(rack_by_name(state, rack_name), app_name)
            runs = [r for r in app.get("timer_runs") or [] if _is_run(r)]
            app["timer_runs"] = runs + pids
    return True


def _is_run(record: dict[str, object]) -> bool:
    """A recorded timer run still alive (its pid not reused: the command line names it)."""
    pid = int(str(record.get("pid") or 0))
    if pid <= 0 or not procs.pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].decode(errors="replace") == record.get("cmdline")


def stop_runs(app: dict[str, object]) -> list[int]:
    """Stop the timer runs still alive (``sandbox down``); return their pids."""
    stopped = []
    runs = app.pop("timer_runs", None)
    for record in runs if isinstance(runs, list) else []:
        if _is_run(record):
            procs.stop_pid(int(record["pid"]), timeout=5.0)
            stopped.append(int(record["pid"]))
    return stopped


def run(store: Store, rack_name: str, app_name: str, release_id: str) -> None:
    """The ``timers`` job of one release: fire at each cron minute until it is not active."""
    with store.locked() as state:
        minute = timing(state, "timer_minute")
    while True:
        now = time.time()
        tick = (int(now // minute) + 1) * minute
        time.sleep(max(0.0, tick - now))
        # The minute's UTC time: on the real clock when a minute is 60 s; a shortened minute
        # counts minutes from the epoch.
        when = tick if minute == 60 else (tick // minute) * 60
        if not fire(store, rack_name, app_name, release_id, when):
            with store.locked() as state:
                jobs.finished(state, "timers", release_id)
            return
