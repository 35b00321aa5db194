"""Running ``cutover run`` / ``cutover rollback`` for the chaos harness, and killing it.

A kill point is reached by following the run's own audit log (``.cutover/events.jsonl``,
engine/audit.py: one JSON object a line, fsync'd as written) from where it stood when the run
started; the kill is ``SIGKILL`` to cutover's own pid, nothing else (what ``kill -9 <pid>`` does).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover.sandbox.chaos import procs
from cutover.sandbox.chaos.points import FINISH, START, Point

POLL = 0.02
RUN_TIMEOUT = 900.0
RESUME_TRIES = 4
# Exit 5: "come back later" (restore-ttl before the soak has passed: README "Steps"). A resume
# that gets it runs again after this pause, as an operator would.
COME_BACK = 5
COME_BACK_PAUSE = 3.0


def write_playbook(work: Path, sandbox: Path, template: Path) -> Path:
    """playbooks/sandbox.yml pointed at ``sandbox`` (as tests/e2e do)."""
    text = template.read_text(encoding="utf-8")
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    path = work / "cutover.yml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Trial:
    """One state folder (one cutover) in one sandbox; every cutover it starts carries the mark."""

    sandbox: Path
    work: Path
    token: str
    playbook: Path
    runs: list[str] = field(default_factory=list)

    @property
    def state_folder(self) -> Path:
        return self.playbook.parent / ".cutover"

    @property
    def events(self) -> Path:
        return self.state_folder / "events.jsonl"

    def start(self, verb: str) -> subprocess.Popen[bytes]:
        self.runs.append(verb)
        log = self.work / f"{len(self.runs):02d}-{verb}.log"
        env = {**os.environ, procs.MARK: self.token, "COLUMNS": "120"}
        argv = [sys.executable, "-m", "cutover", verb, "-f", str(self.playbook), "--yes"]
        with log.open("wb") as out:
            return subprocess.Popen(
                argv,
                cwd=self.work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the harness's Ctrl-C is not cutover's
            )

    def last_log(self, lines: int = 3) -> str:
        log = self.work / f"{len(self.runs):02d}-{self.runs[-1]}.log"
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def run(self, verb: str, timeout: float = RUN_TIMEOUT) -> int:
        proc = self.start(verb)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9


class EventTail:
    """New complete lines of an events.jsonl from the offset it had when created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self._partial = b""

    def new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        out = []
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out


def _reached(point: Point, event: dict[str, Any], kind: dict[str, str]) -> bool:
    return event.get("kind") == kind[point.phase] and event.get("step") == point.step


def kill_at(trial: Trial, point: Point, timeout: float = RUN_TIMEOUT) -> str:
    """Start the phase's command and SIGKILL cutover at ``point``; say what happened."""
    tail = EventTail(trial.events)
    proc = trial.start(point.phase)
    started = time.monotonic()
    kill_time: float | None = None
    while True:
        ended = proc.poll() is not None  # before reading: every event it wrote is then seen
        for event in tail.new():
            if point.fraction is None and _reached(point, event, FINISH):
                kill_time = time.monotonic()
            elif point.fraction is not None and _reached(point, event, START):
                kill_time = time.monotonic() + point.delay
            elif point.fraction is not None and _reached(point, event, FINISH):
                kill_time = time.monotonic()  # the step ended before the delay: kill now
        now = time.monotonic()
        if ended:
            return f"ended before the point (exit {proc.returncode}: {trial.last_log(1)})"
        if kill_time is not None and now >= kill_time:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"killed at {now - started:.1f}s"
        if now - started > timeout:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"never reached the point in {timeout:.0f}s"
        time.sleep(POLL)


def resume(trial: Trial, verb: str, tries: int = RESUME_TRIES) -> list[int]:
    """Run ``verb`` again until it exits 0, at most ``tries`` times; the exit codes."""
    codes: list[int] = []
    for _ in range(tries):
        codes.append(trial.run(verb))
        if codes[-1] == 0:
            break
        if codes[-1] == COME_BACK:
            time.sleep(COME_BACK_PAUSE)
    return codes
