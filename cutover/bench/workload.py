"""Issue 13's write workload (cutover/bench/rows.py runs it): one pgbench script with the numbers
written in (only integers from the Reference: no outside text), run with a fixed number of
transactions, so that its time with and without the capture triggers compares the same work.

It changes about 5% of the reference's rows (:data:`TRANSACTIONS_PER_SCALE`), spread over every
reference table including the largest: updates, inserts, deletes and a primary-key update. Its
statements are set-based where an app's might be (a range of accounts per transaction) so that
about 5% of the largest table changes in a number of transactions the bench can afford. Two
clients can meet a deadlock on bench_events (a range update, then single-row changes elsewhere):
pgbench ``--max-tries`` retries such a transaction (pgbench 15 docs, "Failures and
Serialization/Deadlock Retries"; pgbench exits non-zero when a client aborted: "Exit Status").
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from cutover.bench.baselines import BaselineError, Endpoint
from cutover.bench.reference import EVENTS_ROWS_PER_SCALE, Reference
from cutover.sandbox import pgcluster

TRANSACTIONS_PER_SCALE = 450  # about 20 rows each: ~4.5% of accounts, ~7% of events
CLIENTS = 2  # the bench machine's cores
MAX_TRIES = 20

# Every user table's exact row count (the share the workload changes is rows written / this).
ROW_COUNT_SQL = """
SELECT coalesce(sum((xpath('/row/c/text()',
           query_to_xml(format('SELECT count(*) AS c FROM %I.%I', schemaname, relname),
                        false, true, '')))[1]::text::bigint), 0)
FROM pg_stat_user_tables WHERE schemaname <> '_cutover'
"""


def half(ref: Reference) -> Reference | None:
    """The second size for the per-GB extrapolation: half the scale (None below scale 2)."""
    return Reference(ref.scale // 2) if ref.scale >= 2 else None


def transactions(ref: Reference) -> int:
    """The workload's transactions in all (a multiple of :data:`CLIENTS`)."""
    per_client = max(1, TRANSACTIONS_PER_SCALE * ref.scale // CLIENTS)
    return per_client * CLIENTS


CATCHUP_SHARE = 0.9  # of the transactions, before the timed catch-up (cutover/bench/rows.py)


def parts(ref: Reference) -> tuple[int, int]:
    """The workload split at the last catch-up: (before, after) in transactions, each a multiple
    of :data:`CLIENTS`, together :func:`transactions`. The window holds only the second part's
    changes (an assumption the bench states: the writes made after the last catch-up)."""
    total = transactions(ref)
    before = max(CLIENTS, int(total * CATCHUP_SHARE) // CLIENTS * CLIENTS)
    return before, total - before


def workload_script(ref: Reference) -> str:
    """One pgbench transaction: 10 accounts updated (a range), one teller and one branch
    updated, one history row inserted (a keyless table: its inserted rows are logged and
    applied, cutover/adapters/pgapply_rows.py), and on
    bench_events 5 rows updated (a range), one deleted, one primary key changed (``id = -id``:
    never hit twice, the new key is free) and one inserted above the loaded ids."""
    accounts = 100_000 * ref.scale
    events = EVENTS_ROWS_PER_SCALE * ref.scale
    return f"""\\set aid random(1, {accounts - 9})
\\set tid random(1, {10 * ref.scale})
\\set bid random(1, {ref.scale})
\\set eid random(1, {events - 4})
\\set did random(1, {events})
\\set kid random(1, {events})
\\set nid random({events + 1}, 2000000000)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid BETWEEN :aid AND :aid + 9;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
    VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
UPDATE bench_events SET kind = 'edit', payload = md5(payload) WHERE id BETWEEN :eid AND :eid + 4;
DELETE FROM bench_events WHERE id = :did;
UPDATE bench_events SET id = -id WHERE id = :kid;
INSERT INTO bench_events (id, account_id, created_at, kind, payload)
    VALUES (:nid, :aid, now(), 'new', md5(:nid::text)) ON CONFLICT (id) DO NOTHING;
END;
"""  # noqa: S608 - only integers from Reference reach the script


def run_workload(source: Endpoint, ref: Reference, work: Path, count: int | None = None) -> float:
    """The workload on ``source`` by pgbench (password in its environment only): ``count``
    transactions (all of :func:`transactions` by default); its seconds."""
    count = transactions(ref) if count is None else count
    if count <= 0:
        return 0.0
    script = work / f"rows-workload-{ref.scale}.sql"
    script.write_text(workload_script(ref), encoding="utf-8")
    script.chmod(0o600)
    argv = [
        str(pgcluster.pg_bindir() / "pgbench"),
        "--no-vacuum",
        f"--file={script}",
        f"--transactions={max(1, count // CLIENTS)}",
        f"--client={CLIENTS}",
        f"--jobs={CLIENTS}",
        f"--max-tries={MAX_TRIES}",
    ]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=source.env(), capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BaselineError(f"pgbench (the workload) exited {proc.returncode}: {' / '.join(tail)}")
    return elapsed
