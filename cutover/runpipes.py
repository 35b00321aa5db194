"""Two shapes of child the :class:`~cutover.runner.Runner` needs beyond "run to completion":

* :func:`run_pipe`: ``producer | consumer`` joined by an OS pipe. The data goes from one child
  to the other through the kernel; no Python thread reads or writes a byte of it (``COPY ... TO
  STDOUT`` from Heroku straight into ``COPY ... FROM STDIN`` on Convox). Both children are in
  their own process groups, get SIGTERM when cutover dies, share one timeout, and are stopped in
  stages on a timeout, an abort (another copy failed) or Ctrl-C.
* :class:`Background`: a long-running child (``convox resources proxy``) whose output is
  collected as it arrives, stopped in stages.
* :class:`Session`: a child kept open with a stdin pipe, fed line by line (the psql session that
  holds the exported snapshot for the whole copy).

``sh`` (the Runner's engine for ordinary calls) copies pipes through Python threads, so these two
use :mod:`subprocess` with the same rules: merged environment, argv logged for the test hook,
masked audit events, secrets only in the environment.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from cutover.errors import CommandError, Interrupted
from cutover.runcapture import MAX_STDOUT_BYTES, Chunks, read_tail

if TYPE_CHECKING:
    from cutover.runner import Runner

POLL = 0.2


@dataclass(frozen=True)
class PipeResult:
    argv_masked: list[str]  # "producer... | consumer..." as one masked list
    returncodes: tuple[int, int]
    stderr: str  # both children's stderr, raw (unmasked)
    stdout: str  # the consumer's stdout, raw
    duration: float


def _preexec() -> None:
    from cutover.runner import _die_with_parent  # noqa: PLC0415 - one definition of it

    _die_with_parent()


def _popen(
    argv: list[str],
    env: dict[str, str],
    *,
    stdin: int | IO[bytes] | None,
    stdout: int | IO[bytes] | None,
    stderr: int | IO[bytes] | None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=_preexec,  # noqa: PLW1509 - prctl only, no locks taken
    )


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(proc.pid, sig)


def stop_children(
    procs: Sequence[subprocess.Popen[bytes]], grace: float, first: signal.Signals
) -> None:
    """Stop each child's process group in stages (first, SIGTERM, SIGKILL)."""
    stages = [first] if first == signal.SIGTERM else [first, signal.SIGTERM]
    for sig in [*stages, signal.SIGKILL]:
        live = [p for p in procs if p.poll() is None]
        if not live:
            return
        for p in live:
            _signal_group(p, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in live):
            time.sleep(0.05)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=grace)


def _read(fh: IO[bytes]) -> str:
    """What a child wrote to a temporary file: its last MAX_STDERR_BYTES (bounded memory
    whatever it printed; an error shows the tail anyway)."""
    return read_tail(fh)


def _watch(
    p1: subprocess.Popen[bytes],
    p2: subprocess.Popen[bytes],
    deadline: float,
    abort: threading.Event | None,
) -> str:
    """Wait for both children; "" when both ended, else why they must be stopped."""
    pause = 0.005  # short copies end in milliseconds: back off up to POLL
    while p1.poll() is None or p2.poll() is None:
        if time.monotonic() > deadline:
            return "timeout"
        if abort is not None and abort.is_set():
            return "aborted"
        if p1.poll() not in (None, 0) or p2.poll() not in (None, 0):
            return "failed"  # one side failed: do not wait for the other
        with contextlib.suppress(subprocess.TimeoutExpired):
            p2.wait(timeout=pause)
        pause = min(POLL, pause * 2)
    return ""


def run_pipe(
    runner: Runner,
    producer: Sequence[str],
    consumer: Sequence[str],
    *,
    producer_env: dict[str, str | None],
    consumer_env: dict[str, str | None],
    timeout: float,
    abort: threading.Event | None = None,
) -> PipeResult:
    """Run ``producer | consumer``; raise CommandError unless both exit 0."""
    prod, cons = [str(a) for a in producer], [str(a) for a in consumer]
    masked = [*runner.masker.mask_argv(prod), "|", *runner.masker.mask_argv(cons)]
    penv = runner.environment(producer_env, program=prod[0])
    cenv = runner.environment(consumer_env, program=cons[0])
    prod[0], cons[0] = runner._resolve(prod[0], penv), runner._resolve(cons[0], cenv)
    runner._log_argv(prod, penv)
    runner._log_argv(cons, cenv)
    started = time.monotonic()
    with (
        tempfile.TemporaryFile() as perr,
        tempfile.TemporaryFile() as cerr,
        tempfile.TemporaryFile() as cout,
        runner.child_running(),
    ):
        read_fd, write_fd = os.pipe()
        try:
            p1 = _popen(prod, penv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=perr)
            try:
                p2 = _popen(cons, cenv, stdin=read_fd, stdout=cout, stderr=cerr)
            except BaseException:
                stop_children([p1], runner.term_grace, signal.SIGTERM)
                raise
        finally:
            os.close(read_fd)
            os.close(write_fd)
        procs = [p1, p2]
        try:
            outcome = _watch(p1, p2, started + timeout, abort)
            if outcome:
                stop_children(procs, runner.term_grace, signal.SIGTERM)
        except KeyboardInterrupt:
            stop_children(procs, runner.term_grace, signal.SIGINT)
            runner._event("command", argv=masked, outcome="interrupted")
            raise Interrupted(f"interrupted while running: {' '.join(masked)}") from None
        codes = (int(p1.wait()), int(p2.wait()))
        duration = time.monotonic() - started
        stderr = _read(perr) + _read(cerr)
        stdout = _read(cout)
    ok = codes == (0, 0) and not outcome
    runner._event(
        "command",
        argv=masked,
        exit_code=list(codes),
        duration=round(duration, 3),
        outcome="ok" if ok else (outcome or "failed"),
        stderr_tail=runner._tail(stderr, 10),
    )
    if not ok:
        # The side that failed first: a producer killed by a signal (SIGPIPE, or ours once the
        # consumer failed) is the consequence, not the cause.
        code = codes[1] if codes[0] == 0 or (codes[0] < 0 and codes[1] != 0) else codes[0]
        raise CommandError(
            masked,
            code,
            runner._tail(stderr),
            timed_out=outcome == "timeout",
            reason="stopped: another copy failed" if outcome == "aborted" else "",
        )
    return PipeResult(masked, codes, stderr, stdout, duration)


