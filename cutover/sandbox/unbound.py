"""A real recursive resolver (unbound) on loopback for tests and the sandbox.

It resolves one zone through a ``stub-zone`` pointing at the sandbox's authoritative Knot servers
and caches answers for their TTL, like the resolvers of real users: after ``switch-dns`` it keeps
answering the old record until that TTL has run out. Nothing else is resolved (no root hints are
reachable: loopback only).

Facts from unbound.conf(5) (unbound 1.17, Debian 12): ``stub-addr`` takes ``IP@port``;
``do-not-query-localhost: no`` is needed to send queries to 127.0.0.1; ``local-zone: "test."
nodefault`` lifts the built-in RFC 6761 refusal of ``.test`` names; ``module-config: "iterator"``
leaves out DNSSEC validation (the sandbox zone is unsigned); ``username: ""`` keeps the
privileges of the user who started it; ``-d`` keeps it in the foreground.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cutover.sandbox import dnsready, procs

__all__ = ["UnboundError", "UnboundServer", "unbound_binary"]

STATE_FILE = "unbound.json"
CONF_FILE = "unbound.conf"
LOG_FILE = "unbound.log"
START_TIMEOUT = 15.0


class UnboundError(RuntimeError):
    """unbound could not be configured, started or reached."""


def unbound_binary() -> str:
    """Return the path of ``unbound`` (PATH first, then /usr/sbin where Debian puts it)."""
    found = shutil.which("unbound") or shutil.which("unbound", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise UnboundError(
            "unbound not found on PATH or in /usr/sbin: install the Debian package unbound "
            "(scripts/system-deps.sh does)"
        )
    return found


def _config(folder: Path, port: int, zone: str, stubs: Sequence[int]) -> str:
    addrs = "".join(f"    stub-addr: 127.0.0.1@{stub}\n" for stub in stubs)
    return f"""# Written by cutover's sandbox; regenerated on every create.
server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{folder}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
    domain-insecure: "{zone}"
    prefetch: no
    serve-expired: no
    cache-min-ttl: 0

remote-control:
    control-enable: no

stub-zone:
    name: "{zone}"
{addrs}"""


@dataclass
class UnboundServer:
    """A running (or stopped) unbound on 127.0.0.1:port resolving ``zone`` through stubs."""

    folder: Path
    port: int
    zone: str
    stubs: list[int] = field(default_factory=list)
    pid: int | None = None

    @property
    def state_file(self) -> Path:
        return self.folder / STATE_FILE

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    @classmethod
    def create(cls, folder: Path, port: int, zone: str, stubs: Sequence[int]) -> UnboundServer:
        """Write the config into ``folder`` (0700), start unbound, wait until it resolves the
        zone's SOA through the stub servers on 127.0.0.1 ``stubs``, save state."""
        zone = zone.rstrip(".").lower()
        if not zone or any(ch in zone for ch in '\n\r"\\ ') or not stubs:
            raise UnboundError(f"invalid zone {zone!r} or no stub server")
        folder = procs.ensure_private_dir(folder.absolute())
        server = cls(folder=folder, port=port, zone=zone, stubs=list(stubs))
        procs.write_private(folder / CONF_FILE, _config(folder, port, zone, stubs))
        server.start()
        return server

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.is_running():
            return
        self.pid = procs.spawn_daemon(
            [unbound_binary(), "-d", "-c", str(self.folder / CONF_FILE)],
            log_path=self.log_path,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            cwd=self.folder,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            procs.stop_pid(self.pid)
            self.pid = None
            raise
        self.save()

    def _wait_ready(self, timeout: float) -> None:
        assert self.pid is not None
        dnsready.wait_answering(
            self.pid,
            self.port,
            self.zone,
            program="unbound",
            log_path=self.log_path,
            timeout=timeout,
            interval=0.1,
            error=UnboundError,
        )

    def is_running(self) -> bool:
        """True if the recorded pid is alive and is unbound with this folder's config."""
        return dnsready.runs_config(self.pid, self.folder / CONF_FILE)

    def stop(self, timeout: float = 10.0) -> None:
        if self.pid is not None:
            if self.is_running():
                procs.stop_pid(self.pid, timeout)
            self.pid = None
            if self.folder.is_dir():
                self.save()

    def save(self) -> Path:
        data = {
            "folder": str(self.folder),
            "port": self.port,
            "zone": self.zone,
            "stubs": self.stubs,
            "pid": self.pid,
        }
        procs.write_private(self.state_file, json.dumps(data, indent=2) + "\n")
        return self.state_file

    @classmethod
    def load(cls, path: Path) -> UnboundServer:
        if path.is_dir():
            path = path / STATE_FILE
        data = json.loads(path.read_text(encoding="utf-8"))
        pid = data.get("pid")
        return cls(
            folder=Path(data["folder"]),
            port=int(data["port"]),
            zone=str(data["zone"]),
            stubs=[int(p) for p in data.get("stubs") or []],
            pid=int(pid) if pid is not None else None,
        )
