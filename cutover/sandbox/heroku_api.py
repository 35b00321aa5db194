"""A local emulator of the Heroku Platform API and Data API for the real ``heroku`` CLI.

Run it as::

    python -m cutover.sandbox.heroku_api --state STATE.json --port P --backup-port Q \\
        --tls-cert CERT.pem --tls-key KEY.pem --pid-file PID

It serves the Platform API and the Data API on one plain-HTTP port on 127.0.0.1 (the CLI reuses
``HEROKU_HOST``'s scheme and port for the Data API, see docs/reference), and backup files over
HTTPS on a second port (``pg:backups:url`` must hand out an ``https://`` URL).

State
-----
All state lives in one JSON file (0600), re-read on every request so tests and other processes
can edit it (through :func:`update_state`, or any atomic replace). Every change the emulator
makes is written atomically (temp file, fsync, ``os.replace``) under a thread lock plus an
``flock`` on ``<state>.lock``. The layout (see :func:`default_state`)::

    {
      "version": 1,
      "api_key": "...",                      # Bearer token (or Basic ":<key>") the API accepts
      "account": {"id", "email", ...},
      "next_backup_num": 1,                   # transfer numbers are unique over the whole file
      "faults": [ ... ],                      # see below
      "apps": {
        "<name>": {
          "app": { Platform API app object: id, name, maintenance, stack, region, owner,
                   repo_size, slug_size, create_status, web_url, git_url, ... },
          "formation": [ {id, type, quantity, size, command, created_at, updated_at} ],
          "config_vars": {"KEY": "value"},    # strings only
          "addons": [ { Platform API add-on object (id, name, addon_service, plan, config_vars,
                        state, billed_price, ...),
                        "attachments": [ {id, name, config_vars, namespace} ],
                        "database": {host, port, database, user, password} } ],
                        # "database": only for heroku-postgresql, the REAL backing database
          "domains": [ {id, hostname, kind, cname, sni_endpoint, acm_status, ...} ],
          "domains_page_size": 1000,          # optional: a smaller value makes domains paginate
          "releases": [ {id, version, description, status, current, user, created_at, ...} ],
          "collaborators": [ ... ],
          "transfers": [ {uuid, num, from_name, from_type, to_type, created_at, finished_at,
                          succeeded, processed_bytes, ..., "file": "backups/b001.dump",
                          "token": "<unguessable>", "logs": [...]} ]
        }
      }
    }

Dynos are derived from the formation (``web.1`` .. ``web.N``, state ``up``).

Faults
------
``"faults": [{"method": "GET", "path": "/apps/myapp/config-vars", "status": 500,
"body": "<html>oops</html>", "times": 1}]`` answers the next matching request (exact method and
path, query ignored) with that status and body: a JSON object/array body, or a string that parses
as JSON, is sent as ``application/json``, any other string as ``text/html``. ``"delay": S`` holds
the request for S seconds first; without ``status`` it is then served normally. ``times``
(default 1) is decremented as the fault fires and persisted; a fault is removed when it reaches
0. Faults apply to both listeners (backup paths start with ``/backups/``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

from cutover.sandbox import procs

__all__ = [
    "ApiError",
    "Emulator",
    "EmulatorServers",
    "Request",
    "Response",
    "cli_env",
    "database_url",
    "default_state",
    "load_state",
    "main",
    "parse_range",
    "prepare_home",
    "save_state",
    "update_state",
]

JSONDict = dict[str, Any]

STATE_VERSION = 1
LOOPBACK = "127.0.0.1"
PUBLIC_URL_TTL = timedelta(hours=1)
PG_DUMP_TIMEOUT = 600.0
MAX_BODY = 1 << 20
_ID_NAMESPACE = uuid.UUID("6f1d2c1e-3b51-4c1e-9a8e-5c7d00c0ffee")

NOT_FOUND_APP = "Couldn't find that app."
NOT_FOUND_ENDPOINT = (
    "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. "
    "`POST`), and did you specify your API version in the Accept header?"
)


# --------------------------------------------------------------------------------------------
# Small helpers


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    """Platform API timestamp: ``2024-05-01T12:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _data_time(moment: datetime) -> str:
    """Data API timestamp: ``2024-05-01 12:00:00 +0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


def _stable_id(*parts: str) -> str:
    """A UUID derived from ``parts``: the same sandbox app always gets the same ids."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def _ref(obj: JSONDict) -> JSONDict:
    return {"id": obj.get("id"), "name": obj.get("name")}


def database_url(db: dict[str, Any]) -> str:
    """``postgres://user:password@host:port/database`` for a ``database`` record."""
    user = quote(str(db["user"]), safe="")
    password = quote(str(db["password"]), safe="")
    name = quote(str(db["database"]), safe="")
    return f"postgres://{user}:{password}@{db['host']}:{db['port']}/{name}"


def _normalize_db(db: dict[str, str | int]) -> JSONDict:
    """Accept ``dbname``/``database``/``db`` for the database name; return the stored shape."""
    name = db.get("database", db.get("dbname", db.get("db")))
    missing = [key for key in ("host", "port", "user", "password") if key not in db]
    if name is None:
        missing.append("database")
    if missing:
        raise ValueError(f"database facts lack {', '.join(sorted(missing))}")
    return {
        "host": str(db["host"]),
        "port": int(db["port"]),
        "database": str(name),
        "user": str(db["user"]),
        "password": str(db["password"]),
    }


# --------------------------------------------------------------------------------------------
# State file: atomic writes under a lock


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.get(key)
        if lock is None:
            lock = _THREAD_LOCKS[key] = threading.Lock()
        return lock


