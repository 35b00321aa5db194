"""``convox resources proxy``, started, probed, restarted on network trouble, always stopped.

The real proxy (pkg/cli/resources.go ``ResourcesProxy``, pkg/cli/proxy.go) prints
``proxying localhost:L to H:R`` before it binds, ``connect: L`` per accepted connection, and
never exits on its own. Each connection is a websocket to the rack (sdk/methods.go ``Proxy``):
a failed dial is printed as ``ERROR: ...`` and the local connection closed while the proxy keeps
running (proxyConnection's ``c.Error``); a websocket dropped mid-stream closes the local
connection without a word (stdsdk stream_helper.go ``copyFromWS``).

So a proxy is probed before use: our connection must be reported (``connect: L``: another
program on the port would accept too) and must then stay open or be greeted (postgres and redis
wait for the client; mysql greets). A proxy that closes the probe at once, exits, or prints
``ERROR:`` before use has failed; when its error is network trouble (the adapter's
classifier) it is stopped and started again, ``ATTEMPTS`` times in all (tenacity), which is safe
because nothing went through it yet.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import NoReturn

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from cutover.errors import CutoverError
from cutover.runner import Result, Runner
from cutover.runpipes import Background
from cutover.secrets import SecretMasker

ATTEMPTS = 3
PROBE_WAIT = 0.5  # seconds a probe connection waits to see the proxy close it
# A first message the server behind the proxy answers at once, so a probe knows the tunnel is
# up without waiting PROBE_WAIT to see it stay open: PostgreSQL's SSLRequest (Int32 8, Int32
# 80877103; the server answers one byte, 'S' or 'N', read whole: PostgreSQL docs, "Message
# Formats" and "SSL Session Encryption"). After 'N' a client that closes is not logged
# (backend_startup.c ProcessStartupPacket: "If we get no data at all, don't clutter the log");
# a server with ssl=on answers 'S' and logs one "could not accept SSL connection: EOF detected"
# per probe. Redis gets no first message: a TLS-only one would take a plain PING for a failed
# handshake and close, and its multi-byte reply, read in part, would end in a reset; it waits
# for the client, as before. MySQL greets by itself.
POSTGRES_HELLO = struct.pack("!ii", 8, 80877103)
HELLO = {"postgres": POSTGRES_HELLO}
ERROR_WAIT = 2.0  # seconds to let the proxy print why it closed a probe
# Seconds between probes of a starting proxy: a refused connect to 127.0.0.1 costs microseconds,
# and every step that reaches the Convox database waits for the first probe that goes through
# (0.1 s apart, it waited 50 ms more on average).
PROBE_POLL = 0.02
CONNECT_WAIT = 1.0  # seconds a held proxy's report of a probe's connection may take to arrive


class _Retry(CutoverError):
    """A proxy that failed with network trouble before it was used: worth another start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(
    port: int, wait: float = PROBE_WAIT, hello: bytes | None = None, *, answer: bool = False
) -> str:
    """Connect to a local proxy: "refused" (nothing listens yet), "closed" (it closed the
    connection at once: its tunnel failed), or "open" (data came, or it stayed open for
    ``wait`` seconds). ``hello`` (e.g. :data:`POSTGRES_HELLO`) is sent first, so that a
    working tunnel answers at once; with ``answer``, staying open without answering it is
    "silent" (a proxy that accepts but no longer tunnels)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except OSError:
        return "refused"
    with sock:
        sock.settimeout(wait)
        try:
            if hello:
                sock.sendall(hello)
            data = sock.recv(1)
        except TimeoutError:
            return "silent" if answer and hello else "open"
        except OSError:
            return "closed"
        return "open" if data else "closed"


def start(
    runner: Runner,
    masker: SecretMasker,
    argv_template: list[str],
    resource: str,
    *,
    info_argv: list[str],
    transient: Callable[[Result], bool],
    timeout: float = 30,
    ports: Callable[[], int] | None = None,
    hello: bytes | None = None,
) -> tuple[Background, int]:
    """Start the proxy (``{port}`` in ``argv_template`` is replaced by a free local port) and
    probe it (sending ``hello`` first: :func:`probe`); started again on network trouble,
    ``ATTEMPTS`` times in all. Returns the running proxy and its port: the caller stops it.
    A CutoverError names the command and what to do when it cannot be started."""
    retrying = Retrying(
        retry=retry_if_exception_type(_Retry),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(min=0.5, max=8),
        sleep=runner._sleep,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                port = (ports or free_port)()
                return _start(
                    runner, masker, argv_template, port, resource, timeout, transient, hello
                ), port
    except _Retry as exc:
        raise CutoverError(
            f"{exc} ({ATTEMPTS} attempts)",
            details=exc.details,
            resolution=f"Check that the rack and the resource {resource} are reachable "
            f"(`{' '.join(info_argv)}`), then run `cutover run` again: the step resumes.",
        ) from None
    raise AssertionError("unreachable: tenacity re-raises the last attempt's error")


@contextlib.contextmanager
def in_use(masker: SecretMasker, resource: str, bg: Background) -> Iterator[None]:
    """A use of a running proxy: an ``ERROR:`` it printed meanwhile (a connection's tunnel
    failed) is raised as a CutoverError when the use ends."""
    seen = len(bg.stderr)
    yield
    late = bg.stderr[seen:]
    if "ERROR:" in late:
        raise CutoverError(
            f"convox resources proxy {resource} reported an error while in use: "
            + masker.mask(late.strip().splitlines()[-1])
        )


class Held:
    """Proxies kept running between the steps of one run, by resource: started before the
    window (steps/freeze.py ``prefetch``) so that final-sync, verify-data and switch-dns do not
    each pay a proxy's start inside it; stopped by :meth:`close` when the run ends.

    A held proxy is used again only while it runs, has printed no ``ERROR:``, and a fresh probe
    goes through it as at its start: the proxy reports the probe's connection (``connect: L``)
    and, for a protocol with a first message, the server answers it (the real proxy dials the
    rack per connection, pkg/cli/proxy.go: a tunnel that broke while it sat idle shows on the
    next connection). Otherwise it is stopped (a ``proxy-dropped`` event says why) and the
    caller starts its own, as without it. The table is guarded by a lock; the steps use a held
    proxy from one thread at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proxies: dict[str, tuple[Background, int]] = {}

    def add(self, resource: str, bg: Background, port: int) -> None:
        with self._lock:
            previous = self._proxies.pop(resource, None)
            self._proxies[resource] = (bg, port)
        if previous:
            previous[0].stop()

    def get(self, resource: str, hello: bytes | None) -> tuple[Background, int] | None:
        """The held proxy of ``resource`` and its port when it still works, else None (and a
        broken one is stopped)."""
        with self._lock:
            found = self._proxies.get(resource)
        if found is None:
            return None
        bg, port = found
        why = _unusable(bg, port, hello)
        if why is None:
            bg.runner._event("proxy-reused", argv=bg.argv_masked, pid=bg.pid)
            return found
        bg.runner._event("proxy-dropped", argv=bg.argv_masked, pid=bg.pid, reason=why)
        self.drop(resource)
        return None

    def drop(self, resource: str) -> None:
        with self._lock:
            found = self._proxies.pop(resource, None)
        if found:
            found[0].stop()

    def close(self) -> None:
        """Stop every held proxy."""
        with self._lock:
            held = list(self._proxies.values())
            self._proxies.clear()
        for bg, _ in held:
            bg.stop()


