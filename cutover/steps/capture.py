"""capture-changes: row-level change capture on Heroku, for ``database.final_sync: changed-rows``
(issue 13; the objects and the apply are cutover/adapters/pgcapture.py and pgapply.py).

Heroku grants no replication role and no superuser, so there is no logical decoding and no event
trigger: cutover installs, as the database owner, a schema ``_cutover`` with a log table per
captured table and four statement-level AFTER triggers on it (INSERT, UPDATE, DELETE with
transition tables, and TRUNCATE) that log each changed row's key and the writing transaction's
id; on a keyless table they log each inserted row whole, and an UPDATE, DELETE or TRUNCATE
marks it for a whole copy (pgcapture_sql.rows_log_sql, applied by pgapply_rows.py). A
position is a snapshot (``pg_current_snapshot()``); an entry is after it when its transaction
is not visible in it, which is commit-order correct. Applying a key copies the
source's row as of a later snapshot (or deletes it): idempotent, so a position read before a copy
starts is safe, and every later round converges; in the window (writes frozen) the last round
leaves the Convox database equal to Heroku's.

The step runs before initial-sync (which refuses to start without it), asks at a gate naming what
it installs, and is undone by ``cutover rollback`` and ``cutover cleanup`` (uninstall, read back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from cutover.steps.base import Context, Step, StepOutputs, cmd
from cutover.steps.data import _DATA_FIELDS, heroku_source

if TYPE_CHECKING:
    from cutover.adapters.pgcapture import CapturePlan
    from cutover.adapters.postgres import ConnInfo

CHANGED_ROWS = "changed-rows"
_SOURCE_KEY = "capture_source"  # ctx.extras: Heroku's ConnInfo, read once per run
_PLAN_KEY = "capture_plan"  # ctx.extras: the plan shown at the gate, installed by apply


class CaptureOutputs(StepOutputs):
    step_id = "capture-changes"
    tables: list[str]  # captured (a key logged per changed row)
    # no usable key: inserted rows logged (a rewrite, or an install without a row log: copied whole)
    keyless: list[str] = Field(default_factory=list)
    unsupported: list[str] = Field(default_factory=list)  # "name: why": the final sync is full


def changed_rows(model: Any) -> bool:
    db = model.database
    return db is not None and db.final_sync == CHANGED_ROWS


def capture_source(ctx: Context) -> ConnInfo:
    """Heroku's database (credentials read once per process)."""
    source = ctx.extras.get(_SOURCE_KEY)
    if source is None:
        source = heroku_source(ctx)
        ctx.extras[_SOURCE_KEY] = source
    return source


def plan_lines(plan: CapturePlan) -> list[str]:
    """What the capture covers, one line each, for the gate and the notes."""
    lines = [f"captured ({len(plan.tables)}): " + (", ".join(t.name for t in plan.tables) or "-")]
    logged = {t.name for t in plan.logged}
    rows = [n for n in plan.keyless if n in logged]
    whole = [n for n in plan.keyless if n not in logged]
    if rows:
        lines.append(
            "no primary key or unique not-null key: inserted rows logged, copied whole after an "
            f"UPDATE, DELETE or TRUNCATE ({len(rows)}): " + ", ".join(rows)
        )
    if whole:
        lines.append(
            f"no primary key or unique not-null key, copied whole in the window ({len(whole)}): "
            + ", ".join(whole)
        )
    if plan.unsupported:
        lines.append(
            f"unsupported, so the final sync will be a full copy ({len(plan.unsupported)}): "
            + "; ".join(plan.unsupported)
        )
    return lines


def outputs_of(plan: CapturePlan) -> CaptureOutputs:
    return CaptureOutputs(
        tables=[t.name for t in plan.tables],
        keyless=list(plan.keyless),
        unsupported=list(plan.unsupported),
    )