class Session:
    """A child with an open stdin (``write``) whose stdout is read a line at a time."""

    def __init__(self, runner: Runner, argv: Sequence[str], env: dict[str, str | None]) -> None:
        args = [str(a) for a in argv]
        self.runner = runner
        self.argv_masked = runner.masker.mask_argv(args)
        merged = runner.environment(env, program=args[0])
        args[0] = runner._resolve(args[0], merged)
        runner._log_argv(args, merged)
        # Not counted in Runner.child_seconds: it idles while the work runs in other children.
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = _popen(
            args, merged, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err
        )
        self._buffer = bytearray()  # appended in place: a long line is not copied per read
        runner._event("command-start", argv=self.argv_masked, pid=self.proc.pid)

    def write(self, text: str) -> None:
        """Send ``text``; CommandError (with the child's stderr) when the child has gone."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # ValueError: stdin already closed
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=self.runner.term_grace)
            raise CommandError(self.argv_masked, self.proc.poll(), self.stderr_tail()) from None

    def readline(self, timeout: float) -> str:
        """The next line of stdout (without the newline); CommandError on EOF or timeout."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        scanned = 0  # the buffer before this has no newline
        while (end := self._buffer.find(b"\n", scanned)) < 0:
            scanned = len(self._buffer)
            if scanned > MAX_STDOUT_BYTES:
                stop_children([self.proc], self.runner.term_grace, signal.SIGTERM)
                raise CommandError(
                    self.argv_masked,
                    self.proc.poll(),
                    self.stderr_tail(),
                    reason=f"it printed a line of more than {MAX_STDOUT_BYTES >> 20} MiB "
                    "and was stopped",
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandError(self.argv_masked, None, self.stderr_tail(), timed_out=True)
            ready, _, _ = select.select([fd], [], [], min(left, POLL))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait()
                    raise CommandError(self.argv_masked, self.proc.returncode, self.stderr_tail())
                self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line.decode("utf-8", errors="replace")

    def stderr_tail(self) -> str:
        return self.runner._tail(_read(self._err))

    def close(self, final: str = "", timeout: float = 60) -> int:
        """Send ``final``, close stdin, wait (stopping it after ``timeout``); the exit code."""
        if self._err.closed:
            return int(self.proc.wait())
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    if final:
                        self.write(final)
                    self.proc.stdin.close()
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    stop_children([self.proc], self.runner.term_grace, signal.SIGTERM)
            code = int(self.proc.wait())
            self.runner._event(
                "command-stop",
                argv=self.argv_masked,
                exit_code=code,
                stderr_tail=self.runner._tail(_read(self._err), 10),
            )
            return code
        finally:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            self._err.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            stop_children([self.proc], self.runner.term_grace, signal.SIGTERM)
        self.close()


class Background:
    """A child started with :meth:`Runner.start`. Output is collected as it arrives."""

    def __init__(self, argv_masked: list[str], runner: Runner) -> None:
        self.argv_masked = argv_masked
        self.runner = runner
        self.started_in = runner.step  # the step it started in (a held proxy outlives it)
        self.proc: Any = None
        self._lock = threading.Lock()
        # Bounded (cutover/runcapture.py): a proxy that runs for hours keeps its newest output.
        self._stdout = Chunks()
        self._stderr = Chunks()

    def on_stdout(self, line: str) -> None:
        with self._lock:
            self._stdout.add(line)

    def on_stderr(self, line: str) -> None:
        with self._lock:
            self._stderr.add(line)

    @property
    def stdout(self) -> str:
        with self._lock:
            return self._stdout.text()

    @property
    def stderr(self) -> str:
        with self._lock:
            return self._stderr.text()

    def read_stdout(self, start: int) -> tuple[str, int]:
        """The output that arrived after the first ``start`` chunks, and the chunk count to
        pass next time: a watcher reads each chunk once, however long the output."""
        with self._lock:
            return self._stdout.since(start)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else int(self.proc.pid)

    def alive(self) -> bool:
        return bool(self.proc is not None and self.proc.process.is_alive()[0])

    def exit_code(self) -> int | None:
        """The child's exit code once it has ended (output complete), None while it runs."""
        from cutover.runner import _exit_code, _join  # noqa: PLC0415 - runner imports this module

        if self.proc is None or self.alive():
            return None
        _join(self.proc)
        return _exit_code(self.proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.alive():
            self.runner._stop(self.proc, first=signal.SIGTERM)
        self.runner._event(
            "command-stop",
            argv=self.argv_masked,
            pid=self.pid,
            started_in=self.started_in,
            stderr_tail=self.runner._tail(self.stderr, 10),
        )

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
