"""The bench's cutover child (cutover/bench/child.py): whatever goes wrong comes back as a
result document with the reason (the harness prints ``bench: NAME failed: <reason>``), never
as a traceback, and the process's own peak RSS is in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLAYBOOK = """\
version: 1
sandbox: ./no-sandbox-here
heroku:
  app: myapp-sandbox
convox:
  app: myapp
  rack: sandbox
database:
  resource: database
  method: direct
"""


def _child(tmp_path: Path, playbook: Path) -> tuple[int, dict[str, object]]:
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cutover.bench.child", "--playbook", str(playbook),
         "--step", "final-sync", "--result", str(result)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(result.read_text(encoding="utf-8"))


def test_a_step_that_cannot_start_is_a_failed_result_naming_why(tmp_path: Path) -> None:
    playbook = tmp_path / "cutover.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    code, result = _child(tmp_path, playbook)
    assert code == 1
    assert result["ok"] is False
    assert "no sandbox there" in str(result["error"])
    assert isinstance(result["rss_mb"], float)
    assert result["rss_mb"] > 0


def test_a_missing_playbook_is_a_failed_result(tmp_path: Path) -> None:
    code, result = _child(tmp_path, tmp_path / "absent.yml")
    assert code == 1
    assert str(result["error"]).startswith("before the step: ")
    assert "absent.yml" in str(result["error"])
