"""Recording every child process of a cutover run, from outside cutover's code.

:func:`harness_env` writes ``hook.py``'s text as ``<folder>/hook/sitecustomize.py`` and returns
the variables that put it first on PYTHONPATH and name the (0600) record file. Give them to
``cutover run`` / ``cutover rollback`` (the harness's environment only, never cutover's code):
Python imports sitecustomize at start-up, before cutover's first line, and the audit hook it
adds (``sys.addaudithook``, PEP 578) cannot be removed, so no code path of cutover can spawn a
child unseen. cutover's runner passes its own environment on to its children, so the hook is
also in every Python child: the convox stand-in records its own argv and environment as it got
them (``start``) and the children it starts with the environment cutover handed it (pg_dump,
psql, pg_restore, the app it promotes).

Coverage and its limit:

* every child that a *Python* process of the run starts, by any API (subprocess, sh's
  fork+execve, os.posix_spawn, os.spawn*, os.system), with argv and environment: that is every
  child cutover starts, and every child of the convox stand-in;
* the children of non-Python children are not seen: the heroku CLI (node) does not start any
  for the commands cutover uses, and pg_dump/pg_restore/psql start none; a Python child that
  clears PYTHONPATH or runs ``python -I``/``-E``/``-S`` is not seen either (none does: the
  record of each run shows the convox stand-in's own ``start`` records, and the scan counts
  them, so a stand-in that stopped being recorded shows as a drop to zero);
* only the environment at exec time is seen, not what a child puts into its own later.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover.sandbox.audit import hook

RECORD_VAR = hook.RECORD_VAR
RECORD_FILE = "children.jsonl"


def harness_env(folder: Path) -> dict[str, str]:
    """Install the recorder under ``folder`` (0700); the variables a harness adds to a run."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    hook_dir = folder / "hook"
    hook_dir.mkdir(mode=0o700, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(Path(hook.__file__).read_text(encoding="utf-8"))
    record = folder / RECORD_FILE
    record.touch(mode=0o600)
    existing = os.environ.get("PYTHONPATH")
    path = str(hook_dir) + (os.pathsep + existing if existing else "")
    return {"PYTHONPATH": path, RECORD_VAR: str(record)}


@dataclass
class Child:
    """One recorded process start: ``start`` (a hooked process itself) or a spawn."""

    event: str
    exe: str
    argv: list[str]
    env: dict[str, str]
    pid: int
    parent_argv: list[str] = field(default_factory=list)

    @property
    def tool(self) -> str:
        """The program's name: argv[0]'s (or the executable's) basename; for a Python module
        run with -m, the module (``cutover.sandbox.convox_fake``)."""
        python = Path(self.argv[0]).name.startswith("python") if self.argv else False
        if python and "-m" in self.argv[:-1]:
            return self.argv[self.argv.index("-m") + 1]
        first = self.argv[0] if self.argv else self.exe
        if first.endswith("__main__.py"):
            return Path(first).parent.name
        return Path(first).name

    def label(self) -> str:
        kind = "process" if self.event == "start" else "child"
        return f"{kind} {self.tool} (pid {self.pid})"


@dataclass
class Record:
    children: list[Child]
    written: dict[Path, int]  # path -> the pid that first opened it for writing


def load(path: Path) -> Record:
    """The record file's children and written paths (a line cut by a kill is skipped)."""
    children: list[Child] = []
    written: dict[Path, int] = {}
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        try:
            data: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue
        if data.get("event") == "written":
            written.setdefault(Path(str(data["path"])), int(data.get("pid", 0)))
            continue
        children.append(
            Child(
                event=str(data["event"]),
                exe=str(data.get("exe", "")),
                argv=[str(a) for a in data.get("argv") or []],
                env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
                pid=int(data.get("pid", 0)),
                parent_argv=[str(a) for a in data.get("in") or []],
            )
        )
    return Record(children, written)
