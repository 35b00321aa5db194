"""``build_plan`` and the per-step contracts as data: a playbook and a state in, actions out (no
process, no file): what runs, what resumes, what is skipped, and which steps a playbook change
re-runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.engine.plan import (
    Kind,
    build_plan,
    check_identity,
    new_state,
    plan_rerun,
    reset_steps,
    step_inputs,
    steps_with_changed_inputs,
)
from cutover.engine.run import _window_note, refuse_resync_after_switch
from cutover.errors import InvalidInput
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.state import RunState, Status
from cutover.steps import BY_ID, STEP_IDS, STEPS, Context

BASE: dict[str, Any] = {
    "version": 1,
    "heroku": {"app": "acme-shop"},
    "convox": {"app": "shop", "rack": "acme/production"},
    "dns": {"provider": "manual", "zone": "example.test", "record": "www.example.test"},
}


def playbook(**sections: Any) -> LoadedPlaybook:
    raw = {**BASE, **sections}
    return LoadedPlaybook(Path("/nowhere/cutover.yml"), Playbook.model_validate(raw), raw)


def finish(
    state: RunState,
    pb: LoadedPlaybook,
    *step_ids: str,
    outputs: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Mark steps done as the runner does: outputs, then the inputs fingerprint."""
    for sid in step_ids:
        st = state.step(sid)
        st.status = Status.DONE
        st.finished_at = "2026-11-30T07:00:00+00:00"
        st.outputs = dict((outputs or {}).get(sid, {}))
        st.inputs = step_inputs(BY_ID[sid], pb.flat(), state)


def kinds(actions: list[Any]) -> dict[str, Kind]:
    return {a.step.id: a.kind for a in actions}


def test_a_fresh_state_runs_every_step_that_applies() -> None:
    pb = playbook()
    got = kinds(build_plan(pb, new_state(pb)))
    assert list(got) == STEP_IDS
    # capture-changes applies only with database.final_sync: changed-rows (issue 13)
    assert {sid for sid, kind in got.items() if kind == Kind.RUN} == set(STEP_IDS) - {
        "capture-changes"
    }


def test_sections_left_out_skip_their_steps() -> None:
    pb = playbook(database=None, smoke=None, dns=None)
    got = kinds(build_plan(pb, new_state(pb)))
    skipped = {sid for sid, kind in got.items() if kind == Kind.SKIP}
    assert skipped == {
        "smoke-test",
        "check-data",
        "capture-changes",
        "initial-sync",
        "lower-ttl",
        "add-domain",
        "tls-ready",
        "wait-ttl",
        "freeze-writes",
        "final-sync",
        "verify-data",
        "switch-dns",
        "verify-dns",
        "verify-site",
        "restore-ttl",
    }


def test_done_steps_stay_done_and_interrupted_ones_resume() -> None:
    pb = playbook()
    state = new_state(pb)
    finish(state, pb, "preflight", "create-app")
    state.step("set-env").status = Status.INTERRUPTED
    actions = build_plan(pb, state)
    got = kinds(actions)
    assert got["preflight"] == got["create-app"] == Kind.DONE
    assert got["set-env"] == Kind.RESUME
    assert "was interrupted" in actions[2].reason
    assert got["deploy"] == Kind.RUN


def test_until_leaves_the_later_steps_for_another_run() -> None:
    pb = playbook()
    got = kinds(build_plan(pb, new_state(pb), until="deploy"))
    later = [sid for sid in STEP_IDS[4:] if sid != "capture-changes"]  # skipped: final_sync full
    assert [sid for sid, kind in got.items() if kind == Kind.LATER] == later


def test_only_the_steps_reading_a_changed_field_are_named() -> None:
    pb = playbook()
    state = new_state(pb)
    finish(state, pb, *STEP_IDS[:5])  # up to smoke-test
    changed = playbook(smoke={"service": "web", "timeout": 30}, window={"drain_seconds": 5})
    # smoke.timeout is read by smoke-test only; window.drain_seconds by scale-down (not run).
    assert steps_with_changed_inputs(changed, state) == ["smoke-test"]
    assert steps_with_changed_inputs(pb, state) == []


def test_a_changed_earlier_output_changes_the_readers_inputs() -> None:
    pb = playbook()
    state = new_state(pb)
    finish(state, pb, *STEP_IDS, outputs={"preflight": {"router": "router.old"}})
    state.steps["preflight"].outputs["router"] = "router.new"
    changed = steps_with_changed_inputs(pb, state)
    assert changed == [s.id for s in STEPS if any(m.step_id == "preflight" for m in s.reads)]
    assert "switch-dns" in changed and "create-app" not in changed


