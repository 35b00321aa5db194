"""The runner with real child processes: timeouts, Ctrl-C, retries, masking, background children.

Children are the real interpreter running small scripts; every child reports its pid (and its
grandchild's) in a file so the test can prove what is left running.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import cutover.runner as runner_module
from cutover.adapters import convox as convox_adapter
from cutover.adapters import heroku as heroku_adapter
from cutover.engine.audit import AuditLog, read_events
from cutover.errors import CommandError
from cutover.runner import FIRST_POLL, WAIT_POLL, Result, RetryPolicy, Runner, poll_interval
from cutover.secrets import SecretMasker

PY = sys.executable


class Events:
    """An audit sink that keeps events in memory."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def event(self, kind: str, **fields: Any) -> None:
        self.items.append({"kind": kind, **fields})

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.items if e["kind"] == kind]


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not written")
        time.sleep(0.02)
    return path.read_text()


def sleeper(pid_file: Path, *, ignore: tuple[str, ...] = (), grandchild: bool = True) -> list[str]:
    """argv of a child that writes 'pid grandchild-pid' to pid_file and sleeps for a minute."""
    code = textwrap.dedent(f"""
        import signal, subprocess, sys, time
        for name in {list(ignore)!r}:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) \\
            if {grandchild!r} else None
        open({str(pid_file)!r}, "w").write(f"{{__import__('os').getpid()}} "
                                            f"{{kid.pid if kid else 0}}")
        time.sleep(60)
    """)
    return [PY, "-c", code]


def pids(pid_file: Path) -> tuple[int, int]:
    child, grandchild = wait_for_file(pid_file).split()
    return int(child), int(grandchild)


# -- timeouts ----------------------------------------------------------------------------------
def test_timeout_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    events = Events()
    runner = Runner(SecretMasker(), events, term_grace=0.5)
    pid_file = tmp_path / "pids"
    started = time.monotonic()

    with pytest.raises(CommandError) as caught:
        runner.run(sleeper(pid_file, ignore=("SIGTERM",)), timeout=1.0)

    elapsed = time.monotonic() - started
    assert caught.value.timed_out
    assert not caught.value.transient
    assert "timed out" in caught.value.brief
    assert 1.0 <= elapsed < 1.0 + 0.5 + 3.0
    child, grandchild = pids(pid_file)
    assert wait_gone(child), "the child that ignored SIGTERM is still running"
    assert wait_gone(grandchild), "the child's process group was not killed"
    (event,) = events.of("command")
    assert event["outcome"] == "timeout"
    assert event["exit_code"] == -signal.SIGKILL


def test_timeout_reaps_a_child_that_exits_on_sigterm(tmp_path: Path) -> None:
    events = Events()
    runner = Runner(SecretMasker(), events, term_grace=10.0)
    pid_file = tmp_path / "pids"
    started = time.monotonic()

    with pytest.raises(CommandError) as caught:
        runner.run(sleeper(pid_file, grandchild=False), timeout=1.0)

    # SIGTERM was enough: no waiting for the 10 s grace period, and no zombie left behind.
    assert time.monotonic() - started < 5.0
    assert caught.value.timed_out
    child, _ = pids(pid_file)
    assert not Path(f"/proc/{child}").exists(), "the child was not reaped"
    (event,) = events.of("command")
    assert event["outcome"] == "timeout"
    assert event["exit_code"] == -signal.SIGTERM


# -- Ctrl-C ------------------------------------------------------------------------------------
DRIVER = """
import sys
from pathlib import Path
from cutover.engine.audit import AuditLog
from cutover.errors import Interrupted
from cutover.runner import Runner
from cutover.secrets import SecretMasker

folder, argv = Path(sys.argv[1]), sys.argv[2:]
runner = Runner(SecretMasker(), AuditLog(folder, SecretMasker()), term_grace=0.5)
try:
    runner.run(argv, timeout=60)
except Interrupted as exc:
    print(exc.brief, flush=True)
    raise SystemExit(exc.exit_code)
print("finished without an interrupt", flush=True)
"""


