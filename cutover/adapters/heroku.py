"""Adapter for the real ``heroku`` CLI (npm package ``heroku``, 11.x).

Facts it relies on (see the reference in shared/reference/heroku-cli.md):

* ``-a APP`` always; stdin closed (a 401 would otherwise start an interactive login).
* The CLI writes a credential helper into the *global* git config on every run, so the child
  gets ``GIT_CONFIG_GLOBAL`` pointing at a private, pre-seeded file (the user's login in
  ``~/.netrc`` keeps working, which an isolated HOME would break).
* Telemetry, version checks and autoupdates are switched off; errors are not wrapped.
* No colour codes in what is parsed: ``FORCE_COLOR`` is removed from the child's environment and
  ``NO_COLOR=1`` set. The CLI colours through ansis 4 (heroku, @heroku-cli/command,
  @heroku/heroku-cli-util) and ansis 3 + supports-color 8 (@oclif/core): ansis colours whenever
  ``FORCE_COLOR`` is present (any value but false/0), else not when ``NO_COLOR`` is set, else on
  a TTY or when ``CI``/``PM2_HOME`` is set (node_modules/ansis/index.cjs); supports-color reads
  ``FORCE_COLOR`` and the TTY (node_modules/supports-color/index.js). An empty FORCE_COLOR would
  *force* colour in supports-color, so the variable is removed, not blanked.
* ``pg:backups:capture ATTACHMENT`` backs up that attachment's database (without it, the one
  behind DATABASE_URL: pg/backups/capture.js, DatabaseResolver.getAttachment) and prints
  ``Backing up <from> to <name>...`` on stderr, where name is ``b`` and the transfer number
  padded to 3 digits (lib/pg/backups.js ``name()``/``prefix()``).
* ``pg:backups:url BACKUP_ID`` gives that backup's URL; without an id it is the newest
  successful backup of the whole app (pg/backups/url.js), which a scheduled backup can be.
* JSON outputs are used wherever they exist; action commands report on stderr only, so
  success is the exit code, and effects are verified by reading the state back.
* Exit 2 is an API error (`` ›   Error ID: <id>``), 1 a network/auth/client failure.
* ``ps:scale a=N b=M`` takes any number of changes in one call (commands/ps/scale.js:
  ``strict = false``, one ``PATCH /apps/<app>/formation`` with every update) and reports on
  stderr ``Scaling dynos... done, now running a at N:Size, b at M:Size`` (``ux.action.stop``).
* ``ps:stop --dyno-name NAME`` stops one dyno (commands/ps/stop.js: ``POST
  /apps/<app>/dynos/<name>/actions/stop``); the positional ``DYNO`` is deprecated (it warns).
* ``addons --json -a APP`` lists the app's add-ons, each with ``attachments`` from the global
  ``GET /addon-attachments`` (commands/addons/index.js ``addonGetter``): the other apps
  attached to an add-on are there. ``addons:info`` has no ``--json`` in 11.10.0
  (commands/addons/info.js flags: app, remote).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cutover.errors import CutoverError, ToolMissing, UnexpectedOutput
from cutover.runner import Classifier, Result, RetryPolicy, Runner
from cutover.secrets import SecretMasker, register_config

MIN_VERSION = (11, 0, 0)  # the major the adapter is contract-tested with (11.10.0)
INSTALL_HINT = "npm install -g heroku@11.10.0   (or `make setup`, which installs the pinned CLI)"
_TRANSIENT_IDS = ("internal_server_error", "service_unavailable", "rate_limit")
_FORMATION_ITEM = re.compile(r"^(?P<type>[A-Za-z0-9_-]+)=(?P<qty>\d+)(?::(?P<size>\S+))?$")
_VERSION = re.compile(r"heroku/(\d+)\.(\d+)\.(\d+)")

CLI_ENV = {
    "DISABLE_TELEMETRY": "true",
    "HEROKU_SKIP_NEW_VERSION_CHECK": "true",
    "HEROKU_DISABLE_AUTOUPDATE": "1",
    "OCLIF_COLUMNS": "1000",
    "TZ": "UTC",
    "HEROKU_APP": "",
    "NO_COLOR": "1",
}
# Removed from the child's environment (see the module docstring).
CLI_ENV_REMOVE = ("FORCE_COLOR",)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BACKUP_NAME = re.compile(r"^Backing up .+ to (b\d{3,})\b", re.M)
_BACKUP_ID = re.compile(r"^[abcr]\d+$")
_PROCESS_TYPE = re.compile(r"^[A-Za-z0-9_-]+$")  # scale.js parses ^([\w-]+)([=+-]\d+)
_DYNO_NAME = re.compile(r"^[A-Za-z0-9_-]+\.\d+$")
# commands/ps/scale.js: ux.action.stop(`done, now running ${type} at ${quantity}:${size}, ...`)
_NOW_RUNNING = re.compile(r"now running (.+)$", re.M)
_RUNNING_ITEM = re.compile(r"^(?P<type>[\w-]+) at (?P<qty>\d+)(?::\S+)?$")


# What the CLI prints for network trouble (11.10.0), each worth another try:
# * a 5xx with Heroku's JSON body: " ›   Error: <message>" and "Error ID: <id>" (exit 2,
#   @heroku-cli/command/lib/api-client.js HerokuAPIError);
# * a 5xx with any other body (a router's or load balancer's page): HerokuAPIError rethrows
#   http-call's HTTPError, "HTTP Error 503 for GET <url>" (@heroku/http-call/lib/http.js), exit 1;
# * a connection error with a Node code, printed "Error: <message>" then "Code: <CODE>" (oclif),
#   after http-call's own 5 retries (``_maybeRetry``): ECONNRESET ("read ECONNRESET", "socket hang
#   up"), ECONNREFUSED ("connect ECONNREFUSED 127.0.0.1:5000"), ETIMEDOUT, EPIPE, EAI_AGAIN;
# * "Request timed out": http-call's 60 s socket timeout (``HTTP.defaults.timeout``), no code.
# Shown with the real CLI against the emulator's faults: tests/adapters/test_heroku_faults.py.
_HTTP_5XX = re.compile(r"HTTP Error 5\d\d for [A-Z]+ ")
_NET_CODES = ("ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE", "EAI_AGAIN", "EHOSTUNREACH")
# The request never reached the API: safe to repeat even for a command that changes something.
_NOT_SENT_CODES = ("ECONNREFUSED", "EAI_AGAIN", "EHOSTUNREACH")


def _codes(stderr: str) -> list[str]:
    return re.findall(r"\bCode: ([A-Z_]+)", stderr)


def _transient(result: Result) -> bool:
    err = result.stderr
    if any(f"Error ID: {i}" in err for i in _TRANSIENT_IDS) or _HTTP_5XX.search(err):
        return True
    return "Request timed out" in err or any(c in _NET_CODES for c in _codes(err))


def _not_sent(result: Result) -> bool:
    """The CLI could not connect: no request reached Heroku, so nothing changed."""
    return any(c in _NOT_SENT_CODES for c in _codes(result.stderr))


def _capture_not_started(result: Result) -> bool:
    """``pg:backups:capture`` failed on network trouble before Heroku named a backup: the CLI
    prints ``Backing up X to bNNN`` once the POST returned (pg/backups/capture.js), then polls.
    A failure after that line is not repeated: a second capture would take another slot of
    the plan's manual backups, and Heroku drops the oldest one beyond the limit."""
    text = _ANSI.sub("", result.stderr + "\n" + result.stdout)
    return _transient(result) and not _BACKUP_NAME.search(text)


