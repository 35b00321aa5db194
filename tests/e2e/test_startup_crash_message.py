"""The generic crash message (cli._guard) names the state file only for the commands that have
one: run, plan, status, log, unlock; not translate, init, sandbox (issue 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import typer

from cutover import cli
from cutover.ui import Ui

STATE_HINT = "The state file is written atomically"


def _crash(ui: Ui) -> int:
    raise RuntimeError("boom")


@pytest.mark.parametrize("has_state", [True, False])
def test_crash_message_names_the_state_file_only_with_one(
    has_state: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(typer.Exit) as exited:
        cli._guard(_crash, has_state=has_state)
    assert exited.value.exit_code == 1
    err = capsys.readouterr().err
    assert "unexpected error: RuntimeError: boom" in err
    reports = list(tmp_path.glob("cutover-crash-*.txt"))
    assert len(reports) == 1
    assert str(reports[0]) in err
    assert "RuntimeError: boom" in reports[0].read_text(encoding="utf-8")
    assert (STATE_HINT in err) is has_state
    assert ("cutover status" in err) is has_state
    if not has_state:
        assert "Please report it with that file." in err


# A bug planted where each command does its work, in a child process (the command groups are
# registered per command line, so the real `main()` runs).
PLANT = """
import sys
def boom(*args, **kwargs):
    raise RuntimeError("planted")
import cutover.engine.plan_command, cutover.engine.run, cutover.playbook, cutover.translate.cli
cutover.engine.plan_command.plan = cutover.engine.run.run = boom
cutover.playbook.load_playbook = boom
cutover.translate.cli.run_translate = boom
sys.argv = ["cutover", *sys.argv[1:]]
from cutover.cli import main
main()
"""


@pytest.mark.parametrize(
    ("argv", "has_state"),
    [
        (["plan"], True),
        (["run", "--yes"], True),
        (["status"], True),
        (["log"], True),
        (["unlock"], True),
        (["translate", "."], False),
    ],
)
def test_each_command_crash_names_the_state_file_only_with_one(
    argv: list[str], has_state: bool, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PLANT, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "unexpected error: RuntimeError: planted" in proc.stderr
    assert (STATE_HINT in proc.stderr) is has_state
    assert (argv[0] in cli.STATE_COMMANDS) is has_state
    assert "Traceback" not in proc.stderr


def test_a_sandbox_command_crash_does_not_mention_a_state_file(tmp_path: Path) -> None:
    """A real crash in `cutover sandbox status`: a sandbox.json whose pid is not a number."""
    box = tmp_path / "box"
    box.mkdir()
    (box / "sandbox.json").write_text(json.dumps({"pids": {"dns": "not-a-pid"}}), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "cutover", "sandbox", "status", "--dir", str(box)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "unexpected error: ValueError" in proc.stderr
    assert "this is a bug in cutover" in proc.stderr
    assert STATE_HINT not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.glob("cutover-crash-*.txt"))
