"""verify-data: compare the Convox database with Heroku's (row counts and content checksums of
every table, sequences), both sides read the same way."""

from __future__ import annotations

from typing import Any

from cutover.errors import CutoverError
from cutover.steps.base import Context, Step, StepOutputs, cmd
from cutover.steps.data import _DATA_FIELDS, _skip_without_db, wait_for_resource


class VerifyDataOutputs(StepOutputs):
    step_id = "verify-data"
    tables: int
    rows: int
    compared: str


class VerifyData(Step):
    id = "verify-data"
    title = "Compare every table on both sides"
    in_window = True
    outputs = VerifyDataOutputs
    fields = _DATA_FIELDS

    def applies(self, model: Any) -> str | None:
        return _skip_without_db(model)

    def describe(self, ctx: Context) -> list[str]:
        db = ctx.model.database
        assert db
        return [
            cmd(ctx.heroku.argv("pg:credentials:url", db.heroku_attachment)),
            "psql: row count and md5 of every table and sequence  (Heroku database)",
            cmd(ctx.convox.proxy_argv(db.resource, "<free port>")),
            "psql: the same query through the proxy  (Convox database)",
        ]

    def apply(self, ctx: Context) -> VerifyDataOutputs:
        from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs (start-up time)

        db = ctx.model.database
        assert db
        checksums = db.verify == "checksums"
        source = ConnInfo.from_url(ctx.heroku.credentials_url(db.heroku_attachment))
        src = ctx.postgres.fingerprints(source, checksums, timeout=db.timeout)
        target = ConnInfo.from_url(ctx.convox.resource_url(db.resource))
        with ctx.convox.proxy(db.resource) as port:
            wait_for_resource(ctx, target.via("127.0.0.1", port))
            dst = ctx.postgres.fingerprints(
                target.via("127.0.0.1", port), checksums, timeout=db.timeout
            )
        problems = []
        for name in sorted(set(src) | set(dst)):
            if name not in dst:
                problems.append(f"{name}: missing on Convox")
            elif name not in src:
                problems.append(f"{name}: only on Convox")
            elif src[name] != dst[name]:
                (sc, ss), (dc, ds) = src[name], dst[name]
                what = f"rows {sc} vs {dc}" if sc != dc else "content differs"
                if name.startswith("sequence:"):
                    what = f"position {ss} vs {ds}"
                problems.append(f"{name}: {what}")
        if problems:
            raise CutoverError(
                f"the Convox database differs from Heroku's in {len(problems)} place(s)",
                details="\n".join("  " + p for p in problems[:50]),
                resolution="Run the final sync again: cutover run --from final-sync",
            )
        tables = [n for n in src if not n.startswith("sequence:")]
        rows = sum(src[n][0] for n in tables)
        ctx.note(
            f"{len(tables)} tables, {rows} rows, {len(src) - len(tables)} sequences: identical"
        )
        return VerifyDataOutputs(tables=len(tables), rows=rows, compared=db.verify)