def load_state(path: Path) -> JSONDict:
    """Read the state file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the state must be a JSON object")
    return data


def save_state(path: Path, state: JSONDict) -> None:
    """Write the state file atomically as 0600 (temp file, fsync, rename, fsync folder)."""
    procs.write_private(path, json.dumps(state, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def update_state(path: Path) -> Iterator[JSONDict]:
    """Read-modify-write the state under the lock the emulator uses; saved if no exception."""
    lock_path = path.with_name(path.name + ".lock")
    with _thread_lock(path):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = load_state(path)
            yield state
            save_state(path, state)
        finally:
            os.close(fd)  # closing releases the flock


# --------------------------------------------------------------------------------------------
# The standard sandbox app


def default_state(
    app: str,
    *,
    db: dict[str, str | int],
    domain: str,
    heroku_dns_target: str,
    api_key: str,
) -> JSONDict:
    """Build the state of the standard sandbox app ``app``.

    ``db`` holds the facts of the real PostgreSQL database behind the ``heroku-postgresql``
    add-on: ``host``, ``port``, ``user``, ``password`` and the name as ``database`` (or
    ``dbname``/``db``). ``domain`` is the app's custom domain, served with CNAME
    ``heroku_dns_target``. Ids are derived from the app name; secrets are random.
    """
    database = _normalize_db(db)
    created = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    stamp = _iso(created)
    app_id = _stable_id("app", app)
    app_ref = {"id": app_id, "name": app}
    account: JSONDict = {
        "id": _stable_id("account", "owner"),
        "email": "owner@example.com",
        "name": "Sandbox Owner",
        "allow_tracking": False,
        "beta": False,
        "created_at": stamp,
        "default_organization": None,
        "default_team": None,
        "delinquent_at": None,
        "federated": False,
        "last_login": stamp,
        "sms_number": None,
        "suspended_at": None,
        "two_factor_authentication": False,
        "updated_at": stamp,
        "verified": True,
    }
    owner = {"email": account["email"], "id": account["id"]}
    suffix = hashlib.sha256(app.encode()).hexdigest()[:12]
    herokuapp_host = f"{app}-{suffix}.herokuapp.com"
    stack = {"id": _stable_id("stack", "heroku-24"), "name": "heroku-24"}
    app_obj: JSONDict = {
        "acm": True,
        "archived_at": None,
        "build_stack": dict(stack),
        "buildpack_provided_description": "Ruby",
        "create_status": "complete",
        "created_at": stamp,
        "database_size": None,
        "generation": "cedar",
        "git_url": f"https://git.heroku.com/{app}.git",
        "id": app_id,
        "internal_routing": None,
        "maintenance": False,
        "name": app,
        "organization": None,
        "owner": owner,
        "process_tier": "production",
        "region": {"id": _stable_id("region", "us"), "name": "us"},
        "released_at": stamp,
        "repo_size": 1048576,
        "slug_size": 52428800,
        "space": None,
        "stack": stack,
        "team": None,
        "updated_at": stamp,
        "web_url": f"https://{herokuapp_host}/",
    }
    formation = [
        {
            "app": app_ref,
            "command": "bundle exec puma -C config/puma.rb",
            "created_at": stamp,
            "id": _stable_id("formation", app, "web"),
            "quantity": 2,
            "size": "standard-1X",
            "type": "web",
            "updated_at": stamp,
        },
        {
            "app": app_ref,
            "command": "bundle exec sidekiq",
            "created_at": stamp,
            "id": _stable_id("formation", app, "worker"),
            "quantity": 1,
            "size": "standard-2X",
            "type": "worker",
            "updated_at": stamp,
        },
    ]
    digits = int(suffix[:6], 16) % 90000 + 10000
    pg_name = f"postgresql-curly-{digits}"
    redis_name = f"redis-shiny-{digits}"
    scheduler_name = f"scheduler-lively-{digits}"

    def addon(
        service: str,
        plan: str,
        name: str,
        *,
        cents: int,
        attachment: str,
        config_vars: list[str],
    ) -> JSONDict:
        addon_id = _stable_id("addon", app, name)
        plan_name = f"{service}:{plan}"
        return {
            "actions": [],
            "addon_service": {"id": _stable_id("service", service), "name": service},
            "app": app_ref,
            "billed_price": {"cents": cents, "contract": False, "unit": "month"},
            "config_vars": list(config_vars),
            "created_at": stamp,
            "id": addon_id,
            "name": name,
            "plan": {
                "id": _stable_id("plan", plan_name),
                "name": plan_name,
                "price": {"cents": cents, "contract": False, "unit": "month"},
            },
            "provider_id": f"resource{digits}@heroku.com",
            "state": "provisioned",
            "updated_at": stamp,
            "web_url": f"https://addons-sso.heroku.com/apps/{app_id}/addons/{addon_id}",
            "attachments": [
                {
                    "id": _stable_id("attachment", app, name, attachment),
                    "name": attachment,
                    "config_vars": list(config_vars),
                    "namespace": None,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            ],
        }

    postgres = addon(
        "heroku-postgresql",
        "standard-0",
        pg_name,
        cents=5000,
        attachment="DATABASE",
        config_vars=["DATABASE_URL"],
    )
    postgres["database"] = database
    addons = [
        postgres,
        addon(
            "heroku-redis",
            "premium-0",
            redis_name,
            cents=1500,
            attachment="REDIS",
            config_vars=["REDIS_URL"],
        ),
        addon(
            "scheduler",
            "standard",
            scheduler_name,
            cents=0,
            attachment="SCHEDULER",
            config_vars=[],
        ),
    ]
    config_vars = {
        "DATABASE_URL": database_url(database),
        "LANG": "en_US.UTF-8",
        "RAILS_ENV": "production",
        "RAILS_LOG_TO_STDOUT": "enabled",
        "REDIS_URL": f"redis://h:{secrets.token_hex(16)}@127.0.0.1:1/0",
        "SECRET_KEY_BASE": secrets.token_hex(64),
        "STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24),
    }
    sni_name = f"{domain.split('.', maxsplit=1)[0] or 'sni'}-{digits}"
    domains = [
        {
            "acm_status": None,
            "acm_status_reason": None,
            "app": app_ref,
            "cname": None,
            "created_at": stamp,
            "hostname": herokuapp_host,
            "id": _stable_id("domain", app, herokuapp_host),
            "kind": "heroku",
            "sni_endpoint": None,
            "status": "none",
            "updated_at": stamp,
        },
        {
            "acm_status": "cert issued",
            "acm_status_reason": None,
            "app": app_ref,
            "cname": heroku_dns_target,
            "created_at": stamp,
            "hostname": domain,
            "id": _stable_id("domain", app, domain),
            "kind": "custom",
            "sni_endpoint": {"id": _stable_id("sni", app, sni_name), "name": sni_name},
            "status": "succeeded",
            "updated_at": stamp,
        },
    ]
    user = {"email": account["email"], "id": account["id"]}
    plan_names = [a["plan"]["name"] for a in addons]

    def release(version: int, description: str, current: bool) -> JSONDict:
        moment = _iso(created + timedelta(minutes=version))
        return {
            "addon_plan_names": plan_names,
            "app": app_ref,
            "created_at": moment,
            "current": current,
            "description": description,
            "id": _stable_id("release", app, str(version)),
            "output_stream_url": None,
            "slug": {"id": _stable_id("slug", app, str(version))},
            "status": "succeeded",
            "updated_at": moment,
            "user": user,
            "version": version,
        }

    releases = [
        release(1, "Initial release", False),
        release(2, f"Attach DATABASE (@ref:{pg_name})", False),
        release(3, "Deploy 4f2a9c1", True),
    ]
    collaborators = [
        {
            "app": app_ref,
            "created_at": stamp,
            "id": _stable_id("collaborator", app, account["id"]),
            "permissions": [],
            "role": "owner",
            "updated_at": stamp,
            "user": {"email": account["email"], "federated": False, "id": account["id"]},
        }
    ]
    return {
        "version": STATE_VERSION,
        "api_key": api_key,
        "account": account,
        "next_backup_num": 1,
        "faults": [],
        "apps": {
            app: {
                "app": app_obj,
                "formation": formation,
                "config_vars": config_vars,
                "addons": addons,
                "domains": domains,
                "releases": releases,
                "collaborators": collaborators,
                "transfers": [],
            }
        },
    }


# --------------------------------------------------------------------------------------------
# Environment for the real CLI


def cli_env(port: int, api_key: str, home: Path, ca_file: Path | None) -> dict[str, str]:
    """The complete child environment for running the real ``heroku`` CLI against the emulator.

    Built from scratch (only ``PATH`` is taken over, so that ``node`` and ``git`` are found):
    every host is loopback and every phone-home switch is off (reference §3).
    """
    base = f"http://{LOOPBACK}:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "HEROKU_HOST": base,
        "HEROKU_API_KEY": api_key,
        "HEROKU_DATA_HOST": LOOPBACK,
        "HEROKU_PARTICLEBOARD_URL": base,
        "DISABLE_TELEMETRY": "true",
        "HEROKU_SKIP_NEW_VERSION_CHECK": "true",
        "HEROKU_DISABLE_AUTOUPDATE": "1",
        "OCLIF_COLUMNS": "1000",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "TZ": "UTC",
        "LANG": "C.UTF-8",
    }
    if ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca_file)
    return env


def prepare_home(home: Path, port: int) -> None:
    """Pre-seed an isolated HOME so the CLI writes nothing there and prints no ToS warning."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache = home / ".cache" / "heroku"
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # never touch an existing one (mtime)
        os.close(os.open(cache / "terms-of-service", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    gitconfig = home / ".gitconfig"
    section = f'[credential "https://{LOOPBACK}:{port}"]'
    text = gitconfig.read_text(encoding="utf-8") if gitconfig.exists() else ""
    if section not in text:
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"{section}\n\thelper = !heroku git:credentials\n"
        fd = os.open(gitconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)


# --------------------------------------------------------------------------------------------
# Requests, responses and errors


@dataclass
class Request:
    """One HTTP request as the emulator sees it (header names lower-case)."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "bad_request", "Request body is not valid JSON.") from exc


@dataclass
class Response:
    """An answer: a body in memory, or a file streamed from disk."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), headers=dict(headers or {}))


class ApiError(Exception):
    """Answered as ``{"id": ..., "message": ...}`` with ``status``."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message

    def response(self) -> Response:
        return Response.json(self.status, {"id": self.error_id, "message": self.message})


def _fault_response(fault: JSONDict) -> Response:
    status = int(fault["status"])
    body = fault.get("body", "")
    if isinstance(body, dict | list):
        return Response.json(status, body)
    text = str(body)
    try:
        json.loads(text)
    except ValueError:
        return Response(status, text.encode(), content_type="text/html; charset=utf-8")
    return Response(status, text.encode())


# --------------------------------------------------------------------------------------------
# The emulator (transport independent)


Handler = Callable[["Emulator", Request, "re.Match[str]"], Response]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def _route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        _ROUTES.append((method, re.compile(f"^{pattern}$"), func))
        return func

    return register


_SEG = r"(?P<{}>[^/]+)"
_APP = _SEG.format("app")


class Emulator:
    """Answers API and backup requests from the state file."""

    def __init__(
        self,
        state_path: Path,
        *,
        backup_port: int,
        pg_dump: str = "pg_dump",
        stop: threading.Event | None = None,
    ) -> None:
        self.state_path = state_path
        self.backup_port = backup_port
        self.pg_dump = pg_dump
        self.stop = stop or threading.Event()

    # -- state --------------------------------------------------------------------------------

    def read(self) -> JSONDict:
        return load_state(self.state_path)

    @contextlib.contextmanager
    def edit(self) -> Iterator[JSONDict]:
        with update_state(self.state_path) as state:
            yield state

    @property
    def backups_dir(self) -> Path:
        return self.state_path.parent / "backups"

    def run_pg_dump(self, database: JSONDict, target: Path) -> tuple[bool, int, list[str]]:
        """``pg_dump -Fc`` the backing database into ``target`` (0600); (ok, size, log lines)."""
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PGPASSWORD": str(database["password"]),
            "PGCONNECT_TIMEOUT": "10",
        }
        argv = [
            self.pg_dump,
            "-Fc",
            "--no-owner",
            "--no-acl",
            "--host",
            str(database["host"]),
            "--port",
            str(database["port"]),
            "--username",
            str(database["user"]),
            "--dbname",
            str(database["database"]),
        ]
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.PIPE,
                env=env,
                timeout=PG_DUMP_TIMEOUT,
                check=False,
            )
            os.fsync(fd)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, 0, [f"pg_dump failed: {type(exc).__name__}"]
        finally:
            os.close(fd)
        lines = proc.stderr.decode("utf-8", "replace").splitlines()
        size = target.stat().st_size
        if proc.returncode != 0:
            return False, size, [*lines[-5:], f"pg_dump exited with status {proc.returncode}"]
        return True, size, ["backup done"]

    # -- faults -------------------------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> JSONDict | None:
        """Consume and return the first fault matching ``method`` and ``path``, if any."""

        def matches(fault: Any) -> bool:
            return (
                isinstance(fault, dict)
                and str(fault.get("method", "")).upper() == method.upper()
                and fault.get("path") == path
            )

        if not any(matches(f) for f in self.read().get("faults") or []):
            return None
        with self.edit() as state:
            faults: list[Any] = state.get("faults") or []
            for index, fault in enumerate(faults):
                if not matches(fault):
                    continue
                times = int(fault.get("times", 1))
                if times <= 1:
                    del faults[index]
                else:
                    fault["times"] = times - 1
                state["faults"] = faults
                return dict(fault)
        return None

    def apply_fault(self, method: str, path: str) -> Response | None:
        """Fire a matching fault: hang for its delay, then return its response (or None)."""
        fault = self.take_fault(method, path)
        if fault is None:
            return None
        delay = float(fault.get("delay", 0) or 0)
        if delay > 0:
            self.stop.wait(delay)
        if "status" in fault:
            return _fault_response(fault)
        return None

    # -- API entry point ----------------------------------------------------------------------

    def handle_api(self, request: Request) -> Response:
        try:
            fault = self.apply_fault(request.method, request.path)
            if fault is not None:
                return fault
            state = self.read()
            self._authenticate(state, request)
            for method, pattern, func in _ROUTES:
                match = pattern.match(request.path)
                if match and method == request.method:
                    return func(self, request, match)
            raise ApiError(404, "not_found", NOT_FOUND_ENDPOINT)
        except ApiError as exc:
            return exc.response()

    def handle_backup(self, request: Request) -> Response:
        """Answer a request to the HTTPS backup listener (``/backups/<token>/<file>``)."""
        return _handle_backup(self, request)

    def _authenticate(self, state: JSONDict, request: Request) -> None:
        expected = str(state.get("api_key", ""))
        header = request.headers.get("authorization", "")
        token = ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except ValueError:
                decoded = ""
            token = decoded.partition(":")[2]
        valid = (
            bool(expected)
            and token not in ("", "undefined")
            and hmac.compare_digest(token.encode(), expected.encode())
        )
        if not valid:
            raise ApiError(401, "unauthorized", "Invalid credentials provided.")

    # -- lookups ------------------------------------------------------------------------------

    @staticmethod
    def _find_app(state: JSONDict, ident: str) -> tuple[str, JSONDict]:
        apps: dict[str, JSONDict] = state.get("apps") or {}
        if ident in apps:
            return ident, apps[ident]
        for name, entry in apps.items():
            if entry.get("app", {}).get("id") == ident:
                return name, entry
        raise ApiError(404, "not_found", NOT_FOUND_APP)

    def _app(self, ident: str) -> tuple[str, JSONDict]:
        return self._find_app(self.read(), ident)

    # -- public views ---------------------------------------------------------------------------

    @staticmethod
    def _app_view(entry: JSONDict) -> JSONDict:
        return dict(entry["app"])

    @staticmethod
    def _addon_view(entry: JSONDict, addon: JSONDict) -> JSONDict:
        view = {k: v for k, v in addon.items() if k not in ("attachments", "database")}
        view.setdefault("app", _ref(entry["app"]))
        return view

    @staticmethod
    def _attachment_views(entry: JSONDict, addon: JSONDict) -> list[JSONDict]:
        app_ref = _ref(entry["app"])
        addon_app = addon.get("app") or app_ref
        views = []
        for att in addon.get("attachments") or []:
            views.append(
                {
                    "addon": {
                        "id": addon.get("id"),
                        "name": addon.get("name"),
                        "app": addon_app,
                        "plan": _ref(addon.get("plan") or {}),
                    },
                    "app": app_ref,
                    "config_vars": list(att.get("config_vars", addon.get("config_vars") or [])),
                    "created_at": att.get("created_at"),
                    "id": att.get("id"),
                    "log_input_url": None,
                    "name": att.get("name"),
                    "namespace": att.get("namespace"),
                    "updated_at": att.get("updated_at"),
                    "web_url": addon.get("web_url"),
                }
            )
        return views

    def _all_attachments(self, state: JSONDict, only_app: str | None = None) -> list[JSONDict]:
        result: list[JSONDict] = []
        for name, entry in (state.get("apps") or {}).items():
            if only_app is not None and name != only_app:
                continue
            for addon in entry.get("addons") or []:
                result.extend(self._attachment_views(entry, addon))
        return result

    @staticmethod
    def _dynos(entry: JSONDict) -> list[JSONDict]:
        app = entry["app"]
        releases = entry.get("releases") or []
        current = next((r for r in releases if r.get("current")), None)
        if current is None and releases:
            current = max(releases, key=lambda r: int(r.get("version", 0)))
        release = {"id": current.get("id"), "version": current.get("version")} if current else None
        dynos = []
        for proc in entry.get("formation") or []:
            for index in range(1, int(proc.get("quantity", 0)) + 1):
                name = f"{proc['type']}.{index}"
                stamp = proc.get("updated_at") or app.get("updated_at")
                dynos.append(
                    {
                        "app": _ref(app),
                        "attach_url": None,
                        "command": proc.get("command"),
                        "created_at": stamp,
                        "id": _stable_id("dyno", str(app.get("id")), name),
                        "name": name,
                        "release": release,
                        "size": proc.get("size"),
                        "state": "up",
                        "type": proc["type"],
                        "updated_at": stamp,
                    }
                )
        return dynos

    @staticmethod
    def _transfer_view(transfer: JSONDict, verbose: bool = False) -> JSONDict:
        hidden = {"file", "token"} if verbose else {"file", "token", "logs"}
        return {k: v for k, v in transfer.items() if k not in hidden}


# --------------------------------------------------------------------------------------------
# Platform API routes


@_route("GET", r"/account")
def _get_account(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, emu.read().get("account") or {})


@_route("GET", r"/apps")
def _list_apps(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    apps = emu.read().get("apps") or {}
    return Response.json(200, [Emulator._app_view(e) for e in apps.values()])


@_route("GET", rf"/apps/{_APP}")
def _get_app(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    return Response.json(200, Emulator._app_view(entry))


@_route("PATCH", rf"/apps/{_APP}")
def _patch_app(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_params", "Invalid params.")
    if "maintenance" in body and not isinstance(body["maintenance"], bool):
        raise ApiError(422, "invalid_params", "Maintenance must be a boolean.")
    unknown = sorted(set(body) - {"maintenance"})
    if unknown:
        raise ApiError(422, "invalid_params", f"Unsupported attribute: {', '.join(unknown)}.")
    with emu.edit() as state:
        _, entry = Emulator._find_app(state, match["app"])
        if "maintenance" in body:
            entry["app"]["maintenance"] = body["maintenance"]
            entry["app"]["updated_at"] = _iso(_now())
        view = Emulator._app_view(entry)
    return Response.json(200, view)


@_route("GET", rf"/apps/{_APP}/addons")
def _list_addons(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    return Response.json(200, [Emulator._addon_view(entry, a) for a in entry.get("addons") or []])


@_route("GET", r"/addon-attachments")
def _list_all_attachments(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, emu._all_attachments(emu.read()))


@_route("GET", rf"/apps/{_APP}/addon-attachments")
def _list_app_attachments(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    state = emu.read()
    name, _ = Emulator._find_app(state, match["app"])
    return Response.json(200, emu._all_attachments(state, only_app=name))


@_route("POST", r"/actions/addon-attachments/resolve")
def _resolve_attachment(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("addon_attachment"), str):
        raise ApiError(422, "invalid_params", "Missing addon_attachment.")
    wanted: str = body["addon_attachment"]
    state = emu.read()
    only_app = None
    if body.get("app"):
        only_app, _ = Emulator._find_app(state, str(body["app"]))
    service = body.get("addon_service")
    found = []
    for att in emu._all_attachments(state, only_app=only_app):
        addon = att["addon"]
        if service and addon["plan"].get("name", "").split(":", 1)[0] != service:
            continue
        if wanted in (att["name"], att["id"], addon["name"], addon["id"]) or (
            wanted in att["config_vars"]
        ):
            found.append(att)
    if not found:
        raise ApiError(404, "not_found", "Couldn't find that add on attachment.")
    return Response.json(200, found)


@_route("GET", rf"/apps/{_APP}/dynos")
def _list_dynos(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    return Response.json(200, Emulator._dynos(entry))


@_route("GET", rf"/apps/{_APP}/collaborators")
def _list_collaborators(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    return Response.json(200, entry.get("collaborators") or [])


@_route("GET", rf"/apps/{_APP}/pipeline-couplings")
def _pipeline_coupling(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    emu._app(match["app"])
    raise ApiError(404, "not_found", "Couldn't find that pipeline coupling.")


@_route("GET", rf"/apps/{_APP}/formation")
def _list_formation(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    return Response.json(200, entry.get("formation") or [])


_QUANTITY = re.compile(r"^([+-]?)(\d+)$")


@_route("PATCH", rf"/apps/{_APP}/formation")
def _patch_formation(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    body = request.json()
    updates = body.get("updates") if isinstance(body, dict) else None
    if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
        raise ApiError(422, "invalid_params", "Invalid formation updates.")
    with emu.edit() as state:
        _, entry = Emulator._find_app(state, match["app"])
        formation: list[JSONDict] = entry.get("formation") or []
        by_type = {proc["type"]: proc for proc in formation}
        changed: list[JSONDict] = []
        stamp = _iso(_now())
        for update in updates:
            proc = by_type.get(str(update.get("type")))
            if proc is None:
                raise ApiError(
                    404, "not_found", f"Couldn't find that process type ({update.get('type')})."
                )
            if "quantity" in update:
                parsed = _QUANTITY.match(str(update["quantity"]).strip())
                if not parsed:
                    raise ApiError(422, "invalid_params", "Invalid quantity.")
                sign, number = parsed.group(1), int(parsed.group(2))
                quantity = int(proc["quantity"]) + (number if sign == "+" else -number)
                proc["quantity"] = quantity if sign else number
                if proc["quantity"] < 0:
                    raise ApiError(422, "invalid_params", "Quantity cannot be negative.")
            if update.get("size"):
                proc["size"] = str(update["size"])
            proc["updated_at"] = stamp
            if proc not in changed:
                changed.append(proc)
        response = [dict(proc) for proc in changed]
    return Response.json(200, response)


@_route("GET", rf"/apps/{_APP}/config-vars")
def _get_config(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    return Response.json(200, entry.get("config_vars") or {})


@_route("PATCH", rf"/apps/{_APP}/config-vars")
def _patch_config(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    body = request.json()
    if not isinstance(body, dict) or not all(
        isinstance(v, str) or v is None for v in body.values()
    ):
        raise ApiError(422, "invalid_params", "Config var values must be strings or null.")
    with emu.edit() as state:
        _, entry = Emulator._find_app(state, match["app"])
        config: dict[str, str] = entry.setdefault("config_vars", {})
        set_keys = sorted(k for k, v in body.items() if v is not None)
        removed = sorted(k for k, v in body.items() if v is None and k in config)
        for key, value in body.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        parts = []
        if set_keys:
            parts.append(f"Set {', '.join(set_keys)} config vars")
        if removed:
            parts.append(f"Remove {', '.join(removed)} config vars")
        if parts:
            _add_release(state, entry, " and ".join(parts))
        result = dict(config)
    return Response.json(200, result)


def _add_release(state: JSONDict, entry: JSONDict, description: str) -> None:
    releases: list[JSONDict] = entry.setdefault("releases", [])
    version = max((int(r.get("version", 0)) for r in releases), default=0) + 1
    for release in releases:
        release["current"] = False
    account = state.get("account") or {}
    stamp = _iso(_now())
    previous = max(releases, key=lambda r: int(r.get("version", 0)), default=None)
    releases.append(
        {
            "addon_plan_names": [a["plan"]["name"] for a in entry.get("addons") or []],
            "app": _ref(entry["app"]),
            "created_at": stamp,
            "current": True,
            "description": description,
            "id": str(uuid.uuid4()),
            "output_stream_url": None,
            "slug": previous.get("slug") if previous else None,
            "status": "succeeded",
            "updated_at": stamp,
            "user": {"email": account.get("email"), "id": account.get("id")},
            "version": version,
        }
    )


_RANGE = re.compile(
    r"^\s*(?:(?P<field>[a-z_]+)\s+)?(?P<excl>\])?(?P<start>[^.;\s]*)\.\.(?P<end>[^;]*)"
    r"(?:;(?P<opts>.*))?$"
)


def parse_range(header: str) -> tuple[str | None, bool, str, int | None, str | None]:
    """Parse ``id ..; max=1000;`` / ``]d1..; max=1000;`` / ``version ..; max=15, order=desc``.

    Returns (field, exclusive start, start, max, order).
    """
    found = _RANGE.match(header or "")
    if not found:
        return None, False, "", None, None
    size: int | None = None
    order: str | None = None
    for option in re.split(r"[;,]", found["opts"] or ""):
        key, _, value = option.strip().partition("=")
        if key == "max" and value.strip().isdigit():
            size = int(value)
        elif key == "order" and value.strip() in ("asc", "desc"):
            order = value.strip()
    return found["field"], bool(found["excl"]), found["start"].strip(), size, order


@_route("GET", rf"/apps/{_APP}/domains")
def _list_domains(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    domains = sorted(entry.get("domains") or [], key=lambda d: str(d.get("id")))
    _, exclusive, start, size, order = parse_range(request.headers.get("range", ""))
    page_size = min(size or 1000, int(entry.get("domains_page_size") or 1000), 1000)
    if order == "desc":
        domains.reverse()
    if start:
        if order == "desc":
            domains = [d for d in domains if (str(d["id"]) < start if exclusive else True)]
        else:
            domains = [
                d for d in domains if (str(d["id"]) > start if exclusive else str(d["id"]) >= start)
            ]
    page = domains[:page_size]
    if len(domains) > page_size:
        last = str(page[-1]["id"])
        return Response.json(206, page, headers={"Next-Range": f"id ]{last}..; max={page_size};"})
    return Response.json(200, page)


@_route("GET", rf"/apps/{_APP}/releases")
def _list_releases(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    releases = sorted(entry.get("releases") or [], key=lambda r: int(r.get("version", 0)))
    _, _, _, size, order = parse_range(request.headers.get("range", ""))
    if order == "desc":
        releases.reverse()
    return Response.json(200, releases[: size or 200])


# --------------------------------------------------------------------------------------------
# Data API routes


def _postgres_addon(state: JSONDict, ident: str) -> tuple[str, JSONDict, JSONDict]:
    """Find a heroku-postgresql add-on by id or name: (app name, app entry, add-on)."""
    for name, entry in (state.get("apps") or {}).items():
        for addon in entry.get("addons") or []:
            service = (addon.get("addon_service") or {}).get("name") or ""
            if service != "heroku-postgresql":
                continue
            if ident in (addon.get("id"), addon.get("name")):
                return name, entry, addon
    raise ApiError(404, "not_found", "Couldn't find that database.")


@_route("GET", r"/client/v11/databases/(?P<db>[^/]+)")
def _db_info(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, _, addon = _postgres_addon(emu.read(), match["db"])
    plan = (addon.get("plan") or {}).get("name", "")
    return Response.json(
        200,
        {
            "addon_id": addon.get("id"),
            "name": addon.get("name"),
            "plan": plan.split(":", 1)[-1],
            "resource_url": None,
            "info": [
                {"name": "Plan", "values": [plan.split(":", 1)[-1].title()]},
                {"name": "Status", "values": ["Available"]},
                {"name": "Continuous Protection", "values": ["Off"]},
                {"name": "PG Version", "values": ["15"]},
            ],
        },
    )


@_route("POST", r"/client/v11/databases/(?P<db>[^/]+)/backups")
def _capture(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, _, addon = _postgres_addon(emu.read(), match["db"])
    database = addon.get("database")
    if not isinstance(database, dict):
        raise ApiError(422, "invalid_params", "This database has no backing database.")
    # Reserve a number first so that concurrent captures never share a file.
    with emu.edit() as state:
        app_name, entry, addon = _postgres_addon(state, match["db"])
        nums = [
            int(t.get("num", 0)) for e in state["apps"].values() for t in e.get("transfers") or []
        ]
        num = max([int(state.get("next_backup_num") or 1), *(n + 1 for n in nums)])
        state["next_backup_num"] = num + 1
        started = _now()
        transfer: JSONDict = {
            "uuid": str(uuid.uuid4()),
            "num": num,
            "from_name": next((a.get("name") for a in addon.get("attachments") or []), "DATABASE"),
            "from_type": "pg_dump",
            "from_url": None,
            "to_name": "BACKUP",
            "to_type": "gof3r",
            "to_url": None,
            "options": {},
            "schedule": None,
            "source_bytes": 0,
            "processed_bytes": 0,
            "succeeded": None,
            "warnings": 0,
            "created_at": _data_time(started),
            "started_at": _data_time(started),
            "updated_at": _data_time(started),
            "finished_at": None,
            "canceled_at": None,
            "deleted_at": None,
            "purged_at": None,
            "expires_at": None,
            "logs": [],
            "file": f"backups/b{num:03d}.dump",
            "token": secrets.token_urlsafe(32),
        }
        entry.setdefault("transfers", []).append(transfer)
    succeeded, size, logs = emu.run_pg_dump(database, emu.state_path.parent / transfer["file"])
    finished = _data_time(_now())
    with emu.edit() as state:
        _, entry = Emulator._find_app(state, app_name)
        for stored in entry.get("transfers") or []:
            if stored.get("uuid") == transfer["uuid"]:
                stored.update(
                    succeeded=succeeded,
                    processed_bytes=size,
                    source_bytes=size,
                    finished_at=finished,
                    updated_at=finished,
                    logs=[{"created_at": finished, "level": "info", "message": m} for m in logs],
                )
                transfer = dict(stored)
    return Response.json(201, Emulator._transfer_view(transfer))


@_route("GET", rf"/client/v11/apps/{_APP}/transfers")
def _list_transfers(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    transfers = sorted(entry.get("transfers") or [], key=lambda t: int(t.get("num", 0)))
    return Response.json(200, [Emulator._transfer_view(t) for t in transfers])


@_route("GET", rf"/client/v11/apps/{_APP}/transfers/(?P<id>[^/]+)")
def _get_transfer(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    verbose = request.query.get("verbose", ["false"])[0] == "true"
    for transfer in entry.get("transfers") or []:
        if match["id"] in (transfer.get("uuid"), str(transfer.get("num"))):
            return Response.json(200, Emulator._transfer_view(transfer, verbose))
    raise ApiError(404, "not_found", "Couldn't find that transfer.")


@_route("POST", rf"/client/v11/apps/{_APP}/transfers/(?P<num>[^/]+)/actions/public-url")
def _public_url(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu._app(match["app"])
    for transfer in entry.get("transfers") or []:
        if str(transfer.get("num")) == match["num"] and transfer.get("succeeded"):
            name = Path(str(transfer["file"])).name
            url = f"https://{LOOPBACK}:{emu.backup_port}/backups/{transfer['token']}/{name}"
            expires = _data_time(_now() + PUBLIC_URL_TTL)
            return Response.json(200, {"url": url, "expires_at": expires})
    raise ApiError(404, "not_found", "Couldn't find that backup.")


@_route("GET", r"/postgres/v0/databases/(?P<db>[^/]+)/credentials/(?P<cred>[^/]+)")
def _credentials(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, _, addon = _postgres_addon(emu.read(), unquote(match["db"]))
    database = addon.get("database")
    if unquote(match["cred"]) != "default" or not isinstance(database, dict):
        raise ApiError(404, "not_found", "Couldn't find that credential.")
    return Response.json(
        200,
        {
            "uuid": _stable_id("credential", str(addon.get("id")), "default"),
            "name": "default",
            "state": "active",
            "database": database["database"],
            "host": database["host"],
            "port": int(database["port"]),
            "credentials": [
                {
                    "user": database["user"],
                    "password": database["password"],
                    "state": "active",
                    "connections": None,
                }
            ],
        },
    )


# --------------------------------------------------------------------------------------------
# Backup downloads


def _handle_backup(emu: Emulator, request: Request) -> Response:
    fault = emu.apply_fault(request.method, request.path)
    if fault is not None:
        return fault
    not_found = Response.json(404, {"id": "not_found", "message": "No such backup."})
    if request.method not in ("GET", "HEAD"):
        return Response.json(405, {"id": "method_not_allowed", "message": "Method not allowed."})
    parts = request.path.split("/")
    if len(parts) != 4 or parts[1] != "backups":
        return not_found
    token, name = parts[2], parts[3]
    for entry in (emu.read().get("apps") or {}).values():
        for transfer in entry.get("transfers") or []:
            stored = str(transfer.get("token") or "")
            if (
                stored
                and hmac.compare_digest(stored.encode(), token.encode())
                and Path(str(transfer.get("file"))).name == name
                and transfer.get("succeeded")
            ):
                path = emu.state_path.parent / str(transfer["file"])
                if path.is_file():
                    return Response(200, content_type="application/octet-stream", file=path)
    return not_found


def _log_path(path: str) -> str:
    """The request path as logged: backup tokens are secrets and are masked."""
    if path.startswith("/backups/"):
        parts = path.split("/")
        if len(parts) > 2:
            parts[2] = "***"
        return "/".join(parts)
    return path


# --------------------------------------------------------------------------------------------
# HTTP transport


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        emulator: Emulator,
        label: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.emulator = emulator
        self.label = label
        self.tls = tls
        super().__init__(address, _RequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshakes happen in the connection's thread, never in the accept loop.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        sock = cast(socket.socket, request)
        sock.settimeout(30)
        try:
            wrapped = self.tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a failed handshake closes the wrapper; the raw socket is closed by the caller
        try:
            super().finish_request(wrapped, client_address)
        finally:
            with contextlib.suppress(OSError):
                wrapped.shutdown(socket.SHUT_RDWR)
            wrapped.close()


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    server_version = "cutover-heroku-emulator"
    sys_version = ""
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default log (it would print raw request lines)."""

    def _serve(self) -> None:
        server = cast(_Server, self.server)
        status = 500
        try:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ApiError(413, "request_too_large", "Request body too large.")
            body = self.rfile.read(length) if length > 0 else b""
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            if server.tls is None:
                response = server.emulator.handle_api(request)
            else:
                response = server.emulator.handle_backup(request)
        except ApiError as exc:
            response = exc.response()
        except Exception as exc:
            sys.stderr.write(f"{server.label} internal error: {type(exc).__name__}\n")
            response = Response.json(
                500, {"id": "internal_server_error", "message": "Internal server error."}
            )
        status = response.status
        try:
            self._write(response)
        finally:
            sys.stderr.write(
                f"{server.label} {self.command} {_log_path(urlsplit(self.path).path)} {status}\n"
            )
            sys.stderr.flush()

    def _write(self, response: Response) -> None:
        size = response.file.stat().st_size if response.file else len(response.body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(size))
        self.send_header("Request-Id", str(uuid.uuid4()))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        if response.file is not None:
            with response.file.open("rb") as handle:
                remaining = size
                while remaining > 0:
                    chunk = handle.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        else:
            self.wfile.write(response.body)

    do_GET = _serve
    do_HEAD = _serve
    do_POST = _serve
    do_PATCH = _serve
    do_PUT = _serve
    do_DELETE = _serve


# --------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cutover.sandbox.heroku_api",
        description="Local Heroku Platform API + Data API emulator for the real heroku CLI.",
    )
    parser.add_argument("--state", type=Path, required=True, help="state JSON file (0600)")
    parser.add_argument("--port", type=int, required=True, help="API port on 127.0.0.1")
    parser.add_argument("--backup-port", type=int, required=True, help="HTTPS backup port")
    parser.add_argument("--tls-cert", type=Path, required=True, help="PEM certificate chain")
    parser.add_argument("--tls-key", type=Path, required=True, help="PEM private key")
    parser.add_argument("--pid-file", type=Path, help="written once the ports are bound")
    parser.add_argument("--pg-dump", default="pg_dump", help="pg_dump binary (default: PATH)")
    return parser.parse_args(argv)


