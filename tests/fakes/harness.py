"""A whole fake world for one cutover run: the project folder (cutover.yml, convox.yml, a sandbox
``env.json``), the fakes on a PATH of chosen tools, a real Knot DNS server behind a
:class:`~fakes.servers.DnsTap`, the HTTPS server, and helpers to run ``cutover`` as a real
subprocess and to read what happened (calls, effects, state, audit log).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from cutover.adapters.dns import Record, query_authoritative
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotServer
from fakes import seed
from fakes.servers import DnsTap, HttpsServer
from fakes.world import read_calls, read_world, write_world

ZONE = "example.test"
RECORD = f"www.{ZONE}"
HEROKU_TARGET = "myapp.herokudns.test"
# The record's TTL before lower-ttl, and the playbook's lowered TTL: lower-ttl really updates the
# record, and wait-ttl waits at most ORIGINAL_TTL seconds for caches.
ORIGINAL_TTL = 2
LOWERED_TTL = 1
SERVICE_DOMAIN = f"web.{seed.CONVOX_APP}.{seed.RACK_DOMAIN}"

# Like tests/conftest.py's guards: whatever reads these talks to loopback or to nothing (set here
# too because session fixtures start cutover before the per-test guard is applied).
LOOPBACK_ONLY = {
    "HEROKU_HOST": "http://127.0.0.1:9",
    "HEROKU_DATA_HOST": "127.0.0.1",
    "HEROKU_PARTICLEBOARD_URL": "http://127.0.0.1:9",
    "DISABLE_TELEMETRY": "true",
    "HEROKU_SKIP_NEW_VERSION_CHECK": "true",
    "HEROKU_DISABLE_AUTOUPDATE": "1",
    "NO_PROXY": "127.0.0.1,localhost",
}

# Steps in order, as the engine defines them; tests check the CLI shows exactly these.
STEP_IDS = [
    "preflight",
    "create-app",
    "set-env",
    "deploy",
    "smoke-test",
    "check-data",
    "check-mysql",
    "capture-changes",
    "initial-sync",
    "initial-sync-mysql",
    "lower-ttl",
    "add-domain",
    "tls-ready",
    "wait-ttl",
    "confirm-window",
    "disable-scheduler",
    "maintenance-on",
    "scale-down",
    "inspect-redis",
    "freeze-writes",
    "final-sync",
    "final-sync-mysql",
    "sync-redis",
    "verify-data",
    "verify-mysql",
    "switch-dns",
    "verify-dns",
    "verify-site",
    "start-workers",
    "restore-ttl",
]
# Skipped by the engine tests' playbook: the fake psql knows no ALTER DATABASE (freeze-writes is
# tested on real PostgreSQL: tests/steps/test_freeze_writes.py, tests/e2e/test_sandbox_window.py).
SKIPPED_IN_FAKES = ["capture-changes", "freeze-writes"]  # (final_sync: full)
GATED_STEPS = [
    "disable-scheduler",
    "maintenance-on",
    "final-sync",
    "final-sync-mysql",
    "sync-redis",
    "switch-dns",
]
# Output keys that differ between compared runs by design: clock times, and the per-attempt
# nonce in a deploy's build marker.
TIME_KEYS = {
    "lowered_at",
    "at",
    "window_started_at",
    "downtime_seconds",
    "predicted_downtime_seconds",
    "marker",
    "seconds",
    # DNS checks: clock times per server (keyed by the tap's port, which differs per project).
    "verified",
    "verified_at",
    "caches_clear_at",
    "restored_at",
    "servers",
    "resolvers",
    "certificate_gap_seconds",
    "expires",
}

PLAYBOOK = f"""\
# cutover playbook of the engine tests (fake heroku/convox/postgres, a real Knot server)
version: 1
heroku:
  app: {seed.HEROKU_APP}
convox:
  app: {seed.CONVOX_APP}
  rack: {seed.RACK}
env:
  exclude:
    - PAPERTRAIL_*
  override:
    RAILS_LOG_TO_STDOUT: enabled
database:
  resource: database
  heroku_attachment: DATABASE
  restore_jobs: 2
  verify: checksums
  timeout: 120
smoke:
  service: web
  timeout: 20
  checks:
    - path: /healthz
      status: 200
dns:
  provider: rfc2136
  zone: {ZONE}
  record: {RECORD}
  ttl: {LOWERED_TTL}
  propagation_timeout: 20
  soak_seconds: 0  # restore-ttl right after verify-site
window:
  scale_down: [worker]
  drain_seconds: 0
  ttl_wait_max: 60
  # The fake psql knows no ALTER DATABASE: freeze-writes is shown with real PostgreSQL in
  # tests/steps/test_freeze_writes.py.
  freeze_writes: false
sandbox: sandbox
"""

MANIFEST = """\
environment:
  - PORT=3000
  - SECRET_KEY_BASE
