"""What a step is, its contract, and the context every step receives.

A step declares its contract on the class (read by the engine, never listed by id there):

* ``outputs``: the pydantic model of what it records (JSON in the state file). Later steps read
  it through that model (:meth:`Step.read`), never by string keys;
* ``reads``: the outputs models of earlier steps it reads (reading an undeclared one is a
  programming error); ``fields``: the playbook fields it reads (dotted prefixes of
  ``LoadedPlaybook.flat()``). Both are fingerprinted into its state entry (engine/plan.py);
* behaviour flags: ``gate`` (ask before apply), ``overwrites_target_data`` (refused once
  traffic moved), ``moves_traffic`` (after it is done, no data step runs again), ``in_window``
  (runs while users see Heroku's maintenance page).

The life of a step: ``check`` looks at the world without changing it and returns the outputs
when the effect is already there; else ``recover`` finds an effect an interrupted attempt left
half-done (adopts it, waits for it, or finishes it) from the step's saved progress; else, after
the gate, ``apply`` acts. ``describe`` lists the commands a step would run, for ``cutover plan``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cutover.errors import StateError
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.state import RunState, Status

if TYPE_CHECKING:  # adapters are imported by whoever builds the context (start-up time)
    from cutover.adapters.convox import ConvoxAdapter
    from cutover.adapters.dns import DnsProvider
    from cutover.adapters.heroku import HerokuAdapter
    from cutover.adapters.http import HttpClient
    from cutover.adapters.postgres import PostgresAdapter
    from cutover.runner import Runner
    from cutover.secrets import SecretMasker


class Reporter(Protocol):
    def note(self, message: str) -> None: ...


class ProgressReporter(Protocol):
    """A reporter that can also draw progress (cutover.ui.Ui); others get nothing drawn."""

    def progress(self, record: dict[str, Any]) -> None: ...


# How often Context.progress writes the numbers into the state file (for `status --json`), and
# under which key of the running step's outputs (the engine drops it when the step is done).
PROGRESS_SAVE_EVERY = 1.0
PROGRESS_KEY = "progress"


class StepOutputs(BaseModel):
    """Base of every step's outputs model. ``step_id`` names the step that records it.

    Saved with ``exclude_unset`` (a field never set is absent from the file, as before typed
    outputs); read ignoring the step's progress keys that are not outputs."""

    model_config = ConfigDict(extra="ignore")
    step_id: ClassVar[str] = ""


class Progress(BaseModel):
    """What a step saves while it runs (before an effect), so a resume can recover it."""

    model_config = ConfigDict(extra="ignore")


OutT = TypeVar("OutT", bound=StepOutputs)
ProgT = TypeVar("ProgT", bound=Progress)


def read_outputs(state: RunState, model: type[OutT]) -> OutT | None:
    """The recorded outputs of ``model.step_id`` when that step is done, else None."""
    st = state.steps.get(model.step_id)
    if st is None or st.status != Status.DONE:
        return None
    try:
        return model.model_validate(st.outputs)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StateError(
            f"the state's outputs of {model.step_id} do not match its contract: "
            f"{where}: {first['msg']}",
            resolution=f"Re-run it: cutover run --from {model.step_id}",
        ) from None


def progress_record(
    done: int, total: int, unit: str, bytes_done: int, bytes_total: int | None, elapsed: float
) -> dict[str, Any]:
    """The numbers of one progress report (JSON-able): rate per second of ``unit`` and of bytes,
    and the ETA from bytes when their total is known, else from ``unit``."""
    rate = done / elapsed
    byte_rate = bytes_done / elapsed
    eta: float | None = None
    if bytes_total and byte_rate > 0:
        eta = max(bytes_total - bytes_done, 0) / byte_rate
    elif rate > 0:
        eta = max(total - done, 0) / rate
    return {
        "done": done,
        "total": total,
        "unit": unit,
        "bytes_done": bytes_done,
        "bytes_total": bytes_total,
        "elapsed": round(elapsed, 1),
        "rate": round(rate, 2),
        "bytes_rate": round(byte_rate),
        "eta": None if eta is None else round(eta, 1),
    }


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=True, by_alias=True)


