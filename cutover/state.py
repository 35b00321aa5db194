"""The state file ``.cutover/state.json``: versioned, written atomically, never holding a secret.

Schema history (bump SCHEMA_VERSION and add a step to ``_MIGRATIONS`` for every change):

* 1 (cutover 0.1): ``schema_version``, ``written_by``, ``run_id``, ``playbook`` (path,
  fingerprint, flat field values), ``steps`` (per step id: status, attempts, started_at,
  finished_at, duration, outputs, error, found_applied), ``updated_at``, and ``history``:
  the first outputs of every step a ``--from`` cleared (the original DNS record, when
  maintenance went on), which later attempts must not forget.
* 2 (issue 9): ``identity`` (the Heroku app, Convox rack and app the run is bound to; a playbook
  naming others is refused), and per step ``inputs``: the fingerprint of the playbook fields and
  earlier outputs the step declares (cutover/engine/contracts.py), taken when it finished.
  Migrated from 1: the identity from the saved playbook fields (the rack preflight pinned when
  the playbook named none), ``inputs`` null (filled from the saved fields on the next run), and
  the new field ``convox.adopt`` with its default (false) in the saved fields.
* 3 (issue 11): ``rollback``: the current or last ``cutover rollback`` (status, attempts,
  started/finished times, error, ``forced``, and per undone step the same entry as a forward
  step: status, attempts, times, duration, error, the reason it was needed, and what the undo
  saved for a resume in ``outputs``), and ``rollbacks``: the earlier, completed ones; per step
  ``gate_wait`` (seconds spent at its gate prompt, kept out of ``duration``); ``timings``: the
  last measured duration of each step that acted, kept when the step is cleared (the estimate
  of the next attempt). Migrated from 2: ``timings`` empty,
  ``rollback`` null, ``rollbacks`` empty (no rollback existed before), and the playbook fields
  added by issue 11 with their defaults in the saved fields (``window.freeze_writes``...,
  ``window.rehearsal``, ``notify``). ``window.scale_down`` now defaults to every non-web type:
  a run that left it unset shows it as changed (its steps' inputs), which it is.

This module sits below the engine, the steps and the ui (it imports none of them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cutover import __version__
from cutover.errors import CutoverError, StateError
from cutover.fsutil import atomic_write, ensure_private_dir
from cutover.secrets import SecretMasker

SCHEMA_VERSION = 3
STATE_FILE = "state.json"


class CheckpointError(CutoverError):
    """The state file could not be written; the run stops (exit 1)."""


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"


class StepState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status = Status.PENDING
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration: float | None = None  # seconds, without the gate wait
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    found_applied: bool = False
    # Fingerprint of the step's declared inputs when it finished (None: not known yet).
    inputs: str | None = None
    # Seconds spent waiting at the gate prompt in the last attempt (not in ``duration``).
    gate_wait: float | None = None


class UndoState(StepState):
    """One step's undo in a rollback (``outputs``: what the undo saved for a resume)."""

    reason: str | None = None  # why it was needed (undo_needed), when it was checked


class RollbackState(BaseModel):
    """A ``cutover rollback``: checkpointed like a run, one entry per step it visited."""

    model_config = ConfigDict(extra="forbid")

    status: Status = Status.PENDING
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    # --force accepted losing the Convox database's writes since the final sync (kept: a resume
    # of a forced rollback does not ask again).
    forced: bool = False
    writes_check: str | None = None  # what the check before undoing found
    steps: dict[str, UndoState] = Field(default_factory=dict)
    reset_from: str | None = None  # the forward steps cleared when it completed, from this one

    def step(self, step_id: str) -> UndoState:
        return self.steps.setdefault(step_id, UndoState())


class Identity(BaseModel):
    """What a run migrates: a state file is bound to these and never re-pointed elsewhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    heroku_app: str
    convox_app: str
    convox_rack: str | None = None

    def differences(self, other: Identity) -> list[str]:
        """``field: saved -> other`` for each field that differs; an unknown rack matches any."""
        out = []
        if self.heroku_app != other.heroku_app:
            out.append(f"heroku.app: {self.heroku_app} -> {other.heroku_app}")
        if self.convox_app != other.convox_app:
            out.append(f"convox.app: {self.convox_app} -> {other.convox_app}")
        if self.convox_rack and other.convox_rack and self.convox_rack != other.convox_rack:
            out.append(f"convox.rack: {self.convox_rack} -> {other.convox_rack}")
        return out


class PlaybookRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    fingerprint: str
    fields: dict[str, str]


class RunState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    written_by: str = f"cutover {__version__}"
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    playbook: PlaybookRef
    identity: Identity | None = None
    steps: dict[str, StepState] = Field(default_factory=dict)
    updated_at: str | None = None
    history: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rollback: RollbackState | None = None
    rollbacks: list[RollbackState] = Field(default_factory=list)
    # The last measured duration (seconds) of each step that acted (not found applied), kept
    # when a rollback or --from clears the step: the next attempt's estimate (engine/timings.py).
    timings: dict[str, float] = Field(default_factory=dict)

    def step(self, step_id: str) -> StepState:
        return self.steps.setdefault(step_id, StepState())

    def outputs(self, step_id: str) -> dict[str, Any]:
        found = self.steps.get(step_id)
        return found.outputs if found else {}

    def remembered(self, step_id: str, key: str) -> Any:
        """``key`` from the step's current outputs, else from before a ``--from`` cleared it."""
        value = self.outputs(step_id).get(key)
        return value if value is not None else self.history.get(step_id, {}).get(key)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _field(fields: dict[str, Any], key: str) -> Any:
    try:
        return json.loads(str(fields[key]))
    except (KeyError, ValueError):
        return None


