"""``cutover cleanup``: remove cutover's change capture from Heroku (issue 13): every trigger
named ``cutover_capture*``, then the schema ``_cutover`` (log tables, functions, sequence) with
CASCADE, in one transaction, then the catalog read back: anything left named that way is an
error (cutover/adapters/pgcapture.py ``uninstall``). ``cutover rollback`` does the same as the
undo of capture-changes.

Under the run lock (never while a run or a catch-up reads the log), audited, asked at a gate
(``--yes`` confirms in advance); ``--dry-run`` lists what would be removed and changes nothing.
Nothing to remove: says so and exits 0. Cleanup does not need a run: without a state file it
works from the playbook alone.
"""

from __future__ import annotations

from pathlib import Path

from cutover.engine.audit import AuditLog
from cutover.engine.lock import RunLock
from cutover.engine.plan import check_identity
from cutover.engine.run import confirm_gate, load_state
from cutover.errors import InvalidInput
from cutover.playbook import load_playbook
from cutover.ui import Ui

CLEANUP_LOCK = "cutover cleanup"


def cleanup(playbook_path: Path, ui: Ui, *, dry_run: bool, yes: bool, interactive: bool) -> int:
    from cutover.adapters import pgcapture  # noqa: PLC0415 - adapters: only when it runs
    from cutover.engine import context  # noqa: PLC0415
    from cutover.runner import step_scope  # noqa: PLC0415
    from cutover.steps.data import heroku_source  # noqa: PLC0415

    playbook = load_playbook(playbook_path)
    db = playbook.model.database
    if db is None:
        raise InvalidInput(f"{playbook.path}: no database section, so no Heroku database to clean")
    with RunLock(playbook.state_dir, CLEANUP_LOCK):
        _store, state = load_state(playbook, ui.masker)
        check_identity(playbook, state)  # in memory only: nothing is written to the state
        audit = AuditLog(playbook.state_dir, ui.masker, state.run_id)
        ctx = context.build_context(playbook, state, masker=ui.masker, audit=audit, reporter=ui)
        ui.heading(
            f"cleanup of Heroku's {db.heroku_attachment} for {playbook.path}"
            + (" (dry run: nothing is changed)" if dry_run else "")
        )
        with step_scope(ctx.runner, "cleanup"):
            source = heroku_source(ctx)
            found = pgcapture.leftovers(ctx.postgres, source)
            if not found:
                ui.info("nothing to remove: no cutover object on Heroku", "green")
                audit.event("cleanup", dry_run=dry_run, removed=[], found=0)
                return 0
            for line in found:
                ui.note(("would remove: " if dry_run else "to remove: ") + line)
            if dry_run:
                audit.event("cleanup", dry_run=True, found=len(found), objects=found)
                return 0
            question = (
                f"Remove cutover's change capture from Heroku's {db.heroku_attachment} "
                f"({len(found)} object(s): the _cutover schema, its log and the cutover_capture "
                "triggers)? A changed-rows final sync is then a full one until capture-changes "
                "and initial-sync run again."
            )
            confirm_gate(
                ctx,
                "cleanup",
                question,
                yes=yes,
                interactive=interactive,
                audit=audit,
                ui=ui,
                declined="Nothing was removed.",
                waiting="cleanup waits for confirmation",
                confirm_command="cutover cleanup --yes",
            )
            removed = pgcapture.uninstall(ctx.postgres, source)
            audit.event("cleanup", dry_run=False, removed=removed, found=len(found))
    ui.info(
        f"removed {len(removed)} cutover object(s) from Heroku; the catalog shows none", "green"
    )
    return 0
