"""Predicted durations, per step and of the window, from measured timings.

The window is what users wait through: from ``maintenance-on`` to ``verify-site`` (the downtime
verify-site measures from when maintenance went on). Each step's prediction comes from the first
of these sources that has a measurement:

1. this run: the step's own duration when it is done (``StepState.duration``, which leaves out
   the time spent waiting at a gate prompt: engine/run.py records that as ``gate_wait``);
2. this run's earlier attempt of the step, cleared since by a rollback or ``--from``
   (``RunState.timings``: the same database and hardware);
3. the rehearsal named by ``window.rehearsal`` (the ``.cutover`` folder of the same playbook run
   against staging or the sandbox): its duration of the step; the data steps
   (:data:`DATA_STEPS`) are scaled by this database's size over the rehearsal's (check-data's
   ``heroku_bytes``, ``pg_database_size`` when check-data ran); a step the rehearsal found
   already applied measured only its check, so it is no measurement;
4. final-sync only: this run's initial-sync, the same copy of the same database (scaled the same
   way, by size; with ``changed-tables`` it is an upper bound);

else the step is "unknown": left out of the total, and the total says so. Steps the playbook
skips take no time. A step whose check found nothing for this app to do (its outputs'
``skipped``, e.g. the MySQL steps without a MySQL add-on: steps/mysql.py) is measured by
that check, in this run and in a rehearsal (engine/run.py records it in ``RunState.timings``).
Nothing here writes anything; a missing or unreadable rehearsal is refused with a message
naming ``window.rehearsal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cutover.errors import CutoverError, InvalidInput
from cutover.playbook import LoadedPlaybook
from cutover.state import STATE_FILE, RunState, StateStore, Status
from cutover.steps.base import Step, read_outputs
from cutover.steps.confirm import ConfirmWindowOutputs
from cutover.steps.datacheck import CheckDataOutputs
from cutover.steps.site import VerifySiteOutputs

WINDOW_FIRST = "maintenance-on"
WINDOW_LAST = "verify-site"
# Steps whose duration grows with the database: scaled by size between rehearsal and run.
DATA_STEPS = ("initial-sync", "final-sync", "verify-data")


@dataclass(frozen=True)
class StepEstimate:
    step_id: str
    seconds: float | None  # None: unknown
    source: str  # where the number comes from, or why it is unknown

    def text(self) -> str:
        if self.seconds is None:
            return f"unknown ({self.source})"
        return f"{self.seconds:.1f}s ({self.source})"


@dataclass(frozen=True)
class Estimate:
    steps: list[StepEstimate]  # every step the playbook runs, in order
    window: list[str]  # the ids of the window's steps the playbook runs
    rehearsal: Path | None

    def of(self, step_id: str) -> StepEstimate | None:
        return next((s for s in self.steps if s.step_id == step_id), None)

    @property
    def unknown(self) -> list[str]:
        """The window's steps without a measurement (left out of the total)."""
        return [s.step_id for s in self.steps if s.step_id in self.window and s.seconds is None]

    @property
    def window_seconds(self) -> float | None:
        """The window's predicted duration: the sum of its known steps (None: none known)."""
        known = [
            s.seconds for s in self.steps if s.step_id in self.window and s.seconds is not None
        ]
        return round(sum(known), 1) if known else None

    def total_lines(self) -> list[str]:
        """``window estimate: N s (...)`` (one parseable line), then what it leaves out."""
        span = f"{WINDOW_FIRST} to {WINDOW_LAST}"
        seconds = self.window_seconds
        lines = [
            f"window estimate: {seconds:.1f} s ({span})"
            if seconds is not None
            else f"window estimate: unknown ({span}: no step of it has a measurement)"
        ]
        if self.unknown and seconds is not None:
            lines.append(
                "not in the total (no measurement): "
                + ", ".join(self.unknown)
                + ("" if self.rehearsal else "; set window.rehearsal to a rehearsal's .cutover")
            )
        elif self.unknown and self.rehearsal is None:
            lines.append(
                "no rehearsal: set window.rehearsal to the .cutover folder of a rehearsal "
                "(the same playbook against staging or the sandbox) for a prediction"
            )
        return lines


def window_steps(steps: Sequence[Step]) -> list[Step]:
    """The steps from maintenance-on to verify-site, in order."""
    ids = [s.id for s in steps]
    return list(steps[ids.index(WINDOW_FIRST) : ids.index(WINDOW_LAST) + 1])


