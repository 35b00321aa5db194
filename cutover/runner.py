"""The one runner for every external command cutover's adapters run.

It owns what each call needs and what is easy to get wrong one call at a time:

* the environment: the parent's, plus the runner's base (the sandbox's, say), plus the call's own
  variables. Secrets reach children only through those variables or stdin, never argv;
* stdin is closed unless the call gives input (``convox env set`` blocks on an open pipe);
* a timeout per call: the child's process group gets SIGTERM, then SIGKILL after a grace period;
* output captured and written to the audit log with every secret masked, and bounded: at most
  ``max_stdout`` bytes of stdout are kept (a child that prints more is stopped and the call fails
  saying so: no adapter reads that much, and a hostile or broken tool must not fill memory), and
  only the last ``max_stderr`` bytes of stderr (the error shows its tail anyway);
* retries with tenacity, only for failures the adapter classifies as transient;
* one error type, :class:`~cutover.errors.CommandError`, with the masked command, the exit code and
  the stderr tail;
* Ctrl-C: the child is stopped in stages (SIGINT, SIGTERM, SIGKILL) and
  :class:`~cutover.errors.Interrupted` is raised.

``sh`` runs the children. Its defaults are overridden here on purpose: ``_env`` replaces the whole
environment (we pass the merged one), ``_tty_out`` is off (tools must see pipes and print plain
text), timeouts are ours (sh's send SIGKILL at once), and sh's truncated exception text is never
shown (we build our own error from the full captured output).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sh
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from cutover.errors import CommandError, Interrupted, ToolMissing
from cutover.runcapture import (
    MAX_STDERR_BYTES,
    MAX_STDOUT_BYTES,
    READ_CHUNK,
    TAIL_LINES,
    Head,
    Tail,
    tail,
)
from cutover.runpipes import Background, PipeResult, Session, run_pipe
from cutover.secrets import SecretMasker

# How often, at most, the wait looks at the child (its end, the stdout bound, the deadline).
WAIT_POLL = 0.2
# ... and at first: the wait sleeps a tenth of the time the child has run so far, between
# these two (poll_interval). sh's own RunningCommand.wait(timeout=...) sleeps 0.1 s between
# looks (sh 2.x, sh/__init__.py: ``sleep_amt = 0.1``), which added 50 ms on average (up to
# 100) to every command, a 40 ms psql included: a tenth of a second per psql in a window.
FIRST_POLL = 0.002
STOP_POLL = 0.01  # how often a stopping child is looked at (_ended_within)
DEFAULT_TIMEOUT = 300.0
TERM_GRACE = 5.0
# Test hook: when set, the raw argv of every child is appended here as JSON lines, so tests can
# prove that no secret ever reaches a command line. Never set it in production.
ARGV_LOG_VAR = "CUTOVER_TEST_ARGV_LOG"


class AuditSink(Protocol):
    def event(self, kind: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class Result:
    """What a finished command left behind. stdout/stderr are raw (unmasked) text."""

    argv_masked: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float


Classifier = Callable[[Result], bool]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry only what ``transient`` says is transient, ``attempts`` times in all."""

    transient: Classifier
    attempts: int = 3
    wait_min: float = 0.5
    wait_max: float = 8.0