resources:
  database:
    type: postgres
    options:
      version: "15"
services:
  web:
    build: .
    port: 3000
    health: /healthz
    resources:
      - database
  worker:
    build: .
    command: bundle exec sidekiq
    resources:
      - database
"""


def cutover_command() -> list[str]:
    """How tests start cutover: its real entry point, with this interpreter."""
    return [sys.executable, "-m", "cutover"]


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"cutover {' '.join(self.args)} -> {self.returncode}\n--- stdout\n{self.stdout}"
            f"--- stderr\n{self.stderr}"
        )


@dataclass
class Certificates:
    """One CA for the session and a leaf for every name the HTTPS server answers."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    # The router's certificate before the custom domain's is issued: it lacks RECORD.
    router_cert_file: Path

    @classmethod
    def create(cls, folder: Path) -> Certificates:
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="cutover engine tests")
        leaf = ca.issue_cert("127.0.0.1", SERVICE_DOMAIN, seed.ROUTER, RECORD)
        router = ca.issue_cert("127.0.0.1", SERVICE_DOMAIN, seed.ROUTER)
        ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
        router.private_key_and_cert_chain_pem.write_to_path(str(folder / "router.pem"))
        return cls(
            folder / "ca.pem", folder / "server.pem", folder / "server.pem", folder / "router.pem"
        )


@dataclass
class Project:
    """One test's project folder, world and servers. Use :func:`open_project`."""

    root: Path
    bin_dir: Path
    basics_dir: Path
    secrets: seed.Secrets
    knot: KnotServer
    tap: DnsTap
    https: HttpsServer
    certs: Certificates
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    # -- paths -----------------------------------------------------------------------------------
    @property
    def world_path(self) -> Path:
        return self.root / "world" / "world.json"

    @property
    def calls_path(self) -> Path:
        return self.root / "world" / "calls.jsonl"

    @property
    def argv_log(self) -> Path:
        return self.root / "world" / "argv.jsonl"

    @property
    def playbook(self) -> Path:
        return self.root / "cutover.yml"

    @property
    def manifest(self) -> Path:
        return self.root / "convox.yml"

    @property
    def state_dir(self) -> Path:
        return self.root / ".cutover"

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def events_path(self) -> Path:
        return self.state_dir / "events.jsonl"

    # -- running cutover ------------------------------------------------------------------------
    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment of the cutover process: nothing inherited by accident."""
        env = {
            "PATH": f"{self.bin_dir}{os.pathsep}{self.basics_dir}",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "COLUMNS": "200",
            "CONVOX_CONFIG": str(self.root / "home" / "convox"),
        }
        env.update(LOOPBACK_ONLY)
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> Result:
        proc = subprocess.run(
            [*cutover_command(), *args],
            cwd=cwd or self.root,
            env=self.env(env),
            text=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*cutover_command(), *args],
            cwd=self.root,
            env=self.env(env),
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float = 120) -> Result:
        stdout, stderr = proc.communicate(timeout=timeout)
        args = tuple(proc.args[len(cutover_command()) :])  # type: ignore[index]
        return Result(args, proc.returncode, stdout, stderr)

    # -- reading the world ----------------------------------------------------------------------
    def world(self) -> dict[str, Any]:
        return read_world(self.world_path)

    def calls(self) -> list[dict[str, Any]]:
        return read_calls(self.calls_path)

    def argvs(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls()]

    def effects(self) -> list[str]:
        return [e["effect"] for e in self.world().get("effects", [])]

    def effect_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for effect in self.effects():
            counts[effect] = counts.get(effect, 0) + 1
        counts["dns update"] = len(self.tap.updates)
        return counts

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_path.read_text(encoding="utf-8")))

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line]

    def dns_record(self) -> Record | None:
        return query_authoritative("127.0.0.1", self.knot.port, RECORD, "CNAME")

    def wait_for_call(self, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        """Wait until a call matching ``predicate(argv)`` was logged; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call in self.calls():
                if predicate(call["argv"]):
                    return call
            time.sleep(0.05)
        raise TimeoutError("no matching call was made")

    def secret_values(self) -> dict[str, str]:
        """Every secret of this world, including ones created during the run (backup tokens)."""
        values = self.secrets.values()
        values["tsig_secret"] = self.knot.tsig_secret
        for backup in self.world()["heroku"]["backups"]:
            values[f"backup token {backup['name']}"] = backup["token"]
        return values

    # -- cleanup --------------------------------------------------------------------------------
    def stop_processes(self) -> None:
        """Stop cutover processes this project started and long-running fakes left over."""
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.communicate(timeout=10)
        with contextlib.suppress(FileNotFoundError, ValueError):
            for item in self.world().get("processes", []):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(item["pid"]), signal.SIGKILL)


