"""Context.progress (cutover/steps/base.py) and its drawing (cutover/ui.py): the numbers reach
the state while a step runs, so ``cutover status --json`` shows them; a plain line at most
every 5 s when not on a terminal, a rich line on one."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fakes.harness import Project
from rich.console import Console

from cutover.engine.lock import RunLock
from cutover.engine.plan import new_state
from cutover.playbook import load_playbook
from cutover.runner import Runner
from cutover.secrets import SecretMasker
from cutover.state import StateStore, Status
from cutover.steps.base import Context
from cutover.ui import Ui


def _context(project: Project, reporter: Any) -> tuple[Context, StateStore]:
    """A context whose checkpoint saves into the running step's entry, as engine/run.py does
    (a fake step: verify-data recorded as running, nothing else runs)."""
    playbook = load_playbook(project.playbook)
    store = StateStore(playbook.state_dir, SecretMasker())
    state = new_state(playbook)
    st = state.step("verify-data")
    st.status = Status.RUNNING

    def checkpoint(outputs: dict[str, Any]) -> None:
        st.outputs.update(outputs)
        store.save(state)

    runner = Runner(SecretMasker())
    runner.step = "verify-data"
    none: Any = None
    ctx = Context(
        playbook=playbook,
        state=state,
        runner=runner,
        masker=runner.masker,
        heroku=none,
        convox=none,
        postgres=none,
        http=none,
        dns=None,
        reporter=reporter,
        work_dir=playbook.state_dir / "work",
        checkpoint=checkpoint,
    )
    return ctx, store


class Recorder:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def note(self, message: str) -> None:
        pass

    def progress(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def test_status_json_shows_the_running_steps_progress(project: Project) -> None:
    recorder = Recorder()
    ctx, _store = _context(project, recorder)
    ctx.progress(0, 10, bytes_done=0, bytes_total=1000)
    ctx.progress(3, 10, bytes_done=300, bytes_total=1000)  # within a second: drawn, not saved
    ctx.progress(10, 10, bytes_done=1000, bytes_total=1000)  # the end: always saved

    result = project.run("status", "--json")

    assert result.returncode == 0, result
    step = next(s for s in json.loads(result.stdout)["steps"] if s["id"] == "verify-data")
    assert step["status"] == "running"
    progress = step["outputs"]["progress"]
    assert {k: progress[k] for k in ("done", "total", "unit", "bytes_done", "bytes_total")} == {
        "done": 10,
        "total": 10,
        "unit": "tables",
        "bytes_done": 1000,
        "bytes_total": 1000,
    }
    assert progress["elapsed"] >= 0 and progress["rate"] > 0 and progress["bytes_rate"] > 0
    assert progress["eta"] == 0 and progress["updated_at"]
    assert [r["done"] for r in recorder.records] == [0, 3, 10]
    assert recorder.records[0]["eta"] is None  # nothing done yet: no rate to go by
    assert recorder.records[1]["eta"] is not None


def test_progress_is_saved_while_the_step_runs(project: Project) -> None:
    """A save at most every second (PROGRESS_SAVE_EVERY): the first call saves at once."""
    ctx, store = _context(project, Recorder())
    with RunLock(project.state_dir, "test"):
        ctx.progress(2, 9, unit="tables")
    saved = store.load()
    assert saved is not None
    assert saved.steps["verify-data"].outputs["progress"]["done"] == 2
    assert saved.steps["verify-data"].outputs["progress"]["bytes_total"] is None


def _record(done: int, total: int = 10) -> dict[str, Any]:
    return {
        "done": done,
        "total": total,
        "unit": "tables",
        "bytes_done": done * 1_000_000,
        "bytes_total": total * 1_000_000,
        "elapsed": float(done),
        "rate": 1.0,
        "bytes_rate": 1_000_000,
        "eta": float(total - done),
    }


def test_plain_progress_line_at_most_every_five_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 100.0, 101.0, 104.9, 105.0, 106.0, 107.0])  # Ui() reads it first
    monkeypatch.setattr("cutover.ui.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    ui = Ui(Console(file=out, force_terminal=False, width=200), SecretMasker())
    for done in (1, 2, 3, 4, 5, 10):
        ui.progress(_record(done))
    lines = out.getvalue().splitlines()
    assert lines == [
        "        1/10 tables, 1.0 MB of 10.0 MB, 1.0 MB/s, elapsed 1.0s, ETA 9.0s",
        "        4/10 tables, 4.0 MB of 10.0 MB, 1.0 MB/s, elapsed 4.0s, ETA 6.0s",
        "        10/10 tables, 10.0 MB of 10.0 MB, 1.0 MB/s, elapsed 10.0s",
    ]


def test_terminal_progress_is_a_rich_line() -> None:
    out = io.StringIO()
    ui = Ui(Console(file=out, force_terminal=True, width=200), SecretMasker())
    ui.progress(_record(3))
    ui.progress(_record(10))
    text = out.getvalue()
    assert "10/10 tables, 10.0 MB of 10.0 MB" in text
    assert "\x1b[" in text  # drawn by rich's live display, not printed line by line
