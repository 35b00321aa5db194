"""Playbook + state -> the list of actions a run would take, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cutover.state import PlaybookRef, RunState, Status
from cutover.errors import InvalidInput
from cutover.playbook import LoadedPlaybook, changed_fields
from cutover.steps import STEP_IDS, STEPS, Step


class Kind(StrEnum):
    RUN = "run"          # pending: check, then apply
    RESUME = "resume"    # was running/failed/interrupted: check again, then apply
    DONE = "done"        # finished in an earlier run
    SKIP = "skip"        # does not apply to this playbook
    LATER = "later"      # after --until


@dataclass(frozen=True)
class Action:
    step: Step
    kind: Kind
    reason: str

    @property
    def will_run(self) -> bool:
        return self.kind in (Kind.RUN, Kind.RESUME)


def new_state(playbook: LoadedPlaybook) -> RunState:
    return RunState(playbook=PlaybookRef(path=str(playbook.path),
                                         fingerprint=playbook.fingerprint(),
                                         fields=playbook.flat()))


def validate_step(name: str | None, option: str) -> None:
    if name is not None and name not in STEP_IDS:
        raise InvalidInput(f"{option} {name}: no such step",
                           details="steps: " + ", ".join(STEP_IDS))


def playbook_changes(playbook: LoadedPlaybook, state: RunState) -> list[str]:
    if state.playbook.fingerprint == playbook.fingerprint():
        return []
    return changed_fields(state.playbook.fields, playbook.flat())


def reset_from(state: RunState, step_id: str) -> list[str]:
    """Clear ``step_id`` and every later step; return the ids that had been started."""
    cleared = []
    for sid in STEP_IDS[STEP_IDS.index(step_id):]:
        if sid in state.steps and state.steps[sid].status != Status.PENDING:
            cleared.append(sid)
        old = state.steps.pop(sid, None)
        if old is not None and old.outputs:
            state.history.setdefault(sid, dict(old.outputs))  # the first attempt's wins
    return cleared


def build_plan(playbook: LoadedPlaybook, state: RunState, until: str | None = None
               ) -> list[Action]:
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
            why = {Status.RUNNING: "was running when cutover stopped",
                   Status.FAILED: "failed last time",
                   Status.INTERRUPTED: "was interrupted"}[st.status]
            actions.append(Action(step, Kind.RESUME, f"{why}: check, then run again"))
        else:
            actions.append(Action(step, Kind.RUN, "pending"))
    return actions
