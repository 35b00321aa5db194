"""cutover.adapters.pglive against real PostgreSQL: the live marker keeps the final sync's write
count, the writes since then are counted from pg_stat_user_tables, and rollback puts the synced
marker back so pgstaging's guard still sees those writes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit
from support.databases import AppDatabase, make_database

from cutover.adapters import pglive, pgstaging
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

pytestmark = pytest.mark.slow


def _conn(db: AppDatabase) -> ConnInfo:
    info = ConnInfo.from_url(db.url())
    return ConnInfo(info.host, info.port, info.user, info.dbname, info.password, "disable")


def _wait_writes(pg: PostgresAdapter, conn: ConnInfo, wanted: int) -> int:
    """Statistics reach shared memory when the writing session ends (PostgreSQL 15 pgstat.c):
    poll with a generous deadline."""
    deadline = time.monotonic() + 60
    while (got := pgstaging.write_count(pg, conn)) < wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def test_live_marker_counts_writes_since_the_sync_and_unmarks_back(
    pg_target: PgCluster, tmp_path: Path
) -> None:
    runner = Runner(SecretMasker(), audit=ListAudit(), base_env={ARGV_LOG_ENV: str(tmp_path / "a")})
    pg = PostgresAdapter(runner, runner.masker)
    db = make_database(pg_target, "live")
    db.execute("CREATE TABLE t (id int)", "INSERT INTO t SELECT generate_series(1, 5)")
    conn = _conn(db)
    assert _wait_writes(pg, conn, 5) == 5
    synced = pgstaging.mark_synced(pg, conn)
    assert synced.endswith(" writes=5")

    live = pglive.mark_live_after_sync(pg, conn)

    assert live.startswith("cutover:live ") and " writes=5 synced=" in live
    assert pglive.mark_live_after_sync(pg, conn) == live  # a resumed switch keeps the count
    with pytest.raises(CutoverError, match="is live"):
        pgstaging.guard(pg, conn, force=False)  # pgstaging still reads it as live
    assert pglive.writes_since_sync(pg, conn)[0] == 0

    db.execute("INSERT INTO t VALUES (6), (7)", "UPDATE t SET id = 0 WHERE id = 1")
    assert _wait_writes(pg, conn, 8) == 8
    writes, found = pglive.writes_since_sync(pg, conn)

    assert writes == 3
    assert "has taken 3 row write(s) since the final sync (8 now, 5 when" in found
    restored = pglive.unmark_live(pg, conn)
    assert restored == synced  # the final sync's marker, time and count
    assert pgstaging.read_marker(pg, conn)[2] == synced
    assert pglive.unmark_live(pg, conn) is None
    with pytest.raises(CutoverError, match="has taken writes since the last sync"):
        pgstaging.guard(pg, conn, force=False)  # the next sync still protects those writes


def test_an_old_live_marker_cannot_tell(pg_target: PgCluster, tmp_path: Path) -> None:
    runner = Runner(SecretMasker(), audit=ListAudit(), base_env={ARGV_LOG_ENV: str(tmp_path / "a")})
    pg = PostgresAdapter(runner, runner.masker)
    db = make_database(pg_target, "oldlive")
    conn = _conn(db)
    pgstaging.mark_live(pg, conn)  # as switch-dns wrote it before pglive

    writes, found = pglive.writes_since_sync(pg, conn)

    assert writes is None
    assert "holds no write count of the final sync" in found