@dataclass
class Runner:
    masker: SecretMasker
    audit: AuditSink | None = None
    base_env: dict[str, str] = field(default_factory=dict)
    path_prefix: list[str] = field(default_factory=list)
    # Variables of cutover's own environment holding a secret that only cutover reads (the
    # webhook URL, the Cloudflare token, the TSIG secret): never handed on to a child. `make
    # audit` found every child (convox, pg_dump, the heroku CLI...) getting the webhook URL.
    withheld: set[str] = field(default_factory=set)
    # Variables only some programs may receive, by the basename of argv[0]: the Heroku API key
    # goes to the heroku CLI (@heroku-cli/command reads HEROKU_API_KEY) and to git, whose
    # credential helper is `heroku git:credentials` (adapters/heroku.py); `make audit` warned that
    # convox, pg_dump, psql and pg_restore received it too. The rack's credentials (RACK_URL
    # with its password, CONVOX_PASSWORD: pkg/cli and pkg/rack of the convox CLI) go to convox.
    scoped: dict[str, frozenset[str]] = field(
        default_factory=lambda: {
            "HEROKU_API_KEY": frozenset({"heroku", "git"}),
            "RACK_URL": frozenset({"convox"}),
            "CONVOX_PASSWORD": frozenset({"convox"}),
        }
    )
    default_timeout: float = DEFAULT_TIMEOUT
    term_grace: float = TERM_GRACE
    max_stdout: int = MAX_STDOUT_BYTES
    max_stderr: int = MAX_STDERR_BYTES
    # The current step, added to every command event so the log reads as a story.
    step: str | None = None
    _sleep: Callable[[float], None] = time.sleep
    # Wall seconds during which at least one child of this runner ran to completion (run, pipe;
    # not the background helpers: a proxy or a snapshot session idles while others work). For the
    # benchmark: cutover's own time is the step's time minus this.
    child_seconds: float = 0.0
    _active: int = 0
    _active_since: float = 0.0
    _active_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextlib.contextmanager
    def stdout_limit(self, limit: int) -> Iterator[None]:
        """Raise the stdout bound for the calls made inside (never lower it): a schema-only
        pg_dump of a database with thousands of tables or partitions can pass the default."""
        previous = self.max_stdout
        self.max_stdout = max(previous, limit)
        try:
            yield
        finally:
            self.max_stdout = previous

    @contextlib.contextmanager
    def child_running(self) -> Iterator[None]:
        """Count a child as running for :attr:`child_seconds` while the block runs."""
        with self._active_lock:
            if self._active == 0:
                self._active_since = time.monotonic()
            self._active += 1
        try:
            yield
        finally:
            with self._active_lock:
                self._active -= 1
                if self._active == 0:
                    self.child_seconds += time.monotonic() - self._active_since

    # -- two children joined by an OS pipe; a child fed through stdin -------------------------
    def pipe(
        self,
        producer: Sequence[str],
        consumer: Sequence[str],
        *,
        producer_env: Mapping[str, str | None] | None = None,
        consumer_env: Mapping[str, str | None] | None = None,
        timeout: float | None = None,
        abort: threading.Event | None = None,
    ) -> PipeResult:
        """``producer | consumer`` through the kernel (see cutover/runpipes.py)."""
        return run_pipe(
            self,
            producer,
            consumer,
            producer_env=dict(producer_env or {}),
            consumer_env=dict(consumer_env or {}),
            timeout=self.default_timeout if timeout is None else timeout,
            abort=abort,
        )

    def session(
        self, argv: Sequence[str], *, env: Mapping[str, str | None] | None = None
    ) -> Session:
        """A child kept open with a stdin pipe; the caller closes it (use ``with``)."""
        return Session(self, argv, dict(env or {}))

    # -- environment -------------------------------------------------------------------------
    def environment(
        self, extra: Mapping[str, str | None] | None = None, *, program: str | None = None
    ) -> dict[str, str]:
        """The parent's environment, the base, the PATH prefix, then ``extra``, where a value of
        None removes the variable (e.g. FORCE_COLOR, which no empty value can switch off).
        With ``program`` (argv[0]), a ``scoped`` variable is kept only for the programs named
        for it (``extra`` can still pass one explicitly)."""
        env = {k: v for k, v in os.environ.items() if k not in self.withheld}
        env.update(self.base_env)
        if program is not None:
            name = os.path.basename(program)
            for key, allowed in self.scoped.items():
                if name not in allowed:
                    env.pop(key, None)
        if self.path_prefix:
            env["PATH"] = os.pathsep.join([*self.path_prefix, env.get("PATH", "")])
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def which(self, tool: str) -> str | None:
        for folder in self.environment().get("PATH", "").split(os.pathsep):
            candidate = Path(folder or ".") / tool
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        return None

    # -- one call ----------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        input: str | None = None,
        timeout: float | None = None,
        cwd: Path | None = None,
        check: bool = True,
        retry: RetryPolicy | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> Result:
        """Run ``argv`` to completion; raise CommandError unless it exits with one of ok_codes."""
        if retry is None:
            return self._run_once(
                argv,
                env=env,
                input=input,
                timeout=timeout,
                cwd=cwd,
                check=check,
                transient=None,
                ok_codes=ok_codes,
            )

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self._event(
                "retry",
                argv=self.masker.mask_argv(argv),
                attempt=state.attempt_number,
                reason=str(exc.brief) if isinstance(exc, CommandError) else "",
            )

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, CommandError) and e.transient),
            stop=stop_after_attempt(retry.attempts),
            wait=wait_exponential(min=retry.wait_min, max=retry.wait_max),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        result: Result | None = None
        for attempt in retrying:
            with attempt:
                result = self._run_once(
                    argv,
                    env=env,
                    input=input,
                    timeout=timeout,
                    cwd=cwd,
                    check=check,
                    transient=retry.transient,
                    ok_codes=ok_codes,
                )
        assert result is not None
        return result

    def _run_once(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None,
        input: str | None,
        timeout: float | None,
        cwd: Path | None,
        check: bool,
        transient: Classifier | None,
        ok_codes: Sequence[int],
    ) -> Result:
        argv = [str(a) for a in argv]
        masked = self.masker.mask_argv(argv)
        limit = self.default_timeout if timeout is None else timeout
        merged = self.environment(env, program=argv[0])
        exe = self._resolve(argv[0], merged)
        self._log_argv(argv, merged)
        with self.child_running():
            return self._wait_once(
                argv, masked, exe, merged, input, limit, cwd, check, transient, ok_codes
            )

    def _wait_once(
        self,
        argv: list[str],
        masked: list[str],
        exe: str,
        merged: dict[str, str],
        input: str | None,
        limit: float,
        cwd: Path | None,
        check: bool,
        transient: Classifier | None,
        ok_codes: Sequence[int],
    ) -> Result:
        started = time.monotonic()
        timed_out = False
        flooded = False
        proc = None
        out, err = Head(self.max_stdout), Tail(self.max_stderr)
        ended = threading.Event()
        try:
            # Inside the handler too: a Ctrl-C while sh is still setting the child up (its
            # threads) is an interrupt like any other, not a traceback. A child started but not
            # yet handed back dies with us (_die_with_parent).
            proc = _spawn(
                exe,
                argv,
                merged,
                cwd,
                input.encode() if input is not None else None,
                _out=out,
                _err=err,
                _out_bufsize=READ_CHUNK,
                _err_bufsize=READ_CHUNK,
                _done=lambda _cmd, _success, _code: ended.set(),
            )
            timed_out, flooded = self._wait_bounded(proc, started + limit, out, ended)
        except KeyboardInterrupt:
            if proc is not None:
                self._stop(proc, first=signal.SIGINT)
                _join(proc)
                self._record(
                    masked, None, err.text(), time.monotonic() - started, outcome="interrupted"
                )
            raise Interrupted(f"interrupted while running: {' '.join(masked)}") from None
        _join(proc)
        duration = time.monotonic() - started
        code = _exit_code(proc)
        # A child that printed past the bound and exited before the wait saw it: its stdout was
        # cut all the same, and a cut output must never pass for the whole one.
        flooded = flooded or out.overflowed.is_set()
        # A flooded stdout is not decoded: nothing reads it, and the copy would double it.
        stdout, stderr = ("" if flooded else out.text()), err.text()
        result = Result(masked, code, stdout, stderr, duration)
        if timed_out or flooded:
            self._record(
                masked, code, stderr, duration, outcome="timeout" if timed_out else "flood"
            )
            raise CommandError(
                masked,
                code,
                self._tail(stderr),
                timed_out=timed_out,
                reason=""
                if timed_out
                else (
                    f"it printed more than {self.max_stdout // (1024 * 1024)} MiB on stdout "
                    "and was stopped"
                ),
                transient=False,
                stdout_tail="" if flooded else self._tail(stdout),
            )
        ok = code in ok_codes
        self._record(masked, code, stderr, duration, outcome="ok" if ok else "failed")
        if check and not ok:
            raise CommandError(
                masked,
                code,
                self._tail(stderr),
                transient=bool(transient and transient(result)),
                stdout_tail=self._tail(stdout),
            )
        return result

    def _wait_bounded(
        self, proc: Any, deadline: float, out: Head, ended: threading.Event
    ) -> tuple[bool, bool]:
        """Wait for the child until ``deadline``; stop it (in stages) on the deadline or once
        its stdout passes the bound. Returns (timed out, flooded).

        Looks with ``is_alive`` (a ``waitpid(WNOHANG)``, sh 2.x ``OProc.is_alive``) after
        :func:`poll_interval`, or as soon as ``ended`` is set: sh's ``_done`` callback, called
        by whichever thread sees the child end first (``OProc._process_just_ended``), usually
        sh's output thread as the child's stdout closes (``output_thread`` looks with
        ``is_alive`` at EOF). Without it a child of a second waited up to a tenth of a second
        more (50 ms on average, measured between the batches of a changed-rows sync). The
        caller's ``_join`` then collects the output threads."""
        started = time.monotonic()
        while True:
            if not proc.process.is_alive()[0]:
                return False, False  # a signal's end too: the exit code (negative) says which
            now = time.monotonic()
            if out.overflowed.is_set():
                self._stop(proc, first=signal.SIGTERM)
                return False, True
            remaining = deadline - now
            if remaining <= 0:
                self._stop(proc, first=signal.SIGTERM)
                return True, False
            ended.wait(min(remaining, poll_interval(now - started)))

    # -- long-running children (convox resources proxy) ------------------------------------
    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
        input: str | None = None,
    ) -> Background:
        """Start ``argv`` in the background; the caller must ``stop()`` it (use ``with``).
        ``input`` is written to its stdin, which is then closed (closed at once without it)."""
        argv = [str(a) for a in argv]
        masked = self.masker.mask_argv(argv)
        merged = self.environment(env, program=argv[0])
        exe = self._resolve(argv[0], merged)
        self._log_argv(argv, merged)
        bg = Background(masked, self)
        # b"" closes stdin: with output callbacks, _in=None would leave a pipe open.
        stdin = input.encode() if input is not None else b""
        proc = _spawn(exe, argv, merged, cwd, stdin, _out=bg.on_stdout, _err=bg.on_stderr)
        bg.proc = proc
        self._event("command-start", argv=masked, pid=proc.pid)
        return bg

    # -- helpers -----------------------------------------------------------------------------
    def _resolve(self, tool: str, env: Mapping[str, str]) -> str:
        if os.sep in tool:
            if not os.access(tool, os.X_OK):
                raise ToolMissing(f"{tool} is not an executable file")
            return tool
        for folder in env.get("PATH", "").split(os.pathsep):
            candidate = Path(folder or ".") / tool
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        raise ToolMissing(
            f"{tool} is not installed or not on PATH",
            resolution=f"Install {tool} (see README: Requirements) and run again.",
        )

    def _stop(self, proc: Any, *, first: signal.Signals) -> None:
        """Stop a child's process group in stages: first signal, SIGTERM, SIGKILL."""
        stages = [first] if first == signal.SIGTERM else [first, signal.SIGTERM]
        for sig in [*stages, signal.SIGKILL]:
            with contextlib.suppress(ProcessLookupError, OSError):
                proc.process.signal_group(sig)
            if sig == signal.SIGKILL:
                break
            if _ended_within(proc, self.term_grace):
                return
        with contextlib.suppress(Exception):
            proc.wait(timeout=self.term_grace)

    def _record(
        self, masked: list[str], code: int | None, stderr: str, duration: float, *, outcome: str
    ) -> None:
        self._event(
            "command",
            argv=masked,
            exit_code=code,
            duration=round(duration, 3),
            outcome=outcome,
            stderr_tail=self._tail(stderr, 10),
        )

    def _tail(self, text: str, lines: int = TAIL_LINES) -> str:
        """Mask first, then cut: a multi-line secret cut in half would escape the mask."""
        return tail(self.masker.mask(text), lines)

    def _event(self, kind: str, **fields: Any) -> None:
        if self.audit is not None:
            if self.step is not None:
                fields.setdefault("step", self.step)
            self.audit.event(kind, **fields)

    def _log_argv(self, argv: list[str], env: Mapping[str, str]) -> None:
        target = env.get(ARGV_LOG_VAR) or os.environ.get(ARGV_LOG_VAR)
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(argv) + "\n")


