"""The recorder that ``make audit`` puts into every Python process of a run, as sitecustomize.

This file is self-contained (standard library only, no cutover import): the harness copies its
text to ``<work>/hook/sitecustomize.py`` (recorder.py) and puts that folder first on PYTHONPATH,
so any Python interpreter that starts with that environment runs it before its own code: cutover
itself, and the children that are Python (the convox stand-in, behind its ``/bin/sh`` shim).

Each hooked process appends JSON lines to the file named by ``CUTOVER_AUDIT_RECORD``:

* ``start``: the process's own argv and environment, as it received them;
* ``subprocess.Popen``, ``os.exec``, ``os.posix_spawn``, ``os.spawn``, ``os.system``: every
  child it starts, with argv and the environment the child gets (``None`` means the parent's,
  so os.environ is recorded). ``sh`` forks and calls ``os.execve`` in the child: the hook is
  inherited by the fork, so those children are recorded with their exact argv and env;
* ``written``: every path it opens for writing (once per path), so the scan knows which files
  a run created wherever they are.

It uses :func:`sys.addaudithook` (PEP 578): a hook cannot be removed once added, so code in
the process cannot switch the recording off. The limits are in recorder.py's docstring.
"""

import json
import os
import sys
import threading
from typing import Any

RECORD_VAR = "CUTOVER_AUDIT_RECORD"
SPAWN_EVENTS = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _env(env: Any) -> dict[str, str]:
    source = os.environ if env is None else env
    try:
        return {_text(k): _text(v) for k, v in dict(source).items()}
    except (TypeError, ValueError):
        return {"?": repr(source)}


def _argv(args: Any) -> list[str]:
    if isinstance(args, str | bytes):
        return [_text(args)]
    try:
        return [_text(a) for a in args]
    except TypeError:
        return [_text(args)]


def install() -> None:
    path = os.environ.get(RECORD_VAR)
    if not path:
        return
    busy = threading.local()
    seen: set[str] = set()
    # The interpreter's own command line: at sitecustomize time sys.argv[0] of ``python -m mod``
    # is still "-m" (the module is not located yet).
    me = list(getattr(sys, "orig_argv", None) or sys.argv or [sys.executable])

    def emit(record: dict[str, Any]) -> None:
        record["pid"] = os.getpid()
        record["ppid"] = os.getppid()
        record["in"] = me
        # Opened for each record: sh closes every descriptor in its forked child before execve.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)

    def spawn(event: str, args: tuple[Any, ...]) -> dict[str, Any]:
        if event == "subprocess.Popen":  # (executable, args, cwd, env)
            return {"exe": _text(args[0]), "argv": _argv(args[1]), "env": _env(args[3])}
        if event in ("os.exec", "os.posix_spawn"):  # (path, argv, env)
            return {"exe": _text(args[0]), "argv": _argv(args[1]), "env": _env(args[2])}
        if event == "os.spawn":  # (mode, path, args, env)
            return {"exe": _text(args[1]), "argv": _argv(args[2]), "env": _env(args[3])}
        return {"exe": "/bin/sh", "argv": ["/bin/sh", "-c", _text(args[0])], "env": _env(None)}

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if getattr(busy, "on", False) or (event not in SPAWN_EVENTS and event != "open"):
            return
        busy.on = True
        try:
            if event == "open":
                target, flags = args[0], args[2]
                if isinstance(target, int) or not isinstance(flags, int):
                    return
                if not flags & WRITE_FLAGS:
                    return
                name = os.path.abspath(_text(target))
                if name in seen or name == path:
                    return
                seen.add(name)
                emit({"event": "written", "path": name})
            else:
                emit({"event": event, **spawn(event, args)})
        except Exception:  # noqa: S110 - a recorder must never break the process
            pass
        finally:
            busy.on = False

    emit({"event": "start", "exe": sys.executable, "argv": me, "env": _env(None)})
    sys.addaudithook(hook)


install()
