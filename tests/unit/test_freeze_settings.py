"""While freeze-writes holds Heroku's database read-only, its default_transaction_read_only is
cutover's, not the app's: a sync must not carry it to Convox (found in the sandbox: the Convox
database refused every write after the switch) and verify-data must compare the app's value."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cutover.adapters.pgfreeze import reads_on
from cutover.adapters.pgstaging import Setting
from cutover.state import PlaybookRef, RunState, Status
from cutover.steps.data import app_settings
from cutover.steps.freeze import FROZEN_SETTING, settings_before_freeze

HEROKU = [
    Setting("database", "search_path", '"$user", public, heroku_ext'),
    Setting("database", FROZEN_SETTING, "on"),  # the freeze's
    Setting("role", FROZEN_SETTING, "off"),  # a role's own: not the freeze's, kept
]


def state(status: Status | None, **outputs: Any) -> RunState:
    run = RunState(playbook=PlaybookRef(path="/x/cutover.yml", fingerprint="abc", fields={}))
    if status is not None:
        st = run.step("freeze-writes")
        st.status = status
        st.outputs = dict(outputs)
    return run


def test_before_the_freeze_nothing_is_cutovers() -> None:
    assert settings_before_freeze(state(None)) == {}
    assert settings_before_freeze(state(Status.PENDING)) == {}
    assert settings_before_freeze(state(Status.SKIPPED)) == {}
    # Interrupted before it recorded the previous value: it changed nothing yet.
    assert settings_before_freeze(state(Status.INTERRUPTED)) == {}


def test_done_or_recorded_gives_the_apps_previous_value() -> None:
    assert settings_before_freeze(state(Status.DONE, database="d", probe_sqlstate="25006")) == {
        FROZEN_SETTING: None
    }
    assert settings_before_freeze(state(Status.DONE, previous="off")) == {FROZEN_SETTING: "off"}
    assert settings_before_freeze(state(Status.FAILED, recorded=True, previous=None)) == {
        FROZEN_SETTING: None
    }


def test_the_sync_leaves_the_freeze_out_and_keeps_everything_else() -> None:
    ctx: Any = SimpleNamespace(state=state(Status.DONE, previous=None))
    assert app_settings(ctx, HEROKU) == [HEROKU[0], HEROKU[2]]
    ctx = SimpleNamespace(state=state(Status.DONE, previous="off"))
    assert app_settings(ctx, HEROKU) == [
        HEROKU[0],
        Setting("database", FROZEN_SETTING, "off"),
        HEROKU[2],
    ]
    notes: list[str] = []
    ctx = SimpleNamespace(state=state(None), note=notes.append)
    # No freeze in this state: an earlier run's (state moved aside) looks the same; left out.
    assert app_settings(ctx, HEROKU) == [HEROKU[0], HEROKU[2]]
    assert len(notes) == 1 and "not carried, so the Convox database accepts writes" in notes[0]
    off = [Setting("database", FROZEN_SETTING, "off"), Setting("database", FROZEN_SETTING, "n")]
    assert app_settings(ctx, off) == off and len(notes) == 1


def test_a_freeze_found_already_in_place_is_not_carried_either() -> None:
    """A full run after a finished one whose state was moved aside: freeze-writes records the
    earlier freeze's 'on' as the "previous" value; the sync must still leave it out."""
    notes: list[str] = []
    ctx: Any = SimpleNamespace(state=state(Status.DONE, previous="on"), note=notes.append)
    assert app_settings(ctx, HEROKU) == [HEROKU[0], HEROKU[2]]
    assert len(notes) == 1 and "not set by this run's freeze-writes" in notes[0]


def test_on_is_read_as_postgresql_reads_a_boolean() -> None:
    for value in ("on", "ON", "true", "t", "tRu", "yes", "y", "1", "'on'"):
        assert reads_on(value), value
    for value in ("off", "of", "false", "f", "no", "n", "0", "", "o"):
        assert not reads_on(value), value
    assert not reads_on(None)