@contextlib.contextmanager
def step_scope(runner: Runner, step: str) -> Iterator[None]:
    previous, runner.step = runner.step, step
    try:
        yield
    finally:
        runner.step = previous


def poll_interval(elapsed: float) -> float:
    """Seconds the wait sleeps before it looks at a child that has run ``elapsed`` seconds: a
    tenth of that, at least FIRST_POLL and at most WAIT_POLL (a child's end is seen within
    about 10% of its run time, 2 ms for the shortest, and a long one costs 5 looks a second)."""
    return min(WAIT_POLL, max(FIRST_POLL, elapsed / 10))


def _spawn(
    exe: str,
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path | None,
    stdin: bytes | None,
    **callbacks: Any,
) -> Any:
    """Start a child through sh with every default that matters set explicitly: the whole
    (merged) environment, pipes not a TTY, a new session (so its group can be signalled),
    every exit code accepted (we judge them), output decoded leniently."""
    return sh.Command(exe)(
        *argv[1:],
        _env=dict(env),
        _in=stdin,
        _cwd=str(cwd) if cwd else None,
        _bg=True,
        _bg_exc=False,
        _tty_in=False,
        _tty_out=False,
        _new_session=True,
        _ok_code=list(range(256)),
        _return_cmd=True,
        _decode_errors="replace",
        _preexec_fn=_die_with_parent,
        **callbacks,
    )


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when cutover dies, even by kill -9, so no proxy,
    restore or deploy outlives the run that started it (Linux prctl; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ended_within(proc: Any, grace: float) -> bool:
    """Whether the child ends within ``grace`` seconds, looked at every STOP_POLL (sh's
    ``RunningCommand.wait(timeout=...)`` sleeps 0.1 s between looks: every stop of a proxy that
    exits at once on SIGTERM took a tenth of a second)."""
    deadline = time.monotonic() + grace
    while proc.process.is_alive()[0]:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, STOP_POLL))
    return True


def _join(proc: Any) -> None:
    """Wait for the child and for sh's reader threads, so stdout and stderr are complete.

    ``RunningCommand.wait(timeout=...)`` only polls the pid; the output threads are joined by the
    process object's own wait.
    """
    with contextlib.suppress(Exception):
        proc.process.wait()


def _exit_code(proc: Any) -> int:
    code = proc.process.exit_code
    return int(code) if code is not None else -1