@dataclass(frozen=True)
class Finished:
    """A project after one uninterrupted ``cutover run --yes`` (the session's reference)."""

    project: Project
    result: Result
    state: dict[str, Any]  # normalized_state() of the final state
    effects: dict[str, int]  # effect -> how often it was applied
    first_call: dict[str, int]  # step id -> index of its first command in FAKE_CALLS


def normalized_state(state: dict[str, Any]) -> dict[str, Any]:
    """Statuses and outputs of every step, without clock times and found-applied markers."""
    out = {}
    for step_id, step in state["steps"].items():
        outputs = {
            k: v for k, v in step.get("outputs", {}).items() if k not in TIME_KEYS and k != "found"
        }
        out[step_id] = {"status": step["status"], "outputs": outputs}
    return out


@contextlib.contextmanager
def open_project(base: Path, bin_dir: Path, certs: Certificates) -> Iterator[Project]:
    """Create the project under ``base``, start its servers, stop everything afterwards."""
    root = base / "project"
    for sub in ("world", "home", "sandbox", "basics"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "home" / ".gitconfig").write_text("", encoding="utf-8")
    secrets = seed.Secrets()
    # knotd's control socket path must stay under 108 bytes: a short folder of its own.
    knot_dir = Path(tempfile.mkdtemp(prefix="cutover-knot-"))
    knot = None
    tap = https = None
    project = None
    try:
        for attempt in range(3):
            try:
                knot = KnotServer.create(
                    knot_dir / f"k{attempt}",
                    procs.free_port(),
                    ZONE,
                    [("www", "CNAME", ORIGINAL_TTL, HEROKU_TARGET + ".")],
                )
                break
            except Exception:
                if attempt == 2:
                    raise
        assert knot is not None
        tap = DnsTap(knot.port).start()
        world_path = root / "world" / "world.json"
        https = HttpsServer(
            world_path, certs.cert_file, certs.key_file, certs.router_cert_file
        ).start()
        write_world(world_path, seed.new_world(secrets, https.port))
        (root / "cutover.yml").write_text(PLAYBOOK, encoding="utf-8")
        (root / "convox.yml").write_text(MANIFEST, encoding="utf-8")
        sandbox_env = {
            "env": {
                "FAKE_WORLD": str(world_path),
                "FAKE_CALLS": str(root / "world" / "calls.jsonl"),
                "FAKE_STATE": str(root / ".cutover" / "state.json"),
                "CUTOVER_TEST_ARGV_LOG": str(root / "world" / "argv.jsonl"),
                "HEROKU_API_KEY": secrets.heroku_api_key,
            },
            "path_prefix": [str(bin_dir)],
            "resolve": {
                SERVICE_DOMAIN: f"127.0.0.1:{https.port}",
                seed.ROUTER: f"127.0.0.1:{https.port}",
            },
            "ca_file": str(certs.ca_file),
            "dns": {
                "server": "127.0.0.1",
                "port": tap.port,
                "key_name": knot.tsig_name,
                "key_secret": knot.tsig_secret,
                # lower-ttl/verify-dns/restore-ttl check the one name server (through the tap);
                # no recursive resolver (tests/steps/test_dns_*.py use unbound).
                "nameservers": [f"127.0.0.1:{tap.port}"],
                "resolvers": [],
            },
        }
        env_file = root / "sandbox" / "env.json"
        env_file.write_text(json.dumps(sandbox_env, indent=2), encoding="utf-8")
        env_file.chmod(0o600)
        project = Project(
            root=root,
            bin_dir=bin_dir,
            basics_dir=root / "basics",
            secrets=secrets,
            knot=knot,
            tap=tap,
            https=https,
            certs=certs,
        )
        yield project
    finally:
        if project is not None:
            project.stop_processes()
        if https is not None:
            https.stop()
        if tap is not None:
            tap.stop()
        if knot is not None:
            knot.stop()
        shutil.rmtree(knot_dir, ignore_errors=True)


def first_call_of_each_step(project: Project) -> dict[str, int]:
    """From a finished run: step id -> 1-based index in FAKE_CALLS of its first command.

    Each command leaves one ``command`` event (a background proxy: ``command-start``) in the
    audit log. Steps run one after another, so a step's commands hold the same range of
    positions in both orders; within a step they may run at once (verify-data reads both
    databases in parallel), so each step's commands are compared as a multiset.
    """
    events = [e for e in project.events() if e["kind"] in ("command", "command-start")]
    calls = project.calls()
    assert len(events) == len(calls), (len(events), len(calls))
    first: dict[str, int] = {}
    logged: dict[str, Counter[str]] = defaultdict(Counter)
    called: dict[str, Counter[str]] = defaultdict(Counter)
    for index, (event, call) in enumerate(zip(events, calls, strict=True), 1):
        first.setdefault(event["step"], index)
        logged[event["step"]][event["argv"][0]] += 1
        called[event["step"]][call["argv"][0]] += 1
    assert logged == called, (logged, called)
    return first
