"""Playbook + state -> the list of actions a run would take, each with its reason; the run's
identity; and each step's input fingerprint (the playbook fields and earlier outputs it
declares), which names the steps a playbook change affects."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum

from cutover.errors import InvalidInput
from cutover.playbook import LoadedPlaybook, changed_fields
from cutover.state import Identity, PlaybookRef, RunState, Status
from cutover.steps import BY_ID, STEP_IDS, STEPS, Step
from cutover.steps.base import read_outputs
from cutover.steps.preflight import PreflightOutputs


class Kind(StrEnum):
    RUN = "run"  # pending: check, then apply
    RESUME = "resume"  # was running/failed/interrupted: check again, then apply
    DONE = "done"  # finished in an earlier run
    SKIP = "skip"  # does not apply to this playbook
    LATER = "later"  # after --until


@dataclass(frozen=True)
class Action:
    step: Step
    kind: Kind
    reason: str

    @property
    def will_run(self) -> bool:
        return self.kind in (Kind.RUN, Kind.RESUME)


def new_state(playbook: LoadedPlaybook) -> RunState:
    return RunState(
        playbook=PlaybookRef(
            path=str(playbook.path), fingerprint=playbook.fingerprint(), fields=playbook.flat()
        ),
        identity=identity_of(playbook),
    )


def identity_of(playbook: LoadedPlaybook) -> Identity:
    model = playbook.model
    return Identity(
        heroku_app=model.heroku.app, convox_app=model.convox.app, convox_rack=model.convox.rack
    )


def has_started(state: RunState) -> bool:
    return any(s.status != Status.PENDING for s in state.steps.values())


def check_identity(playbook: LoadedPlaybook, state: RunState) -> None:
    """A state file belongs to the apps its run migrates: a playbook naming others is refused
    (exit 2), never treated as a change to accept. An unstarted state is re-bound."""
    wanted = identity_of(playbook)
    saved = state.identity
    if saved is None or not has_started(state):
        state.identity = wanted
        return
    if saved.convox_rack is None:  # no rack named: the one preflight pinned
        pinned = read_outputs(state, PreflightOutputs)
        saved = saved.model_copy(update={"convox_rack": pinned.rack if pinned else None})
    differences = saved.differences(wanted)
    if differences:
        raise InvalidInput(
            f"{playbook.path} names other apps than the run recorded in "
            f"{playbook.state_dir}: it cannot continue that run",
            details="\n".join("  " + d for d in differences),
            resolution="A state folder belongs to one migration. For another app, use a "
            "playbook in a folder of its own (or move .cutover aside to start over); "
            "--accept-changes does not re-point a run. Nothing was changed.",
        )


# -- per-step input fingerprints -----------------------------------------------------------------
def _declared(prefixes: tuple[str, ...], flat: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in flat.items() if any(k == p or k.startswith(p + ".") for p in prefixes)}


def step_inputs(step: Step, flat: dict[str, str], state: RunState) -> str:
    """Fingerprint of what ``step`` declares it reads: its playbook fields (from ``flat``) and
    the recorded outputs of the earlier steps in its ``reads``."""
    reads = {}
    for model in step.reads:
        st = state.steps.get(model.step_id)
        reads[model.step_id] = st.outputs if st is not None and st.status == Status.DONE else {}
    blob = json.dumps(
        {"fields": _declared(step.fields, flat), "reads": reads}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def fill_missing_inputs(state: RunState) -> None:
    """Done steps of a state written before fingerprints (schema 1): fingerprint them from the
    playbook fields saved with the state, the playbook they ran with."""
    for step in STEPS:
        st = state.steps.get(step.id)
        if st is not None and st.status == Status.DONE and st.inputs is None:
            st.inputs = step_inputs(step, state.playbook.fields, state)


def steps_with_changed_inputs(playbook: LoadedPlaybook, state: RunState) -> list[str]:
    """Done steps whose declared inputs differ now from when they finished."""
    fill_missing_inputs(state)
    flat = playbook.flat()
    return [
        step.id
        for step in STEPS
        if (st := state.steps.get(step.id)) is not None
        and st.status == Status.DONE
        and st.inputs != step_inputs(step, flat, state)
    ]


@dataclass
class Rerun:
    """What ``--accept-changes`` does about the changed steps."""

    rerun: list[str] = field(default_factory=list)  # in step order
    kept: dict[str, str] = field(default_factory=dict)  # step id -> why it is not re-run


def plan_rerun(changed: list[str], state: RunState) -> Rerun:
    """The changed steps and every later done step that reads their outputs (transitively);
    a step that would overwrite the Convox data is kept once traffic moved there."""
    todo: set[str] = set(changed)
    for step in STEPS:
        if any(m.step_id in todo for m in step.reads):
            st = state.steps.get(step.id)
            if st is not None and st.status == Status.DONE:
                todo.add(step.id)
    moved = next(
        (
            s
            for s in STEPS
            if s.moves_traffic
            and (st := state.steps.get(s.id)) is not None
            and st.status == Status.DONE
        ),
        None,
    )
    out = Rerun()
    for sid in STEP_IDS:
        if sid not in todo:
            continue
        if moved is not None and BY_ID[sid].overwrites_target_data:
            out.kept[sid] = (
                f"traffic moved to Convox at {state.steps[moved.id].finished_at} "
                f"({moved.id} is done): a sync now would replace the live Convox "
                "database with Heroku's older copy"
            )
        else:
            out.rerun.append(sid)
    return out


def reset_steps(state: RunState, step_ids: list[str]) -> None:
    """Clear exactly these steps (their first outputs stay in the history)."""
    for sid in step_ids:
        old = state.steps.pop(sid, None)
        if old is not None and old.outputs:
            state.history.setdefault(sid, dict(old.outputs))


def validate_step(name: str | None, option: str) -> None:
    if name is not None and name not in STEP_IDS:
        raise InvalidInput(
            f"{option} {name}: no such step", details="steps: " + ", ".join(STEP_IDS)
        )


def playbook_changes(playbook: LoadedPlaybook, state: RunState) -> list[str]:
    if state.playbook.fingerprint == playbook.fingerprint():
        return []
    return changed_fields(state.playbook.fields, playbook.flat())


def reset_from(state: RunState, step_id: str) -> list[str]:
    """Clear ``step_id`` and every later step; return the ids that had been started."""
    cleared = []
    for sid in STEP_IDS[STEP_IDS.index(step_id) :]:
        if sid in state.steps and state.steps[sid].status != Status.PENDING:
            cleared.append(sid)
        old = state.steps.pop(sid, None)
        if old is not None and old.outputs:
            state.history.setdefault(sid, dict(old.outputs))  # the first attempt's wins
    return cleared


def build_plan(playbook: LoadedPlaybook, state: RunState, until: str | None = None) -> list[Action]:
    actions = []
    stop_index = STEP_IDS.index(until) if until else len(STEP_IDS) - 1
    for index, step in enumerate(STEPS):
        st = state.steps.get(step.id)
        skip = step.applies(playbook.model)
        if st is not None and st.status == Status.DONE:
            how = "found already applied" if st.found_applied else "done"
            actions.append(Action(step, Kind.DONE, f"{how} ({st.finished_at})"))
        elif skip:
            actions.append(Action(step, Kind.SKIP, skip))
        elif index > stop_index:
            actions.append(Action(step, Kind.LATER, f"after --until {until}"))
        elif st is not None and st.status in (Status.RUNNING, Status.FAILED, Status.INTERRUPTED):
            why = {
                Status.RUNNING: "was running when cutover stopped",
                Status.FAILED: "failed last time",
                Status.INTERRUPTED: "was interrupted",
            }[st.status]
            actions.append(Action(step, Kind.RESUME, f"{why}: check, then run again"))
        else:
            actions.append(Action(step, Kind.RUN, "pending"))
    return actions


def affected_text(affected: list[str]) -> str:
    """One line naming the finished steps whose inputs a playbook change touched."""
    if not affected:
        return (
            "no finished step reads the changed fields (the change applies to steps still to run)"
        )
    return "finished steps whose inputs changed: " + ", ".join(affected)
