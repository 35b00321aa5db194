"""``cutover verify --data``: run verify-data's comparison on demand, outside a run.

It takes the run lock (a run and a verify never read and write the databases at once), binds to
the state's identity like a run, draws progress, and changes no step's entry in the state: the
result is printed and written to the audit log (``cutover log``). Exit 0 when both databases
match, 1 with the list of mismatches otherwise. Issue 12 adds ``--dns`` and ``--tls``.

``--tls`` runs tls-ready's checks (steps/tls.py): the certificate the router serves for the
production name (covers it, trusted, not expiring within tls.min_days) and the smoke paths with
that Host and tls.marker. Exit 0 when all hold, 1 with each finding otherwise (under http01
before the flip, the missing certificate is the expected gap and is reported as such).
"""

from __future__ import annotations

from pathlib import Path

from cutover.engine.audit import AuditLog
from cutover.engine.lock import RunLock
from cutover.engine.plan import check_identity
from cutover.engine.run import load_state
from cutover.errors import CutoverError, InvalidInput
from cutover.playbook import load_playbook
from cutover.ui import Ui


def verify(playbook_path: Path, ui: Ui, *, data: bool, dns: bool = False, tls: bool = False) -> int:
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only when it runs
    from cutover.runner import step_scope  # noqa: PLC0415
    from cutover.steps.verify import compare, mismatch_error, summary  # noqa: PLC0415

    if not data and not dns and not tls:
        raise InvalidInput(
            "cutover verify: nothing to verify",
            resolution="Name what: cutover verify --data, --dns and/or --tls",
        )
    code = 0
    if dns:
        verify_dns(playbook_path, ui)
    if tls:
        code = verify_tls(playbook_path, ui)
    if not data:
        return code
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


def verify_tls(playbook_path: Path, ui: Ui) -> int:
    from cutover.engine.context import build_context  # noqa: PLC0415 - adapters: only when it runs
    from cutover.runner import step_scope  # noqa: PLC0415
    from cutover.state import Status  # noqa: PLC0415
    from cutover.steps.base import read_outputs  # noqa: PLC0415
    from cutover.steps.preflight import PreflightOutputs  # noqa: PLC0415
    from cutover.steps.tls import (  # noqa: PLC0415
        check_certificate,
        check_paths,
        gap_warning,
        mode_resolution,
    )

    playbook = load_playbook(playbook_path)
    dns = playbook.model.dns
    if dns is None:
        raise InvalidInput(f"{playbook.path}: no dns section, so no production name to check")
    with RunLock(playbook.state_dir, "cutover verify --tls"):
        _store, state = load_state(playbook, ui.masker)
        check_identity(playbook, state)  # in memory only: nothing is written to the state
        audit = AuditLog(playbook.state_dir, ui.masker, state.run_id)
        ctx = build_context(playbook, state, masker=ui.masker, audit=audit, reporter=ui)
        ui.heading(f"tls-ready on demand for {playbook.path}")
        with step_scope(ctx.runner, "tls-ready"):
            pre = read_outputs(state, PreflightOutputs)
            maintenance = state.steps.get("maintenance-on")
            in_window = maintenance is not None and maintenance.status == Status.DONE
            router = str((pre.router if pre else "") or ctx.convox.router()).rstrip(".").lower()
            check = check_certificate(ctx, router)
            problems = list(check.problems)
            gap = playbook.model.tls.mode == "http01" and check.gap
            if gap:
                problems.insert(0, gap_warning(dns.record, check))
            paths: list[str] = []
            if not problems or gap:
                try:
                    paths = check_paths(ctx, check.address, verify=not gap)
                except CutoverError as exc:
                    problems.append(exc.brief)
        audit.event(
            "tls-ready",
            on_demand=True,
            ok=not problems,
            names=check.cert.names,
            issuer=check.cert.issuer,
            expires=check.cert.not_after.isoformat(),
            problems=problems,
        )
    ui.note(f"{dns.record}: {check.cert.summary()}")
    for line in paths:
        ui.note(f"GET https://{dns.record}{line}")
    if problems:
        raise CutoverError(
            f"the certificate check for {dns.record} found {len(problems)} problem(s)",
            details="\n".join(problems),
            resolution=mode_resolution(playbook.model.tls)
            + (". Or bring Heroku back with: cutover rollback" if in_window else ""),
        )
    ui.info(f"{dns.record}: certificate and smoke paths OK", "green")
    return 0
