"""What the sandbox's DNS daemons (knot.py, unbound.py) share: waiting until a freshly spawned
server answers for its zone, and telling our server from a recycled pid."""

from __future__ import annotations

import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from cutover.sandbox import procs

__all__ = ["runs_config", "wait_answering"]


def wait_answering(
    pid: int,
    port: int,
    zone: str,
    *,
    program: str,
    log_path: Path,
    timeout: float,
    interval: float,
    error: type[Exception],
) -> None:
    """Poll ``127.0.0.1:port`` for ``zone``'s SOA until it answers (NOERROR with an answer).

    Raises ``error`` naming ``program`` when the process dies first (with its log's tail) or
    ``timeout`` seconds pass (with the last thing seen).
    """
    deadline = time.monotonic() + timeout
    query = dns.message.make_query(f"{zone}.", dns.rdatatype.SOA)
    last = "no answer yet"
    while True:
        if not procs.pid_alive(pid):
            tail = procs.log_tail(log_path)
            raise error(f"{program} exited during start; end of {log_path}:\n{tail}")
        try:
            response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
        except (dns.exception.DNSException, OSError) as exc:
            last = str(exc) or type(exc).__name__
        else:
            if response.rcode() == dns.rcode.NOERROR and response.answer:
                return
            last = f"rcode {dns.rcode.to_text(response.rcode())}"
        if time.monotonic() >= deadline:
            raise error(
                f"{program} on 127.0.0.1:{port} did not answer {zone} SOA within "
                f"{timeout:.0f}s ({last}); see {log_path}"
            )
        time.sleep(interval)


def runs_config(pid: int | None, config: Path) -> bool:
    """True if ``pid`` is alive and was started with ``config`` on its command line: a recycled
    pid must never be mistaken for our server (and then killed). Without /proc, the pid is
    trusted."""
    if pid is None or not procs.pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return str(config).encode() in argv
