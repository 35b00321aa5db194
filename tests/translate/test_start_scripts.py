"""Start scripts a Procfile line runs: Heroku sends SIGTERM to every process of the dyno
(Dev Center, "Dyno Shutdown Behavior": "This signal sends to all processes in the dyno");
Kubernetes sends it to the container's main process only, so a script that runs its server
without `exec` keeps the server from ever seeing it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_helpers import SERVER, translate_files
from support.waiting import wait_for

from cutover.translate import TranslateOptions, read_sources, translate

_START = "#!/bin/sh\nset -e\ntrue  # migrate\ngunicorn app:app --bind 0.0.0.0:$PORT # serve\n"


def test_start_script_without_exec_gets_a_finding_and_really_keeps_sigterm(
    tmp_path: Path,
) -> None:
    _manifest, codes = translate_files(
        tmp_path, {"Procfile": "web: bin/start\n", "bin/start": _START}
    )
    assert "script-no-exec" in codes
    result = translate(read_sources(tmp_path), None, TranslateOptions())
    finding = next(f for f in result.findings if f.code == "script-no-exec")
    assert finding.subject == "web"
    assert "ends with `gunicorn app:app --bind 0.0.0.0:$PORT`" in finding.message
    assert "`exec gunicorn ...`" in finding.advice

    # what the finding claims: SIGTERM to the script (the container's main process) does not
    # reach the server it started
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "gunicorn").write_text(SERVER.format(python=sys.executable))
    (bin_dir / "gunicorn").chmod(0o755)
    (tmp_path / "bin" / "start").chmod(0o755)
    pidfile = tmp_path / "server.pid"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PIDFILE": str(pidfile), "PORT": "3000"}
    main = subprocess.Popen([str(tmp_path / "bin" / "start")], env=env, cwd=tmp_path)
    try:
        assert wait_for(pidfile.exists)
        assert int(pidfile.read_text()) != main.pid
        main.send_signal(signal.SIGTERM)
        main.wait(timeout=20)
        assert not (tmp_path / "server.pid.drained").exists()
    finally:
        if main.poll() is None:
            main.kill()
        if pidfile.exists():
            subprocess.run(["kill", "-9", pidfile.read_text()], check=False)


@pytest.mark.parametrize(
    ("procfile", "files"),
    [
        ("web: bin/start\n", {"bin/start": "#!/bin/bash\ncd app\nexec gunicorn app:app\n"}),
        ("web: bin/start\n", {"bin/start": "#!/usr/bin/env python3\nprint(1)\n"}),
        ("web: bin/start\n", {"bin/start": '#!/bin/sh\nif [ -n "$X" ]; then\n  a\nfi\n'}),
        ("web: gunicorn app:app\n", {}),
        ("web: bin/missing\n", {}),
    ],
)
def test_no_finding_when_the_script_execs_or_is_not_a_shell_script(
    tmp_path: Path, procfile: str, files: dict[str, str]
) -> None:
    _manifest, codes = translate_files(tmp_path, {"Procfile": procfile, **files})
    assert "script-no-exec" not in codes


@pytest.mark.parametrize(
    "files",
    [
        {  # a script run through bash, with arguments
            "Procfile": "worker: bash scripts/worker.sh --queue x\n",
            "scripts/worker.sh": 'cd jobs\nrq worker "$@"\n',
        },
        {  # heroku.yml: Heroku's container runtime also SIGTERMs every process of the dyno
            "heroku.yml": "build:\n  docker:\n    web: Dockerfile\nrun:\n  web: bin/start\n",
            "Dockerfile": "FROM python:3.12\n",
            "bin/start": _START,
        },
    ],
)
def test_other_ways_to_run_a_start_script_count_too(tmp_path: Path, files: dict[str, str]) -> None:
    _manifest, codes = translate_files(tmp_path, files)
    assert "script-no-exec" in codes