def load_rehearsal(playbook: LoadedPlaybook) -> tuple[Path, RunState] | None:
    """The rehearsal's state (``window.rehearsal``), None when the playbook names none."""
    name = playbook.model.window.rehearsal
    if name is None:
        return None
    folder = playbook.resolve(name)
    field = f"{playbook.path}: window.rehearsal ({name})"
    if not (folder / STATE_FILE).is_file():
        nested = folder / ".cutover" / STATE_FILE
        hint = f" (did you mean {folder / '.cutover'}?)" if nested.is_file() else ""
        raise InvalidInput(
            f"{field}: no {STATE_FILE} in {folder}{hint}",
            resolution="Point window.rehearsal at the .cutover folder of a rehearsal (the same "
            "playbook run against staging or the sandbox), or remove the field.",
        )
    try:
        state = StateStore(folder).load()
    except CutoverError as exc:
        raise InvalidInput(
            f"{field}: cannot read the rehearsal: {exc.brief}",
            resolution="Point window.rehearsal at a readable rehearsal's .cutover folder, "
            "or remove the field.",
        ) from None
    if state is None:  # removed between the check and the read
        raise InvalidInput(f"{field}: no {STATE_FILE} in {folder}")
    return folder, state


def _measured(state: RunState, step_id: str) -> float | None:
    st = state.steps.get(step_id)
    if st is None or st.status != Status.DONE or st.duration is None:
        return None
    return st.duration


def _skipped(state: RunState, step_id: str) -> bool:
    st = state.steps.get(step_id)
    return st is not None and st.status == Status.SKIPPED


def _size(state: RunState) -> int | None:
    try:
        checked = read_outputs(state, CheckDataOutputs)
    except CutoverError:
        return None
    return checked.heroku_bytes if checked is not None and checked.heroku_bytes > 0 else None


def _scaled(seconds: float, ratio: float | None, source: str) -> tuple[float, str]:
    if ratio is None:
        return seconds, f"{source}, not scaled: a database size is unknown"
    if abs(ratio - 1) < 0.005:
        return seconds, source
    return seconds * ratio, f"{source} x{ratio:.2f} (database size)"


def estimate_step(
    step_id: str, state: RunState, rehearsal: RunState | None, final_sync_only: bool = False
) -> StepEstimate:
    """One step's prediction from the sources of the module docstring, in their order."""
    own = _measured(state, step_id)
    if own is not None:
        return StepEstimate(step_id, own, "measured in this run")
    earlier = state.timings.get(step_id)
    if earlier is not None:
        return StepEstimate(step_id, earlier, "an earlier attempt of this run")
    size = _size(state)
    if rehearsal is not None:
        st = rehearsal.steps.get(step_id)
        measured = _measured(rehearsal, step_id)
        if (
            measured is not None
            and st is not None
            and (not st.found_applied or st.outputs.get("skipped"))
        ):
            if step_id not in DATA_STEPS:
                return StepEstimate(step_id, measured, "rehearsal")
            other = _size(rehearsal)
            ratio = size / other if size and other else None
            seconds, source = _scaled(measured, ratio, "rehearsal")
            return StepEstimate(step_id, round(seconds, 1), source)
    if step_id == "final-sync":
        initial = _measured(state, "initial-sync")
        if initial is not None:
            source = "this run's initial-sync"
            if final_sync_only:
                source += " (an upper bound: changed-tables copies only the changed tables)"
            return StepEstimate(step_id, initial, source)
    why = "no measurement in this run" + (
        ", nor in the rehearsal" if rehearsal is not None else " and no rehearsal"
    )
    return StepEstimate(step_id, None, why)


def estimate(playbook: LoadedPlaybook, state: RunState, steps: Sequence[Step]) -> Estimate:
    """Every step's prediction and the window's (refuses an unreadable rehearsal)."""
    loaded = load_rehearsal(playbook)
    rehearsal = loaded[1] if loaded else None
    model = playbook.model
    changed_tables = model.database is not None and model.database.final_sync == "changed-tables"
    runs = [s for s in steps if s.applies(model) is None and not _skipped(state, s.id)]
    window_ids = {s.id for s in window_steps(steps)}
    return Estimate(
        steps=[estimate_step(s.id, state, rehearsal, changed_tables) for s in runs],
        window=[s.id for s in runs if s.id in window_ids],
        rehearsal=loaded[0] if loaded else None,
    )


def downtime_text(state: RunState) -> str | None:
    """The measured downtime next to the prediction confirm-window recorded, when known."""
    try:
        site = read_outputs(state, VerifySiteOutputs)
        confirmed = read_outputs(state, ConfirmWindowOutputs)
    except CutoverError:
        return None
    measured = site.downtime_seconds if site is not None else None
    predicted = confirmed.predicted_downtime_seconds if confirmed is not None else None
    span = f"({WINDOW_FIRST} to {WINDOW_LAST})"
    if measured is not None:
        text = f"downtime {measured:.1f}s measured {span}"
        if predicted is not None:
            off = (measured - predicted) / predicted * 100 if predicted else 0.0
            text += f"; predicted {predicted:.1f}s at confirm-window ({off:+.0f}%)"
        return text
    if predicted is not None:
        return f"predicted downtime {predicted:.1f}s {span}, at confirm-window"
    return None
