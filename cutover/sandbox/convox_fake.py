"""A stand-in for the ``convox`` v3 CLI, for cutover's tests, demo and rehearsals.

The real CLI cannot run here, so this program behaves like it for every command cutover uses:
same stdout and stderr text, same tables, same ``ERROR:`` lines and exit codes (facts:
``shared/reference/convox-cli.md``, cited below as §N). Run it as
``python -m cutover.sandbox.convox_fake ...`` or through the ``convox`` shim written by
:func:`install_shim`.

Its rack lives in ``<settings>/sandbox-rack.json`` (settings = ``$CONVOX_CONFIG``, else
``$XDG_CONFIG_HOME/convox``, else ``~/.config/convox``), a 0600 JSON file written atomically
under an exclusive lock (``sandbox-rack.lock``), so concurrent calls see consistent state. The
sandbox writes the racks, the router and the resource backends (:func:`configure_rack`); this
program adds apps, builds, releases, scale and processes. Schema (version 1)::

    {
      "schema": 1,
      "racks": [{"name": "sandbox", "provider": "local", "status": "running",
                 "version": "3.19.0", "domain": "router.sandbox.convox.test",
                 "region": "",            # optional Region row of `convox rack`
                 "url": "https://...",    # optional: what RACK_URL selects this rack by
                 "apps": {...},           # written by this program
                 "served": {...}}],       # the web process it started (pid, app, release)
      "router": {"host": "127.0.0.1", "port": 8443, "tls_cert": "/p/cert.pem",
                 "tls_key": "/p/key.pem"},
      "resource_backends": {"postgres": {"host": "127.0.0.1", "port": 5432, "user": "app",
                                         "password": "...", "dbname": "app"}},
      "faults": [{"command": "deploy", "stderr": "ERROR: err1\\n", "exit": 1, "times": 1}]
    }

Promoting a release (``deploy``, ``releases promote``, ``env set --promote``) starts the app's
web service as a real local process, the sample app (:mod:`cutover.sandbox.sampleapp`), serving
HTTPS on the router port with the release env, the linked resources' env and ``PORT``, ``APP``,
``RELEASE``, ``SERVICE``, ``PLATFORM=convox``. One app per rack is served; without a
``router`` nothing is started. ``resources proxy`` is a real TCP proxy to the backend.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import quote, unquote, urlsplit

from cutover.sandbox import procs

__all__ = [
    "STATE_FILE",
    "VERSION",
    "PostgresBackend",
    "Router",
    "add_fault",
    "configure_rack",
    "install_shim",
    "main",
    "read_state",
    "settings_dir",
    "stop_processes",
]

Json = dict[str, Any]

VERSION = "3.19.0"
SCHEMA = 1
STATE_FILE = "sandbox-rack.json"
LOCK_FILE = "sandbox-rack.lock"
LOG_DIR = "sandbox-logs"
# The real CLI sleeps 5 s before and between its polls; the stand-in keeps the printed lines and
# only pauses this long.
WAIT = 0.02
READY_TIMEOUT = 20.0
WAIT_READY_TIMEOUT = 60.0
SAMPLEAPP_MODULE = "cutover.sandbox.sampleapp"
NO_RACK = "no current rack, use `convox racks` to list and `convox switch <name>` to select"
RESERVED_APPS = ("rack", "system")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
NAME_RULE = "must contain only lowercase alphanumeric and dashes"
POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# The operator's environment does not leak into a "container"; only these pass through.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")
STDIN_LINE_LIMIT = 64 * 1024  # bufio.Scanner's MaxScanTokenSize


# --- errors and output ------------------------------------------------------------------------


class CliError(Exception):
    """Printed as ``ERROR: <message>`` on stderr; exit code 1 (stdcli's error path)."""


class ExitCode(Exception):
    """Exit with this code and print nothing more (``run``)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class HelpRequested(Exception):
    """``-h``/``--help`` was given."""


class Out:
    """stdout/stderr with the real CLI's primitives; every write is flushed immediately."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.real_stdout = stdout
        self.stdout = stdout
        self.stderr = stderr

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def startf(self, text: str) -> None:
        self.write(f"{text}... ")

    def ok(self, ident: str = "") -> None:
        self.write(f"OK, {ident}\n" if ident else "OK\n")

    def error(self, message: str) -> None:
        self.stderr.write(f"ERROR: {message}\n")
        self.stderr.flush()

    def id_mode(self) -> None:
        """``--id``: logs go to stderr, the real stdout gets only the release id."""
        self.stdout = self.stderr

    def print_id(self, ident: str) -> None:
        self.real_stdout.write(ident)
        self.real_stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """stdcli table: 2-space gutters, every column but the last padded (§4)."""
    widths = [
        max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers) - 1)
    ]
    lines = []
    for row in [list(headers), *rows]:
        cells = "".join(f"{cell:<{widths[i]}}  " for i, cell in enumerate(row[:-1]))
        lines.append(cells + row[-1])
    return "".join(line + "\n" for line in lines)


def info(rows: Sequence[tuple[str, str]]) -> str:
    """stdcli Info block: keys padded to the longest, continuation lines indented (§4)."""
    width = max(len(key) for key, _ in rows)
    lines = []
    for key, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{key:<{width}}  {first}")
        lines.extend(" " * (width + 2) + line for line in rest)
    return "".join(line + "\n" for line in lines)


# --- time -------------------------------------------------------------------------------------