class EmulatorServers:
    """Both listeners of one emulator, served from background threads of this process.

    ``port``/``backup_port`` 0 picks free ports (read them back from the attributes once
    constructed: the sockets are bound in the constructor).
    """

    def __init__(
        self,
        state_path: Path,
        *,
        port: int,
        backup_port: int,
        tls_cert: Path,
        tls_key: Path,
        pg_dump: str = "pg_dump",
    ) -> None:
        self.stop_event = threading.Event()
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(str(tls_cert), str(tls_key))
        self.emulator = Emulator(
            state_path.resolve(), backup_port=backup_port, pg_dump=pg_dump, stop=self.stop_event
        )
        self._api = _Server((LOOPBACK, port), self.emulator, "api")
        try:
            self._backup = _Server((LOOPBACK, backup_port), self.emulator, "backup", tls=tls)
        except BaseException:
            self._api.server_close()
            raise
        self.port: int = self._api.server_address[1]
        self.backup_port: int = self._backup.server_address[1]
        self.emulator.backup_port = self.backup_port
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        for server in (self._api, self._backup):
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving (wakes requests held by a delay fault) and close the sockets."""
        self.stop_event.set()
        for server in (self._api, self._backup):
            if self._threads:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    state_path: Path = args.state.resolve()
    load_state(state_path)  # fail early on a missing or broken state file
    state_path.chmod(0o600)
    servers = EmulatorServers(
        state_path,
        port=args.port,
        backup_port=args.backup_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        pg_dump=args.pg_dump,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    servers.start()
    pid_file: Path | None = args.pid_file
    if pid_file is not None:
        fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    sys.stderr.write(
        f"heroku emulator listening on {servers.base_url} "
        f"(backups on https://{LOOPBACK}:{servers.backup_port})\n"
    )
    sys.stderr.flush()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        servers.stop()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
        sys.stderr.write("heroku emulator stopped\n")
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
