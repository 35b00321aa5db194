"""A real authoritative DNS server (Knot DNS) on loopback for tests and the sandbox.

The server accepts RFC 2136 updates signed with one TSIG key (hmac-sha256). Updates stay in the
journal (``zonefile-sync: -1``), so the zone file keeps what was written at creation.

A second server can serve the zone as a secondary (:meth:`KnotServer.create_secondary`): it
transfers the zone from the primary (AXFR, then IXFR from the journal) when the primary sends
NOTIFY after an update, and on its SOA refresh timer otherwise. Tests make it lag with
``knotc zone-freeze`` on the secondary (Knot's reference: "zone-freeze: trigger a zone freeze.
All running events will be finished and all new and pending (planned) zone-changing events
(load, refresh, update, flush, and DNSSEC signing) will be held up until the zone is thawed"),
then ``zone-thaw`` (and ``zone-refresh``) to let it catch up; see :meth:`KnotServer.control`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cutover.sandbox import dnsready, procs

__all__ = ["KnotError", "KnotServer", "knotd_binary"]

STATE_FILE = "knot.json"
CONF_FILE = "knotd.conf"
LOG_FILE = "knotd.log"
START_TIMEOUT = 15.0
MAX_SOCKET_PATH = 107

# (name, type, ttl, value): name relative to the zone, "@" or absolute with a trailing dot.
RecordSpec = tuple[str, str, int, str]


class KnotError(RuntimeError):
    """The Knot DNS server could not be configured, started or reached."""


def knotd_binary() -> str:
    """Return the path of ``knotd`` (PATH first, then /usr/sbin where Debian puts it)."""
    found = shutil.which("knotd") or shutil.which("knotd", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise KnotError("knotd not found on PATH or in /usr/sbin: install the Debian package knot")
    return found


def _check_token(what: str, value: str) -> None:
    if not value or any(ch in value for ch in '\n\r"\\;') or value != value.strip():
        raise KnotError(f"invalid {what} {value!r}: no quotes, newlines or surrounding spaces")


def _remotes(ports: Sequence[int], prefix: str) -> str:
    return "".join(
        f"  - id: {prefix}{n}\n    address: 127.0.0.1@{port}\n" for n, port in enumerate(ports)
    )


def _config(
    folder: Path,
    port: int,
    zone: str,
    tsig_name: str,
    tsig_secret: str,
    *,
    notify_ports: Sequence[int] = (),
    primary_port: int | None = None,
) -> str:
    """knotd.conf for a primary (updates by TSIG key, NOTIFY to ``notify_ports``, transfers to
    loopback) or, with ``primary_port``, a secondary of that primary (Knot 3.2's reference:
    ``remote``/``master``/``notify`` zone options, ``acl`` actions ``transfer`` and ``notify``)."""
    remotes = _remotes(notify_ports, "secondary") + (
        _remotes([primary_port], "primary") if primary_port is not None else ""
    )
    if primary_port is not None:
        zone_extra = "    master: primary0\n    acl: [sandbox-update, loopback-notify]\n"
    else:
        notify = ", ".join(f"secondary{n}" for n in range(len(notify_ports)))
        zone_extra = (f"    notify: [{notify}]\n" if notify_ports else "") + (
            "    acl: [sandbox-update, loopback-transfer]\n"
        )
    return f"""# Written by cutover's sandbox; regenerated on every create.
server:
    rundir: "{folder / "run"}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: info

database:
    storage: "{folder / "db"}"

key:
  - id: {tsig_name}
    algorithm: hmac-sha256
    secret: {tsig_secret}

acl:
  - id: sandbox-update
    key: {tsig_name}
    action: update
  - id: loopback-transfer
    address: 127.0.0.1
    action: transfer
  - id: loopback-notify
    address: 127.0.0.1
    action: notify
{"remote:" + chr(10) + remotes if remotes else ""}
template:
  - id: default
    storage: "{folder / "zones"}"
    zonefile-sync: -1
    journal-content: changes