def _migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    playbook = _mapping(data.get("playbook"))
    fields = _mapping(playbook.get("fields"))
    heroku_app, convox_app = _field(fields, "heroku.app"), _field(fields, "convox.app")
    steps = _mapping(data.get("steps"))
    pinned = _mapping(_mapping(steps.get("preflight")).get("outputs")).get("rack")
    rack = _field(fields, "convox.rack") or pinned
    if isinstance(heroku_app, str) and isinstance(convox_app, str):
        data["identity"] = {
            "heroku_app": heroku_app,
            "convox_app": convox_app,
            "convox_rack": rack if isinstance(rack, str) else None,
        }
    if fields:
        fields.setdefault("convox.adopt", "false")  # a field added in schema 2, its default
    for step in steps.values():
        if isinstance(step, dict):
            step.setdefault("inputs", None)
    data["schema_version"] = 2
    return data


# Playbook fields added in schema 3 (issue 11), with their defaults' saved form, so a run
# started before them does not report its unchanged playbook as changed.
_FIELDS_ADDED_IN_3 = {
    "window.stop_one_off": "[]",
    "window.freeze_writes": "true",
    "window.freeze_quiet_seconds": "5",
    "window.freeze_timeout": "120",
    "window.rehearsal": "null",
    "notify": "null",
}


def _migrate_2_to_3(data: dict[str, Any]) -> dict[str, Any]:
    fields = _mapping(_mapping(data.get("playbook")).get("fields"))
    if fields:
        for key, value in _FIELDS_ADDED_IN_3.items():
            fields.setdefault(key, value)
    data.setdefault("rollback", None)
    data.setdefault("timings", {})
    data.setdefault("rollbacks", [])
    data["schema_version"] = 3
    return data


# Forward migrations: version N -> N+1, one function each.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def migrate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring an older state document up to SCHEMA_VERSION; refuse a newer one."""
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StateError(
            f"{path}: not a cutover state file (no valid schema_version)",
            resolution="Move it aside if it is not yours; cutover leaves it as is.",
        )
    if version > SCHEMA_VERSION:
        writer = data.get("written_by", "a newer cutover")
        raise StateError(
            f"{path}: state schema version {version} was written by {writer}; "
            f"this cutover ({__version__}) understands up to version {SCHEMA_VERSION}",
            resolution="Upgrade cutover to continue this run. The file was left untouched.",
        )
    while version < SCHEMA_VERSION:
        data = _MIGRATIONS[version](data)
        version = data["schema_version"]
    return data


class StateStore:
    """Reads and writes one state file. Writes are atomic and durable (fsync file and folder)."""

    def __init__(self, folder: Path, masker: SecretMasker | None = None) -> None:
        self.folder = folder
        self.path = folder / STATE_FILE
        self.masker = masker

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> RunState | None:
        """The saved state, None when there is none. Corrupt files raise and stay untouched."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"{self.path}: cannot read state: {exc}") from None
        if not text.strip():
            raise StateError(
                f"{self.path}: the state file is empty (truncated?)",
                resolution="It was left untouched. Restore it from a backup, or move it aside "
                "to start over (steps already applied are detected again by their checks).",
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(
                f"{self.path}: the state file is corrupt ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno})",
                resolution="It was left untouched. Restore it from a backup, or move it aside "
                "to start over (steps already applied are detected again by their checks).",
            ) from None
        if not isinstance(data, dict):
            raise StateError(f"{self.path}: the state file is not a JSON object")
        data = migrate(data, self.path)
        try:
            return RunState.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise StateError(
                f"{self.path}: the state file does not match schema {SCHEMA_VERSION}: "
                f"{field}: {first['msg']}",
                resolution="It was left untouched.",
            ) from None

    def save(self, state: RunState) -> None:
        """Write atomically: temp file in the same folder, fsync, rename, fsync the folder."""
        state.updated_at = now_iso()
        data = state.model_dump(mode="json")
        if self.masker is not None:
            # Defence in depth: a secret that slipped into an output is masked, never written.
            data = self.masker.mask_data(data)
        text = json.dumps(data, indent=2) + "\n"
        try:
            ensure_private_dir(self.folder)
            atomic_write(self.path, text)
        except OSError as exc:
            # A checkpoint that cannot be written stops the run: going on would lose track.
            raise CheckpointError(
                f"cannot write the state file {self.path}: {exc.strerror or exc}",
                resolution="The previous state file is intact. Fix the cause (disk space, "
                "permissions), then resume with `cutover run`.",
            ) from None
