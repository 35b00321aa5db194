"""The changed-tables final sync (issue 10): compare Heroku's statistics with initial-sync's
baseline (cutover/adapters/pgchanges.py) and replace only the changed tables in place, each
atomically, then every sequence (cutover/adapters/pgtables.py). Called by final-sync
(cutover/steps/data.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cutover.adapters.postgres import ConnInfo
    from cutover.steps.base import Context


def final_sync(
    ctx: Context, source: ConnInfo, conn: ConnInfo, stats: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The outputs' fields, or None (a full sync into staging) when the baseline is missing or
    the comparison says everything."""
    from cutover.adapters import pgstaging  # noqa: PLC0415 - adapters load when a step runs
    from cutover.adapters.pgchanges import (  # noqa: PLC0415
        StatsSnapshot,
        changed_tables,
        take_quiet_stats,
    )
    from cutover.adapters.pgtables import copy_tables  # noqa: PLC0415

    db = ctx.model.database
    assert db
    if stats is None:
        ctx.note(
            "changed-tables: initial-sync recorded no statistics baseline (it ran with "
            "final_sync: full); copying everything"
        )
        return None
    before = StatsSnapshot.model_validate(stats)
    after = take_quiet_stats(ctx.postgres, source, sleep=ctx.sleep)
    changes = changed_tables(before, after)
    ctx.note("changed-tables: " + changes.summary())
    if changes.everything:
        return None
    tables = sorted(changes.tables)
    total = changes.bytes_of(after)
    started = time.monotonic()
    # The in-place copy writes to the database itself: mark it as cutover's own unfinished
    # sync first, so a resume after a failure halfway is not refused as "writes since the
    # last sync" (the guard accepts cutover:syncing).
    pgstaging.mark_syncing(ctx.postgres, conn)
    result = copy_tables(
        ctx.runner,
        ctx.masker,
        source,
        conn,
        tables,
        jobs=db.restore_jobs,
        timeout=db.timeout,
        progress=lambda p: ctx.progress(
            p.tables_done,
            p.tables_total,
            unit="tables",
            bytes_done=p.bytes_done,
            bytes_total=total or None,
        ),
    )
    marker = pgstaging.mark_synced(ctx.postgres, conn)
    ctx.note(
        f"replaced {result.tables} changed table(s) and set {result.sequences} sequence(s) "
        f"in {conn.dbname} ({marker})"
    )
    return dict(
        method=db.method,
        bytes=result.bytes,
        objects=result.tables,
        seconds=round(time.monotonic() - started, 3),
        marker=marker,
        tables_copied=tables,
    )
