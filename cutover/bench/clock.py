"""Cutover's own time in a step: wall time minus the time during which at least one external
command ran (issue 10's target: under 2 s per step, whatever the database's size).

Every child cutover starts goes through ``cutover.runner._spawn`` (runner.py: "every default that
matters set explicitly"), which hands the child to ``sh`` with ``_bg=True``. :func:`install`
wraps that one function in the bench's child process: it marks the child's start and adds an
``sh`` ``_done`` callback, which sh calls when it sees the process end
(sh 2.x ``OProc._process_just_ended``: ``done_callback(success, exit_code)``, bound with the
command first by ``RunningCommand.__init__``). Overlapping children (a parallel copy) are
counted once: the clock adds up the union of their lifetimes.

``Runner.pipe`` starts its two children in cutover/runpipes.py with ``subprocess.Popen``:
:func:`install` wraps that call too (``cutover.runner.run_pipe``). Sessions (``Runner.session``:
a psql kept open, the snapshot holder) are in the trace below, not counted: like the tunnel,
they idle while the work runs in other children.

One kind of child is not counted: ``convox resources proxy`` (``Runner.start``), which lives
for the whole step to forward the bytes of the commands that do the work; counting it would
make any time cutover spends on its own while the tunnel is open look external.

``CUTOVER_BENCH_TRACE=FILE`` (the bench child reads it) appends one line per counted child to
FILE: its program, start and end in seconds from the step's start, and the first words of its
argv (SQL text and variable names; passwords reach children only through their environment):
where a step's time went, child by child.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Now = Callable[[], float]


class ExternalClock:
    """The union of the intervals during which at least one counted child was alive."""

    def __init__(self, now: Now = time.monotonic) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self._total = 0.0
        self.children = 0
        # Seconds per program (each child's own lifetime, overlaps not merged): the bench
        # reports the heroku CLI's share of a figure (its node start is a fixed cost cutover
        # pays in every step that asks Heroku anything).
        self.by_tool: dict[str, float] = {}
        # (program, start, end, label) per child, seconds from the clock's creation
        self.trace: list[tuple[str, float, float, str]] = []
        self.origin = now()

    def record(self, tool: str, began: float, label: str) -> None:
        end = self._now()
        with self._lock:
            self.trace.append((tool, began - self.origin, end - self.origin, label))

    def add_tool(self, tool: str, seconds: float) -> None:
        with self._lock:
            self.by_tool[tool] = self.by_tool.get(tool, 0.0) + seconds

    def enter(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = self._now()
            self._active += 1
            self.children += 1

    def leave(self) -> None:
        with self._lock:
            if self._active == 0:
                return  # a child that ended twice (sh reports once; be safe)
            self._active -= 1
            if self._active == 0:
                self._total += self._now() - self._since

    def seconds(self) -> float:
        """External seconds so far (a child still running counts up to now)."""
        with self._lock:
            running = self._now() - self._since if self._active else 0.0
            return self._total + running


def own_seconds(wall: float, external: float) -> float:
    """Cutover's own time: wall minus external, never below zero (clock granularity)."""
    return max(0.0, wall - external)


def is_helper(argv: Sequence[str]) -> bool:
    """``convox [--rack R ...] resources proxy ...``: the tunnel, not work (see the module)."""
    words = [str(a) for a in argv[1:] if not str(a).startswith("-")]
    return any(words[i : i + 2] == ["resources", "proxy"] for i in range(len(words)))


def label(argv: Sequence[Any], width: int = 160) -> str:
    """A child's argv after the program, on one line, cut at ``width`` characters."""
    return " ".join(" ".join(str(a) for a in argv[1:]).split())[:width]


def install(clock: ExternalClock) -> Callable[[], None]:
    """Wrap ``cutover.runner._spawn`` so that every counted child ticks ``clock``. Returns a
    function that puts the original back."""
    import cutover.runner as runner_module  # noqa: PLC0415 - sh loads only in the bench child

    original = runner_module._spawn

    def spawn(exe: str, argv: list[str], *args: Any, **callbacks: Any) -> Any:
        if is_helper(argv):
            return original(exe, argv, *args, **callbacks)
        chained = callbacks.pop("_done", None)
        tool, began = Path(str(exe)).name, clock._now()

        def done(cmd: Any, success: bool, exit_code: int) -> None:
            clock.leave()
            clock.add_tool(tool, clock._now() - began)
            clock.record(tool, began, label(argv))
            if chained is not None:
                chained(cmd, success, exit_code)

        clock.enter()
        try:
            return original(exe, argv, *args, _done=done, **callbacks)
        except BaseException:
            clock.leave()  # never started: no _done will come
            raise

    original_pipe = runner_module.run_pipe  # type: ignore[attr-defined]

    def pipe(*args: Any, **kwargs: Any) -> Any:
        # Runner.pipe (the direct copy's psql | psql pairs) starts its two children with
        # subprocess.Popen in cutover/runpipes.py, not through _spawn: count the call.
        clock.enter()
        began = clock._now()
        try:
            return original_pipe(*args, **kwargs)
        finally:
            clock.leave()
            clock.record("pipe", began, "")

    original_session = runner_module.Session  # type: ignore[attr-defined]

    class Traced(original_session):  # type: ignore[misc, valid-type]
        """A session (Runner.session: the snapshot holder...): in the trace, never counted (it
        idles while the work runs in other children), its lifetime up to its close."""

        def __init__(self, runner: Any, argv: Sequence[str], env: Any) -> None:
            self._began = clock._now()
            self._traced = False
            super().__init__(runner, argv, env)

        def close(self, *args: Any, **kwargs: Any) -> int:
            try:
                return int(super().close(*args, **kwargs))
            finally:
                if not self._traced:
                    self._traced = True
                    clock.record("session:" + Path(str(self.argv_masked[0])).name, self._began, "")

    runner_module._spawn = spawn
    runner_module.run_pipe = pipe  # type: ignore[attr-defined]
    runner_module.Session = Traced  # type: ignore[attr-defined]

    def restore() -> None:
        runner_module._spawn = original
        runner_module.run_pipe = original_pipe  # type: ignore[attr-defined]
        runner_module.Session = original_session  # type: ignore[attr-defined]

    return restore
