"""The stand-in rack's state: settings folder, state file under a lock, and its configuration.

The CLI's settings folder is ``$CONVOX_CONFIG``, else ``$XDG_CONFIG_HOME/convox``, else
``~/.config/convox`` (``pkg/cli/cli.go`` ``settings``). The rack lives in
``<settings>/sandbox-rack.json``: a 0600 JSON file written atomically under an exclusive lock
(``sandbox-rack.lock``). The sandbox writes racks, router, resource backends and timings
(:func:`configure_rack`); the CLI and the rack-side jobs add apps, builds, releases, processes.
Schema 1 (keys added since stay optional)::

    {
      "schema": 1,
      "racks": [{"name": "sandbox", "provider": "local", "status": "running",
                 "version": "3.19.0", "domain": "router.sandbox.convox.test",
                 "region": "", "url": "https://...",      # optional
                 "apps": {"<app>": {"status", "release", "releases", "builds", "scale",
                                    "processes", "runs", "resources", "service_accounts",
                                    "rollout"}},
                 "served": {...}}],                       # the web process on the router
      "router": {"host", "port", "tls_cert", "tls_key", "ca_folder", "dns_host", "dns_port"},
      "resource_backends": {"postgres": {"host", "port", "user", "password", "dbname",
                                         "admin_user", "admin_password"},
                            "redis": {"host", "port"}},
      "timings": {"build_running": 0.5, ...},             # overrides of DEFAULT_TIMINGS
      "jobs": [{"pid", "kind", "rack", "app", "id"}],      # rack-side work in progress
      "certificates": {"<domain>": {"status": "pending" | "issued"}},
      "faults": [{"command": "deploy", "stderr": "ERROR: err1\\n", "exit": 1, "times": 1}]
    }
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cutover.sandbox import procs
from cutover.sandbox.convox_fake.output import CliError

Json = dict[str, Any]

VERSION = "3.19.0"
SCHEMA = 1
STATE_FILE = "sandbox-rack.json"
LOCK_FILE = "sandbox-rack.lock"
LOG_DIR = "sandbox-logs"
# The operator's environment does not leak into the rack or a "container"; only these pass.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")

# How long the rack takes, in seconds. Realistic but short defaults (a real rack takes minutes
# to build and roll out); tests shorten them through ``configure_rack(timings=...)``. None may be
# zero: the point is that a caller sees the in-between states.
DEFAULT_TIMINGS: dict[str, float] = {
    # a build stays "created" this long (the build pod is scheduled), then "running"
    "build_created": 1.0,
    # ... and "running" this long before it is "complete" (or "failed")
    "build_running": 4.0,
    # a promote's rollout: pods "pending" this long before they run and the app is "running"
    "rollout": 3.0,
    # a resource created by a promote refuses connections this long after it was created
    "resource_start": 8.0,
    # the CLI's poll interval while it waits for a build (pkg/cli/builds.go: 1 s tick) and for
    # the app (pkg/common/provider.go WaitForAppRunning; 5 s on a real rack)
    "poll": 1.0,
    # how long `convox run` waits for its pod to run (pkg/common WaitForProcessRunning: 5 min)
    "process_wait": 300.0,
    # a custom domain's certificate is issued this long after its name resolves to the router
    "certificate": 2.0,
    # the length of a cron minute for the timers' schedules (tests shorten it)
    "timer_minute": 60.0,
}


# --- settings and state -----------------------------------------------------------------------


def settings_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The CLI's settings folder: ``$CONVOX_CONFIG``, else the XDG config folder (§5)."""
    env = os.environ if environ is None else environ
    if env.get("CONVOX_CONFIG"):
        return Path(env["CONVOX_CONFIG"])
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "convox"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".config" / "convox"


