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


def verify(playbook_path: Path, ui: Ui, *, data: bool, dns: bool = False) -> int:
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only when it runs
    from cutover.runner import step_scope  # noqa: PLC0415
    from cutover.steps.verify import compare, mismatch_error, summary  # noqa: PLC0415

    if not data and not dns:
        raise InvalidInput(
            "cutover verify: nothing to verify",
            resolution="Name what: cutover verify --data and/or --dns",
        )
    if dns:
        verify_dns(playbook_path, ui)
    if not data:
        return 0
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


def verify_dns(playbook_path: Path, ui: Ui) -> None:
    """``cutover verify --dns``: every authoritative name server, then every resolver, asked
    once for the record (steps/dnswait.py check_now); CutoverError (exit 1) naming the laggards."""
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only when it runs
    from cutover.errors import CutoverError  # noqa: PLC0415
    from cutover.state import Status  # noqa: PLC0415
    from cutover.steps.dnswait import check_now  # noqa: PLC0415

    playbook = load_playbook(playbook_path)
    if playbook.model.dns is None:
        raise InvalidInput(f"{playbook.path}: no dns section, so no DNS to verify")
    with RunLock(playbook.state_dir, "cutover verify --dns"):
        _store, state = load_state(playbook, ui.masker)
        check_identity(playbook, state)
        audit = AuditLog(playbook.state_dir, ui.masker, state.run_id)
        ctx = build_context(playbook, state, masker=ui.masker, audit=audit, reporter=ui)
        if ctx.dns is None:
            raise InvalidInput(
                f"{playbook.path}: dns.provider {playbook.model.dns.provider} has no server or "
                "key to ask (dns.server, dns.key_name and the TSIG secret in the environment)"
            )
        switched = state.steps.get("switch-dns")
        router = (
            str(switched.outputs.get("router"))
            if switched is not None and switched.status == Status.DONE
            else None
        )
        ui.heading(f"DNS on demand for {playbook.model.dns.record}")
        lines, problems = check_now(ctx, router)
        for line in lines:
            ui.note(line)
        audit.event("verify-dns", on_demand=True, ok=not problems, lagging=problems)
    if problems:
        raise CutoverError(
            f"{len(problems)} DNS server(s) do not serve the expected record: "
            + "; ".join(problems),
            resolution="Wait for their TTL or zone transfer, then `cutover verify --dns` again"
            + ("; `cutover rollback` points the record back at Heroku." if router else "."),
        )
    ui.info("every name server and resolver serves the expected record", "green")
