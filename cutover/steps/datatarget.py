"""The Convox side of a sync before anything is written (steps/data.py): wait for the resource,
finish a swap an interrupted run left half-done, and guard against a database that is live or
has taken writes (cutover/adapters/pgstaging.py), from one look (cutover/adapters/pglook.py:
two psql at once instead of four in a row)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cutover.steps import datarows

if TYPE_CHECKING:
    from cutover.adapters.pglook import Look
    from cutover.adapters.postgres import ConnInfo
    from cutover.steps.base import Context


def look(ctx: Context, conn: ConnInfo) -> Look:
    """steps/data.py wait_for_resource, with what the recovery and the guard read."""
    from cutover.adapters import pglook  # noqa: PLC0415 - adapters load when a step runs
    from cutover.steps.data import RESOURCE_START_WAIT  # noqa: PLC0415 - data imports us

    db = ctx.model.database
    assert db
    return pglook.look(
        ctx.postgres,
        conn,
        wait=RESOURCE_START_WAIT,
        what=f"the Convox {db.resource} resource (through convox resources proxy)",
        sleep=ctx.sleep,
    )


def prepare(ctx: Context, conn: ConnInfo) -> str | None:
    """Wait, recover, guard (CutoverError when the guard refuses); with ``--force-data``, what
    the guard would have refused (None when nothing was). The marker's comment is left in
    ``ctx.extras[datarows.GUARD_MARKER]`` for the changed-rows final sync (its position)."""
    from cutover.adapters import pgstaging  # noqa: PLC0415

    pg = ctx.postgres
    seen = look(ctx, conn)
    recovered = pgstaging.recover_swap(pg, conn, have=seen.databases)
    if recovered:
        ctx.note(recovered)
        # The recovery renamed or reopened <db>: what the look saw of it is read again.
        seen = replace(seen, seen=pgstaging.read_marker(pg, conn), writes=None, tables=None)
    ctx.extras[datarows.GUARD_MARKER] = seen.seen[2]
    return pgstaging.guard(
        pg,
        conn,
        force=bool(ctx.extras.get("force_data")),
        seen=seen.seen,
        writes=seen.writes,
        tables=seen.tables,
    )


def mark_target_live(ctx: Context) -> None:
    """Write ``cutover:live <time>`` on the Convox database, as switch-dns does before DNS
    changes (cutover/adapters/pglive.py): tests put a database in that state with it."""
    from cutover.adapters import pgstaging  # noqa: PLC0415 - adapters load when a step runs
    from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415

    db = ctx.model.database
    if db is None:
        return
    target = ConnInfo.from_url(ctx.convox.resource_url(db.resource))
    ctx.masker.add(target.password)
    with ctx.convox.proxy(db.resource, speaks="postgres") as port:
        conn = target.via("127.0.0.1", port)
        ctx.note(
            f"marked {conn.dbname} on {db.resource} live: {pgstaging.mark_live(ctx.postgres, conn)}"
        )