class Store:
    """The rack state file, read and written only under an exclusive lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / STATE_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[Json]:
        """Yield the state; it is saved (atomically, 0600) if changed when the block ends."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._read()
            before = json.dumps(state, sort_keys=True)
            yield state
            text = json.dumps(state, sort_keys=True)
            if text != before:
                procs.write_private(self.path, json.dumps(state, indent=2, sort_keys=True) + "\n")
        finally:
            os.close(fd)

    def _read(self) -> Json:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"schema": SCHEMA, "racks": []}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(f"sandbox rack state {self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CliError(f"sandbox rack state {self.path} is not a JSON object")
        schema = data.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise CliError(
                f"sandbox rack state {self.path} has schema {schema}; this stand-in reads "
                f"schema {SCHEMA}"
            )
        data.setdefault("schema", SCHEMA)
        data.setdefault("racks", [])
        return data


# --- the public helpers the sandbox and tests use ---------------------------------------------


@dataclass(frozen=True)
class Router:
    """Where a promoted web service listens (HTTPS with this default certificate)."""

    host: str
    port: int
    tls_cert: str
    tls_key: str
    # Custom domains (``domain:`` in convox.yml) get certificates from this sandbox CA folder
    # (cutover.sandbox.tls.SandboxCA) once this DNS server answers the name with a CNAME to
    # the rack's router; without them the router only ever has its default certificate.
    ca_folder: str = ""
    dns_host: str = ""
    dns_port: int = 0


@dataclass(frozen=True)
class PostgresBackend:
    """The real PostgreSQL database behind every ``postgres`` resource."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    # With admin access the rack creates the resource's role and database itself, at the first
    # promote that declares it (``user``/``password``/``dbname`` name the first one it creates).
    # Without, the backend is a database that exists already and is handed out as is.
    admin_user: str = ""
    admin_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class RedisBackend:
    """The real redis-server behind every ``redis`` resource (convox_fake/provision_redis.py)."""

    host: str
    port: int


def configure_rack(
    config_dir: Path,
    *,
    name: str = "sandbox",
    domain: str | None = None,
    provider: str = "local",
    router: Router | None = None,
    postgres: PostgresBackend | None = None,
    redis: RedisBackend | None = None,
    switch: bool = True,
    timings: Mapping[str, float] | None = None,
) -> None:
    """Add (or update) rack ``name`` in ``config_dir``'s state; optionally make it current.

    ``domain`` is the rack's router host (``convox rack``'s Router row), by default
    ``router.<name>.convox.test``; service hosts are ``<svc>.<app>.<domain minus "router.">``.
    Existing apps of the rack are kept. ``timings`` overrides :data:`DEFAULT_TIMINGS` (seconds,
    each > 0).
    """
    for key, value in (timings or {}).items():
        if key not in DEFAULT_TIMINGS:
            raise ValueError(f"unknown rack timing {key!r}; known: {', '.join(DEFAULT_TIMINGS)}")
        if not value > 0:
            raise ValueError(f"rack timing {key!r} must be > 0 seconds, got {value!r}")
    store = Store(config_dir)
    with store.locked() as state:
        racks: list[Json] = state["racks"]
        rack = next((r for r in racks if r.get("name") == name), None)
        if rack is None:
            rack = {"name": name, "apps": {}}
            racks.append(rack)
        rack.update(
            provider=provider,
            status="running",
            version=VERSION,
            domain=domain or f"router.{name.replace('/', '-')}.convox.test",
        )
        if router is not None:
            state["router"] = asdict(router)
        if postgres is not None:
            state.setdefault("resource_backends", {})["postgres"] = asdict(postgres)
        if redis is not None:
            state.setdefault("resource_backends", {})["redis"] = asdict(redis)
        if timings:
            state.setdefault("timings", {}).update({k: float(v) for k, v in timings.items()})
    if switch:
        write_current(config_dir, name)


def add_fault(config_dir: Path, fault: Mapping[str, Any]) -> None:
    """Append a fault (keys: :func:`cutover.sandbox.convox_fake.faults.take`) to the state."""
    if not isinstance(fault.get("command"), str):
        raise ValueError("a fault needs a 'command' (e.g. 'deploy' or 'resources proxy')")
    with Store(config_dir).locked() as state:
        state.setdefault("faults", []).append(dict(fault))


def read_state(config_dir: Path) -> Json:
    """A copy of the rack state."""
    with Store(config_dir).locked() as state:
        return copy.deepcopy(state)


def install_shim(bin_dir: Path) -> Path:
    """Write an executable ``bin_dir/convox`` that runs this module with this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "convox"
    script = (
        "#!/bin/sh\n"
        "# convox stand-in (cutover sandbox): the real CLI's behaviour, emulated locally.\n"
        f'exec {shlex.quote(sys.executable)} -m cutover.sandbox.convox_fake "$@"\n'
    )
    procs.write_atomic(shim, script, 0o755)
    return shim


def write_current(config_dir: Path, name: str) -> None:
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    procs.write_private(config_dir / "current", json.dumps({"name": name, "type": "terraform"}))


def timing(state: Json, key: str) -> float:
    """A rack timing in seconds: the state's override, else :data:`DEFAULT_TIMINGS`."""
    value = (state.get("timings") or {}).get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_TIMINGS[key]


def log_dir(folder: Path) -> Path:
    """Where rack-side processes write their output (0700)."""
    return procs.ensure_private_dir(folder / LOG_DIR)