def _unusable(bg: Background, port: int, hello: bytes | None) -> str | None:
    """Why a held proxy cannot be used now, or None: it ended, printed ERROR:, or a probe was
    not reported by it (``connect: PORT``) and answered (see :class:`Held`)."""
    if not bg.alive():
        return "it has ended"
    if "ERROR:" in bg.stderr:
        return "it printed ERROR: " + bg.stderr.strip().splitlines()[-1][:200]
    _, seen = bg.read_stdout(0)
    state = probe(port, hello=hello, answer=True)
    if state != "open":
        return f"a probe found it {state}"
    # The proxy prints ``connect: L`` as it accepts (pkg/cli/proxy.go); the line reaches us
    # through its pipe a moment later.
    deadline = time.monotonic() + CONNECT_WAIT
    while f"connect: {port}" not in bg.read_stdout(seen)[0]:
        if time.monotonic() > deadline:
            return "it did not report the probe's connection"
        time.sleep(PROBE_POLL)
    return None


def _start(
    runner: Runner,
    masker: SecretMasker,
    argv_template: list[str],
    port: int,
    resource: str,
    timeout: float,
    transient: Callable[[Result], bool],
    hello: bytes | None = None,
) -> Background:
    """Start one proxy on ``port`` and probe it; the running proxy, or an error (stopped)."""
    argv = [a.replace("{port}", str(port)) for a in argv_template]
    with contextlib.ExitStack() as attempt:
        bg = attempt.enter_context(runner.start(argv))
        deadline = time.monotonic() + timeout
        while True:
            if "ERROR:" in bg.stderr:
                _failed(masker, resource, bg, "failed", transient)
            if not bg.alive():
                _failed(masker, resource, bg, "exited before accepting connections", transient)
            state = probe(port, hello=hello)
            if state != "refused" and f"connect: {port}" in bg.stdout:
                if state == "open":
                    attempt.pop_all()  # the caller's stack stops it from now on
                    return bg
                _await_error(bg)
                _failed(masker, resource, bg, "closed its first connection", transient)
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"convox resources proxy {resource} did not accept connections on "
                    f"127.0.0.1:{port} within {timeout:g}s",
                    details=f"command: {' '.join(bg.argv_masked)}",
                )
            time.sleep(PROBE_POLL)


def _await_error(bg: Background, wait: float = ERROR_WAIT) -> None:
    """Give the proxy a moment to print why it closed a connection."""
    deadline = time.monotonic() + wait
    while "ERROR:" not in bg.stderr and time.monotonic() < deadline:
        time.sleep(0.05)


def _failed(
    masker: SecretMasker,
    resource: str,
    bg: Background,
    what: str,
    transient: Callable[[Result], bool],
) -> NoReturn:
    stderr = bg.stderr
    lines = stderr.strip().splitlines()
    message = f"convox resources proxy {resource} {what}"
    if lines:
        message += ": " + masker.mask(lines[-1])
    details = f"command: {' '.join(bg.argv_masked)}\n" + masker.mask(stderr.strip())
    if transient(Result(bg.argv_masked, -1, "", stderr, 0.0)):
        raise _Retry(message, details=details)
    raise CutoverError(message, details=details)
