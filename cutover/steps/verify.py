"""verify-data: compare the Convox database with Heroku's, everything the app depends on (tables
by count and checksum, sequences, large objects, extensions and their schemas, schema definitions,
role and database settings: cutover/adapters/pgverify.py), both sides read at once.

The same comparison runs on demand: ``cutover verify --data`` (cutover/engine/verify_command.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from cutover.errors import CutoverError
from cutover.state import Status
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.data import (
    _DATA_FIELDS,
    FinalSyncOutputs,
    _skip_without_db,
    heroku_source,
    reads_beside,
    wait_for_resource,
)
from cutover.steps.freeze import settings_before_freeze

if TYPE_CHECKING:
    from cutover.adapters.pgverify import Outcome

# How many mismatches the error lists (all of them go into the state).
SHOWN = 50


class VerifyDataOutputs(StepOutputs):
    step_id = "verify-data"
    tables: int
    rows: int
    compared: str
    sequences: int = 0
    large_objects: int = 0
    extensions: int = 0
    schema_objects: int = 0
    settings: int = 0
    counted_only: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    mismatches: list[str] = Field(default_factory=list)  # empty when done; a failure saves them


class VerifyProgress(Progress):
    # The last comparison's mismatches, saved before the step fails (the state keeps them).
    mismatches: list[str] | None = None


def compare(ctx: Context) -> Outcome:
    """Read both databases (Heroku's through pg:credentials:url, Convox's through the proxy)
    and compare them; progress goes to ``ctx.progress``."""
    from cutover.adapters.pgverify import Side, Verifier  # noqa: PLC0415 - adapters load when a step runs (start-up time)
    from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415

    db = ctx.model.database
    assert db
    verifier = Verifier(
        ctx.runner,
        ctx.masker,
        jobs=db.restore_jobs,
        timeout=db.timeout,
        checksums=db.verify == "checksums",
        counts_only_above_mb=db.verify_counts_only_above_mb,
        skip_extensions=db.skip_extensions,
        source_settings=settings_before_freeze(ctx.state),
    )
    source = heroku_source(ctx)  # over TLS unless the URL says otherwise
    # The resource's URL (a convox CLI call) is read while the proxy starts.
    (resource_url,) = reads_beside(lambda: ctx.convox.resource_url(db.resource, reuse=True))
    with ctx.convox.proxy(db.resource, speaks="postgres") as port:
        target = ConnInfo.from_url(resource_url.result())
        ctx.masker.add(target.password)
        proxied = target.via("127.0.0.1", port)
        wait_for_resource(ctx, proxied)
        return verifier.compare(
            Side("Heroku", source),
            Side("Convox", proxied),
            lambda done, total, bytes_done, bytes_total: ctx.progress(
                done, total, unit="tables", bytes_done=bytes_done, bytes_total=bytes_total
            ),
        )


def summary(outcome: Outcome) -> str:
    counted = (
        f" ({len(outcome.counted_only)} above the size limit by row count only: "
        + ", ".join(outcome.counted_only[:10])
        + (", ..." if len(outcome.counted_only) > 10 else "")
        + ")"
        if outcome.counted_only
        else ""
    )
    return (
        f"{outcome.tables} tables ({outcome.compared}{counted}), {outcome.rows} rows, "
        f"{outcome.sequences} sequences, {outcome.large_objects} large objects, "
        f"{outcome.extensions} extensions, {outcome.schema_objects} schema objects, "
        f"{outcome.settings} settings in {outcome.seconds:g}s"
    )


def mismatch_error(
    outcome: Outcome, resolution: str, *, kept: str = "the state file"
) -> CutoverError:
    """The mismatches, the first SHOWN of them listed; ``kept`` says where all of them are."""
    problems = outcome.problems
    more = len(problems) - SHOWN
    return CutoverError(
        f"the Convox database differs from Heroku's in {len(problems)} place(s)",
        details="\n".join("  " + p for p in problems[:SHOWN])
        + (f"\n  ... and {more} more (all in {kept})" if more > 0 else "")
        + "\ncompared: "
        + summary(outcome),
        resolution=resolution,
    )


def sync_again(ctx: Context) -> bool:
    """After a mismatch, clear final-sync (its first outputs stay in the state's history, as
    ``--from`` keeps them), so the plain resume the failure suggests copies the data again
    before comparing: comparing the same copy again would fail the same way. The engine saves
    the state with the failure. True when final-sync was cleared."""
    st = ctx.state.steps.get(FinalSyncOutputs.step_id)
    if st is None or st.status != Status.DONE:
        return False
    cleared = ctx.state.steps.pop(FinalSyncOutputs.step_id)
    if cleared.outputs:
        ctx.state.history.setdefault(FinalSyncOutputs.step_id, dict(cleared.outputs))
    ctx.note("final-sync cleared: the resume copies Heroku's data again, then compares")
    return True


class VerifyData(Step):
    id = "verify-data"
    title = "Compare everything the app depends on, on both sides"
    in_window = True
    outputs = VerifyDataOutputs
    fields = _DATA_FIELDS

    def applies(self, model: Any) -> str | None:
        return _skip_without_db(model)

    def describe(self, ctx: Context) -> list[str]:
        from cutover.adapters.pgschema import dump_argv  # noqa: PLC0415 - adapters load when a step runs (start-up time)

        db = ctx.model.database
        assert db
        what = "checksum" if db.verify == "checksums" else "count"
        return [
            cmd(ctx.heroku.argv("pg:credentials:url", db.heroku_attachment)),
            cmd(ctx.convox.proxy_argv(db.resource, "<free port>")),
            "both databases at once: psql catalog (sequences, large objects, extensions, "
            "settings), " + cmd(dump_argv()),
            f"psql: row {what} of every table, {db.restore_jobs} session(s) per side",
        ]

    def apply(self, ctx: Context) -> VerifyDataOutputs:
        outcome = compare(ctx)
        for note in outcome.notes:
            ctx.note(note)
        if outcome.problems:
            ctx.save(VerifyProgress(mismatches=outcome.problems))
            resync = sync_again(ctx)
            raise mismatch_error(
                outcome,
                "The resume syncs again: `cutover run` runs final-sync, then verify-data"
                if resync
                else "Run the final sync again: cutover run --from final-sync",
            )
        ctx.note(summary(outcome) + ": identical")
        return VerifyDataOutputs(
            tables=outcome.tables,
            rows=outcome.rows,
            compared=outcome.compared,
            sequences=outcome.sequences,
            large_objects=outcome.large_objects,
            extensions=outcome.extensions,
            schema_objects=outcome.schema_objects,
            settings=outcome.settings,
            counted_only=outcome.counted_only,
            notes=outcome.notes,
            mismatches=[],
        )