@dataclass
class Context:
    playbook: LoadedPlaybook
    state: RunState
    runner: Runner
    masker: SecretMasker
    heroku: HerokuAdapter
    convox: ConvoxAdapter
    postgres: PostgresAdapter
    http: HttpClient
    dns: DnsProvider | None
    reporter: Reporter
    work_dir: Path
    # Saves partial outputs of the running step (e.g. the original DNS record before changing
    # it), so a crash right after the change still knows what to restore (set by the engine).
    checkpoint: Callable[[dict[str, Any]], None] = lambda outputs: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    extras: dict[str, Any] = field(default_factory=dict)
    # Context.progress: (the running step, when its first progress call came, last state save)
    _progress_run: tuple[str | None, float, float] = field(default=(None, 0.0, 0.0), repr=False)

    @property
    def model(self) -> Playbook:
        return self.playbook.model

    def save(self, progress: Progress) -> None:
        """Save the fields set in ``progress`` into the running step's entry (checkpoint)."""
        self.checkpoint(dump(progress))

    def progress(
        self,
        done: int,
        total: int,
        *,
        unit: str = "tables",
        bytes_done: int = 0,
        bytes_total: int | None = None,
    ) -> None:
        """Report how far a long step is: drawn by the reporter (a rich progress line on a
        terminal, a plain line at most every 5 s otherwise) and saved into the running step's
        ``outputs.progress`` (at most every second, and at the end) for ``cutover status
        --json``; the engine drops it when the step is done. Rate, elapsed and ETA are
        computed here from the first call of the step."""
        now = time.monotonic()
        step = self.runner.step
        run_step, started, saved = self._progress_run
        if step != run_step or done == 0:
            run_step, started, saved = step, now, 0.0
        elapsed = max(now - started, 1e-6)
        record = progress_record(done, total, unit, bytes_done, bytes_total, elapsed)
        record["updated_at"] = datetime.fromtimestamp(self.clock(), UTC).isoformat(
            timespec="seconds"
        )
        if done >= total or now - saved >= PROGRESS_SAVE_EVERY:
            self.checkpoint({PROGRESS_KEY: record})
            saved = now
        self._progress_run = (run_step, started, saved)
        draw = getattr(self.reporter, "progress", None)
        if callable(draw):
            draw(record)

    def note(self, message: str) -> None:
        self.reporter.note(self.masker.mask(message))


class Step:
    """Base class. Subclasses set ``id``, ``title``, ``outputs`` and their contract."""

    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    outputs: ClassVar[type[StepOutputs]] = StepOutputs
    reads: ClassVar[tuple[type[StepOutputs], ...]] = ()
    fields: ClassVar[tuple[str, ...]] = ()
    gate: ClassVar[str | None] = None
    # Re-running it replaces the Convox database with Heroku's: refused once traffic moved.
    overwrites_target_data: ClassVar[bool] = False
    # Moves production traffic to Convox: from then on no overwrites_target_data step runs.
    moves_traffic: ClassVar[bool] = False
    # Runs in the window, while Heroku serves its maintenance page: a failure says so.
    in_window: ClassVar[bool] = False

    def describe(self, ctx: Context) -> list[str]:
        """The external commands this step would run (masked), for plans and dry runs."""
        return []

    def check(self, ctx: Context) -> StepOutputs | None:
        """Look (change nothing): the outputs when the effect is already in place."""
        return None

    def recover(self, ctx: Context) -> StepOutputs | None:
        """After an interrupted attempt: adopt, wait for or finish the effect it left, from the
        step's saved progress; the outputs when that completes the step, else None."""
        return None

    def apply(self, ctx: Context) -> StepOutputs:
        raise NotImplementedError

    def applies(self, model: Playbook) -> str | None:
        """None when the step runs for this playbook, else why it is skipped."""
        return None

    def gate_text(self, ctx: Context) -> str:
        return self.gate or ""

    # -- rollback (`cutover rollback`, engine/rollback.py) -------------------------------
    # A step whose effect must be undone to bring Heroku back sets ``undo_title``; rollback
    # visits such steps in reverse order, from any point after the window started (the step
    # may be done, failed or interrupted: read what it recorded with ``remembered``, since
    # ``read`` only returns outputs of done steps). Each undo is checkpointed like a step.
    undo_title: ClassVar[str] = ""

    def undo_needed(self, ctx: Context) -> str | None:
        """Look (change nothing): why this step's effect must be undone, or None when there is
        nothing to undo (the step never acted, or its effect is already gone)."""
        return None

    def undo_describe(self, ctx: Context) -> list[str]:
        """The external commands the undo would run (masked), for ``cutover rollback --plan``."""
        return []

    def undo(self, ctx: Context) -> None:
        """Undo the effect; idempotent; ``ctx.save`` what a resume needs before each effect.
        Raises CutoverError when the world refuses (the rollback stops there, resumable)."""
        raise NotImplementedError

    def gate_question(self, ctx: Context) -> str | None:
        """The question to confirm before ``apply`` (after check), None for no gate."""
        return self.gate_text(ctx) if self.gate else None

    # -- reading the contract's inputs ---------------------------------------------------
    def read(self, ctx: Context, model: type[OutT]) -> OutT | None:
        """An earlier step's outputs, which this step must declare in ``reads``."""
        if model not in self.reads:
            raise TypeError(f"step {self.id} reads {model.__name__} without declaring it")
        return read_outputs(ctx.state, model)

    def saved(self, ctx: Context, model: type[ProgT]) -> ProgT:
        """This attempt's saved progress (cleared by ``--from``)."""
        return model.model_validate(ctx.state.step(self.id).outputs)

    def remembered(self, ctx: Context, model: type[ProgT]) -> ProgT:
        """Saved progress, each field falling back to the first attempt's before a ``--from``
        cleared it (the original DNS record, when maintenance went on)."""
        merged = dict(ctx.state.history.get(self.id, {}))
        merged.update({k: v for k, v in ctx.state.step(self.id).outputs.items() if v is not None})
        return model.model_validate(merged)


def cmd(argv: list[str]) -> str:
    return " ".join(_quote(a) for a in argv)


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=@%+,*" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"
