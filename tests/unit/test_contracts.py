"""Step contracts: typed outputs in a JSON state, reads only of declared outputs, and a state
file of schema 1 (cutover 0.1) brought forward to schema 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cutover.engine.plan import playbook_changes, steps_with_changed_inputs
from cutover.errors import StateError
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.state import SCHEMA_VERSION, RunState, StateStore, Status
from cutover.steps.base import Context, dump, read_outputs
from cutover.steps.dns import (
    SwitchDns,
    SwitchDnsOutputs,
    SwitchDnsProgress,
)
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.records import DnsRecord, LowerTtlOutputs
from cutover.steps.site import VerifySite, VerifySiteOutputs
from cutover.steps.window import MaintenanceOnOutputs

RAW: dict[str, Any] = {
    "version": 1,
    "heroku": {"app": "acme-shop"},
    "convox": {"app": "shop"},
}


def loaded(folder: Path) -> LoadedPlaybook:
    return LoadedPlaybook(folder / "cutover.yml", Playbook.model_validate(RAW), RAW)


def v1_state(pb: LoadedPlaybook) -> dict[str, Any]:
    """A state file as cutover 0.1 wrote it (schema 1): no identity, no inputs, and the
    playbook fields without convox.adopt."""
    fields = {k: v for k, v in pb.flat().items() if k != "convox.adopt"}
    done = {
        "status": "done",
        "attempts": 1,
        "started_at": "2026-11-29T10:00:00+00:00",
        "finished_at": "2026-11-29T10:00:05+00:00",
        "duration": 5.0,
        "error": None,
        "found_applied": False,
    }
    return {
        "schema_version": 1,
        "written_by": "cutover 0.1.0",
        "run_id": "0123456789ab",
        "playbook": {"path": str(pb.path), "fingerprint": "f" * 64, "fields": fields},
        "steps": {
            "preflight": {
                **done,
                "outputs": {
                    "rack": "acme/production",
                    "router": "r.test",
                    "heroku_cli": "11.10.0",
                    "heroku_addons": [],
                    "heroku_formation": {"web": {"quantity": 2, "size": "std-1x"}},
                    "scheduler": False,
                },
            },
            "create-app": {**done, "outputs": {"app": "shop"}},
        },
        "updated_at": None,
        "history": {},
    }


def test_a_schema_1_file_is_migrated_forward(tmp_path: Path) -> None:
    pb = loaded(tmp_path)
    folder = tmp_path / ".cutover"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps(v1_state(pb)))

    state = StateStore(folder).load()

    assert state is not None and state.schema_version == SCHEMA_VERSION == 3
    assert state.identity is not None
    assert (state.identity.heroku_app, state.identity.convox_app, state.identity.convox_rack) == (
        "acme-shop",
        "shop",
        "acme/production",
    )
    assert state.playbook.fields["convox.adopt"] == "false"
    assert {st.inputs for st in state.steps.values()} == {None}
    # The same playbook is no change at all, and its done steps get fingerprints.
    assert playbook_changes(pb, state) == []
    assert steps_with_changed_inputs(pb, state) == []
    assert all(st.inputs for st in state.steps.values())
    # A step written by 0.1 reads through its contract (create-app had no created flag).
    formation = read_outputs(state, PreflightOutputs)
    assert formation is not None and formation.heroku_formation["web"].quantity == 2


def test_outputs_keep_their_json_shape(tmp_path: Path) -> None:
    record = DnsRecord(name="www.example.test", type="CNAME", ttl=3600, values=["a.test."])
    lowered = LowerTtlOutputs(original=record, lowered_at=1.5, ttl=60)
    assert dump(lowered) == {
        "original": {
            "name": "www.example.test",
            "type": "CNAME",
            "ttl": 3600,
            "values": ["a.test."],
        },
        "lowered_at": 1.5,
        "ttl": 60,
    }
    # Fields never set are left out, as the dict outputs of schema 1 did.
    assert dump(
        PreflightOutputs(
            heroku_cli="11",
            heroku_formation={},
            heroku_addons=[],
            scheduler=False,
            router="r",
            rack=None,
        )
    ).keys() == {"heroku_cli", "heroku_formation", "heroku_addons", "scheduler", "router", "rack"}


def _state_with(step_id: str, outputs: dict[str, Any], status: Status = Status.DONE) -> RunState:
    state = RunState.model_validate({"playbook": {"path": "x", "fingerprint": "0", "fields": {}}})
    state.step(step_id).status = status
    state.step(step_id).outputs = outputs
    return state


def _context(state: RunState) -> Context:
    ctx = Context.__new__(Context)
    ctx.state = state
    return ctx


def test_a_step_reads_declared_outputs_and_only_done_ones() -> None:
    state = _state_with("maintenance-on", {"at": 100.0})
    got = VerifySite().read(_context(state), MaintenanceOnOutputs)
    assert got is not None and got.at == 100.0
    running = _state_with("maintenance-on", {"at": 100.0}, Status.RUNNING)
    assert VerifySite().read(_context(running), MaintenanceOnOutputs) is None


def test_reading_an_undeclared_output_is_refused() -> None:
    state = _state_with("maintenance-on", {"at": 100.0})
    with pytest.raises(TypeError, match="switch-dns reads MaintenanceOnOutputs without"):
        SwitchDns().read(_context(state), MaintenanceOnOutputs)


def test_outputs_that_break_the_contract_name_the_step() -> None:
    state = _state_with("verify-site", {"checks": "not a list", "downtime_seconds": None})
    with pytest.raises(StateError, match="outputs of verify-site do not match its contract"):
        read_outputs(state, VerifySiteOutputs)


def test_progress_is_remembered_across_a_from() -> None:
    state = _state_with("switch-dns", {})
    state.history["switch-dns"] = {
        "previous": {
            "name": "www.example.test",
            "type": "CNAME",
            "ttl": 3600,
            "values": ["old.test."],
        },
        "at": 5.0,
    }
    saved = SwitchDns().remembered(_context(state), SwitchDnsProgress)
    assert saved.previous is not None and saved.previous.values == ["old.test."]
    assert saved.at == 5.0
    assert SwitchDnsOutputs(router="r", previous=saved.previous, at=1.0).previous == (
        saved.previous
    )