@dataclass(frozen=True)
class FormationEntry:
    type: str
    quantity: int
    size: str


def parse_json(result: Result, what: str) -> Any:
    """The command's stdout as JSON, or UnexpectedOutput naming the command and what is wrong:
    not JSON or cut short (with the decoder's position), nested too deep to read, or a number
    too long to convert (ValueError: Python's int digit limit)."""
    command = " ".join(result.argv_masked)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        # No excerpt of the output: for `config --json` it would hold unregistered secrets.
        reason = "nothing" if not result.stdout.strip() else f"not JSON ({exc.msg} at {exc.pos})"
    except (ValueError, RecursionError) as exc:
        reason = f"JSON cutover cannot read ({type(exc).__name__}: nested too deep or a number "
        reason += "too long)"
    raise UnexpectedOutput(
        f"{command} printed {reason} ({what})",
        details=f"{len(result.stdout)} characters on stdout",
        resolution="Check the heroku CLI version (`heroku --version`) and try again.",
    )


# The fields of `heroku ... --json` items that cutover reads, with the JSON type each must have
# when present and not null (extra fields are ignored: a newer API may add any). From the
# Platform API schemas the CLI prints unchanged: add-on (commands/addons/index.js adds
# ``attachments``), dyno (commands/ps/index.js), domain (commands/domains/index.js).
_ITEM_FIELDS: dict[str, dict[str, type]] = {
    "addons": {
        "name": str,
        "addon_service": dict,
        "plan": dict,
        "config_vars": list,
        "attachments": list,
        "app": dict,
    },
    "ps": {"name": str, "type": str, "state": str, "command": str, "size": str},
    "domains": {"hostname": str, "kind": str, "cname": str},
}
_NESTED_FIELDS: dict[str, dict[str, type]] = {
    "addon_service": {"name": str},
    "plan": {"name": str},
    "app": {"name": str},
}
_JSON_TYPE = {str: "a string", dict: "an object", list: "a list", int: "a number"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _JSON_TYPE.get(type(value), type(value).__name__)


def check_items(data: Any, result: Result, what: str) -> list[dict[str, Any]]:
    """``data`` (the decoded output of ``heroku WHAT --json``) as a list of objects whose known
    fields have their types; UnexpectedOutput naming the command and the JSON path if not."""
    command = " ".join(result.argv_masked)
    if not isinstance(data, list):
        raise UnexpectedOutput(f"{command} did not return a list (it printed {_kind(data)})")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise UnexpectedOutput(f"{command}: [{index}] is {_kind(item)}, expected an object")
        for key, wanted in _ITEM_FIELDS[what].items():
            _check_field(command, f"[{index}].{key}", item.get(key), wanted)
            value = item.get(key)
            if isinstance(value, dict):
                for sub, sub_type in _NESTED_FIELDS.get(key, {}).items():
                    _check_field(command, f"[{index}].{key}.{sub}", value.get(sub), sub_type)
            elif isinstance(value, list):
                inner = str if key == "config_vars" else dict
                for n, element in enumerate(value):
                    _check_field(command, f"[{index}].{key}[{n}]", element, inner, null=False)
    return data


def _check_field(command: str, at: str, value: object, wanted: type, *, null: bool = True) -> None:
    if value is None and null:
        return
    if not isinstance(value, wanted) or isinstance(value, bool):
        raise UnexpectedOutput(f"{command}: {at} is {_kind(value)}, expected {_JSON_TYPE[wanted]}")


def check_config(data: Any, result: Result) -> dict[str, str]:
    """``heroku config --json``: an object of string values (the Platform API's config-vars;
    null for an unset one). Any other value is refused by NAME, never shown (a secret)."""
    command = " ".join(result.argv_masked)
    if not isinstance(data, dict):
        raise UnexpectedOutput(f"{command} did not return an object (it printed {_kind(data)})")
    for key, value in data.items():
        if value is not None and not isinstance(value, str):
            raise UnexpectedOutput(
                f"{command}: the value of {key!r} is {_kind(value)}, expected a string"
            )
    return {str(k): "" if v is None else v for k, v in data.items()}


def parse_formation(text: str) -> list[FormationEntry]:
    """Parse ``heroku ps:scale`` without arguments: ``web=2:standard-1X worker=1:standard-2X``."""
    entries = []
    for item in text.split():
        match = _FORMATION_ITEM.match(item)
        if not match:
            raise UnexpectedOutput(f"unexpected formation item from heroku ps:scale: {item!r}")
        entries.append(
            FormationEntry(match["type"], int(match["qty"]), match["size"] or "standard-1X")
        )
    return entries


# How long a database URL read by ``pg:credentials:url`` is reused within one process (seconds).
# A heroku CLI start costs 1.5 s on an idle machine and several on a loaded one; freeze-writes,
# final-sync and verify-data each needed the URL inside the window. The URL changes only when the
# credentials are rotated (``heroku pg:credentials:rotate``) or Heroku moves the database
# (maintenance, which cutover's window is not run through): a window reads it once, before it
# starts (steps/freeze.py prefetch). It is kept in memory only: never in the state or on disk.
CREDENTIALS_MAX_AGE = 900.0


def _now() -> float:
    return time.monotonic()


class HerokuAdapter:
    def __init__(self, runner: Runner, masker: SecretMasker, app: str, work_dir: Path) -> None:
        self.runner = runner
        self.masker = masker
        self.app = app
        self.work_dir = work_dir
        self._urls: dict[str, tuple[float, str]] = {}  # attachment -> (monotonic time read, URL)
        self._urls_lock = threading.Lock()

    # -- argv builders (also used by dry runs) -------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        return ["heroku", *args, "-a", self.app]

    def _env(self) -> dict[str, str | None]:
        gitconfig = self.work_dir / "heroku-gitconfig"
        if not gitconfig.exists():
            self.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The CLI checks credential.https://<git host>.helper, where the git host follows
            # HEROKU_HOST (127.0.0.1:5555 for a local API, git.heroku.com by default).
            env = self.runner.environment()
            host = env.get("HEROKU_HOST") or "heroku.com"
            git_host = env.get("HEROKU_GIT_HOST") or (
                urlsplit(host).netloc if host.startswith("http") else f"git.{host}"
            )
            gitconfig.write_text(
                f'[credential "https://{git_host}"]\n\thelper = !heroku git:credentials\n',
                encoding="utf-8",
            )
            gitconfig.chmod(0o600)
        return {**CLI_ENV, **dict.fromkeys(CLI_ENV_REMOVE), "GIT_CONFIG_GLOBAL": str(gitconfig)}

    def _run(
        self, *args: str, timeout: float = 120, retry: Classifier | None = _transient
    ) -> Result:
        """Run ``heroku ARGS -a APP``; failures ``retry`` classifies as transient are tried
        again (runner.RetryPolicy): any network trouble for reads and for changes that are the
        same however often they are made; only a refused connection otherwise."""
        return self.runner.run(
            self.argv(*args),
            env=self._env(),
            timeout=timeout,
            cwd=self.work_dir if self.work_dir.exists() else None,
            retry=RetryPolicy(retry) if retry is not None else None,
        )

    # -- reads -----------------------------------------------------------------------------------
    def version(self) -> tuple[int, int, int]:
        try:
            result = self.runner.run(["heroku", "--version"], env=self._env(), timeout=60)
        except ToolMissing:
            raise ToolMissing("the heroku CLI is not installed", resolution=INSTALL_HINT) from None
        match = _VERSION.search(result.stdout)
        if not match:
            raise ToolMissing(
                f"cannot read the heroku CLI version from {result.stdout[:200]!r}",
                resolution=INSTALL_HINT,
            )
        found = (int(match[1]), int(match[2]), int(match[3]))
        if found < MIN_VERSION:
            raise ToolMissing(
                f"heroku CLI {'.'.join(map(str, found))} is too old "
                f"(need {'.'.join(map(str, MIN_VERSION))} or newer)",
                resolution=INSTALL_HINT,
            )
        return found

    def app_info(self) -> dict[str, Any]:
        result = self._run("apps:info", "--json")
        data = parse_json(result, "apps:info")
        if not isinstance(data, dict) or not isinstance(data.get("app"), dict):
            got = _kind(data) if not isinstance(data, dict) else "app: " + _kind(data.get("app"))
            raise UnexpectedOutput(
                f"{' '.join(result.argv_masked)} did not return {{app: {{...}}}} (it printed {got})"
            )
        return data

    def config(self) -> dict[str, str]:
        result = self._run("config", "--json")
        data = parse_json(result, "config")
        if isinstance(data, dict):  # mask every string value before anything can be refused
            register_config(self.masker, {str(k): v for k, v in data.items() if isinstance(v, str)})
        values = check_config(data, result)
        register_config(self.masker, values)
        return values

    def formation(self) -> list[FormationEntry]:
        return parse_formation(self._run("ps:scale").stdout)

    def dynos(self) -> list[dict[str, Any]]:
        result = self._run("ps", "--json")
        return check_items(parse_json(result, "ps"), result, "ps")

    def addons(self) -> list[dict[str, Any]]:
        result = self._run("addons", "--json")
        return check_items(parse_json(result, "addons"), result, "addons")

    def domains(self) -> list[dict[str, Any]]:
        result = self._run("domains", "--json")
        return check_items(parse_json(result, "domains"), result, "domains")

    def maintenance(self) -> bool:
        out = self._run("maintenance").stdout.strip()
        if out not in ("on", "off"):
            raise UnexpectedOutput(f"heroku maintenance printed {out[:80]!r}, expected on or off")
        return out == "on"

    def credentials_url(self, attachment: str, *, fresh: bool = False) -> str:
        """The attachment's connection URL from ``heroku pg:credentials:url ATTACHMENT``
        (the line after "Connection URL:"); reused for :data:`CREDENTIALS_MAX_AGE` seconds in
        this process unless ``fresh``. Raises UnexpectedOutput when no postgres URL is printed."""
        with self._urls_lock:
            known = self._urls.get(attachment)
        if known and not fresh and _now() - known[0] < CREDENTIALS_MAX_AGE:
            return known[1]
        url = self._read_credentials_url(attachment)
        with self._urls_lock:
            self._urls[attachment] = (_now(), url)
        return url

    def _read_credentials_url(self, attachment: str) -> str:
        result = self._run("pg:credentials:url", attachment)
        lines = [line.strip() for line in result.stdout.splitlines()]
        for i, line in enumerate(lines):
            if line.startswith("Connection URL:") and i + 1 < len(lines):
                url = lines[i + 1]
                self.masker.add(url)
                if urlsplit(url).scheme not in ("postgres", "postgresql"):
                    break
                return url
        raise UnexpectedOutput("heroku pg:credentials:url printed no connection URL")

    def backup_url(self, backup_id: str) -> str:
        """The URL of ``backup_id`` (never "the newest backup": a scheduled one could win)."""
        if not _BACKUP_ID.match(backup_id):
            raise CutoverError(
                f"refusing to ask for the URL of backup {backup_id!r}: not a backup id like b042"
            )
        result = self._run("pg:backups:url", backup_id)
        url = next((ln.strip() for ln in result.stdout.splitlines() if ln.strip()), "")
        # The public URL is a bearer credential for the whole database: mask it everywhere.
        self.masker.add(url)
        if not url.startswith("https://"):
            raise UnexpectedOutput("heroku pg:backups:url did not print an https:// URL")
        return url

    # -- actions ---------------------------------------------------------------------------------
    def set_maintenance(self, on: bool) -> None:
        # PATCH /apps/<app> {maintenance}: the same however often it is sent.
        self._run("maintenance:on" if on else "maintenance:off")
        if self.maintenance() != on:
            raise CutoverError(
                f"heroku maintenance is still {'off' if on else 'on'} after "
                f"`heroku maintenance:{'on' if on else 'off'} -a {self.app}`"
            )

    def scale(self, process_type: str, quantity: int) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", process_type) or quantity < 0:
            raise CutoverError(f"refusing to scale {process_type!r} to {quantity}: invalid")
        self._run("ps:scale", f"{process_type}={quantity}")  # absolute quantities: idempotent
        now = {f.type: f.quantity for f in self.formation()}
        if now.get(process_type) != quantity:
            raise CutoverError(
                f"heroku formation shows {process_type}={now.get(process_type)} after scaling "
                f"to {quantity}"
            )

    def scale_many(self, quantities: dict[str, int]) -> dict[str, int]:
        """Scale every type in ``quantities`` in ONE ``ps:scale a=N b=M`` call; verified from the
        quantities the CLI reports back (the PATCH's answer), so the formation is not read
        again. Returns the reported quantities."""
        for process_type, quantity in quantities.items():
            if not _PROCESS_TYPE.match(process_type) or quantity < 0:
                raise CutoverError(f"refusing to scale {process_type!r} to {quantity}: invalid")
        if not quantities:
            return {}
        changes = [f"{t}={q}" for t, q in sorted(quantities.items())]
        result = self._run("ps:scale", *changes)  # one PATCH of absolute quantities: idempotent
        text = _ANSI.sub("", result.stderr + "\n" + result.stdout)
        reported: dict[str, int] = {}
        for match in _NOW_RUNNING.finditer(text):
            for item in match.group(1).split(", "):
                got = _RUNNING_ITEM.match(item.strip())
                if got:
                    reported[got["type"]] = int(got["qty"])
        if not reported:  # an older or different output: read the formation back instead
            reported = {f.type: f.quantity for f in self.formation()}
        wrong = [
            f"{t}={reported.get(t)} (asked {q})"
            for t, q in sorted(quantities.items())
            if reported.get(t) != q
        ]
        if wrong:
            raise CutoverError(
                f"heroku reports {', '.join(wrong)} after `heroku ps:scale {' '.join(changes)}`"
            )
        return reported

    def stop_dyno(self, name: str) -> None:
        """``heroku ps:stop --dyno-name NAME`` (commands/ps/stop.js); the dyno then stops like a
        scaled-away one (SIGTERM, up to 30 s, SIGKILL): callers wait for it in ``ps --json``."""
        if not _DYNO_NAME.match(name):
            raise CutoverError(f"refusing to stop dyno {name!r}: not a dyno name like run.1234")
        # A repeated stop of a dyno already stopping could fail: only a refused connection.
        self._run("ps:stop", "--dyno-name", name, retry=_not_sent)

    def backup_capture(self, attachment: str, timeout: float) -> str:
        """Capture a backup of ``attachment``'s database; return its id (``b042``)."""
        # Tried again on network trouble only until Heroku named the backup (see
        # _capture_not_started); never on its timeout.
        result = self._run(
            "pg:backups:capture", attachment, timeout=timeout, retry=_capture_not_started
        )
        text = _ANSI.sub("", result.stderr + "\n" + result.stdout)
        match = _BACKUP_NAME.search(text)
        if not match:
            raise UnexpectedOutput(
                f"heroku pg:backups:capture {attachment} did not say which backup it made",
                details="expected a line 'Backing up <database> to b<number>...' on stderr",
                resolution=f"Look for the backup with `heroku pg:backups -a {self.app}`, then "
                "run `cutover run` again (a new capture is made).",
            )
        return match.group(1)
