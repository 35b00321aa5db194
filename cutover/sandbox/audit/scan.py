"""Scanning a run for secrets, and the modes of what it left behind.

Places checked (each counts once in ``P``):

* the argv of every recorded process (recorder.py): the children cutover started, the convox
  stand-in as it was started, and the stand-in's own children;
* cutover's terminal output (stdout and stderr of each command);
* every file under the state folder (state.json, events.jsonl, logs, anything else), every file
  under the playbook's folder, every file left in the run's temp folder (the harness gives
  cutover its own TMPDIR), and every file a cutover process opened for writing that still
  exists. The sandbox folder is left out: it is the fixture that is the secrets' legitimate home
  (the Heroku emulator's and the rack's state, the clusters, the CA keys), but for the heroku
  CLI's HOME inside it (harness.py), which only the CLI writes to;
* modes: the state folder and the temp folder, and every folder under them, must be 0700, every
  file in them 0600 (no group or other bit).

A secret in a child's *environment* is the house rule's channel, not a leak: :func:`env_uses`
lists which child got which secret under which variable, and :func:`env_warnings` names the
secrets a child got in a variable its program does not read (:data:`USES`).
"""

from __future__ import annotations

import re
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cutover.sandbox.audit.recorder import Child, Record
from cutover.sandbox.audit.secretset import Secret

# What each program reads from its environment (prefixes): the heroku CLI its API key
# (heroku/cli: @heroku-cli/command's credential lookup, HEROKU_API_KEY), libpq's PG* variables
# (pg_dump, pg_restore, psql), the MySQL clients' MYSQL_PWD, redis-cli's REDISCLI_AUTH, the
# convox CLI's CONVOX_* (and the stand-in, which passes the env of `convox env set`/`run` on).
USES: dict[str, tuple[str, ...]] = {
    "heroku": ("HEROKU_",),
    "node": ("HEROKU_",),
    "run": ("HEROKU_",),  # the heroku CLI's bin/run script
    "pg_dump": ("PG",),
    "pg_restore": ("PG",),
    "psql": ("PG",),
    "mysql": ("MYSQL_PWD",),
    "mysqldump": ("MYSQL_PWD",),
    "mariadb": ("MYSQL_PWD",),
    "mariadb-dump": ("MYSQL_PWD",),
    "redis-cli": ("REDISCLI_AUTH",),
    "convox": ("CONVOX_",),
    "cutover.sandbox.convox_fake": ("CONVOX_",),
}


@dataclass(frozen=True)
class Leak:
    place: str
    secret: str  # the secret's NAME (or a mode problem), never its value

    def __str__(self) -> str:
        return f"leak: {self.secret} in {self.place}"


@dataclass
class Scan:
    leaks: list[Leak] = field(default_factory=list)
    places: list[str] = field(default_factory=list)

    def check(self, place: str, data: bytes, secrets: Iterable[Secret]) -> None:
        self.places.append(place)
        for secret in secrets:
            if any(form.encode() in data for form in secret.forms()):
                self.leaks.append(Leak(place, secret.name))

    def check_mode(self, path: Path, want_dir: int = 0o700) -> None:
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except OSError:
            return
        if path.is_dir() and mode != want_dir:
            self.leaks.append(Leak(f"folder {path}", f"mode {oct(mode)} (want {oct(want_dir)})"))
        elif path.is_file() and mode & 0o077:
            self.leaks.append(Leak(f"file {path}", f"mode {oct(mode)} (want 0o600)"))


def is_cutover(child: Child) -> bool:
    return child.tool == "cutover"


def scan_children(scan: Scan, record: Record, secrets: list[Secret]) -> None:
    for child in record.children:
        text = "\n".join(child.argv)
        scan.check(f"argv of {child.label()}", text.encode(errors="surrogateescape"), secrets)


