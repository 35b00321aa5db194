"""Helpers shared by the runtime tests of tests/translate: translate a folder of files, read a
service's command, and run a translated command the way Convox does, checking that the server
is the main process and drains on SIGTERM."""

from __future__ import annotations

import shlex
import signal
import subprocess
from pathlib import Path

from support.waiting import wait_for

from cutover.translate import TranslateOptions, read_sources, translate
from cutover.translate.facts import LiveFacts
from cutover.translate.manifest import validate

__all__ = [
    "SERVER",
    "assert_server_is_main_process_and_drains",
    "command_of",
    "translate_files",
]


def translate_files(
    tmp_path: Path, files: dict[str, str], facts: LiveFacts | None = None
) -> tuple[dict[str, object], list[str]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = translate(read_sources(tmp_path), facts, TranslateOptions())
    assert validate(result.manifest) == []
    return result.manifest, [f.code for f in result.findings]


def command_of(manifest: dict[str, object], service: str) -> str:
    services = manifest["services"]
    assert isinstance(services, dict)
    command = services[service]["command"]
    assert isinstance(command, str)
    return command


SERVER = """#!{python}
import os, signal, sys, time
open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
def stop(*_):
    open(os.environ["PIDFILE"] + ".drained", "w").write("yes")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.1)
"""


def assert_server_is_main_process_and_drains(command: str, cwd: Path, bin_dir: Path) -> None:
    """Run ``command`` the way Convox does (split, exec'd without a shell) and check that the
    server is the main process itself and drains on SIGTERM."""
    pidfile = cwd / "server.pid"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PIDFILE": str(pidfile)}
    main = subprocess.Popen(shlex.split(command), env=env, cwd=cwd)
    try:
        # The file exists before the pid is in it (created, then written): wait for the pid.
        def written() -> str | None:
            return pidfile.read_text().strip() or None if pidfile.exists() else None

        server = int(wait_for(written, "the server's pid in its pidfile"))
        assert server == main.pid  # exec: the server IS the container's main process
        main.send_signal(signal.SIGTERM)
        assert main.wait(timeout=20) == 0
        assert (cwd / "server.pid.drained").read_text() == "yes"
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
