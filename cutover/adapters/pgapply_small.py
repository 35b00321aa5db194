"""The small batches of an apply round (cutover/adapters/pgapply.py), together: their rows read by
the snapshot-holding session itself (it is in the round's snapshot S: no new connection to
Heroku, no snapshot to import) and written by ONE psql on the target, each table in its own
transaction with the same script a batch's pipe runs (pgapply_sql.batch_target_scripts).

A batch through a pipe costs a bash, two psql starts and two connections: 0.10-0.14 s each at the
bench's scale 40 for a few dozen rows (pgbench_tellers, pgbench_branches), and with two jobs
they ran after the large batches, adding their sum to the window. Here they run beside them.

The holder's reads are the batch's own source query (pgapply_sql.batch_source_sql) as COPY text,
one line per row (COPY escapes tabs and newlines), in UTF-8 (client_encoding set for them; the
target psql reads UTF-8 too: pgtables._conn_env) with the settings a batch's source psql has
(pgparts.SOURCE_SETTINGS, set by the survey; bytea_output and the planner's page cost here).

When the target's psql fails (a unique value held by a row of another table's batch, a lock),
the caller runs these batches again through pipes, one by one, where a conflict is handled as
for any batch: applying a key again is harmless. So do the batches over the byte budget below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from cutover.adapters.pgapply_sql import (
    BATCH_PAGE_COST,
    Batch,
    batch_size_sql,
    batch_source_sql,
    search_path_sql,
)
from cutover.adapters.pgcopy import END_MARK, ask, send
from cutover.adapters.pgtables import PSQL, _conn_env
from cutover.adapters.postgres import ConnInfo
from cutover.errors import CommandError, UnexpectedOutput
from cutover.runner import Runner
from cutover.runpipes import Session

# A batch of at most this many keys is small: its rows are read through the holder, as long
# as they fit the budget below (the rows of a round's small batches are held in memory at once,
# and Session.readline stops the holder on a line over 64 MiB): the holder first asks each
# batch's size in text; a batch over the budget, or with a row over MAX_ROW_BYTES, goes through
# a pipe (streamed) like any other.
SMALL_KEYS = 2_000
BUDGET_BYTES = 16 * 1024 * 1024
MAX_ROW_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SmallBatch:
    """One small batch with what its target script needs."""

    batch: Batch
    columns: list[str]  # the target's columns (the docs' "columns")
    before: str  # the target's script up to its COPY ... FROM STDIN
    after: str  # ... and after the rows, up to COMMIT and the counts


@dataclass(frozen=True)
class Round:
    """What the small batches take from their round (cutover/adapters/pgapply.py _Round)."""

    runner: Runner
    holder: Session  # the snapshot holder, in the round's snapshot
    target: ConnInfo
    since: str
    key_schemas: tuple[str, ...]
    timeout: float


def start(
    round_: Round, small: Sequence[SmallBatch], done: Callable[[Batch, int, int], None]
) -> Future[list[Batch]]:
    """Apply ``small`` in a thread of its own, ``done(batch, rows written, keys deleted)`` for
    each. The future gives the batches still to run through pipes: all of them when the
    target's psql failed, none when it succeeded; it raises a failure of the holder's reads
    (the holder is then gone, and with it the snapshot the pipes would import)."""

    def run() -> list[Batch]:
        taken, rows, over = read_rows(
            round_.holder, small, round_.since, round_.key_schemas, round_.timeout
        )
        if not taken:
            return over
        try:
            counts = apply(round_.runner, round_.target, taken, rows, round_.timeout)
        except CommandError:
            return [*(one.batch for one in taken), *over]
        for one, (up, gone) in zip(taken, counts, strict=True):
            done(one.batch, up, gone)
        return over

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="small-batches")
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def read_rows(
    holder: Session,
    small: Sequence[SmallBatch],
    since: str,
    key_schemas: Sequence[str],
    timeout: float,
    budget: int = BUDGET_BYTES,
) -> tuple[list[SmallBatch], list[list[str]], list[Batch]]:
    """The batches taken, each one's rows (COPY text lines) read by ``holder`` in its snapshot,
    and the batches left for pipes (over ``budget`` bytes in all, or a row over MAX_ROW_BYTES)."""
    path = search_path_sql(key_schemas, local=True)
    holder.write(
        "SET LOCAL client_encoding = 'UTF8';\nSET LOCAL bytea_output = 'hex';\n"
        + BATCH_PAGE_COST.replace("SET", "SET LOCAL", 1)
        + ";\n"
        + (f"{path};\n" if path else "")
    )
    taken: list[SmallBatch] = []
    out: list[list[str]] = []
    over: list[Batch] = []
    used = 0
    for one in small:
        size = ask(holder, batch_size_sql(one.batch, one.columns, since), timeout)
        total, widest = (int(v) for v in size[0]) if size and len(size[0]) == 2 else (0, 0)
        if widest > MAX_ROW_BYTES or used + total > budget:
            over.append(one.batch)
            continue
        used += total
        send(holder, batch_source_sql(one.batch, one.columns, since) + ";")
        lines: list[str] = []
        while (line := holder.readline(timeout)) != END_MARK:
            lines.append(line)
        taken.append(one)
        out.append(lines)
    return taken, out, over


def target_script(small: Sequence[SmallBatch], rows: Sequence[Sequence[str]]) -> str:
    """One script: per batch, its script before the rows, the rows, ``\\.``, and its script
    after them (which prints ``cutover-batch <written> <deleted>``)."""
    parts = []
    for one, lines in zip(small, rows, strict=True):
        data = "".join(f"{line}\n" for line in lines)
        parts.append(f"{one.before}\n{data}\\.\n{one.after}\n")
    return "".join(parts)


def apply(
    runner: Runner,
    target: ConnInfo,
    small: Sequence[SmallBatch],
    rows: Sequence[Sequence[str]],
    timeout: float,
) -> list[tuple[int, int]]:
    """Run the target's script (CommandError when psql fails: the batches before the failed
    one committed); per batch, (rows written, keys deleted)."""
    out = runner.run(
        [*PSQL, "-At", "-f", "-"],
        env=_conn_env(target),
        input=target_script(small, rows),
        timeout=timeout,
    ).stdout
    counts = [ln.split()[1:] for ln in out.splitlines() if ln.startswith("cutover-batch ")]
    if len(counts) != len(small) or not all(
        len(c) == 2 and c[0].isdigit() and c[1].isdigit() for c in counts
    ):
        raise UnexpectedOutput("the small batches' psql printed no counts for every batch")
    return [(int(up), int(gone)) for up, gone in counts]
