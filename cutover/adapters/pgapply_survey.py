"""What an apply round (cutover/adapters/pgapply.py) reads and checks before its batches: the
holder's survey of the change log in the round's snapshot, each table's batches (ranges of keys
in key order), and the target's fitness (its docs, whether its role may replicate, foreign keys
the fallback cannot lift)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cutover.adapters.pgapply_sql import (
    PARAMETER_SQL,
    ROLE_SQL,
    Batch,
    boundaries_sql,
    counts_sql,
    key_types_sql,
    key_value,
    truncates_sql,
)
from cutover.adapters.pgcapture import CapturePlan, CaptureTable, check_position, query
from cutover.adapters.pgcopy import SNAPSHOT_ID, ask
from cutover.adapters.pgparts import SOURCE_SETTINGS
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError, UnexpectedOutput
from cutover.runpipes import Session


def check_docs(docs: dict[str, dict[str, Any]], names: Sequence[str], target: ConnInfo) -> None:
    """Every table with changes is a plain table on the target too."""
    missing = sorted(set(names) - set(docs))
    if missing:
        raise CutoverError(
            "not plain tables on the Convox database: " + ", ".join(missing),
            resolution="The schemas differ: re-run the initial sync "
            "(`cutover run --from initial-sync`).",
        )


def may_replicate(pg: PostgresAdapter, target: ConnInfo) -> bool:
    """Whether the target's role may SET session_replication_role."""
    superuser, version = query(pg, target, ROLE_SQL)[0]
    if superuser == "on":
        return True
    return int(version) >= 150000 and query(pg, target, PARAMETER_SQL) == [["t"]]


def refuse_inherited_fks(docs: dict[str, dict[str, Any]], target: ConnInfo) -> None:
    inherited = sorted(
        f"{fk['table']}: {fk['name']}"
        for doc in docs.values()
        for fk in doc["fks"]
        if fk["inherited"]
    )
    if inherited:
        raise CutoverError(
            f"the Convox database's role {target.user} may not set session_replication_role, "
            "and foreign keys inherited from partitioned tables touch tables with changes",
            details="Without it, a batch drops the foreign keys touching its table for its "
            "transaction; an inherited one cannot be dropped on its own:\n"
            + "\n".join(f"  {line}" for line in dict.fromkeys(inherited)),
            resolution="Connect to the Convox database with a superuser role (the Convox "
            "postgres resource's own role is one), or GRANT SET ON PARAMETER "
            "session_replication_role TO that role (PostgreSQL 15+), or set "
            "database.final_sync: full.",
        )


def batches(
    holder: Session, table: CaptureTable, keys: int, since: str, batch_keys: int
) -> list[Batch]:
    if keys <= batch_keys:
        return [Batch(table, None, None, keys)]
    types = [r[1] for r in ask(holder, key_types_sql(table))]
    if len(types) != len(table.key):
        raise UnexpectedOutput(f"{table.log}: key columns {table.key} not found")
    ends = [
        tuple(key_value(h, t) for h, t in zip(row, types, strict=True))
        for row in ask(holder, boundaries_sql(table, since, batch_keys), timeout=3600)
    ]
    if ends and keys == batch_keys * len(ends):
        ends.pop()  # the last full batch is open-ended: no empty batch after it
    lows: list[tuple[str, ...] | None] = [None, *ends]
    highs: list[tuple[str, ...] | None] = [*ends, None]
    sizes = [batch_keys] * len(ends) + [keys - batch_keys * len(ends)]
    return [Batch(table, lo, hi, n) for lo, hi, n in zip(lows, highs, sizes, strict=True)]


@dataclass(frozen=True)
class Survey:
    """What the holder read in the round's snapshot."""

    snapshot: str  # pg_export_snapshot() id
    position: str  # pg_current_snapshot(): the round's position
    counts: dict[int, tuple[int, int]]  # relid -> (log rows, distinct keys) after since
    truncated: dict[int, int]  # relid -> TRUNCATEs after since


def survey(holder: Session, plan: CapturePlan, since: str) -> Survey:
    try:
        holder.write(
            "".join(f"{sql};\n" for sql in SOURCE_SETTINGS)
            + "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
        )
        snapshot, position = ask(
            holder, "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_current_snapshot();"
        )[0]
        rows = ask(holder, counts_sql([*plan.tables], since), 3600) if plan.tables else []
        truncated = ask(holder, truncates_sql(since))
    except CommandError as exc:
        lines = [ln.strip() for ln in exc.stderr_tail.splitlines() if "ERROR:" in ln]
        raise CutoverError(
            "could not read the change log on Heroku's database: "
            + (lines[0] if lines else exc.brief),
            details="Nothing was written to the Convox database.",
            resolution="Check the capture with `cutover status` (re-install it with `cutover "
            "run --until capture-changes` if it is missing), then run the same command again.",
        ) from exc
    if not SNAPSHOT_ID.match(snapshot):
        raise UnexpectedOutput(f"pg_export_snapshot() returned {snapshot[:40]!r}")
    return Survey(
        snapshot,
        check_position(position),
        {int(r[0]): (int(r[1]), int(r[2])) for r in rows},
        {int(r[0]): int(r[1]) for r in truncated},
    )