@pytest.mark.parametrize(
    "ignored",
    [(), ("SIGINT",), ("SIGINT", "SIGTERM")],
    ids=["dies-on-sigint", "ignores-sigint", "ignores-sigint-and-sigterm"],
)
def test_ctrl_c_stops_the_child_in_stages_and_exits_130(
    tmp_path: Path, ignored: tuple[str, ...]
) -> None:
    pid_file = tmp_path / "pids"
    audit_dir = tmp_path / "audit"
    driver = subprocess.Popen(
        [PY, "-c", DRIVER, str(audit_dir), *sleeper(pid_file, ignore=ignored)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        child, grandchild = pids(pid_file)
        driver.send_signal(signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=15)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()

    assert driver.returncode == 130, (stdout, stderr)
    assert "interrupted while running" in stdout
    assert "Traceback" not in stderr
    assert wait_gone(child) and wait_gone(grandchild)
    commands = [e for e in read_events(audit_dir / "events.jsonl") if e["kind"] == "command"]
    assert [e["outcome"] for e in commands] == ["interrupted"]


# -- retries -----------------------------------------------------------------------------------
HEROKU_500 = (
    " \u203a   Error: Internal server error.\n \u203a\n \u203a   Error ID: internal_server_error\n"
)
HEROKU_404 = " \u203a   Error: Couldn't find that app.\n \u203a\n \u203a   Error ID: not_found\n"


def result(stderr: str, code: int = 2) -> Result:
    return Result(["x"], code, "", stderr, 0.1)


@pytest.mark.parametrize(
    ("stderr", "transient"),
    [
        (HEROKU_500, True),
        (HEROKU_500.replace("internal_server_error", "service_unavailable"), True),
        (HEROKU_500.replace("internal_server_error", "rate_limit"), True),
        (HEROKU_404, False),
        ("    Error: The token provided to HEROKU_API_KEY is invalid.\n", False),
    ],
)
def test_heroku_classifies_only_api_server_errors_as_transient(
    stderr: str, transient: bool
) -> None:
    assert heroku_adapter._transient(result(stderr)) is transient


@pytest.mark.parametrize(
    ("stderr", "transient"),
    [
        ("ERROR: dial tcp 10.0.0.1:443: connect: connection refused\n", True),
        ("ERROR: read: connection reset by peer\n", True),
        ("ERROR: response status 503\n", True),
        ("ERROR: unexpected EOF\n", True),
        ("ERROR: err1\n", False),
        ("ERROR: app not found: shop\n", False),
        ("ERROR: rollback\n", False),
    ],
)
def test_convox_classifies_network_errors_as_transient_but_not_rollbacks(
    stderr: str, transient: bool
) -> None:
    assert convox_adapter._transient(result(stderr, 1)) is transient


def flaky(counter: Path, failures: int, stderr: str, code: int) -> list[str]:
    """A child that fails ``failures`` times (counted in a file) with stderr/code, then works."""
    code_text = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        counter = Path({str(counter)!r})
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n < {failures}:
            sys.stderr.write({stderr!r})
            raise SystemExit({code})
        print("ok")
    """)
    return [PY, "-c", code_text]


HEROKU_RETRY = RetryPolicy(heroku_adapter._transient, attempts=3, wait_min=0, wait_max=0)


def test_a_transient_failure_is_retried_and_logged(tmp_path: Path) -> None:
    events = Events()
    counter = tmp_path / "n"
    runner = Runner(SecretMasker(), events, _sleep=lambda s: None)

    out = runner.run(flaky(counter, 1, HEROKU_500, 2), retry=HEROKU_RETRY)

    assert out.stdout.strip() == "ok"
    assert counter.read_text() == "2"
    (retry,) = events.of("retry")
    assert retry["attempt"] == 1
    assert [e["outcome"] for e in events.of("command")] == ["failed", "ok"]


def test_a_permanent_failure_is_not_retried(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    runner = Runner(SecretMasker(), Events(), _sleep=lambda s: None)

    with pytest.raises(CommandError) as caught:
        runner.run(flaky(counter, 5, HEROKU_404, 2), retry=HEROKU_RETRY)

    assert counter.read_text() == "1"
    assert not caught.value.transient
    assert caught.value.returncode == 2
    assert "Error ID: not_found" in caught.value.stderr_tail


def test_retries_stop_after_the_last_attempt(tmp_path: Path) -> None:
    events = Events()
    counter = tmp_path / "n"
    runner = Runner(SecretMasker(), events, _sleep=lambda s: None)

    with pytest.raises(CommandError) as caught:
        runner.run(flaky(counter, 9, HEROKU_500, 2), retry=HEROKU_RETRY)

    assert counter.read_text() == "3"
    assert caught.value.transient
    assert len(events.of("retry")) == 2


# -- secrets -----------------------------------------------------------------------------------
def test_secrets_are_masked_in_argv_stderr_errors_and_audit(tmp_path: Path) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    url = f"postgres://app:{secret}@db.internal:5432/app"
    masker = SecretMasker()
    masker.add(url)
    audit = AuditLog(tmp_path / "state", masker, "run1")
    runner = Runner(masker, audit)
    code = (
        f"import sys; sys.stderr.write('connecting to {url} failed, password {secret}\\n'); "
        "raise SystemExit(3)"
    )

    with pytest.raises(CommandError) as caught:
        runner.run([PY, "-c", code, "--password", secret])

    exc = caught.value
    shown = " ".join(exc.argv_masked) + str(exc) + exc.stderr_tail
    assert secret not in shown
    assert "****" in " ".join(exc.argv_masked)
    assert exc.stderr_tail == "connecting to **** failed, password ****"
    log = (tmp_path / "state" / "events.jsonl").read_text()
    assert secret not in log
    (event,) = [
        e for e in read_events(tmp_path / "state" / "events.jsonl") if e["kind"] == "command"
    ]
    assert event["outcome"] == "failed" and event["exit_code"] == 3
    assert "****" in event["stderr_tail"]


def test_a_failed_command_is_shown_as_a_runnable_shell_command() -> None:
    """The command in the error must keep argument boundaries, so it can be copied and run."""
    argv = ["convox", "deploy", "/srv/my app", "-d", "cutover 1a2b3c deploy", "-a", "shop"]
    exc = CommandError(argv, 1, "ERROR: err1")
    assert shlex.split(exc.brief.split(": ", 1)[1]) == argv, exc.brief


def test_an_unregistered_url_password_is_masked_too() -> None:
    masker = SecretMasker()
    assert masker.mask("redis://h:pw-123456@host:6379") == "redis://h:****@host:6379"
    assert masker.mask_argv(["psql", "postgresql://u:p%40ss@h/d"]) == [
        "psql",
        "postgresql://u:****@h/d",
    ]


# -- background children -----------------------------------------------------------------------
BANNER = """
import os, select, signal, sys, time
for name in sys.argv[1:]:
    signal.signal(getattr(signal, name), signal.SIG_IGN)
ready, _, _ = select.select([0], [], [], 0.5)
state = ("eof" if not os.read(0, 1) else "data") if ready else "open"
print(f"listening pid={os.getpid()} stdin={state}", flush=True)
sys.stderr.write("warming up\\n"); sys.stderr.flush()
time.sleep(60)
"""


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


@pytest.mark.parametrize("ignored", [(), ("SIGTERM",)], ids=["plain", "ignores-sigterm"])
def test_background_start_collects_output_and_stop_ends_the_child(ignored: tuple[str, ...]) -> None:
    events = Events()
    runner = Runner(SecretMasker(), events, term_grace=0.5)

    with runner.start([PY, "-c", BANNER, *ignored]) as bg:
        wait_until(lambda: "listening" in bg.stdout and "warming up" in bg.stderr)
        assert bg.alive()
        pid = int(bg.stdout.split("pid=")[1].split()[0])

    assert not bg.alive()
    assert wait_gone(pid)
    assert [e["kind"] for e in events.items] == ["command-start", "command-stop"]
    assert events.items[0]["pid"] == pid
    assert "warming up" in events.items[1]["stderr_tail"]
    bg.stop()  # stopping twice is harmless
    assert [e["kind"] for e in events.items][-1] == "command-stop"


def test_background_child_gets_a_closed_stdin() -> None:
    """``Runner.start`` must close the child's stdin like ``Runner.run`` does: a child that
    reads stdin (``convox env set`` would) blocks forever on an open pipe."""
    runner = Runner(SecretMasker())
    with runner.start([PY, "-c", BANNER]) as bg:
        wait_until(lambda: "listening" in bg.stdout)
    assert "stdin=eof" in bg.stdout, bg.stdout


def test_run_gives_the_child_a_closed_stdin_unless_there_is_input() -> None:
    runner = Runner(SecretMasker())
    code = (
        "import os, select; r, _, _ = select.select([0], [], [], 0.5); "
        "print(('eof' if not os.read(0, 64) else 'data') if r else 'open')"
    )
    assert runner.run([PY, "-c", code]).stdout.strip() == "eof"
    echo = "import sys; print(sys.stdin.read().upper())"
    assert runner.run([PY, "-c", echo], input="a=1\n").stdout.strip() == "A=1"


def test_runner_environment_layers_parent_base_and_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYER", "parent")
    runner = Runner(
        SecretMasker(), base_env={"LAYER": "base", "BASE_ONLY": "1"}, path_prefix=["/opt/fake-bin"]
    )
    code = (
        "import json, os; "
        "print(json.dumps({k: os.environ.get(k) for k in ('LAYER', 'BASE_ONLY', 'PATH')}))"
    )
    env = json.loads(runner.run([PY, "-c", code], env={"LAYER": "call"}).stdout)
    assert env["LAYER"] == "call"
    assert env["BASE_ONLY"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == "/opt/fake-bin"


def test_an_env_value_of_none_removes_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heroku adapter removes FORCE_COLOR: an empty value would still force colour
    (node_modules/supports-color/index.js: FORCE_COLOR of length 0 is level 1)."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    runner = Runner(SecretMasker(), base_env={"KEEP": "1"})
    result = runner.run(
        [sys.executable, "-c", "import os; print('FORCE_COLOR' in os.environ, os.environ['KEEP'])"],
        env={"FORCE_COLOR": None},
        timeout=30,
    )
    assert result.stdout.split() == ["False", "1"]


def test_the_wait_looks_at_a_child_after_a_tenth_of_its_run_time_within_bounds() -> None:
    """runner.poll_interval: a 40 ms psql is seen ending within a few ms (sh's own timed wait
    sleeps 0.1 s between looks), and a long child is looked at 5 times a second at most."""
    assert poll_interval(0.0) == FIRST_POLL == 0.002
    assert poll_interval(0.04) == pytest.approx(0.004)
    assert poll_interval(1.0) == pytest.approx(0.1)
    assert poll_interval(3600.0) == WAIT_POLL == 0.2
    assert all(
        FIRST_POLL <= poll_interval(t / 100) <= max(FIRST_POLL, t / 1000) + 1e-12
        for t in range(1000)
    )


def test_the_wait_wakes_when_the_child_ends_not_at_its_next_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sh's ``_done`` callback (its output thread sees the child end) wakes the wait: with the
    looks 30 s apart, a child of 0.3 s is still back at once."""
    monkeypatch.setattr(runner_module, "poll_interval", lambda _elapsed: 30.0)
    runner = Runner(SecretMasker())
    began = time.monotonic()
    result = runner.run([PY, "-c", "import time; time.sleep(0.3); print('done')"])
    assert result.stdout == "done\n"
    assert time.monotonic() - began < 15  # not the 30 s look


def test_a_child_killed_by_a_signal_reports_its_negative_code() -> None:
    """The wait sees a signal's end (is_alive, not sh's wait, which raised for it)."""
    runner = Runner(SecretMasker())
    result = runner.run(["sh", "-c", "kill -KILL $$"], check=False)
    assert result.returncode == -signal.SIGKILL