def _files(root: Path, skip: Iterable[Path]) -> list[Path]:
    skipped = [s.resolve() for s in skip]
    out = []
    for path in sorted(root.rglob("*")):
        real = path.resolve()
        if any(real == s or s in real.parents for s in skipped):
            continue
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def scan_files(
    scan: Scan,
    *,
    roots: dict[str, Path],
    written: Iterable[Path],
    skip: list[Path],
    secrets: list[Secret],
) -> None:
    """Every file under each root (by its name in the report) and every written path still
    there; nothing under ``skip`` (the sandbox, the recorder's own files)."""
    seen: set[Path] = set()
    for name, root in roots.items():
        for path in _files(root, skip) if root.exists() else []:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            scan.check(f"{name} file {path.relative_to(root)}", path.read_bytes(), secrets)
    for path in written:
        real = path.resolve() if path.exists() else path
        if real in seen or not path.is_file():
            continue
        if any(real == s.resolve() or s.resolve() in real.parents for s in skip):
            continue
        seen.add(real)
        scan.check(f"file written by cutover {path}", path.read_bytes(), secrets)


def check_modes(scan: Scan, private_roots: Iterable[Path]) -> None:
    for root in private_roots:
        if not root.exists():
            continue
        scan.check_mode(root)
        for path in root.rglob("*"):
            scan.check_mode(path)


def _holds(value: str, secret: Secret) -> bool:
    return any(form in value for form in secret.forms())


def env_uses(record: Record, secrets: list[Secret]) -> dict[str, dict[str, set[str]]]:
    """program -> secret name -> the variables it came in (every recorded child's env)."""
    uses: dict[str, dict[str, set[str]]] = {}
    for child in record.children:
        for var, value in child.env.items():
            for secret in secrets:
                if _holds(value, secret):
                    name = re.sub(r" line \d+$", "", secret.name)  # a PEM key's lines: one name
                    uses.setdefault(child.tool, {}).setdefault(name, set()).add(var)
    return uses


def env_warnings(uses: dict[str, dict[str, set[str]]], app_tools: set[str]) -> list[str]:
    """A secret in a variable its program does not read: a warning, not a leak. The processes
    of the app the rack runs (``app_tools``) get the app's env by design and are skipped, as is
    cutover itself (it reads every secret it holds)."""
    out = []
    for tool, names in sorted(uses.items()):
        if tool == "cutover" or tool in app_tools:
            continue
        prefixes = USES.get(tool, ())
        for name, variables in sorted(names.items()):
            stray = sorted(v for v in variables if not v.startswith(prefixes))
            if stray:
                out.append(f"warning: {tool} got {name} in ${', $'.join(stray)} (no use for it)")
    return out


class ModeWatcher:
    """Walks the private folders every ``interval`` seconds while a run goes, so that the files
    a run removes before it ends (dumps, restore lists, a TLS key file) have their modes checked
    too. A path is judged by the last mode seen (a file created, then made 0600 at once, is
    not a finding); :meth:`leaks` names each wrong one."""

    def __init__(self, roots: list[Path], interval: float = 0.2) -> None:
        self.roots = roots
        self.interval = interval
        self.modes: dict[Path, tuple[bool, int]] = {}  # path -> (is a folder, last mode)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ModeWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for root in self.roots:
                try:
                    paths = [root, *root.rglob("*")] if root.exists() else []
                except OSError:  # a folder removed during the walk
                    continue
                for path in paths:
                    try:
                        st = path.lstat()
                    except OSError:
                        continue
                    self.modes[path] = (stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode))

    def gone(self) -> list[Path]:
        """The paths seen during the run that are gone now."""
        return sorted(p for p in self.modes if not p.exists())

    def leaks(self, paths: Iterable[Path]) -> list[Leak]:
        out = []
        for path in paths:
            is_dir, mode = self.modes[path]
            if is_dir and mode != 0o700:
                out.append(
                    Leak(f"folder {path} (during the run)", f"mode {oct(mode)} (want 0o700)")
                )
            elif not is_dir and mode & 0o077:
                out.append(Leak(f"file {path} (during the run)", f"mode {oct(mode)} (want 0o600)"))
        return out
