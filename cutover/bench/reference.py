"""The reference database of issue 10's benchmark, loaded into the sandbox's "Heroku Postgres".

At ``BENCH_SCALE=40`` (the default) it is about 1 GB: pgbench's tables at scale 40
(``pgbench_accounts`` holds 100,000 rows per scale unit) plus ``bench_events``, a 2-million-row
table with two indexes (its primary key and one on ``created_at``). ``BENCH_SCALE`` scales both:
the events table holds 50,000 rows per scale unit.

Loading: pgbench's init steps ``dtGp`` (drop, create tables, server-side generate, primary keys;
no vacuum, as ``--no-vacuum``). Measured on the 2-core bench machine at scale 10, as the source
role: client-side generation (``dtgp``) 2.08 s, server-side (``dtGp``) 1.08 s, so ``G``.
(pgbench's init steps: PostgreSQL 15 docs, "pgbench -I init_steps"; the server-side step ``G``
generates the rows with ``generate_series`` in the server.)

The changed-tables workload (figure e) rewrites ``pgbench_history`` (emptied, then refilled with
``HISTORY_ROWS_PER_SCALE`` rows per scale unit) and updates ``pgbench_branches`` and
``pgbench_tellers``: tables that hold at most 15% of the data (:data:`CHANGED_TABLES`; the
harness measures the share with :data:`SHARE_SQL` and refuses a workload above the limit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cutover.errors import InvalidInput

SCALE_VAR = "BENCH_SCALE"
DEFAULT_SCALE = 40
EVENTS_ROWS_PER_SCALE = 50_000  # 2,000,000 at scale 40
HISTORY_ROWS_PER_SCALE = 30_000  # about 7% of the data at any scale (measured share printed)
PGBENCH_INIT_STEPS = "dtGp"
CHANGED_TABLES = ("pgbench_history", "pgbench_branches", "pgbench_tellers")
MAX_CHANGED_SHARE = 0.15


@dataclass(frozen=True)
class Reference:
    scale: int

    @property
    def events_rows(self) -> int:
        return EVENTS_ROWS_PER_SCALE * self.scale

    @property
    def history_rows(self) -> int:
        return HISTORY_ROWS_PER_SCALE * self.scale


def scale_from_env(environ: dict[str, str] | None = None) -> Reference:
    """``BENCH_SCALE`` (a whole number >= 1), default 40. Bad values: a clear error."""
    env = os.environ if environ is None else environ
    raw = env.get(SCALE_VAR, "").strip()
    if not raw:
        return Reference(DEFAULT_SCALE)
    try:
        scale = int(raw)
    except ValueError:
        scale = 0
    if scale < 1:
        raise InvalidInput(
            f"{SCALE_VAR}={raw!r}: must be a whole number of at least 1 "
            f"(pgbench scale; {DEFAULT_SCALE} gives about 1 GB)"
        )
    return Reference(scale)


def pgbench_argv(bindir: Path, ref: Reference) -> list[str]:
    """pgbench's initialisation (connection from the PG* environment, password in PGPASSWORD)."""
    return [
        str(bindir / "pgbench"),
        "--initialize",
        "--quiet",
        f"--init-steps={PGBENCH_INIT_STEPS}",
        f"--scale={ref.scale}",
    ]


def events_sql(ref: Reference) -> str:
    """``bench_events``: ``events_rows`` rows, primary key and one more index (built after the
    load, as a restore does). ``g`` is a bigint: ``g * 7919`` passes 2^31 above 271,000 rows."""
    # Only integers from Reference reach the SQL: no outside text.
    return f"""
DROP TABLE IF EXISTS bench_events;
CREATE TABLE bench_events (
    id bigint NOT NULL,
    account_id integer NOT NULL,
    created_at timestamptz NOT NULL,
    kind text NOT NULL,
    payload text NOT NULL
);
INSERT INTO bench_events (id, account_id, created_at, kind, payload)
SELECT g,
       1 + (g * 7919) % {max(1, 100_000 * ref.scale)},
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       (ARRAY['view', 'click', 'buy', 'refund'])[1 + g % 4],
       md5(g::text)
FROM generate_series(1::bigint, {ref.events_rows}) AS g;
ALTER TABLE bench_events ADD PRIMARY KEY (id);
CREATE INDEX bench_events_created_at ON bench_events (created_at);
ANALYZE bench_events;
"""  # noqa: S608


def workload_sql(ref: Reference, round_no: int) -> str:
    """Changes rows in :data:`CHANGED_TABLES` only (``round_no`` makes every round's data new)."""
    # Only integers reach the SQL (the scale and the round): no outside text.
    return f"""
BEGIN;
UPDATE pgbench_branches SET bbalance = bbalance + {round_no};
UPDATE pgbench_tellers SET tbalance = tbalance + {round_no} WHERE tid % 2 = {round_no % 2};
TRUNCATE pgbench_history;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler)
SELECT 1 + g % {10 * ref.scale}, 1 + g % {ref.scale}, 1 + g % {100_000 * ref.scale},
       g % 1000 - 500 + {round_no}, timestamp '2024-01-01' + g * interval '1 second', NULL
FROM generate_series(1, {ref.history_rows}) AS g;
COMMIT;
"""  # noqa: S608


_TABLE_LIST = ", ".join(f"'{name}'" for name in CHANGED_TABLES)

SHARE_SQL = f"""
SELECT coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname IN ({_TABLE_LIST})),
                0)::bigint,
       coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"""  # noqa: S608 - constant table names


def changed_share(changed_bytes: int, total_bytes: int) -> float:
    """The share of the data (bytes, tables with their indexes and TOAST) the workload touches."""
    return changed_bytes / total_bytes if total_bytes > 0 else 0.0
