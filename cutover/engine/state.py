"""The state file moved one level down to :mod:`cutover.state` (steps and ui import it without
importing the engine); this name stays for the engine's callers (cli, bench)."""

from cutover.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    CheckpointError,
    Identity,
    PlaybookRef,
    RunState,
    StateStore,
    Status,
    StepState,
    migrate,
    now_iso,
)

__all__ = ["SCHEMA_VERSION", "STATE_FILE", "CheckpointError", "Identity", "PlaybookRef",
           "RunState", "StateStore", "Status", "StepState", "migrate", "now_iso"]
