"""``convox run`` in the stand-in: stdin, exit code, and a ``postgres:<major>`` image service.

Facts: pkg/cli/run.go ``Run`` (the pod sleeps ``--timeout``; the command is exec'd with the
stdcli context as its ReadWriter, ``Tty`` false when stdin is not a terminal; the CLI exits with
the command's exit code), provider/k8s/process.go ``ProcessExec`` (stdout and stderr both go to
that ReadWriter; the client's input is copied with ``go io.Copy(inw, rw)`` and ``inw`` is never
closed, so the command never gets end of input), pkg/build/docker.go (a service with ``image:``
is built ``FROM`` it and its pods run it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from convox_support import Sandbox
from support.waiting import wait_for

from cutover.sandbox.convox_fake.cmd_run import PG_BIN
from cutover.sandbox.procs import pid_alive

MANIFEST = """\
resources:
  database:
    type: postgres
services:
  web:
    build: .
    port: 3000
    resources:
      - database
  pgclient:
    image: postgres:{major}
    resources:
      - database
    scale:
      count: 0
"""


def test_run_forwards_stdin_to_the_command_and_returns_its_exit_code(deployed: Sandbox) -> None:
    result = deployed.run(
        "run",
        "web",
        "-a",
        "demo",
        "--",
        """sh -c 'read first; read second; echo "got $first+$second"; echo oops >&2; exit 3'""",
        input="one\ntwo\nthree\n",
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, "got one+two\noops\n", "")


def test_the_command_never_sees_end_of_input_and_dies_with_its_pod(deployed: Sandbox) -> None:
    # `cat` reads to end of input, which the rack never sends: it runs until the pod's sleep
    # ends (--timeout 2) and is killed with it (exit 137).
    result = deployed.run("run", "web", "-t", "2", "-a", "demo", "--", "cat", input="piped\n")
    assert (result.returncode, result.stdout) == (137, "piped\n")


@pytest.mark.skipif(
    not Path(PG_BIN.format(major=15), "pg_dump").is_file(), reason="needs PostgreSQL 15 tools"
)
def test_a_postgres_image_service_runs_that_majors_client_tools(app: Sandbox) -> None:
    app.write_manifest(MANIFEST.format(major=15))
    app.ok("deploy", "-a", "demo")
    out = app.ok(
        "run", "pgclient", "-a", "demo", "--", "sh -c 'command -v pg_dump; echo $DATABASE_HOST'"
    )
    assert out.splitlines() == [f"{PG_BIN.format(major=15)}/pg_dump", "127.0.0.1"]


def test_a_postgres_image_this_machine_cannot_run_is_refused_by_name(app: Sandbox) -> None:
    app.write_manifest(MANIFEST.format(major=99))
    app.ok("deploy", "-a", "demo")
    result = app.run("run", "pgclient", "-a", "demo", "--", "true")
    assert result.returncode == 1
    assert result.stderr == (
        "ERROR: the sandbox runs image postgres:99 with this machine's PostgreSQL 99 client "
        f"tools, and {PG_BIN.format(major=99)} has none: install them or use another major\n"
    )


def test_ps_stop_ends_a_pod_left_by_a_killed_cli_and_the_command_in_it(
    deployed: Sandbox,
) -> None:
    # A CLI killed mid-run never runs its deferred ProcessStop (pkg/cli/run.go): the pod and
    # its command live on. `convox ps stop POD` (pkg/cli/ps.go PsStop) deletes the pod
    # (provider/k8s/process.go ProcessStop), which takes the exec'd command with it.
    cli = deployed.start("run", "web", "-a", "demo", "--", "sh -c 'echo $$; sleep 600'")
    assert cli.stdout is not None
    pid = int(cli.stdout.readline())  # relayed: the stand-in has recorded the exec
    cli.kill()
    cli.communicate(timeout=10)
    pod = next(
        line.split()[0]
        for line in deployed.ok("ps", "-a", "demo").splitlines()
        if line.startswith("web-") and "sleep 3600" in line
    )
    assert pid_alive(pid)
    assert deployed.ok("ps", "stop", pod, "-a", "demo") == f"Stopping {pod}... OK\n"
    wait_for(lambda: not pid_alive(pid), "the exec'd command to end with its pod", deadline=30)
    assert pod not in deployed.ok("ps", "-a", "demo")
    gone = deployed.run("ps", "stop", pod, "-a", "demo")
    assert (gone.returncode, gone.stderr) == (1, f'ERROR: pods "{pod}" not found\n')
