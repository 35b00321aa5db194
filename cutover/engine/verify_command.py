"""``cutover verify --data``: run verify-data's comparison on demand, outside a run.

It takes the run lock (a run and a verify never read and write the databases at once), binds to
the state's identity like a run, draws progress, and changes no step's entry in the state: the
result is printed and written to the audit log (``cutover log``). Exit 0 when both databases
match, 1 with the list of mismatches otherwise. Issue 12 adds ``--dns`` and ``--tls``.
"""

from __future__ import annotations

from pathlib import Path

from cutover.engine.audit import AuditLog
from cutover.engine.lock import RunLock
from cutover.engine.plan import check_identity
from cutover.engine.run import load_state
from cutover.errors import InvalidInput
from cutover.playbook import load_playbook
from cutover.ui import Ui


def verify(playbook_path: Path, ui: Ui, *, data: bool) -> int:
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only when it runs
    from cutover.runner import step_scope  # noqa: PLC0415
    from cutover.steps.verify import compare, mismatch_error, summary  # noqa: PLC0415

    if not data:
        raise InvalidInput(
            "cutover verify: nothing to verify", resolution="Name what: cutover verify --data"
        )
    playbook = load_playbook(playbook_path)
    if playbook.model.database is None:
        raise InvalidInput(f"{playbook.path}: no database section, so no data to verify")
    with RunLock(playbook.state_dir, "cutover verify --data"):
        _store, state = load_state(playbook, ui.masker)
        check_identity(playbook, state)  # in memory only: nothing is written to the state
        audit = AuditLog(playbook.state_dir, ui.masker, state.run_id)
        ctx = build_context(playbook, state, masker=ui.masker, audit=audit, reporter=ui)
        ui.heading(f"verify-data on demand for {playbook.path}")
        with step_scope(ctx.runner, "verify-data"):
            outcome = compare(ctx)
        for note in outcome.notes:
            ui.note(note)
        audit.event(
            "verify-data",
            on_demand=True,
            identical=not outcome.problems,
            mismatches=outcome.problems,
            summary=summary(outcome),
        )
    if outcome.problems:
        raise mismatch_error(
            outcome,
            "If the final sync is done, run it again: cutover run --from final-sync "
            "(before the window, the next sync copies everything anyway).",
            kept="the audit log: cutover log",  # an on-demand check writes no step's state
        )
    ui.info(summary(outcome) + ": identical", "green")
    return 0