_DAY = 86400
_MONTH = 30 * _DAY
_YEAR = 12 * _MONTH
# go-humanize's magnitudes: (below this many seconds, format, divide by).
_MAGNITUDES: tuple[tuple[float, str, int], ...] = (
    (1, "now", 0),
    (2, "1 second {}", 0),
    (60, "{n} seconds {}", 1),
    (120, "1 minute {}", 0),
    (3600, "{n} minutes {}", 60),
    (7200, "1 hour {}", 0),
    (_DAY, "{n} hours {}", 3600),
    (2 * _DAY, "1 day {}", 0),
    (7 * _DAY, "{n} days {}", _DAY),
    (14 * _DAY, "1 week {}", 0),
    (_MONTH, "{n} weeks {}", 7 * _DAY),
    (2 * _MONTH, "1 month {}", 0),
    (_YEAR, "{n} months {}", _MONTH),
    (18 * _MONTH, "1 year {}", 0),
    (2 * _YEAR, "2 years {}", 0),
    (37 * _YEAR, "{n} years {}", _YEAR),
)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def ago(value: str) -> str:
    """``common.Ago``: humanize.Time of a stored timestamp; empty for none (§4)."""
    if not value:
        return ""
    delta = (datetime.now(UTC) - _parse_time(value)).total_seconds()
    label = "ago" if delta >= 0 else "from now"
    delta = abs(delta)
    for limit, fmt, divide in _MAGNITUDES:
        if delta < limit:
            if fmt == "now":
                return "now"
            return fmt.format(label, n=int(delta // divide) if divide else 0)
    return f"a long while {label}"


def rfc3339(value: str) -> str:
    return _parse_time(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def duration(start: str, end: str) -> str:
    """``common.Duration``: ``2m0s``, ``45s``; empty while unfinished."""
    if not start or not end:
        return ""
    seconds = max(0, round((_parse_time(end) - _parse_time(start)).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _random_letters(count: int) -> str:
    return "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(count))


def new_release_id() -> str:
    return "R" + _random_letters(10)


def new_build_id() -> str:
    return "B" + _random_letters(10)


def new_pod_id(service: str) -> str:
    suffix = "".join(random.choice(POD_ALPHABET) for _ in range(5))
    template = "".join(random.choice(POD_ALPHABET) for _ in range(10))
    return f"{service}-{template}-{suffix}"


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
    """Where a promoted web service listens (HTTPS with this certificate)."""

    host: str
    port: int
    tls_cert: str
    tls_key: str


@dataclass(frozen=True)
class PostgresBackend:
    """The real PostgreSQL database behind every ``postgres`` resource."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str


def configure_rack(
    config_dir: Path,
    *,
    name: str = "sandbox",
    domain: str | None = None,
    provider: str = "local",
    router: Router | None = None,
    postgres: PostgresBackend | None = None,
    switch: bool = True,
) -> None:
    """Add (or update) rack ``name`` in ``config_dir``'s state; optionally make it current.

    ``domain`` is the rack's router host (``convox rack``'s Router row), by default
    ``router.<name>.convox.test``; service hosts are ``<svc>.<app>.<domain minus "router.">``.
    Existing apps of the rack are kept.
    """
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
    if switch:
        _write_current(config_dir, name)


def add_fault(config_dir: Path, fault: Mapping[str, Any]) -> None:
    """Append a fault (see :func:`_take_fault` for its keys) to the rack state."""
    if not isinstance(fault.get("command"), str):
        raise ValueError("a fault needs a 'command' (e.g. 'deploy' or 'resources proxy')")
    with Store(config_dir).locked() as state:
        state.setdefault("faults", []).append(dict(fault))


def read_state(config_dir: Path) -> Json:
    """A copy of the rack state."""
    with Store(config_dir).locked() as state:
        return copy.deepcopy(state)


def stop_processes(config_dir: Path) -> list[int]:
    """Stop every web process the stand-in started for ``config_dir``; return their pids."""
    stopped = []
    with Store(config_dir).locked() as state:
        for rack in state["racks"]:
            served = rack.pop("served", None)
            if served and _stop_web(served):
                stopped.append(int(served["pid"]))
    return stopped


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


def _write_current(config_dir: Path, name: str) -> None:
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    procs.write_private(config_dir / "current", json.dumps({"name": name, "type": "terraform"}))


# --- flags and commands -----------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str
    short: str = ""
    kind: str = "bool"  # bool | string | int | strings
    description: str = ""
    default: Any = None
    hidden: bool = False

    @property
    def label(self) -> str:
        return f"-{self.short}, --{self.name}" if self.short else f"--{self.name}"


FLAG_APP = Flag("app", "a", "string", "app name inferred from current directory if not specified")
FLAG_RACK = Flag("rack", "r", "string", "rack name")
FLAG_ID = Flag("id", "", "bool", "put logging on stderr, release id on stdout")
FLAG_FORCE = Flag("force", "", "bool", "proceed without confirmation")
FLAG_WATCH = Flag("watch", "", "int", "watch interval in seconds")
FLAG_WAIT = Flag("wait", "w", "bool", "wait for completion", hidden=True)
FLAG_RELEASE = Flag("release", "", "string", "id of the release")
FLAG_PROMOTE = Flag("promote", "p", "bool", "promote the release")
BUILD_FLAGS = (
    Flag("build-args", "", "strings", "build arguments"),
    Flag("description", "d", "string", "description"),
    Flag("development", "", "bool", "create a development build"),
    Flag("external", "", "bool", "use external build"),
    Flag("manifest", "m", "string", "manifest file"),
    Flag("no-cache", "", "bool", "build without layer cache"),
    Flag("wildcard-domain", "", "bool", "use wildcard domain"),
    FLAG_APP,
    FLAG_RACK,
    FLAG_ID,
)


@dataclass
class Ctx:
    command: Command
    args: list[str]
    flags: dict[str, Any]
    out: Out
    environ: Mapping[str, str]
    cwd: Path
    store: Store
    fault: Json | None = None

    def string(self, name: str) -> str:
        value = self.flags.get(name)
        return value if isinstance(value, str) else ""

    def flag(self, name: str) -> bool:
        return bool(self.flags.get(name, False))

    def number(self, name: str) -> int | None:
        value = self.flags.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def strings(self, name: str) -> list[str]:
        value = self.flags.get(name)
        return [str(v) for v in value] if isinstance(value, list) else []

    def arg(self, index: int) -> str:
        return self.args[index] if index < len(self.args) else ""

    def app_name(self) -> str:
        """``--app``, then ``./.convox/app``, then the cwd's basename (§2)."""
        if self.string("app"):
            return self.string("app")
        with contextlib.suppress(OSError):
            text = (self.cwd / ".convox" / "app").read_text(encoding="utf-8").strip()
            if text:
                return text
        return self.cwd.name

    def rack(self, state: Json) -> tuple[str, Json]:
        return select_rack(self, state)


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    description: str
    handler: Callable[[Ctx], None]
    flags: tuple[Flag, ...] = ()
    usage: str = ""
    validate: Callable[[Ctx], None] | None = None

    @property
    def full(self) -> str:
        return "convox " + " ".join(self.words)

    @property
    def all_flags(self) -> tuple[Flag, ...]:
        return (*self.flags, FLAG_WAIT)


def args_exact(count: int) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        if len(ctx.args) != count:
            raise CliError(f"{count} arg{'' if count == 1 else 's'} required")

    return check


def args_min(count: int) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        if len(ctx.args) < count:
            raise CliError(f"at least {count} arg{'' if count == 1 else 's'} required")

    return check


def args_max(count: int) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        if len(ctx.args) > count:
            raise CliError(f"no more than {count} arg{'' if count == 1 else 's'} expected")

    return check


_GO_BOOLS = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


def _set_flag(flag: Flag, raw: str, values: dict[str, Any]) -> None:
    if flag.kind == "bool":
        if raw not in _GO_BOOLS:
            raise CliError(
                f'invalid argument "{raw}" for "{flag.label}" flag: '
                f'strconv.ParseBool: parsing "{raw}": invalid syntax'
            )
        values[flag.name] = _GO_BOOLS[raw]
    elif flag.kind == "int":
        if not re.fullmatch(r"[+-]?[0-9]+", raw):
            raise CliError(
                f'invalid argument "{raw}" for "{flag.label}" flag: '
                f'strconv.Atoi: parsing "{raw}": invalid syntax'
            )
        values[flag.name] = int(raw)
    elif flag.kind == "strings":
        values.setdefault(flag.name, []).append(raw)
    else:
        values[flag.name] = raw


def _parse_long(
    arg: str, argv: Sequence[str], i: int, by_long: Mapping[str, Flag], values: dict[str, Any]
) -> int:
    """One ``--name[=value]`` argument; returns the index of the next unread argument."""
    name, eq, raw = arg[2:].partition("=")
    flag = by_long.get(name)
    if flag is None:
        if name == "help":
            raise HelpRequested
        raise CliError(f"unknown flag: --{name}")
    if flag.kind == "bool" and not eq:
        values[name] = True
        return i
    if not eq:
        if i >= len(argv):
            raise CliError(f"flag needs an argument: --{name}")
        raw = argv[i]
        i += 1
    _set_flag(flag, raw, values)
    return i


def _parse_shorts(
    arg: str, argv: Sequence[str], i: int, by_short: Mapping[str, Flag], values: dict[str, Any]
) -> int:
    """One ``-abc`` / ``-p5432`` / ``-p=5432`` / ``-p 5432`` argument."""
    shorts = arg[1:]
    for j, char in enumerate(shorts):
        flag = by_short.get(char)
        if flag is None:
            if char == "h":
                raise HelpRequested
            # pflag says "unknown shorthand flag: 'x' in -x"; stdcli rewrites it (§3).
            raise CliError(f"unknown flag: {arg}")
        rest = shorts[j + 1 :]
        if rest.startswith("="):
            _set_flag(flag, rest[1:], values)
            return i
        if flag.kind == "bool":
            values[flag.name] = True
            continue
        if rest:
            _set_flag(flag, rest, values)
        elif i < len(argv):
            _set_flag(flag, argv[i], values)
            i += 1
        else:
            raise CliError(f"flag needs an argument: '{char}' in {arg}")
        return i
    return i


def parse_flags(argv: Sequence[str], flags: Sequence[Flag]) -> tuple[list[str], dict[str, Any]]:
    """pflag, ContinueOnError, interspersed: return (positional args, flag values) (§2, §3)."""
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("--"):
            i = _parse_long(arg, argv, i, by_long, values)
        elif arg.startswith("-") and arg != "-":
            i = _parse_shorts(arg, argv, i, by_short, values)
        else:
            positional.append(arg)
    for flag in flags:
        if flag.default is not None:
            values.setdefault(flag.name, flag.default)
    return positional, values


# --- racks ------------------------------------------------------------------------------------


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def match_rack(racks: Sequence[Json], name: str) -> Json:
    """Exact name, else a unique substring (§5)."""
    for rack in racks:
        if rack.get("name") == name:
            return rack
    found = [r for r in racks if name in str(r.get("name", ""))]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CliError(f"ambiguous rack name: {name}")
    raise CliError(f"could not find rack: {name}")


def select_rack(ctx: Ctx, state: Json) -> tuple[str, Json]:
    """``rack.Current``: RACK_URL, --rack, CONVOX_RACK, ./.convox/rack, settings (§5)."""
    racks: list[Json] = state["racks"]
    url = ctx.environ.get("RACK_URL", "").strip()
    if url:
        wanted = _strip_userinfo(url)
        for rack in racks:
            if rack.get("url") and _strip_userinfo(str(rack["url"])) == wanted:
                return "direct", rack
        host = urlsplit(url).hostname or url
        raise CliError(f'Get "{wanted}/system": dial tcp: lookup {host}: no such host')
    name = ctx.string("rack") or ctx.environ.get("CONVOX_RACK", "")
    if not name:
        for path in (ctx.cwd / ".convox" / "rack", ctx.store.folder / "rack"):
            with contextlib.suppress(OSError):
                name = path.read_text(encoding="utf-8").strip()
            if name:
                break
    if name:
        rack = match_rack(racks, name)
        return str(rack["name"]), rack
    try:
        current = json.loads((ctx.store.folder / "current").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(NO_RACK) from None
    except (OSError, json.JSONDecodeError):
        current = {}
    kind = str(current.get("type", "")) if isinstance(current, dict) else ""
    if kind not in ("terraform", "console", "test", "local"):
        raise CliError(f"unknown rack type: {kind}")
    cname = str(current.get("name", ""))
    for rack in racks:
        if rack.get("name") == cname:
            return cname, rack
    raise CliError(f"could not find rack: {cname}")


def rack_domain(rack: Json) -> str:
    domain = str(rack.get("domain", ""))
    return domain.removeprefix("router.")


# --- apps, releases, builds -------------------------------------------------------------------


def get_app(rack: Json, name: str) -> Json:
    app = rack.setdefault("apps", {}).get(name)
    if app is None:
        raise CliError(f"app not found: {name}")
    assert isinstance(app, dict)
    return app


def find_release(app: Json, release_id: str) -> Json:
    for release in app["releases"]:
        if release["id"] == release_id:
            assert isinstance(release, dict)
            return release
    raise CliError(f"release not found: {release_id}")


def find_build(app: Json, build_id: str) -> Json:
    for build in app["builds"]:
        if build["id"] == build_id:
            assert isinstance(build, dict)
            return build
    raise CliError(f"build not found: {build_id}")


def latest_release(app: Json) -> Json | None:
    releases: list[Json] = app["releases"]
    return releases[-1] if releases else None


def env_load(text: str) -> dict[str, str]:
    """``Environment.Load``: one KEY=VALUE per line, key trimmed, lines without = skipped."""
    env: dict[str, str] = {}
    for line in text.split("\n"):
        key, eq, value = line.partition("=")
        if eq:
            env[key.strip()] = value
    return env


def env_string(env: Mapping[str, str]) -> str:
    """``Environment.String``: lines sorted as whole strings, joined by newlines."""
    return "\n".join(sorted(f"{k}={v}" for k, v in env.items()))


def env_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """``common.EnvDiff``: ``add:K change:K remove:K``."""
    parts = [f"add:{k}" for k in sorted(new) if k not in old]
    parts += [f"change:{k}" for k in sorted(new) if k in old and old[k] != new[k]]
    parts += [f"remove:{k}" for k in sorted(old) if k not in new]
    return " ".join(parts)


def app_env(app: Json, release_id: str = "") -> dict[str, str]:
    """The env of ``release_id``, else of the *latest* release (§8)."""
    if release_id:
        return env_load(find_release(app, release_id)["env"])
    latest = latest_release(app)
    return env_load(latest["env"]) if latest else {}


def create_release(
    app: Json, env: str, *, build: str | None = None, parent: str = "", description: str = ""
) -> Json:
    """A new release forking ``parent`` (default: the latest release) (§8)."""
    base = find_release(app, parent) if parent else latest_release(app)
    release = {
        "id": new_release_id(),
        "build": build if build is not None else (base["build"] if base else ""),
        "env": env,
        "description": description,
        "created": now_iso(),
    }
    app["releases"].append(release)
    return release


# --- convox.yml -------------------------------------------------------------------------------


class ManifestError(Exception):
    """``manifest.Load`` failed."""


@dataclass
class Service:
    name: str
    port: int = 0
    scheme: str = ""
    command: str = ""
    image: str = ""
    build_path: str = "."
    environment: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    count: int = 1
    count_max: int = 1
    cpu: int = 250
    memory: int = 512
    internal: bool = False
    internal_router: bool = False
    deployment_min: int = 50
    deployment_max: int = 200


@dataclass
class ResourceDef:
    name: str
    type: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class TimerDef:
    name: str
    schedule: str
    service: str
    command: str


@dataclass
class Manifest:
    environment: list[str]
    services: list[Service]
    resources: list[ResourceDef]
    timers: list[TimerDef]

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def resource(self, name: str) -> ResourceDef | None:
        return next((r for r in self.resources if r.name == name), None)


def _go_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = " ".join(
            f"{_go_value(k)}:{_go_value(v)}" for k, v in sorted(value.items(), key=str)
        )
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _env_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    raise ManifestError(f"unknown type for service environment: {_go_value(value)}")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ManifestError(f"invalid {what}: {_scalar(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise ManifestError(f"invalid {what}: {_go_value(value)}")


def _parse_port(service: Service, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        service.port = _int(value.get("port", 0), "port")
        service.scheme = _scalar(value.get("scheme", "")) or "http"
        return
    text = _scalar(value)
    scheme, colon, number = text.rpartition(":")
    service.port = _int(number, "port")
    service.scheme = scheme if colon else "http"


def _parse_count(service: Service, value: Any) -> None:
    if isinstance(value, dict):
        low, high = _int(value.get("min", 1), "count"), _int(value.get("max", 1), "count")
    elif isinstance(value, str) and "-" in value.strip()[1:]:
        first, _, second = value.strip().partition("-")
        low, high = _int(first, "count"), _int(second, "count")
    else:
        low = high = _int(value, "count")
    service.count, service.count_max = low, high


def _parse_scale(service: Service, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        _parse_count(service, value)
        return
    if "count" in value:
        _parse_count(service, value["count"])
    # Like the real parser, a non-int cpu/memory (e.g. a quoted string) is silently ignored.
    if isinstance(value.get("cpu"), int) and not isinstance(value.get("cpu"), bool):
        service.cpu = value["cpu"]
    if isinstance(value.get("memory"), int) and not isinstance(value.get("memory"), bool):
        service.memory = value["memory"]


def _named(data: Json, key: str) -> list[tuple[str, Json]]:
    section = data.get(key)
    if section is None:
        return []
    if not isinstance(section, dict):
        raise ManifestError(f"yaml: unmarshal errors:\n  cannot unmarshal {key} into a map")
    items = []
    for name, body in section.items():
        if body is not None and not isinstance(body, dict):
            raise ManifestError(f"yaml: unmarshal errors:\n  cannot unmarshal {key}.{name}")
        items.append((_scalar(name), body or {}))
    return items


def load_manifest(text: str, env: Mapping[str, str]) -> Manifest:
    """``manifest.Load``: ``${VAR}`` interpolation, non-strict YAML, defaults (§17)."""
    import yaml  # noqa: PLC0415 - only build, deploy and promote parse manifests

    interpolated = re.sub(r"\$\{([^}]*)\}", lambda m: env.get(m.group(1), ""), text)
    try:
        data = yaml.safe_load(interpolated)
    except yaml.YAMLError as exc:
        raise ManifestError(f"yaml: {exc}".replace("\n", " ")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ManifestError("yaml: unmarshal errors:\n  cannot unmarshal the document into a map")
    services = []
    for name, body in _named(data, "services"):
        service = Service(name=name)
        _parse_port(service, body.get("port"))
        service.command = _scalar(body.get("command"))
        service.image = _scalar(body.get("image"))
        build = body.get("build")
        if isinstance(build, dict):
            service.build_path = _scalar(build.get("path")) or "."
        elif build is not None:
            service.build_path = _scalar(build) or "."
        service.environment = _env_list(body.get("environment"))
        service.resources = [_scalar(r) for r in body.get("resources") or []]
        _parse_scale(service, body.get("scale"))
        service.internal = body.get("internal") is True
        service.internal_router = body.get("internalRouter") is True
        deployment = body.get("deployment") or {}
        if isinstance(deployment, dict):
            singleton = body.get("singleton") is True or body.get("agent") is True
            service.deployment_min = _int(
                deployment.get("minimum", 0 if singleton else 50), "deployment minimum"
            )
            service.deployment_max = _int(
                deployment.get("maximum", 100 if singleton else 200), "deployment maximum"
            )
        services.append(service)
    resources = [
        ResourceDef(
            name=name,
            type=_scalar(body.get("type")),
            options={_scalar(k): _scalar(v) for k, v in (body.get("options") or {}).items()},
        )
        for name, body in _named(data, "resources")
    ]
    timers = []
    for name, body in _named(data, "timers"):
        parts = _scalar(body.get("schedule")).split()
        if len(parts) > 5:
            parts = parts[:5]
        parts = ["*" if p == "?" else p for p in parts]
        timers.append(
            TimerDef(
                name, " ".join(parts), _scalar(body.get("service")), _scalar(body.get("command"))
            )
        )
    return Manifest(_env_list(data.get("environment")), services, resources, timers)


def missing_env(manifest: Manifest, service: Service, env: Mapping[str, str]) -> list[str]:
    missing = []
    for entry in [*manifest.environment, *service.environment]:
        if "=" not in entry and entry != "*" and entry not in env:
            missing.append(entry)
    return sorted(missing)


def _validate_env(manifest: Manifest, env: Mapping[str, str]) -> list[str]:
    errors = []
    for service in manifest.services:
        missing = missing_env(manifest, service, env)
        if missing:
            errors.append(f"required env: {', '.join(missing)}")
    return errors


def _validate_resources(manifest: Manifest) -> list[str]:
    errors = []
    for resource in manifest.resources:
        if not NAME_RE.match(resource.name):
            errors.append(f"resource name {resource.name} invalid, {NAME_RULE}")
        if not resource.type.strip():
            errors.append(f"resource {json.dumps(resource.name)} has blank type")
    return errors


def _validate_service(manifest: Manifest, s: Service) -> list[str]:
    checks = [
        (not NAME_RE.match(s.name), f"service name {s.name} invalid, {NAME_RULE}"),
        (s.deployment_min < 0, f"service {s.name} deployment minimum can not be less than 0"),
        (
            s.deployment_min > 100,
            f"service {s.name} deployment minimum can not be greater than 100",
        ),
        (s.deployment_max < 100, f"service {s.name} deployment maximum can not be less than 100"),
        (
            s.deployment_max > 200,
            f"service {s.name} deployment maximum can not be greater than 200",
        ),
        (
            s.internal and s.internal_router,
            f"service {s.name} can not have both internal and internalRouter set as true",
        ),
    ]
    errors = [message for failed, message in checks if failed]
    for entry in s.resources:
        name = entry.split(":", 1)[0]
        if manifest.resource(name) is None:
            errors.append(f"service {s.name} references a resource that does not exist: {name}")
    if s.count < 0:
        errors.append(f"service {s.name}: scale.min must be >= 0")
    if s.count_max < s.count:
        errors.append(f"service {s.name}: scale.max must be >= scale.min")
    return errors


def _validate_timers(manifest: Manifest) -> list[str]:
    errors = []
    for timer in manifest.timers:
        if not NAME_RE.match(timer.name):
            errors.append(f"timer name {timer.name} invalid, {NAME_RULE}")
        if manifest.service(timer.service) is None:
            errors.append(
                f"timer {timer.name} references a service that does not exist: {timer.service}"
            )
        if "?" in timer.schedule:
            errors.append(f"timer {timer.name} invalid, schedule cannot contain ?")
    return errors


def validate_manifest(manifest: Manifest, env: Mapping[str, str]) -> list[str]:
    """``Manifest.Validate``: env, resources, services, timers, in that order (§17)."""
    errors = _validate_env(manifest, env) + _validate_resources(manifest)
    for service in manifest.services:
        errors += _validate_service(manifest, service)
    return errors + _validate_timers(manifest)


def release_manifest(app: Json, release: Json, env: Mapping[str, str]) -> Manifest | None:
    """The parsed manifest of ``release``'s build (None without a build)."""
    if not release.get("build"):
        return None
    build = find_build(app, release["build"])
    try:
        return load_manifest(build.get("manifest", ""), env)
    except ManifestError as exc:
        raise CliError(str(exc)) from None


def active_manifest(app: Json) -> tuple[Json, Manifest | None, dict[str, str]]:
    """(active release, its manifest, its env) or CliError ``no release for app`` (§12)."""
    if not app.get("release"):
        raise CliError(f"no release for app: {app['name']}")
    release = find_release(app, app["release"])
    env = env_load(release["env"])
    return release, release_manifest(app, release, env), env


# --- resources --------------------------------------------------------------------------------

_FAMILIES = {
    "postgres": "postgres",
    "postgis": "postgres",
    "rds-postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "rds-mysql": "mysql",
    "rds-mariadb": "mysql",
    "redis": "redis",
    "elasticache-redis": "redis",
    "memcached": "memcached",
    "elasticache-memcached": "memcached",
}


def env_prefix(name: str) -> str:
    return name.upper().replace("-", "_")


def is_overlay(resource: ResourceDef, env: Mapping[str, str]) -> bool:
    """The app env already holds ``<NAME>_URL``: the rack uses it, creates nothing (§17)."""
    return bool(env.get(f"{env_prefix(resource.name)}_URL"))


def resource_url(state: Json, app: str, resource: ResourceDef, env: Mapping[str, str]) -> str:
    """The resource's URL: the overlay URL, else the configured backend's, else empty."""
    if is_overlay(resource, env):
        return env[f"{env_prefix(resource.name)}_URL"]
    backends = state.get("resource_backends") or {}
    family = _FAMILIES.get(resource.type, resource.type)
    backend = backends.get(f"{app}/{resource.name}") or backends.get(family)
    if not isinstance(backend, dict):
        return ""
    if backend.get("url"):
        return str(backend["url"])
    userinfo = ""
    if backend.get("user"):
        userinfo = quote(str(backend["user"]), safe="")
        if backend.get("password"):
            userinfo += ":" + quote(str(backend["password"]), safe="")
        userinfo += "@"
    url = f"{family}://{userinfo}{backend.get('host', '127.0.0.1')}:{backend.get('port', '')}"
    if backend.get("dbname"):
        url += "/" + quote(str(backend["dbname"]), safe="")
    if family == "postgres":
        url += "?sslmode=disable"
    return url


def _url_parts(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "URL": url,
        "USER": unquote(parts.username or ""),
        "PASS": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "NAME": unquote(parts.path.lstrip("/")),
    }


def resource_env(
    state: Json, app: str, manifest: Manifest, service: Service, env: Mapping[str, str]
) -> dict[str, str]:
    """``<NAME>_URL/_USER/_PASS/_HOST/_PORT/_NAME`` of linked resources; aliases (§17)."""
    result: dict[str, str] = {}
    for entry in service.resources:
        name, colon, alias = entry.partition(":")
        resource = manifest.resource(name)
        if resource is None or is_overlay(resource, env):
            continue
        url = resource_url(state, app, resource, env)
        if not url:
            continue
        parts = _url_parts(url)
        if colon:
            alias = alias.strip()
            suffix = alias.rsplit("_", 1)[-1]
            result[alias] = parts.get(suffix, url)
        else:
            for key, value in parts.items():
                result[f"{env_prefix(name)}_{key}"] = value
    return result


def base_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in PASSTHROUGH_ENV if k in environ}


def service_env(
    state: Json,
    rack_name: str,
    app: Json,
    release: Json,
    manifest: Manifest,
    service: Service,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """A process's env, later wins: system, APP, RELEASE, BUILD, SERVICE, PORT, resources,
    manifest defaults, app env (§17), then the sandbox marker PLATFORM=convox."""
    env = base_env(environ)
    app_values = env_load(release["env"])
    build_description = ""
    if release.get("build"):
        build_description = find_build(app, release["build"]).get("description", "")
    env.update(
        RACK=rack_name,
        APP=app["name"],
        RELEASE=release["id"],
        BUILD=release.get("build", ""),
        BUILD_DESCRIPTION=build_description,
        SERVICE=service.name,
    )
    if service.port:
        env["PORT"] = str(service.port)
    env.update(resource_env(state, app["name"], manifest, service, app_values))
    for entry in [*manifest.environment, *service.environment]:
        key, eq, default = entry.partition("=")
        if eq:
            env[key] = default
    env.update(app_values)
    env["PLATFORM"] = "convox"
    return env


# --- the served web process -------------------------------------------------------------------


def web_service(manifest: Manifest | None) -> Service | None:
    """The service the router sends traffic to: ``web`` if it has a port, else the first."""
    if manifest is None:
        return None
    routable = [s for s in manifest.services if s.port and not s.internal]
    return next((s for s in routable if s.name == "web"), routable[0] if routable else None)


def _is_web_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return procs.pid_alive(pid)
    return SAMPLEAPP_MODULE.encode() in cmdline


def _stop_web(served: Json) -> bool:
    pid = int(served.get("pid") or 0)
    if pid <= 0 or not procs.pid_alive(pid) or not _is_web_process(pid):
        return False
    procs.stop_pid(pid, timeout=10.0)
    return True


def _start_web(store: Store, router: Json, env: Mapping[str, str], cwd: Path, log_name: str) -> int:
    """Start the sample app on the router port; wait until it accepts connections."""
    log_dir = procs.ensure_private_dir(store.folder / LOG_DIR)
    log_path = log_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', log_name)}.log"
    child_env = dict(env)
    child_env.update(
        PORT=str(router["port"]),
        SAMPLEAPP_HOST=str(router.get("host", "127.0.0.1")),
        TLS_CERT=str(router.get("tls_cert", "")),
        TLS_KEY=str(router.get("tls_key", "")),
    )
    pid = procs.spawn_daemon(
        [sys.executable, "-m", SAMPLEAPP_MODULE], log_path=log_path, env=child_env, cwd=cwd
    )
    try:
        procs.wait_for_port(
            str(router.get("host", "127.0.0.1")),
            int(router["port"]),
            READY_TIMEOUT,
            pid=pid,
            log_path=log_path,
        )
        time.sleep(0.2)  # the port may belong to someone else: make sure ours is still up
        if not procs.pid_alive(pid):
            raise procs.DaemonDiedError(f"process {pid} exited right after start")
    except (procs.DaemonDiedError, TimeoutError):
        procs.stop_pid(pid, timeout=5.0)
        raise
    return pid


@dataclass
class WebPlan:
    """What a promote or scale must do about the served web process, decided under the lock."""

    stop: Json | None = None
    service: str = ""
    start_env: dict[str, str] | None = None
    cwd: Path = Path()
    log_name: str = ""


def plan_web(
    ctx: Ctx,
    state: Json,
    rack_name: str,
    rack: Json,
    app: Json,
    release: Json,
    manifest: Manifest | None,
    counts: Mapping[str, int],
) -> WebPlan:
    """Restart the web process for ``release`` (or stop it when it has no web service)."""
    router = state.get("router")
    served = rack.get("served")
    plan = WebPlan()
    if not isinstance(router, dict) or not router.get("port"):
        return plan
    web = web_service(manifest)
    if served:
        plan.stop = served
    if web is None or manifest is None or counts.get(web.name, 0) <= 0:
        if served and served.get("app") != app["name"]:
            plan.stop = None  # another app's web process keeps the router
        return plan
    plan.service = web.name
    plan.start_env = service_env(state, rack_name, app, release, manifest, web, ctx.environ)
    build = find_build(app, release["build"]) if release.get("build") else {}
    source = Path(str(build.get("dir", "")))
    plan.cwd = source if build.get("dir") and source.is_dir() else ctx.store.folder
    plan.log_name = f"{app['name']}-{web.name}"
    return plan


def apply_web(ctx: Ctx, state_router: Json | None, plan: WebPlan) -> int | None:
    """Stop and start as planned (outside the lock); the new pid, None if nothing started.

    Raises CliError("rollback") if the new process does not come up.
    """
    if plan.stop:
        _stop_web(plan.stop)
    if plan.start_env is None or state_router is None:
        return None
    try:
        return _start_web(ctx.store, state_router, plan.start_env, plan.cwd, plan.log_name)
    except (procs.DaemonDiedError, TimeoutError, OSError):
        raise CliError("rollback") from None


def _pod_line(pod: Json, status: str) -> str:
    return f"  {pod['id']:<32}  {pod['service']:<12}  {status}\n"


def _desired_counts(app: Json, manifest: Manifest | None) -> dict[str, int]:
    """Runtime scale persists across deploys; new services start at the manifest count (§11)."""
    if manifest is None:
        return {}
    scale: Json = app.setdefault("scale", {})
    counts = {}
    for service in manifest.services:
        current = scale.get(service.name) or {}
        count = current.get("count")
        counts[service.name] = int(count) if isinstance(count, int) else service.count
        scale[service.name] = {
            "count": counts[service.name],
            "cpu": int(current.get("cpu") or service.cpu),
            "memory": int(current.get("memory") or service.memory),
        }
    for name in list(scale):
        if name not in counts:
            del scale[name]
    return counts


def _make_pods(release_id: str, service: Service, count: int) -> list[Json]:
    return [
        {
            "id": new_pod_id(service.name),
            "service": service.name,
            "release": release_id,
            "status": "pending",
            "started": now_iso(),
            "command": service.command,
        }
        for _ in range(count)
    ]


def wait_until_running(ctx: Ctx, app_name: str) -> None:
    """``releasePromote`` step 1: wait while another update runs (§10)."""
    deadline = time.monotonic() + WAIT_READY_TIMEOUT
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        status = get_app(rack, app_name).get("status")
    if status == "running":
        return
    ctx.out.startf("Waiting for app to be ready")
    while status != "running":
        if time.monotonic() > deadline:
            raise CliError("timeout")
        time.sleep(WAIT * 5)
        with ctx.store.locked() as state:
            _, rack = ctx.rack(state)
            status = get_app(rack, app_name).get("status")
    ctx.out.ok()


def _record_served(rack: Json, app: Json, service: str, pid: int) -> None:
    """Remember the web process (on its first pod and on the rack) so it can be stopped."""
    first = next((p for p in app["processes"] if p["service"] == service), None)
    if first is not None:
        first["pid"] = pid
    rack["served"] = {
        "app": app["name"],
        "service": service,
        "release": app["release"],
        "pid": pid,
        "pod": first["id"] if first else "",
        "started": now_iso(),
    }


def promote(ctx: Ctx, app_name: str, release_id: str) -> None:
    """``releasePromote``: the shared promote of deploy, releases promote, env --promote (§10).

    A web process that does not come up is a failed rollout: the app goes back to the previous
    release (whose web process is started again) and the command fails with ``rollback``.
    """
    if not release_id:
        raise CliError("no release to promote")
    wait_until_running(ctx, app_name)
    ctx.out.startf(f"Promoting {release_id}")
    with ctx.store.locked() as state:
        rack_name, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        release = find_release(app, release_id)
        env = env_load(release["env"])
        manifest = release_manifest(app, release, env)
        services = manifest.services if manifest else []
        for service in services:
            missing = missing_env(manifest, service, env) if manifest else []
            if missing:
                raise CliError(f"required env: {', '.join(missing)}")
        previous = {
            "release": app.get("release", ""),
            "processes": app.get("processes", []),
            "scale": copy.deepcopy(app.get("scale", {})),
        }
        counts = _desired_counts(app, manifest)
        pods = [p for s in services for p in _make_pods(release_id, s, counts[s.name])]
        plan = plan_web(ctx, state, rack_name, rack, app, release, manifest, counts)
        router = state.get("router") if isinstance(state.get("router"), dict) else None
        app.update(release=release_id, status="updating", processes=pods)
        if plan.stop:
            rack.pop("served", None)
    ctx.out.write("\n")
    for pod in pods:
        ctx.out.write(_pod_line(pod, "pending"))
    time.sleep(WAIT)
    try:
        pid = apply_web(ctx, router, plan)
    except CliError:
        _roll_back(ctx, app_name, previous, router)
        raise
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        for pod in app["processes"]:
            pod["status"] = "running"
        if pid is not None and plan.service:
            _record_served(rack, app, plan.service, pid)
        app["status"] = "running"
        final = app.get("release")
    for pod in pods:
        ctx.out.write(_pod_line(pod, "running"))
    if final != release_id:
        raise CliError("rollback")
    ctx.out.ok()


def _roll_back(ctx: Ctx, app_name: str, previous: Json, router: Json | None) -> None:
    """Put the app back on its previous release and restart that release's web process."""
    with ctx.store.locked() as state:
        rack_name, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        app.update(
            release=previous["release"],
            processes=previous["processes"],
            scale=previous["scale"],
            status="running",
        )
        plan = WebPlan()
        if previous["release"]:
            old = find_release(app, previous["release"])
            manifest = release_manifest(app, old, env_load(old["env"]))
            counts = {name: int(s.get("count", 0)) for name, s in app["scale"].items()}
            plan = plan_web(ctx, state, rack_name, rack, app, old, manifest, counts)
            plan.stop = None
    try:
        pid = apply_web(ctx, router, plan)
    except CliError:
        return
    if pid is not None and plan.service:
        with ctx.store.locked() as state:
            _, rack = ctx.rack(state)
            _record_served(rack, get_app(rack, app_name), plan.service, pid)


def pod_status(rack: Json, pod: Json) -> str:
    """A web pod whose real process died shows ``crashed``."""
    pid = pod.get("pid")
    served = rack.get("served") or {}
    if pid and served.get("pid") == pid and not procs.pid_alive(int(pid)):
        return "crashed"
    return str(pod.get("status", "running"))


# --- commands: rack ---------------------------------------------------------------------------


def cmd_help(ctx: Ctx) -> None:
    visible = sorted(COMMANDS, key=lambda c: c.full)
    width = max([7, *(len(c.full) for c in visible)])
    ctx.out.write("".join(f"{c.full:<{width}}  {c.description}\n" for c in visible))


def cmd_version(ctx: Ctx) -> None:
    ctx.out.write(f"client: {VERSION}\n")
    with ctx.store.locked() as state:
        try:
            _, rack = ctx.rack(state)
        except CliError as exc:
            if str(exc) != NO_RACK:
                raise
            ctx.out.write("server: none\n")
            return
    ctx.out.write(f"server: {rack.get('version', VERSION)}\n")


def cmd_switch(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        if ctx.args:
            rack = match_rack(state["racks"], ctx.args[0])
            _write_current(ctx.store.folder, str(rack["name"]))
            ctx.out.write(f"Switched to {rack['name']}\n")
            return
        name, _ = ctx.rack(state)
    ctx.out.write(f"{name}\n")


def cmd_racks(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        racks = sorted(state["racks"], key=lambda r: (r.get("provider") != "local", r["name"]))
        rows = [
            [r["name"], r.get("provider") or "unknown", r.get("status", "running")] for r in racks
        ]
    ctx.out.write(table(["NAME", "PROVIDER", "STATUS"], rows))


def cmd_rack(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
    rows = [("Name", str(rack["name"])), ("Provider", str(rack.get("provider", "local")))]
    if rack.get("region"):
        rows.append(("Region", str(rack["region"])))
    if rack.get("domain"):
        rows.append(("Router", str(rack["domain"])))
    rows += [
        ("Status", str(rack.get("status", "running"))),
        ("Version", str(rack.get("version", VERSION))),
    ]
    ctx.out.write(info(rows))


# --- commands: apps ---------------------------------------------------------------------------


def cmd_apps(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        apps = rack.setdefault("apps", {})
        rows = [
            [a["name"], a.get("status", ""), a.get("release", "")] for _, a in sorted(apps.items())
        ]
    ctx.out.write(table(["APP", "STATUS", "RELEASE"], rows))


def cmd_apps_create(ctx: Ctx) -> None:
    name = ctx.arg(0) or ctx.app_name()
    with ctx.store.locked() as state:
        ctx.rack(state)
    ctx.out.startf(f"Creating {name}")
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        apps = rack.setdefault("apps", {})
        if name in RESERVED_APPS:
            raise CliError("app name is reserved")
        if name in apps:
            raise CliError(f"app already exists: {name}")
        apps[name] = {
            "name": name,
            "status": "creating",
            "generation": "3",
            "locked": False,
            "release": "",
            "created": now_iso(),
            "releases": [],
            "builds": [],
            "scale": {},
            "processes": [],
        }
    time.sleep(WAIT)
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        get_app(rack, name)["status"] = "running"
    ctx.out.ok()


def cmd_apps_info(ctx: Ctx) -> None:
    name = ctx.arg(0) or ctx.app_name()
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, name)
    rows = [
        ("Name", app["name"]),
        ("Status", app.get("status", "")),
        ("Generation", app.get("generation", "3")),
        ("Locked", "true" if app.get("locked") else "false"),
        ("Release", app.get("release", "")),
    ]
    if rack.get("domain"):
        rows.append(("Router", str(rack["domain"])))
    ctx.out.write(info(rows))


# --- commands: env ----------------------------------------------------------------------------


def _read_stdin_lines() -> list[str]:
    """bufio.Scanner over stdin: lines (CR dropped) until EOF or the first line over 64 KiB."""
    try:
        if os.isatty(0):
            return []
        stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
        data = stream.read() if stream is not None else sys.stdin.read().encode()
    except (OSError, ValueError):
        return []
    lines = []
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        chunk = data[start:] if end < 0 else data[start:end]
        if len(chunk) >= STDIN_LINE_LIMIT:
            break  # bufio.ErrTooLong: the scan stops silently, later lines are dropped
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        lines.append(chunk.decode("utf-8", "replace"))
        if end < 0:
            break
        start = end + 1
    return lines


def cmd_env(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        env = app_env(get_app(rack, ctx.app_name()), ctx.string("release"))
    ctx.out.write(env_string(env) + "\n")


def cmd_env_get(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        env = app_env(get_app(rack, ctx.app_name()), ctx.string("release"))
    key = ctx.args[0]
    if key not in env:
        raise CliError(f"env not found: {key}")
    ctx.out.write(env[key] + "\n")


def _env_release(ctx: Ctx, app_name: str, env: Mapping[str, str], parent: str) -> str:
    """POST /apps/{app}/releases with the full env; description ``env <diff>`` (§8)."""
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        base = find_release(app, parent) if parent else latest_release(app)
        diff = env_diff(env_load(base["env"]) if base else {}, env_load(env_string(env)))
        release = create_release(
            app, env_string(env), parent=parent, description=f"env {diff}" if diff else ""
        )
    return str(release["id"])


def cmd_env_set(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    app_name = ctx.app_name()
    parent = ctx.string("release")
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        env = {} if ctx.flag("replace") else app_env(app, parent)
    pairs = [*ctx.args, *_read_stdin_lines()]
    keys = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if eq:
            keys.append(key)
            env[key] = value
    ctx.out.startf("Setting " + ", ".join(sorted(keys)))
    release_id = _env_release(ctx, app_name, env, parent)
    ctx.out.ok()
    ctx.out.write(f"Release: {release_id}\n")
    if ctx.flag("promote"):
        promote(ctx, app_name, release_id)
    if ctx.flag("id"):
        ctx.out.print_id(release_id)


def cmd_env_unset(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    app_name = ctx.app_name()
    parent = ctx.string("release")
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        env = app_env(get_app(rack, app_name), parent)
    for key in ctx.args:
        env.pop(key, None)
    ctx.out.startf("Unsetting " + ", ".join(sorted(ctx.args)))
    release_id = _env_release(ctx, app_name, env, parent)
    ctx.out.ok()
    ctx.out.write(f"Release: {release_id}\n")
    if ctx.flag("promote"):
        promote(ctx, app_name, release_id)
    if ctx.flag("id"):
        ctx.out.print_id(release_id)


# --- commands: build, deploy, builds ----------------------------------------------------------


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _build_description(ctx: Ctx) -> str:
    """``-d``, else ``build <sha10> <subject>`` when ``git diff --quiet`` passes in the cwd."""
    if "description" in ctx.flags:
        return ctx.string("description")
    if _git(ctx.cwd, "diff", "--quiet") is None:
        return ""
    line = _git(ctx.cwd, "log", "-n", "1", "--pretty=%h %s", "--abbrev=10")
    return f"build {line}" if line else ""


def build(ctx: Ctx) -> tuple[str, str]:
    """The shared ``build()`` of build and deploy; returns (build id, release id) (§9)."""
    app_name = ctx.app_name()
    source = Path(ctx.arg(0) or ".")
    if not source.is_absolute():
        source = ctx.cwd / source
    with ctx.store.locked() as state:
        ctx.rack(state)
    description = _build_description(ctx)
    ctx.out.startf("Packaging source")
    if not source.is_dir():
        raise CliError(f"lstat {source}: no such file or directory")
    ctx.out.ok()
    ctx.out.startf("Uploading source")
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        get_app(rack, app_name)
    ctx.out.ok()
    ctx.out.startf("Starting build")
    manifest_name = ctx.string("manifest") or "convox.yml"
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        record = {
            "id": new_build_id(),
            "status": "running",
            "release": "",
            "description": description,
            "manifest": "",
            "manifest_name": manifest_name,
            "dir": str(source.resolve()),
            "git_sha": _git(source, "rev-parse", "HEAD") or "",
            "started": now_iso(),
            "ended": "",
        }
        app["builds"].append(record)
        env = app_env(app)
    ctx.out.ok()
    build_id = str(record["id"])
    logs, manifest_text, failure = _run_build(source, manifest_name, env, ctx.strings("build-args"))
    ctx.out.write(logs)
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        stored = find_build(app, build_id)
        stored.update(manifest=manifest_text, ended=now_iso(), logs=logs, status="failed")
        if not failure:
            latest = latest_release(app)
            release = create_release(
                app, latest["env"] if latest else "", build=build_id, description=description
            )
            stored.update(status="complete", release=release["id"])
    if failure:
        raise CliError("build failed")
    return build_id, str(stored["release"])


def _run_build(
    source: Path, manifest_name: str, env: dict[str, str], build_args: list[str]
) -> tuple[str, str, bool]:
    """(logs, manifest text, failed): what the rack's build prints (``pkg/build``)."""
    path = source / manifest_name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return f"ERROR: no such file: {manifest_name}\n", "", True
    for arg in build_args:
        key, eq, value = arg.partition("=")
        if not eq:
            return f"ERROR: invalid build args: {arg}\n", text, True
        env[key] = value
    try:
        manifest = load_manifest(text, env)
    except ManifestError as exc:
        return f"ERROR: {exc}\n", text, True
    errors = validate_manifest(manifest, env)
    if errors:
        return "ERROR: validation errors:\n" + "".join(e + "\n" for e in errors), text, True
    lines = []
    for path_ in dict.fromkeys(s.build_path for s in manifest.services if not s.image):
        lines.append(f"Building: {path_}\n")
    for image in dict.fromkeys(s.image for s in manifest.services if s.image):
        lines.append(f"Running: docker pull {image}\n")
    return "".join(lines), text, False


def cmd_build(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    build_id, release_id = build(ctx)
    ctx.out.write(f"Build:   {build_id}\nRelease: {release_id}\n")
    if ctx.flag("id"):
        ctx.out.print_id(release_id)


def cmd_deploy(ctx: Ctx) -> None:
    if ctx.flag("id"):
        ctx.out.id_mode()
    _, release_id = build(ctx)
    promote(ctx, ctx.app_name(), release_id)
    if ctx.flag("id"):
        ctx.out.print_id(release_id)


def cmd_builds(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        builds = list(reversed(get_app(rack, ctx.app_name())["builds"]))
    limit = ctx.number("limit")
    rows = [
        [
            b["id"],
            b["status"],
            b.get("release", ""),
            ago(b["started"]),
            duration(b["started"], b.get("ended", "")),
            b.get("description", ""),
        ]
        for b in builds[: 10 if limit is None else limit]
    ]
    ctx.out.write(table(["ID", "STATUS", "RELEASE", "STARTED", "ELAPSED", "DESCRIPTION"], rows))


def cmd_builds_info(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        b = find_build(get_app(rack, ctx.app_name()), ctx.args[0])
    ctx.out.write(
        info(
            [
                ("Id", b["id"]),
                ("Status", b["status"]),
                ("Release", b.get("release", "")),
                ("Description", b.get("description", "")),
                ("Started", ago(b["started"])),
                ("Elapsed", duration(b["started"], b.get("ended", ""))),
            ]
        )
    )


# --- commands: releases -----------------------------------------------------------------------


def cmd_releases(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, ctx.app_name())
    limit = ctx.number("limit")
    releases = list(reversed(app["releases"]))[: 10 if limit is None else limit]
    rows = [
        [
            r["id"],
            "active" if r["id"] == app.get("release") else "",
            r.get("build", ""),
            ago(r["created"]),
            r.get("description", ""),
        ]
        for r in releases
    ]
    ctx.out.write(table(["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"], rows))


def cmd_releases_info(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        r = find_release(get_app(rack, ctx.app_name()), ctx.args[0])
    ctx.out.write(
        info(
            [
                ("Id", r["id"]),
                ("Build", r.get("build", "")),
                ("Created", rfc3339(r["created"])),
                ("Description", r.get("description", "")),
                ("Env", r.get("env", "")),
            ]
        )
    )


def cmd_releases_manifest(ctx: Ctx) -> None:
    release_id = ctx.args[0]
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, ctx.app_name())
        release = find_release(app, release_id)
        if not release.get("build"):
            raise CliError(f"no build for release: {release_id}")
        text = find_build(app, release["build"]).get("manifest", "")
    ctx.out.write(text.strip() + "\n")


def cmd_releases_promote(ctx: Ctx) -> None:
    app_name = ctx.app_name()
    release_id = ctx.arg(0)
    if not release_id:
        with ctx.store.locked() as state:
            _, rack = ctx.rack(state)
            latest = latest_release(get_app(rack, app_name))
        if latest is None:
            raise CliError("no releases to promote")
        release_id = latest["id"]
    promote(ctx, app_name, release_id)


# --- commands: services, ps, scale ------------------------------------------------------------


def _active(ctx: Ctx, state: Json) -> tuple[str, Json, Json, Manifest | None]:
    """(rack name, rack, app, active manifest or None) for list commands."""
    rack_name, rack = ctx.rack(state)
    app = get_app(rack, ctx.app_name())
    manifest = active_manifest(app)[1] if app.get("release") else None
    return rack_name, rack, app, manifest


def cmd_services(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        rack_name, rack, app, manifest = _active(ctx, state)
    rows = []
    for s in sorted(manifest.services if manifest else [], key=lambda s: s.name):
        if s.internal:
            domain = f"{s.name}.{app['name']}.{rack_name}.local"
        else:
            domain = f"{s.name}.{app['name']}.{rack_domain(rack)}"
        rows.append([s.name, domain, f"443:{s.port}" if s.port else ""])
    ctx.out.write(table(["SERVICE", "DOMAIN", "PORTS"], rows))


def cmd_ps(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        _, rack, app, _ = _active(ctx, state)
    pods = sorted(app.get("processes", []), key=lambda p: (p["service"], p["id"]))
    if ctx.string("service"):
        pods = [p for p in pods if p["service"] == ctx.string("service")]
    if ctx.string("release"):
        pods = [p for p in pods if p["release"] == ctx.string("release")]
    rows = [
        [
            p["id"],
            p["service"],
            pod_status(rack, p),
            p["release"],
            ago(p["started"]),
            p.get("command", ""),
        ]
        for p in pods
    ]
    ctx.out.write(table(["ID", "SERVICE", "STATUS", "RELEASE", "STARTED", "COMMAND"], rows))


_SCALE_FLAGS = ("count", "cpu", "memory", "gpu", "gpu-vendor", "min", "max")


def validate_scale(ctx: Ctx) -> None:
    if any(name in ctx.flags for name in _SCALE_FLAGS):
        if not ctx.args:
            raise CliError("service name required")
        args_exact(1)(ctx)
    else:
        args_max(1)(ctx)


def cmd_scale(ctx: Ctx) -> None:
    if any(name in ctx.flags for name in _SCALE_FLAGS):
        scale_service(ctx)
        return
    with ctx.store.locked() as state:
        _, _, app, manifest = _active(ctx, state)
    services = sorted(manifest.services if manifest else [], key=lambda s: s.name)
    wanted = ctx.arg(0)
    if wanted:
        services = [s for s in services if s.name == wanted]
        if not services:
            raise CliError(f'service "{wanted}" not found in app {app["name"]}')
    scale = app.get("scale", {})
    running: dict[str, int] = {}
    for pod in app.get("processes", []):
        running[pod["service"]] = running.get(pod["service"], 0) + 1
    rows = []
    for s in services:
        current = scale.get(s.name, {})
        rows.append(
            [
                s.name,
                str(current.get("count", s.count)),
                str(running.get(s.name, 0)),
                str(current.get("cpu", s.cpu)),
                str(current.get("memory", s.memory)),
                "-",
                "-",
                "-",
                "",
            ]
        )
    headers = ["SERVICE", "DESIRED", "RUNNING", "CPU", "MEMORY", "GPU", "MIN", "MAX", "STATUS"]
    ctx.out.write(table(headers, rows))


def _check_scale_flags(count: int | None, low: int | None, high: int | None) -> None:
    if count is not None and (low is not None or high is not None):
        raise CliError("--min/--max and --count are mutually exclusive")
    if low is not None and low < 0:
        raise CliError("--min must be >= 0")
    if high is not None and high < 1:
        raise CliError("--max must be >= 1")
    if low is not None and high is not None and high < low:
        raise CliError("--max must be >= --min")


def _scale_web_plan(
    ctx: Ctx,
    state: Json,
    rack_name: str,
    rack: Json,
    app: Json,
    manifest: Manifest,
    service: str,
    counts: Mapping[str, int],
) -> WebPlan:
    """Scaling the served service to 0 stops its process; scaling it up starts it if down."""
    web = web_service(manifest)
    if web is None or web.name != service:
        return WebPlan()
    served = rack.get("served") or {}
    is_served = served.get("app") == app["name"] and served.get("service") == service
    alive = is_served and procs.pid_alive(int(served.get("pid") or 0))
    if (counts[service] == 0 and not is_served) or (counts[service] > 0 and alive):
        return WebPlan()
    release = find_release(app, app["release"])
    plan = plan_web(ctx, state, rack_name, rack, app, release, manifest, counts)
    if plan.stop:
        rack.pop("served", None)
    return plan


def scale_service(ctx: Ctx) -> None:
    """``scale SERVICE --count N`` and friends: update, then wait like a promote (§11)."""
    count = ctx.number("count")
    _check_scale_flags(count, ctx.number("min"), ctx.number("max"))
    name = ctx.args[0]
    app_name = ctx.app_name()
    ctx.out.startf(f"Scaling {name}")
    with ctx.store.locked() as state:
        rack_name, rack, app, manifest = _active(ctx, state)
        service = manifest.service(name) if manifest else None
        if service is None or manifest is None:
            raise CliError(f'deployments.apps "{name}" not found')
        counts = _desired_counts(app, manifest)
        current = app["scale"][name]
        if count is not None:
            current["count"] = counts[name] = count
        for key in ("cpu", "memory"):
            if ctx.number(key) is not None:
                current[key] = ctx.number(key)
        pods = [p for p in app["processes"] if p["service"] == name]
        new = _make_pods(app["release"], service, max(0, counts[name] - len(pods)))
        removed = pods[counts[name] :]
        app["processes"] = [p for p in app["processes"] if p not in removed] + new
        plan = _scale_web_plan(ctx, state, rack_name, rack, app, manifest, name, counts)
        router = state.get("router") if isinstance(state.get("router"), dict) else None
    ctx.out.write("\n")
    for pod in new:
        ctx.out.write(_pod_line(pod, "pending"))
    pid = apply_web(ctx, router, plan)
    with ctx.store.locked() as state:
        _, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        for pod in app["processes"]:
            if pod["status"] == "pending":
                pod["status"] = "running"
        if pid is not None:
            _record_served(rack, app, name, pid)
    for pod in new:
        ctx.out.write(_pod_line(pod, "running"))
    ctx.out.ok()


# --- commands: resources ----------------------------------------------------------------------


def _resource(ctx: Ctx, state: Json, name: str) -> tuple[ResourceDef, str]:
    """(resource, url) from the active release (§12); errors like the v3 provider."""
    _, rack = ctx.rack(state)
    app = get_app(rack, ctx.app_name())
    _, manifest, env = active_manifest(app)
    resource = manifest.resource(name) if manifest else None
    if resource is None:
        raise CliError(f"no such resource: {name}")
    return resource, resource_url(state, app["name"], resource, env)


def cmd_resources(ctx: Ctx) -> None:
    rows = []
    with ctx.store.locked() as state:
        _, _, app, manifest = _active(ctx, state)
        if manifest is not None:
            env = env_load(find_release(app, app["release"])["env"])
            for resource in sorted(manifest.resources, key=lambda r: r.name):
                if not is_overlay(resource, env):
                    url = resource_url(state, app["name"], resource, env)
                    rows.append([resource.name, resource.type, url])
    ctx.out.write(table(["NAME", "TYPE", "URL"], rows))


def cmd_resources_info(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        resource, url = _resource(ctx, state, ctx.args[0])
    rows = [("Name", resource.name), ("Type", resource.type)]
    if url:
        rows.append(("URL", url))
    ctx.out.write(info(rows))


def cmd_resources_url(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        resource, url = _resource(ctx, state, ctx.args[0])
    if not url:
        raise CliError(f"no url for resource: {resource.name}")
    ctx.out.write(url + "\n")


def hang() -> NoReturn:
    """Block forever, like the real proxy's main goroutine; only a signal ends it."""
    while True:
        time.sleep(3600)


def _pipe(source: socket.socket, sink: socket.socket, done: threading.Event) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        if done.is_set():
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
        done.set()


def _tunnel(client: socket.socket, host: str, port: int, out: Out) -> None:
    try:
        upstream = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        out.error(f"dial tcp {host}:{port}: connect: {reason}")
        client.close()
        return
    upstream.settimeout(None)
    done = threading.Event()
    threading.Thread(target=_pipe, args=(client, upstream, done), daemon=True).start()
    threading.Thread(target=_pipe, args=(upstream, client, done), daemon=True).start()


def cmd_resources_proxy(ctx: Ctx) -> None:
    with ctx.store.locked() as state:
        resource, url = _resource(ctx, state, ctx.args[0])
    if not url:
        raise CliError(f"no url for resource: {resource.name}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        remote = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        remote = None
    if remote is None:
        raise CliError(f"unknown port for url: {url}")
    local = ctx.number("port") or remote
    ctx.out.write(f"proxying localhost:{local} to {host}:{remote}\n")
    if ctx.fault and ctx.fault.get("hang_before_listen"):
        hang()
    try:
        server = socket.create_server(("127.0.0.1", local), backlog=64)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        ctx.out.error(f"listen tcp 127.0.0.1:{local}: bind: {reason}")
        hang()
    while True:
        client, _ = server.accept()
        ctx.out.write(f"connect: {local}\n")
        threading.Thread(target=_tunnel, args=(client, host, remote, ctx.out), daemon=True).start()


# --- commands: run ----------------------------------------------------------------------------


def cmd_run(ctx: Ctx) -> None:
    service_name, words = ctx.args[0], ctx.args[1:]
    app_name = ctx.app_name()
    with ctx.store.locked() as state:
        rack_name, rack = ctx.rack(state)
        app = get_app(rack, app_name)
        release_id = ctx.string("release") or app.get("release", "")
        if not release_id:
            raise CliError(f"no release for app: {app_name}")
        release = find_release(app, release_id)
        manifest = release_manifest(app, release, env_load(release["env"]))
        service = manifest.service(service_name) if manifest else None
        if service is None or manifest is None:
            raise CliError(f"no such service: {service_name}")
        env = service_env(state, rack_name, app, release, manifest, service, ctx.environ)
        build_dir = Path(find_build(app, release["build"]).get("dir", ""))
    cwd = build_dir if str(build_dir) not in ("", ".") and build_dir.is_dir() else ctx.cwd
    try:
        argv = shlex.split(" ".join(words))
    except ValueError as exc:
        raise CliError(f"{exc}".lower()) from None
    if not argv:
        raise CliError("no command given")
    if ctx.flag("detach"):
        ctx.out.startf("Running detached process")
        log_dir = procs.ensure_private_dir(ctx.store.folder / LOG_DIR)
        try:
            procs.spawn_daemon(argv, log_path=log_dir / f"{app_name}-run.log", env=env, cwd=cwd)
        except OSError as exc:
            raise CliError(f"exec: {exc.strerror}") from None
        ctx.out.ok(new_pod_id(service_name))
        return
    timeout = ctx.number("timeout") or 3600
    ctx.out.stdout.flush()
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stderr=subprocess.STDOUT)
    except OSError as exc:
        reason = (
            "executable file not found in $PATH"
            if exc.errno == errno.ENOENT
            else (os.strerror(exc.errno or errno.EIO).lower())
        )
        ctx.out.write(
            "OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{argv[0]}": {reason}: unknown\n'
        )
        raise ExitCode(126) from None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    raise ExitCode(code if code >= 0 else 128 - code)


# --- the command table ------------------------------------------------------------------------

COMMANDS: tuple[Command, ...] = (
    Command(("help",), "list commands", cmd_help),
    Command(("apps",), "list apps", cmd_apps, (FLAG_RACK, FLAG_WATCH), validate=args_exact(0)),
    Command(
        ("apps", "create"),
        "create an app",
        cmd_apps_create,
        (
            Flag("generation", "g", "string", "generation"),
            Flag("timeout", "", "int"),
            FLAG_APP,
            FLAG_RACK,
        ),
        "[name]",
        args_max(1),
    ),
    Command(
        ("apps", "info"),
        "get information about an app",
        cmd_apps_info,
        (FLAG_APP, FLAG_RACK),
        "[app]",
        args_max(1),
    ),
    Command(("build",), "create a build", cmd_build, BUILD_FLAGS, "[dir]", args_max(1)),
    Command(
        ("builds",),
        "list builds for an app",
        cmd_builds,
        (FLAG_APP, FLAG_RACK, Flag("limit", "l", "int", "number to return"), FLAG_WATCH),
        validate=args_exact(0),
    ),
    Command(
        ("builds", "info"),
        "get information about a build",
        cmd_builds_info,
        (FLAG_APP, FLAG_RACK),
        "<build>",
        args_exact(1),
    ),
    Command(
        ("deploy",),
        "create and promote a build",
        cmd_deploy,
        (*BUILD_FLAGS, FLAG_FORCE),
        "[dir]",
        args_max(1),
    ),
    Command(
        ("env",),
        "list env vars",
        cmd_env,
        (FLAG_RACK, FLAG_APP, FLAG_WATCH, FLAG_RELEASE, Flag("reveal", "", "bool")),
        validate=args_exact(0),
    ),
    Command(
        ("env", "get"),
        "get an env var",
        cmd_env_get,
        (FLAG_RACK, FLAG_APP, FLAG_RELEASE),
        "<var>",
        args_exact(1),
    ),
    Command(
        ("env", "set"),
        "set env var(s)",
        cmd_env_set,
        (FLAG_APP, FLAG_ID, FLAG_RACK, Flag("replace", "", "bool"), FLAG_PROMOTE, FLAG_RELEASE),
        "<key=value> [key=value]...",
    ),
    Command(
        ("env", "unset"),
        "unset env var(s)",
        cmd_env_unset,
        (FLAG_APP, FLAG_ID, FLAG_RACK, FLAG_PROMOTE, FLAG_RELEASE),
        "<key> [key]...",
        args_min(1),
    ),
    Command(
        ("ps",),
        "list app processes",
        cmd_ps,
        (FLAG_APP, FLAG_RACK, Flag("service", "s", "string"), FLAG_RELEASE, FLAG_WATCH),
        validate=args_exact(0),
    ),
    Command(
        ("rack",),
        "get information about the rack",
        cmd_rack,
        (FLAG_RACK, FLAG_WATCH),
        validate=args_exact(0),
    ),
    Command(("racks",), "list available racks", cmd_racks, (FLAG_WATCH,), validate=args_exact(0)),
    Command(
        ("releases",),
        "list releases for an app",
        cmd_releases,
        (FLAG_RACK, FLAG_APP, Flag("limit", "l", "int", "number to return"), FLAG_WATCH),
        validate=args_exact(0),
    ),
    Command(
        ("releases", "info"),
        "get information about a release",
        cmd_releases_info,
        (FLAG_APP, FLAG_RACK, Flag("reveal", "", "bool")),
        "<release>",
        args_exact(1),
    ),
    Command(
        ("releases", "manifest"),
        "get manifest for a release",
        cmd_releases_manifest,
        (FLAG_APP, FLAG_RACK),
        "<release>",
        args_exact(1),
    ),
    Command(
        ("releases", "promote"),
        "promote a release",
        cmd_releases_promote,
        (FLAG_APP, FLAG_RACK, FLAG_FORCE),
        "[release]",
        args_max(1),
    ),
    Command(
        ("resources",),
        "list resources",
        cmd_resources,
        (FLAG_RACK, FLAG_APP, FLAG_WATCH),
        validate=args_exact(0),
    ),
    Command(
        ("resources", "info"),
        "get information about a resource",
        cmd_resources_info,
        (FLAG_RACK, FLAG_APP),
        "<resource>",
        args_exact(1),
    ),
    Command(
        ("resources", "proxy"),
        "proxy a local port to a resource",
        cmd_resources_proxy,
        (
            FLAG_RACK,
            FLAG_APP,
            Flag("port", "p", "int", "local port"),
            Flag("tls", "t", "bool", "wrap connection in tls"),
        ),
        "<resource>",
        args_exact(1),
    ),
    Command(
        ("resources", "url"),
        "get url for a resource",
        cmd_resources_url,
        (FLAG_RACK, FLAG_APP),
        "<resource>",
        args_exact(1),
    ),
    Command(
        ("run",),
        "execute a command in a new process",
        cmd_run,
        (
            FLAG_APP,
            FLAG_RACK,
            FLAG_RELEASE,
            Flag("detach", "d", "bool"),
            Flag("timeout", "t", "int", "timeout"),
            Flag("entrypoint", "e", "bool", "use the image entrypoint", default=True),
            Flag("cpu", "", "int"),
            Flag("cpu-limit", "", "int"),
            Flag("memory", "", "int"),
            Flag("memory-limit", "", "int"),
            Flag("gpu", "", "int"),
            Flag("gpu-vendor", "", "string"),
            Flag("use-service-volume", "", "bool"),
            Flag("node-labels", "", "string"),
            Flag("system-critical", "", "bool"),
        ),
        "<service> <command>",
        args_min(2),
    ),
    Command(
        ("scale",),
        "scale a service",
        cmd_scale,
        (
            FLAG_APP,
            FLAG_RACK,
            FLAG_WATCH,
            Flag("count", "", "int"),
            Flag("cpu", "", "int"),
            Flag("memory", "", "int"),
            Flag("gpu", "", "int"),
            Flag("gpu-vendor", "", "string"),
            Flag("min", "", "int"),
            Flag("max", "", "int"),
        ),
        "[<service>]",
        validate_scale,
    ),
    Command(
        ("services",),
        "list services for an app",
        cmd_services,
        (FLAG_APP, FLAG_RACK, FLAG_WATCH),
        validate=args_exact(0),
    ),
    Command(("switch",), "switch current rack", cmd_switch, (), "[rack]", args_max(1)),
    Command(
        ("version",),
        "display version information",
        cmd_version,
        (FLAG_RACK,),
        validate=args_exact(0),
    ),
)

# Real v3 commands this stand-in does not emulate: refusing them beats the real CLI's
# "unknown command" path (help, exit 0), which would let a caller believe they succeeded.
NOT_EMULATED = frozenset(
    {
        "api",
        "apps cancel",
        "apps delete",
        "apps export",
        "apps import",
        "apps lock",
        "apps params",
        "apps unlock",
        "balancers",
        "budget",
        "builds export",
        "builds import",
        "builds import-image",
        "builds logs",
        "certs",
        "cp",
        "env edit",
        "env mask",
        "exec",
        "instances",
        "login",
        "logs",
        "proxy",
        "ps info",
        "ps stop",
        "rack install",
        "rack logs",
        "rack params",
        "rack update",
        "registries",
        "releases create-from",
        "releases rollback",
        "resources console",
        "resources export",
        "resources import",
        "restart",
        "services restart",
        "ssl",
        "start",
        "test",
        "update",
    }
)


def _command_help(command: Command) -> str:
    flags = sorted((f for f in command.all_flags if not f.hidden), key=lambda f: f.name)
    lines = [
        f"USAGE\n  {command.full} {command.usage}\n\n",
        f"DESCRIPTION\n  {command.description}\n\n",
        "OPTIONS\n",
    ]
    longs = [f"--{f.name}" + ("" if f.kind == "bool" else f" <{f.name}>") for f in flags]
    shorts = [f"-{f.short}" if f.short else "" for f in flags]
    lw = max([0, *map(len, longs)])
    sw = max([0, *map(len, shorts)])
    lines += [f"  {lf:<{lw}}  {sf:<{sw}}\n" for lf, sf in zip(longs, shorts, strict=True)]
    return "".join(lines)


def _match(args: Sequence[str]) -> tuple[Command | None, list[str]]:
    best: Command | None = None
    for command in COMMANDS:
        n = len(command.words)
        if tuple(args[:n]) == command.words and (best is None or n > len(best.words)):
            best = command
    return best, list(args[len(best.words) :]) if best else list(args)


def _not_emulated(args: Sequence[str], matched: Command | None) -> str | None:
    for n in (3, 2, 1):
        words = " ".join(args[:n])
        emulated = matched is not None and len(matched.words) >= n
        if len(args) >= n and words in NOT_EMULATED and not emulated:
            return words
    return None


def _take_fault(store: Store, command: Command) -> Json | None:
    """Consume the first fault for ``command``.

    Keys: ``command`` (the command words, e.g. ``"resources proxy"``); ``times`` (default 1;
    -1 = forever); ``sleep`` (seconds, first); ``stdout``/``stderr`` (written verbatim);
    ``exit`` (default 1 when stdout, stderr or exit is given: the command is replaced);
    ``hang`` (block until killed, after the output); ``hang_before_listen`` (resources proxy:
    print the banner, then block without listening).
    """
    name = " ".join(command.words)
    with store.locked() as state:
        faults: list[Json] = state.get("faults") or []
        for index, fault in enumerate(faults):
            if fault.get("command") != name:
                continue
            times = int(fault.get("times", 1))
            if times > 0:
                times -= 1
                if times == 0:
                    del faults[index]
                else:
                    fault["times"] = times
            return dict(fault)
    return None


def _fire_fault(fault: Json, out: Out) -> int | None:
    """Apply the generic part of a fault; an exit code if it replaces the command."""
    if fault.get("sleep"):
        time.sleep(float(fault["sleep"]))
    replaces = any(key in fault for key in ("stdout", "stderr", "exit"))
    if "stdout" in fault:
        out.write(str(fault["stdout"]))
    if "stderr" in fault:
        out.stderr.write(str(fault["stderr"]))
        out.stderr.flush()
    if fault.get("hang"):
        hang()
    return int(fault.get("exit", 1)) if replaces else None


def run_command(argv: Sequence[str], out: Out, environ: Mapping[str, str], cwd: Path) -> int:
    if argv and argv[0] in ("-v", "--version"):
        out.write(f"{VERSION}\n")
        return 0
    command, rest = _match(argv)
    missing = _not_emulated(argv, command)
    if missing is not None:
        raise CliError(f'the convox stand-in does not emulate "convox {missing}"')
    if command is None:
        command, rest = COMMANDS[0], []
    try:
        args, flags = parse_flags(rest, command.all_flags)
    except HelpRequested:
        out.write(_command_help(command))
        return 0
    ctx = Ctx(command, args, flags, out, environ, cwd, Store(settings_dir(environ)))
    if command.validate is not None:
        command.validate(ctx)
    ctx.fault = _take_fault(ctx.store, command)
    if ctx.fault is not None:
        code = _fire_fault(ctx.fault, out)
        if code is not None:
            return code
    interval = ctx.number("watch")
    while True:
        command.handler(ctx)
        if not interval or interval <= 0:
            return 0
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    """Run one ``convox`` command; return its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    out = Out(sys.stdout, sys.stderr)
    try:
        return run_command(args, out, os.environ, Path.cwd())
    except CliError as exc:
        out.error(str(exc))
        return 1
    except ExitCode as exc:
        return exc.code
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    import signal

    # Like a Go program without signal handlers: SIGINT kills the process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
