"""The sandbox Heroku's worker dynos as real processes, following the emulator's formation.

Run as ``python -m cutover.sandbox.herokudynos --state STATE --app APP`` (``sandbox up`` starts
it). Every ``POLL_SECONDS`` it reads the Heroku API emulator's state file (only when its
modification time changed) and keeps, for each non-web process type of the app's formation, as
many ``python -m cutover.sandbox.sampleworker`` processes as the formation's ``quantity``,
named ``<type>.<n>`` like Heroku's dynos. Scaling down sends the extra processes SIGTERM, as
Heroku does to the dynos it stops ("Dyno Manager", Heroku Dev Center: SIGTERM, then SIGKILL after
30 s); maintenance mode does not touch them, as on Heroku (maintenance stops web traffic only).

The workers get this process's environment (the app's config vars, among them the Heroku
``DATABASE_URL``: given through the environment, never argv) plus ``DYNO``, ``PLATFORM=heroku``
and ``RELEASE`` (``v<version>`` of the current release). So the sandbox's Heroku keeps writing to
its database through its worker until cutover's scale-down stops it, as a real app's Sidekiq
does.

Deliberate differences: the web process type is the sandbox's single sample app process
(``sandbox up`` runs it), not ``quantity`` processes; one-off dynos (``heroku run``) are not run.
SIGTERM or SIGINT to this process stops every worker it started (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cutover.sandbox import procs

POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 30.0  # Heroku: SIGKILL 30 s after SIGTERM


def _log(message: str) -> None:
    print(f"herokudynos: {message}", file=sys.stderr, flush=True)


def wanted(state: dict[str, Any], app: str) -> tuple[dict[str, int], str]:
    """The quantity per non-web process type of ``app``'s formation and the current release
    (``v<version>``, "" when there is none)."""
    entry = state.get("apps", {}).get(app) or {}
    quantities = {
        str(p["type"]): int(p.get("quantity") or 0)
        for p in entry.get("formation") or []
        if p.get("type") != "web"
    }
    releases = entry.get("releases") or []
    current = next((r for r in releases if r.get("current")), None)
    if current is None and releases:
        current = max(releases, key=lambda r: int(r.get("version", 0)))
    return quantities, f"v{current['version']}" if current else ""


class Dynos:
    """The worker processes this supervisor runs, by dyno name."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping: list[tuple[subprocess.Popen[bytes], float]] = []

    def converge(self, quantities: dict[str, int], release: str) -> None:
        for name, proc in list(self.running.items()):
            if proc.poll() is not None:
                _log(f"{name} exited with {proc.returncode}")
                del self.running[name]
        for process_type, quantity in quantities.items():
            for index in range(1, quantity + 1):
                name = f"{process_type}.{index}"
                if name not in self.running:
                    self.running[name] = self._start(name, release)
            extra = [
                n
                for n in self.running
                if n.rsplit(".", 1)[0] == process_type and int(n.rsplit(".", 1)[1]) > quantity
            ]
            for name in extra:
                self._stop(name)
        for name in [n for n in self.running if n.rsplit(".", 1)[0] not in quantities]:
            self._stop(name)
        self._reap()

    def _start(self, name: str, release: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "DYNO": name, "PLATFORM": "heroku", "RELEASE": release}
        with (self.log_dir / f"heroku-{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cutover.sandbox.sampleworker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _log(f"started {name} (pid {proc.pid}, release {release or 'none'})")
        return proc

    def _stop(self, name: str) -> None:
        proc = self.running.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            _log(f"SIGTERM to {name} (pid {proc.pid})")
        self.stopping.append((proc, time.monotonic()))

    def _reap(self) -> None:
        keep: list[tuple[subprocess.Popen[bytes], float]] = []
        for proc, since in self.stopping:
            if proc.poll() is not None:
                continue
            if time.monotonic() - since > STOP_GRACE_SECONDS:
                proc.kill()
                continue
            keep.append((proc, since))
        self.stopping = keep

    def stop_all(self) -> None:
        for name in list(self.running):
            self._stop(name)
        deadline = time.monotonic() + 10
        for proc, _since in self.stopping:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cutover.sandbox.herokudynos")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    stop = procs.stop_on_signals()
    dynos = Dynos(dict(os.environ), args.log_dir)
    seen = -1.0
    quantities: dict[str, int] = {}
    release = ""
    _log(f"following the formation of {args.app} in {args.state}")
    try:
        while not stop.is_set():
            try:
                mtime = args.state.stat().st_mtime
                if mtime != seen:
                    quantities, release = wanted(json.loads(args.state.read_text()), args.app)
                    seen = mtime
            except (OSError, ValueError):
                pass  # the emulator replaces the file atomically; a torn read is retried
            dynos.converge(quantities, release)
            stop.wait(POLL_SECONDS)
    finally:
        dynos.stop_all()
    _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