class CaptureChanges(Step):
    id = "capture-changes"
    title = "Install row-level change capture on Heroku (changed-rows)"
    outputs = CaptureOutputs
    fields = _DATA_FIELDS
    gate = "install change capture on Heroku"  # the question itself is gate_text's
    undo_title = "Remove cutover's change capture from Heroku (schema _cutover and its triggers)"

    def applies(self, model: Any) -> str | None:
        if model.database is None:
            return "no database section in the playbook"
        if not changed_rows(model):
            return f"database.final_sync is {model.database.final_sync}, not changed-rows"
        return None

    def describe(self, ctx: Context) -> list[str]:
        """The commands, and the install's SQL: for the tables inspected at the gate when this
        process asked it, else (``cutover plan`` connects to nothing) for one example table."""
        from cutover.adapters import pgcapture  # noqa: PLC0415 - adapters load when a step runs

        db = ctx.model.database
        assert db
        plan = ctx.extras.get(_PLAN_KEY)
        lines = [
            cmd(ctx.heroku.argv("pg:credentials:url", db.heroku_attachment)),
            "psql (Heroku, read-only): plain tables and their keys (primary key, else a unique "
            "index on NOT NULL columns); keyless and partitioned/inheritance tables listed",
        ]
        if plan is None:
            plan = pgcapture.CapturePlan(
                tables=(pgcapture.CaptureTable('public."<table>"', 0, ("id",), "primary key"),),
                keyless=(),
                unsupported=(),
            )
            lines.append(
                'psql (Heroku, one transaction), shown for one table public."<table>" keyed '
                "by id (each captured table gets the same, named by its oid instead of 0):"
            )
        else:
            lines.append("psql (Heroku, one transaction):")
        for stmt in pgcapture.install_statements(plan):
            lines += [f"  {line}" for line in stmt.splitlines()]
        return lines

    def _plan(self, ctx: Context) -> CapturePlan:
        from cutover.adapters import pgcapture  # noqa: PLC0415

        plan = ctx.extras.get(_PLAN_KEY)
        if plan is None:
            plan = pgcapture.inspect(ctx.postgres, capture_source(ctx))
            ctx.extras[_PLAN_KEY] = plan
        return plan

    def gate_text(self, ctx: Context) -> str:
        """The gate as ``cutover plan`` shows it (no connection); ``gate_question`` names the
        tables, read from Heroku when the step is about to apply."""
        db = ctx.model.database
        assert db
        return (
            f"Install change capture on Heroku's {db.heroku_attachment}: a schema _cutover, a "
            "log table and 4 triggers on each plain table; every write to them also logs "
            "the row's key (a table without a key: each inserted row), so writes cost more "
            "(make bench: trigger-write-overhead). `cutover cleanup` or `cutover rollback` "
            "removes it all."
        )

    def gate_question(self, ctx: Context) -> str | None:
        db = ctx.model.database
        assert db
        plan = self._plan(ctx)
        return (
            f"Install change capture on Heroku's {db.heroku_attachment}: a schema _cutover, a "
            f"log table and 4 triggers on each of {len(plan.tables) + len(plan.logged)} table(s); "
            "every write to them also logs the row's key (a table without a key: each inserted "
            "row), so writes cost more (make bench: "
            "trigger-write-overhead). `cutover cleanup` or `cutover rollback` removes it all. "
            + " ".join(f"[{line}]" for line in plan_lines(plan))
        )

    def check(self, ctx: Context) -> StepOutputs | None:
        from cutover.adapters import pgcapture  # noqa: PLC0415

        status = pgcapture.status(ctx.postgres, capture_source(ctx))
        if not status.installed or status.missing_triggers:
            return None
        plan = pgcapture.inspect(ctx.postgres, capture_source(ctx))
        captured = {t.name for t in status.tables}
        if any(t.name not in captured for t in (*plan.tables, *plan.logged)):
            # a table added since, or a keyless one from an install without row logs (recorded
            # with log '', so not in the status): install again (idempotent) captures it
            return None
        return outputs_of(plan)

    def apply(self, ctx: Context) -> StepOutputs:
        from cutover.adapters import pgcapture  # noqa: PLC0415

        source = capture_source(ctx)
        plan = pgcapture.install(ctx.postgres, source, self._plan(ctx))
        ctx.extras.pop(_PLAN_KEY, None)
        for line in plan_lines(plan):
            ctx.note(f"change capture: {line}")
        if plan.unsupported:
            ctx.note(
                "finding: change capture cannot cover every table, so final-sync will copy "
                "everything (database.final_sync: full would do the same without the triggers)"
            )
        return outputs_of(plan)

    # -- undo: `cutover rollback` -----------------------------------------------------------
    def undo_needed(self, ctx: Context) -> str | None:
        from cutover.adapters import pgcapture  # noqa: PLC0415

        if ctx.model.database is None:
            return None
        left = pgcapture.leftovers(ctx.postgres, capture_source(ctx))
        if not left:
            return None
        return (
            f"{len(left)} cutover object(s) on Heroku: "
            + ", ".join(left[:5])
            + (", ..." if len(left) > 5 else "")
        )

    def undo_describe(self, ctx: Context) -> list[str]:
        return [
            "psql (Heroku, BEGIN READ WRITE): DROP TRIGGER every cutover_capture* trigger; "
            "DROP SCHEMA _cutover CASCADE; COMMIT; read the catalog back (none may remain)"
        ]

    def undo(self, ctx: Context) -> None:
        from cutover.adapters import pgcapture  # noqa: PLC0415

        removed = pgcapture.uninstall(ctx.postgres, capture_source(ctx))
        ctx.note(f"removed {len(removed)} cutover object(s) from Heroku; none remain")
