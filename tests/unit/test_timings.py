"""engine/timings.py as data: a playbook, this run's state and a rehearsal's state.json in, the
predicted step and window durations out (sources in order, data steps scaled by database size,
unknowns left out and named); confirm-window's checklist and recorded prediction."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cutover.engine.plan import new_state
from cutover.engine.plan_command import plan
from cutover.engine.run import RunOptions
from cutover.engine.timings import DATA_STEPS, downtime_text, estimate, window_steps
from cutover.errors import InvalidInput
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.secrets import SecretMasker
from cutover.state import RunState, StateStore, Status
from cutover.steps import STEP_IDS, STEPS, Context
from cutover.steps.confirm import ConfirmWindow, ConfirmWindowOutputs
from cutover.ui import Ui

BASE: dict[str, Any] = {
    "version": 1,
    "heroku": {"app": "acme-shop"},
    "convox": {"app": "shop", "rack": "acme/production"},
    "dns": {"provider": "manual", "zone": "example.test", "record": "www.example.test"},
}
WINDOW = STEP_IDS[STEP_IDS.index("maintenance-on") : STEP_IDS.index("verify-site") + 1]


def playbook(folder: Path, **sections: Any) -> LoadedPlaybook:
    raw = {**BASE, **sections}
    return LoadedPlaybook(folder / "cutover.yml", Playbook.model_validate(raw), raw)


def check_data(size: int) -> dict[str, Any]:
    return {
        "heroku_pg_major": 15,
        "convox_pg_major": 15,
        "heroku_bytes": size,
        "extensions": [],
        "skipped_extensions": [],
        "findings": [],
    }


def done(
    state: RunState, durations: dict[str, float], *, found: bool = False, size: int | None = None
) -> RunState:
    for sid, seconds in durations.items():
        st = state.step(sid)
        st.status, st.duration, st.found_applied = Status.DONE, seconds, found
    if size is not None:
        st = state.step("check-data")
        st.status, st.duration = Status.DONE, st.duration or 1.0
        st.outputs = check_data(size)
    return state


def write_rehearsal(folder: Path, pb: LoadedPlaybook, state: RunState) -> Path:
    store_dir = folder / "rehearsal" / ".cutover"
    StateStore(store_dir).save(state)
    return store_dir


REHEARSED = {
    "maintenance-on": 2.0,
    "scale-down": 4.0,
    "inspect-redis": 1.0,
    "freeze-writes": 5.0,
    "final-sync": 10.0,
    "final-sync-mysql": 0.5,  # an app without a MySQL add-on: done at once (steps/mysql.py)
    "sync-redis": 2.0,
    "verify-data": 6.0,
    "verify-mysql": 0.5,
    "switch-dns": 1.0,
    "verify-dns": 3.0,
    "verify-site": 2.0,
}


def rehearsed(tmp_path: Path, size: int = 1_000_000, **window: Any) -> LoadedPlaybook:
    base = playbook(tmp_path)
    write_rehearsal(tmp_path, base, done(new_state(base), REHEARSED, size=size))
    return playbook(tmp_path, window={"rehearsal": "rehearsal/.cutover", **window})


def test_the_window_is_maintenance_on_to_verify_site_in_step_order() -> None:
    assert [s.id for s in window_steps(STEPS)] == WINDOW


def test_a_rehearsal_predicts_each_step_and_scales_the_data_steps_by_database_size(
    tmp_path: Path,
) -> None:
    pb = rehearsed(tmp_path, size=1_000_000)
    state = done(new_state(pb), {}, size=3_000_000)  # this database is three times larger

    got = estimate(pb, state, STEPS)

    assert got.window == WINDOW
    seconds = {s.step_id: s.seconds for s in got.steps}
    assert seconds["maintenance-on"] == 2.0 and seconds["scale-down"] == 4.0
    assert seconds["final-sync"] == 30.0 and seconds["verify-data"] == 18.0
    assert "x3.00 (database size)" in got.of("final-sync").source  # type: ignore[union-attr]
    assert got.window_seconds == 2 + 4 + 1 + 5 + 30 + 0.5 + 2 + 18 + 0.5 + 1 + 3 + 2
    assert got.unknown == []
    line = got.total_lines()[0]
    assert re.fullmatch(r"window estimate: 69\.0 s \(maintenance-on to verify-site\)", line)


def test_this_runs_measurements_come_before_the_rehearsal(tmp_path: Path) -> None:
    pb = rehearsed(tmp_path)
    state = done(new_state(pb), {"maintenance-on": 0.5, "final-sync": 7.0}, size=2_000_000)

    got = estimate(pb, state, STEPS)

    assert got.of("maintenance-on").seconds == 0.5  # type: ignore[union-attr]
    assert got.of("final-sync").seconds == 7.0  # type: ignore[union-attr]
    assert got.of("final-sync").source == "measured in this run"  # type: ignore[union-attr]
    assert got.of("verify-data").seconds == 12.0  # type: ignore[union-attr]  # rehearsal x2


def test_without_a_rehearsal_final_sync_comes_from_initial_sync_and_the_rest_is_unknown(
    tmp_path: Path,
) -> None:
    pb = playbook(tmp_path)
    state = done(new_state(pb), {"initial-sync": 8.0}, size=1_000_000)

    got = estimate(pb, state, STEPS)

    assert got.of("final-sync").seconds == 8.0  # type: ignore[union-attr]
    assert "initial-sync" in got.of("final-sync").source  # type: ignore[union-attr]
    assert got.unknown == [s for s in WINDOW if s != "final-sync"]
    assert got.window_seconds == 8.0
    lines = got.total_lines()
    assert lines[0].startswith("window estimate: 8.0 s")
    assert "not in the total (no measurement): maintenance-on, scale-down" in lines[1]
    assert "window.rehearsal" in lines[1]


def test_changed_tables_final_sync_from_initial_sync_is_called_an_upper_bound(
    tmp_path: Path,
) -> None:
    pb = playbook(tmp_path, database={"final_sync": "changed-tables"})
    state = done(new_state(pb), {"initial-sync": 8.0}, size=1_000_000)
    source = estimate(pb, state, STEPS).of("final-sync").source  # type: ignore[union-attr]
    assert "upper bound" in source


def test_nothing_measured_says_unknown_not_zero(tmp_path: Path) -> None:
    pb = playbook(tmp_path)
    got = estimate(pb, new_state(pb), STEPS)
    assert got.window_seconds is None
    assert got.total_lines()[0].startswith("window estimate: unknown")
    assert all(s.seconds is None for s in got.steps)
    assert got.of("scale-down").text().startswith("unknown (")  # type: ignore[union-attr]


def test_a_step_the_rehearsal_found_applied_is_no_measurement(tmp_path: Path) -> None:
    base = playbook(tmp_path)
    state = done(new_state(base), REHEARSED, size=1_000_000)
    state.steps["scale-down"].found_applied = True  # its duration is only the check's
    write_rehearsal(tmp_path, base, state)
    pb = playbook(tmp_path, window={"rehearsal": "rehearsal/.cutover"})

    got = estimate(pb, done(new_state(pb), {}, size=1_000_000), STEPS)

    assert got.of("scale-down").seconds is None  # type: ignore[union-attr]
    assert got.unknown == ["scale-down"]
    assert got.window_seconds == sum(REHEARSED.values()) - REHEARSED["scale-down"]


def test_a_step_that_found_nothing_for_the_app_is_measured_by_its_check(tmp_path: Path) -> None:
    """final-sync-mysql of an app without a MySQL add-on: its check says ``skipped`` and that
    check is all the next window pays (steps/mysql.py), unlike a step found applied."""
    base = playbook(tmp_path)
    state = done(new_state(base), REHEARSED, size=1_000_000)
    mysql = state.steps["final-sync-mysql"]
    mysql.found_applied = True
    mysql.outputs = {"skipped": "no MySQL add-on on the Heroku app"}
    write_rehearsal(tmp_path, base, state)
    pb = playbook(tmp_path, window={"rehearsal": "rehearsal/.cutover"})

    got = estimate(pb, done(new_state(pb), {}, size=1_000_000), STEPS)

    assert got.of("final-sync-mysql").seconds == REHEARSED["final-sync-mysql"]  # type: ignore[union-attr]
    assert got.unknown == []


def test_data_steps_are_not_scaled_when_a_size_is_unknown(tmp_path: Path) -> None:
    pb = rehearsed(tmp_path, size=1_000_000)
    got = estimate(pb, new_state(pb), STEPS)  # this run has no check-data yet
    for sid in DATA_STEPS:
        if sid in WINDOW:
            found = got.of(sid)
            assert found is not None and found.seconds == REHEARSED[sid]
            assert "not scaled" in found.source


def test_steps_the_playbook_skips_are_not_in_the_window(tmp_path: Path) -> None:
    base = playbook(tmp_path)
    write_rehearsal(tmp_path, base, done(new_state(base), REHEARSED, size=1))
    raw = {k: v for k, v in BASE.items() if k != "dns"}
    pb = LoadedPlaybook(
        tmp_path / "cutover.yml",
        Playbook.model_validate({**raw, "window": {"rehearsal": "rehearsal/.cutover"}}),
        raw,
    )
    got = estimate(pb, done(new_state(pb), {}, size=1), STEPS)
    assert got.window == [
        "maintenance-on",
        "scale-down",
        "inspect-redis",
        "freeze-writes",
        "final-sync",
        "final-sync-mysql",
        "sync-redis",
        "verify-data",
        "verify-mysql",
    ]
    assert got.window_seconds == 2 + 4 + 1 + 5 + 10 + 0.5 + 2 + 6 + 0.5


def test_a_missing_rehearsal_is_refused_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "there" / ".cutover").mkdir(parents=True)
    (tmp_path / "there" / ".cutover" / "state.json").write_text("{}")
    pb = playbook(tmp_path, window={"rehearsal": "there"})
    with pytest.raises(InvalidInput) as caught:
        estimate(pb, new_state(pb), STEPS)
    assert "window.rehearsal (there)" in caught.value.brief
    assert "no state.json" in caught.value.brief
    assert "did you mean" in caught.value.brief  # the .cutover folder inside it


def test_an_unreadable_rehearsal_is_refused_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "state.json").write_text('{"schema_version": 2, "steps": ')
    pb = playbook(tmp_path, window={"rehearsal": "bad"})
    with pytest.raises(InvalidInput) as caught:
        estimate(pb, new_state(pb), STEPS)
    assert "window.rehearsal (bad): cannot read the rehearsal" in caught.value.brief
    assert "corrupt" in caught.value.brief


def test_downtime_is_shown_next_to_the_prediction(tmp_path: Path) -> None:
    pb = playbook(tmp_path)
    state = new_state(pb)
    assert downtime_text(state) is None
    confirm = state.step("confirm-window")
    confirm.status = Status.DONE
    confirm.outputs = {"window_started_at": 1.0, "predicted_downtime_seconds": 40.0}
    assert downtime_text(state) == (
        "predicted downtime 40.0s (maintenance-on to verify-site), at confirm-window"
    )
    site = state.step("verify-site")
    site.status = Status.DONE
    site.outputs = {"checks": [], "downtime_seconds": 44.0}
    assert downtime_text(state) == (
        "downtime 44.0s measured (maintenance-on to verify-site); "
        "predicted 40.0s at confirm-window (+10%)"
    )


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def test_confirm_window_prints_the_checklist_and_records_the_prediction(tmp_path: Path) -> None:
    pb = rehearsed(tmp_path, size=1_000_000)
    state = done(new_state(pb), {"initial-sync": 9.0}, size=2_000_000)
    notes = Notes()
    ctx = Context.__new__(Context)
    ctx.playbook, ctx.state, ctx.reporter, ctx.masker = pb, state, notes, SecretMasker()
    ctx.clock = lambda: 1000.0

    outputs = ConfirmWindow().apply(ctx)

    assert isinstance(outputs, ConfirmWindowOutputs)
    assert outputs.predicted_downtime_seconds == 2 + 4 + 1 + 5 + 20 + 0.5 + 2 + 12 + 0.5 + 1 + 3 + 2
    assert outputs.unpredicted_steps == []
    text = "\n".join(notes.lines)
    after = STEP_IDS[STEP_IDS.index("confirm-window") + 1 : STEP_IDS.index("verify-site") + 1]
    listed = re.findall(r"^\s+\d+\. ([a-z-]+): ", text, re.M)
    assert listed == after  # what stops, in the order it stops
    assert "maintenance-on: Put Heroku in maintenance mode  [gate]  ~2.0s (rehearsal)" in text
    assert "final-sync: Final data sync (Heroku in maintenance)  [gate]  ~20.0s" in text
    assert text.index("the window starts") < text.index("maintenance-on: ")
    assert "window estimate: 53.0 s" in text
    assert "predicted downtime: 53.0s" in text


def test_plan_refuses_a_missing_rehearsal_before_printing_anything(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "playbooks" / "example.yml").read_text()
    assert "\nwindow:\n" in text
    book = tmp_path / "cutover.yml"
    book.write_text(text.replace("\nwindow:\n", "\nwindow:\n  rehearsal: ../gone\n"))
    out = io.StringIO()
    with pytest.raises(InvalidInput) as caught:
        plan(book, RunOptions(), Ui(Console(file=out), SecretMasker(), Console(file=out)))
    assert "window.rehearsal (../gone): no state.json in" in caught.value.brief
    assert out.getvalue() == ""


def test_an_attempt_cleared_by_a_rollback_predicts_the_next_before_a_rehearsal(
    tmp_path: Path,
) -> None:
    """After `cutover rollback` the window's steps are cleared, but their last measured durations
    stay in the state (RunState.timings): the same database and hardware beat a rehearsal."""
    rehearsal = done(new_state(playbook(tmp_path)), {sid: 100.0 for sid in REHEARSED})
    folder = write_rehearsal(tmp_path, playbook(tmp_path), rehearsal)
    pb = playbook(tmp_path, window={"rehearsal": str(folder)})
    state = new_state(pb)
    state.timings = dict(REHEARSED)  # the rolled-back window's steps are pending again
    est = estimate(pb, state, STEPS)
    for sid, seconds in REHEARSED.items():
        got = est.of(sid)
        assert got is not None and (got.seconds, got.source) == (
            seconds,
            "an earlier attempt of this run",
        )
    # A step never measured here still comes from the rehearsal.
    state.timings.pop("freeze-writes")
    rehearsed = estimate(pb, state, STEPS).of("freeze-writes")
    assert rehearsed is not None and (rehearsed.seconds, rehearsed.source) == (100.0, "rehearsal")