zone:
  - domain: {zone}.
    file: {zone}.zone
{zone_extra}"""


def _zone_file(zone: str, records: Sequence[RecordSpec]) -> str:
    origin = f"{zone}."
    lines = [
        f"$ORIGIN {origin}",
        "$TTL 300",
        f"@ 3600 IN SOA ns1.{origin} hostmaster.{origin} 1 3600 600 86400 60",
        f"@ 3600 IN NS ns1.{origin}",
    ]
    names = {name.lower().rstrip(".") for name, _, _, _ in records}
    if "ns1" not in names and f"ns1.{zone}".lower() not in names:
        lines.append("ns1 3600 IN A 127.0.0.1")
    for name, rtype, ttl, value in records:
        for part in (name, rtype, value):
            if "\n" in part or "\r" in part:
                raise KnotError(f"record field {part!r} contains a newline")
        if ttl < 0:
            raise KnotError(f"record {name} {rtype} has a negative TTL")
        lines.append(f"{name} {ttl} IN {rtype.upper()} {value}")
    return "\n".join(lines) + "\n"


@dataclass
class KnotServer:
    """A running (or stopped) knotd serving one zone on 127.0.0.1:port."""

    folder: Path
    port: int
    zone: str
    tsig_name: str
    tsig_secret: str = field(repr=False)
    pid: int | None = None
    #: Set on a secondary: the primary's port on 127.0.0.1 it transfers the zone from.
    primary_port: int | None = None
    #: Set on a primary: the secondaries' ports it sends NOTIFY to after a change.
    notify_ports: list[int] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        """The 0600 JSON file this server is saved to by default."""
        return self.folder / STATE_FILE

    @property
    def log_path(self) -> Path:
        """knotd's log (stdout and stderr)."""
        return self.folder / LOG_FILE

    @classmethod
    def create(
        cls,
        folder: Path,
        port: int,
        zone: str,
        records: Sequence[RecordSpec],
        tsig_name: str = "cutover-sandbox",
        *,
        notify_ports: Sequence[int] = (),
    ) -> KnotServer:
        """Write config and zone into ``folder`` (0700), start knotd, wait for it, save state.

        ``notify_ports``: secondaries (see :meth:`create_secondary`) on 127.0.0.1 to NOTIFY.
        """
        zone = zone.rstrip(".").lower()
        _check_token("zone", zone)
        _check_token("TSIG key name", tsig_name)
        folder = cls._prepare(folder)
        secret = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        server = cls(
            folder=folder,
            port=port,
            zone=zone,
            tsig_name=tsig_name,
            tsig_secret=secret,
            notify_ports=list(notify_ports),
        )
        procs.write_private(
            folder / CONF_FILE,
            _config(folder, port, zone, tsig_name, secret, notify_ports=notify_ports),
        )
        procs.write_private(folder / "zones" / f"{zone}.zone", _zone_file(zone, records))
        server.start()
        return server

    @classmethod
    def create_secondary(cls, folder: Path, port: int, primary: KnotServer) -> KnotServer:
        """A secondary of ``primary`` (which must list ``port`` in its ``notify_ports``): it
        starts empty and is ready once the first zone transfer served it the SOA."""
        if port not in primary.notify_ports:
            raise KnotError(
                f"primary on port {primary.port} does not NOTIFY port {port}: create it with "
                f"notify_ports=[{port}]"
            )
        folder = cls._prepare(folder)
        server = cls(
            folder=folder,
            port=port,
            zone=primary.zone,
            tsig_name=primary.tsig_name,
            tsig_secret=primary.tsig_secret,
            primary_port=primary.port,
        )
        procs.write_private(
            folder / CONF_FILE,
            _config(
                folder,
                port,
                primary.zone,
                primary.tsig_name,
                primary.tsig_secret,
                primary_port=primary.port,
            ),
        )
        server.start()
        return server

    @classmethod
    def _prepare(cls, folder: Path) -> Path:
        """Check the folder can hold a server (socket path, no server of it running); make it."""
        control_socket = folder.absolute() / "run" / "knot.sock"
        if len(str(control_socket).encode()) > MAX_SOCKET_PATH:
            raise KnotError(
                f"folder {folder} is too deep for knotd's control socket {control_socket} "
                f"(unix socket paths are limited to {MAX_SOCKET_PATH} bytes): use a shorter path"
            )
        folder = folder.absolute()
        if (folder / STATE_FILE).exists():
            previous = cls.load(folder / STATE_FILE)
            if previous.is_running():
                raise KnotError(
                    f"knotd (pid {previous.pid}) from an earlier create in {folder} still runs; "
                    "stop it first"
                )
        procs.ensure_private_dir(folder)
        for sub in ("run", "db", "zones"):
            # The database folder must exist before knotd starts: otherwise zone loading works
            # but every dynamic update fails with SERVFAIL ("DDNS, processing failed (not exists)").
            procs.ensure_private_dir(folder / sub)
        return folder

    @property
    def control_socket(self) -> Path:
        """knotd's control socket (``server.rundir``/knot.sock, Knot's default name)."""
        return self.folder / "run" / "knot.sock"

    def control(self, *args: str, timeout: float = 20.0) -> str:
        """Run ``knotc -s <socket> ARGS`` (e.g. ``zone-freeze example.test``); its output.

        Raises :class:`KnotError` with knotc's message when it fails (knotc exits non-zero).
        """
        knotc = shutil.which("knotc") or shutil.which("knotc", path="/usr/sbin:/usr/local/sbin")
        if knotc is None:
            raise KnotError("knotc not found on PATH or in /usr/sbin: install the package knot")
        try:
            done = subprocess.run(
                [knotc, "-s", str(self.control_socket), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise KnotError(f"knotc {' '.join(args)} did not finish within {timeout:g}s") from None
        if done.returncode != 0:
            raise KnotError(
                f"knotc {' '.join(args)} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start knotd with the written config and wait until it answers a SOA query."""
        if self.is_running():
            return
        self.pid = procs.spawn_daemon(
            [knotd_binary(), "-c", str(self.folder / CONF_FILE)],
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
            program="knotd",
            log_path=self.log_path,
            timeout=timeout,
            interval=0.05,
            error=KnotError,
        )

    def is_running(self) -> bool:
        """Return True if the recorded pid is alive and is knotd with this folder's config."""
        return dnsready.runs_config(self.pid, self.folder / CONF_FILE)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop knotd (no error if it is not running) and record that in the state file."""
        if self.pid is not None:
            if self.is_running():
                procs.stop_pid(self.pid, timeout)
            self.pid = None
            if self.folder.is_dir():
                self.save()

    def save(self, path: Path | None = None) -> Path:
        """Write this server's description, TSIG secret included, to a 0600 JSON file."""
        target = path or self.state_file
        data = {
            "folder": str(self.folder),
            "port": self.port,
            "zone": self.zone,
            "tsig_name": self.tsig_name,
            "tsig_secret": self.tsig_secret,
            "pid": self.pid,
            "primary_port": self.primary_port,
            "notify_ports": self.notify_ports,
        }
        procs.write_private(target, json.dumps(data, indent=2) + "\n")
        return target

    @classmethod
    def load(cls, path: Path) -> KnotServer:
        """Read a server saved by :meth:`save` (``path`` may be the file or its folder)."""
        if path.is_dir():
            path = path / STATE_FILE
        data = json.loads(path.read_text(encoding="utf-8"))
        pid = data.get("pid")
        return cls(
            folder=Path(data["folder"]),
            port=int(data["port"]),
            zone=str(data["zone"]),
            tsig_name=str(data["tsig_name"]),
            tsig_secret=str(data["tsig_secret"]),
            pid=int(pid) if pid is not None else None,
            primary_port=data.get("primary_port"),
            notify_ports=[int(p) for p in data.get("notify_ports") or []],
        )
