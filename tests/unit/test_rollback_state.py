"""The state's rollback section (schema 3): a schema-2 file (before rollback existed) loads with
no rollback, and a rollback section round-trips through the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutover.errors import StateError
from cutover.state import SCHEMA_VERSION, RollbackState, StateStore, Status


def schema_2_file() -> dict[str, object]:
    """A state file as cutover wrote it at schema 2 (issue 9), in the window."""
    done = {
        "status": "done",
        "attempts": 1,
        "started_at": "2026-11-29T10:00:00+00:00",
        "finished_at": "2026-11-29T10:00:05+00:00",
        "duration": 5.0,
        "outputs": {"at": 1796022000.0},
        "error": None,
        "found_applied": False,
        "inputs": "a" * 64,
    }
    return {
        "schema_version": 2,
        "written_by": "cutover 0.2.0",
        "run_id": "0123456789ab",
        "playbook": {"path": "/x/cutover.yml", "fingerprint": "f" * 64, "fields": {}},
        "identity": {"heroku_app": "acme-shop", "convox_app": "shop", "convox_rack": None},
        "steps": {"maintenance-on": done},
        "updated_at": None,
        "history": {},
    }


def test_a_schema_2_file_is_migrated_with_no_rollback(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps(schema_2_file()))

    state = StateStore(tmp_path).load()

    assert state is not None and state.schema_version == SCHEMA_VERSION == 3
    assert state.rollback is None and state.rollbacks == []
    assert state.steps["maintenance-on"].outputs == {"at": 1796022000.0}


def test_the_rollback_section_round_trips(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps(schema_2_file()))
    store = StateStore(tmp_path)
    state = store.load()
    assert state is not None
    rb = state.rollback = RollbackState(status=Status.RUNNING, attempts=1, forced=True)
    undo = rb.step("switch-dns")
    undo.status, undo.reason, undo.outputs = Status.RUNNING, "traffic on Convox", {"k": 1}
    store.save(state)

    again = store.load()

    assert again is not None and again.rollback is not None
    assert again.rollback.forced and again.rollback.steps["switch-dns"].reason == (
        "traffic on Convox"
    )
    assert json.loads((tmp_path / "state.json").read_text())["schema_version"] == 3


def test_an_unknown_rollback_field_is_refused(tmp_path: Path) -> None:
    data = schema_2_file()
    data.update(schema_version=3, rollback={"status": "done", "surprise": 1}, rollbacks=[])
    (tmp_path / "state.json").write_text(json.dumps(data))

    with pytest.raises(StateError, match=r"rollback\.surprise"):
        StateStore(tmp_path).load()


def test_fields_added_in_schema_3_get_their_defaults_so_an_unchanged_playbook_is_unchanged(
    tmp_path: Path,
) -> None:
    """A run started at schema 2 saved the playbook's flat fields of its time; the fields issue
    11 added must read as their defaults, or every such run would say its playbook changed."""
    from cutover.playbook import load_playbook  # noqa: PLC0415

    playbook_file = tmp_path / "cutover.yml"
    playbook_file.write_text(
        "version: 1\nheroku: {app: acme-shop}\nconvox: {app: shop, rack: r}\n"
        "database: {resource: database}\nwindow: {scale_down: [worker]}\n"
    )
    now = load_playbook(playbook_file).flat()
    added = {
        "window.stop_one_off",
        "window.freeze_writes",
        "window.freeze_quiet_seconds",
        "window.freeze_timeout",
        "window.rehearsal",
        "notify",
    }
    data = schema_2_file()
    data["playbook"] = {
        "path": str(playbook_file),
        "fingerprint": "f" * 64,
        "fields": {k: v for k, v in now.items() if k not in added},
    }
    (tmp_path / "state.json").write_text(json.dumps(data))

    state = StateStore(tmp_path).load()

    assert state is not None and state.playbook.fields == now