def test_accepting_reruns_the_changed_steps_and_their_readers_only() -> None:
    pb = playbook()
    state = new_state(pb)
    finish(state, pb, *STEP_IDS[: STEP_IDS.index("confirm-window") + 1])
    decision = plan_rerun(["lower-ttl"], state)
    assert decision.rerun == ["lower-ttl", "wait-ttl"]  # wait-ttl reads lower-ttl
    assert decision.kept == {}
    reset_steps(state, decision.rerun)
    got = kinds(build_plan(pb, state))
    assert [sid for sid, kind in got.items() if kind == Kind.RUN][:2] == decision.rerun
    assert got["add-domain"] == Kind.DONE


def test_data_steps_are_not_rerun_once_traffic_moved() -> None:
    pb = playbook()
    state = new_state(pb)
    finish(state, pb, *STEP_IDS)
    decision = plan_rerun(["initial-sync", "final-sync", "verify-data"], state)
    assert decision.rerun == ["verify-data"]
    assert set(decision.kept) == {"initial-sync", "final-sync"}
    assert "switch-dns is done" in decision.kept["final-sync"]


def test_from_a_step_that_overwrites_data_is_refused_after_the_switch() -> None:
    pb = playbook()
    state = new_state(pb)
    finish(state, pb, *STEP_IDS)
    with pytest.raises(InvalidInput, match="traffic moved to Convox"):
        refuse_resync_after_switch(state, "final-sync")
    refuse_resync_after_switch(state, "verify-data")  # no sync in what it clears


def test_the_flags_are_declared_on_the_steps() -> None:
    assert [s.id for s in STEPS if s.gate] == [
        "capture-changes",
        "disable-scheduler",
        "maintenance-on",
        "final-sync",
        "final-sync-mysql",
        "sync-redis",
        "switch-dns",
    ]
    assert [s.id for s in STEPS if s.overwrites_target_data] == [
        "initial-sync",
        "initial-sync-mysql",
        "final-sync",
        "final-sync-mysql",
        "sync-redis",
    ]
    assert [s.id for s in STEPS if s.moves_traffic] == ["switch-dns"]
    # start-workers runs after the site is verified on Convox: out of the window.
    window = STEP_IDS[STEP_IDS.index("scale-down") : STEP_IDS.index("verify-site") + 1]
    assert [s.id for s in STEPS if s.in_window] == window


def test_a_failure_in_the_window_says_users_see_the_maintenance_page() -> None:
    pb = playbook()
    state = new_state(pb)
    ctx = Context.__new__(Context)
    ctx.playbook, ctx.state = pb, state
    assert _window_note(ctx, BY_ID["final-sync"]) == ""  # maintenance not on yet
    finish(
        state,
        pb,
        *STEP_IDS[: STEP_IDS.index("maintenance-on") + 1],
        outputs={"maintenance-on": {"at": 1796022000.0}},
    )
    note = _window_note(ctx, BY_ID["final-sync"])
    assert "in maintenance since 2026-11-30T07:00:00+00:00" in note
    assert "until `cutover rollback` brings Heroku back" in note
    assert _window_note(ctx, BY_ID["initial-sync"]) == ""  # not a window step


def test_another_app_is_refused_not_a_change_to_accept() -> None:
    pb = playbook()
    state = new_state(pb)
    finish(state, pb, *STEP_IDS)
    other = playbook(
        heroku={"app": "other-shop"}, convox={"app": "other", "rack": "acme/production"}
    )
    with pytest.raises(InvalidInput) as refused:
        check_identity(other, state)
    assert "names other apps" in refused.value.brief
    assert "heroku.app: acme-shop -> other-shop" in refused.value.details
    assert "convox.app: shop -> other" in refused.value.details
    check_identity(pb, state)  # the same apps go on


def test_a_rack_pinned_by_preflight_binds_the_run() -> None:
    raw_convox = {"app": "shop"}
    pb = playbook(convox=raw_convox)
    state = new_state(pb)
    preflight = {
        "heroku_cli": "11.10.0",
        "heroku_formation": {},
        "heroku_addons": [],
        "scheduler": False,
        "router": "router.test",
        "rack": "acme/production",
    }
    finish(state, pb, "preflight", outputs={"preflight": preflight})
    check_identity(pb, state)  # no rack named: the pinned one stands
    with pytest.raises(InvalidInput, match="names other apps"):
        check_identity(playbook(convox={"app": "shop", "rack": "acme/staging"}), state)


def test_an_unstarted_state_is_rebound_to_the_playbook() -> None:
    pb = playbook()
    state = new_state(pb)
    other = playbook(convox={"app": "other"})
    check_identity(other, state)
    assert state.identity is not None and state.identity.convox_app == "other"


def test_every_step_declares_a_contract_of_earlier_outputs_and_known_fields() -> None:
    flat = playbook(release={"command": "bin/migrate"}).flat()
    for index, step in enumerate(STEPS):
        assert step.outputs.step_id == step.id, step.id
        for model in step.reads:
            assert STEP_IDS.index(model.step_id) < index, (step.id, model.step_id)
        for prefix in step.fields:
            assert any(k == prefix or k.startswith(prefix + ".") for k in flat), (step.id, prefix)
