"""cutover.adapters.pglook against real PostgreSQL: one look sees what the resource wait, the
swap recovery, the marker read and the guard read one psql at a time (cutover.adapters.pgstaging),
and the guard decides the same from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, read_argv_log
from support.databases import make_database
from test_pglive import _conn, _wait_writes

from cutover.adapters import pglook, pgstaging
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.sandbox import procs
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

pytestmark = pytest.mark.slow


def _adapter(tmp_path: Path) -> tuple[PostgresAdapter, Path]:
    argv_log = tmp_path / "argv.jsonl"
    runner = Runner(SecretMasker(), audit=ListAudit(), base_env={ARGV_LOG_ENV: str(argv_log)})
    return PostgresAdapter(runner, runner.masker), argv_log


def _look(pg: PostgresAdapter, conn: ConnInfo) -> pglook.Look:
    return pglook.look(pg, conn, wait=5, what="the test database")


def test_one_look_sees_what_the_four_reads_saw(pg_target: PgCluster, tmp_path: Path) -> None:
    pg, argv_log = _adapter(tmp_path)
    db = make_database(pg_target, "look")
    db.execute("CREATE TABLE t (id int)", "INSERT INTO t SELECT generate_series(1, 5)")
    conn = _conn(db)
    assert _wait_writes(pg, conn, 5) == 5
    pgstaging.mark_synced(pg, conn)
    nxt, _ = pgstaging.names(conn.dbname)
    # A staging database beside it, as a failed copy leaves it (the cluster's superuser may
    # create one; the app's role may not).
    admin = replace(ConnInfo.from_url(pg_target.url(conn.dbname)), sslmode="disable")
    pgstaging.create_staging(pg, admin)
    before = len(read_argv_log(argv_log))

    seen = _look(pg, conn)

    assert len(read_argv_log(argv_log)) - before == 2  # two psql (started together)
    assert seen.major == pg.server_major(conn)
    assert seen.databases == {conn.dbname: True, nxt: True}
    assert seen.seen == pgstaging.read_marker(pg, conn)
    assert seen.seen[1] is not None and seen.seen[1].writes == 5
    assert (seen.writes, seen.tables) == (5, 1)
    assert pgstaging.guard(pg, conn, force=False, seen=seen.seen, writes=seen.writes) is None
    db.execute("INSERT INTO t VALUES (6)")
    assert _wait_writes(pg, conn, 6) == 6
    after = _look(pg, conn)
    with pytest.raises(CutoverError, match=r"taken writes since the last sync \(6 row writes"):
        pgstaging.guard(pg, conn, force=False, seen=after.seen, writes=after.writes)


def test_any_comment_reads_back_whole_and_a_foreign_one_guards_tables(
    pg_target: PgCluster, tmp_path: Path
) -> None:
    pg, _ = _adapter(tmp_path)
    db = make_database(pg_target, "lookc")
    db.execute("CREATE TABLE mine (id int)")
    conn = _conn(db)
    comment = "the team's\tdatabase\nsecond line: cutover:synced x writes=1 é"
    pgstaging.mark(pg, conn, conn.dbname, comment)

    seen = _look(pg, conn)

    assert seen.seen == (True, None, comment)
    assert seen.tables == 1
    with pytest.raises(CutoverError, match="holds 1 table"):
        pgstaging.guard(pg, conn, force=False, seen=seen.seen, tables=seen.tables)


def test_a_missing_database_is_seen_as_missing(pg_target: PgCluster, tmp_path: Path) -> None:
    pg, _ = _adapter(tmp_path)
    db = make_database(pg_target, "lookm")
    conn = _conn(db)
    gone = ConnInfo(conn.host, conn.port, conn.user, "no_such_db", conn.password, "disable")

    seen = _look(pg, gone)

    assert (seen.databases, seen.seen, seen.writes, seen.tables) == (
        {},
        (False, None, ""),
        None,
        None,
    )
    assert pgstaging.guard(pg, gone, force=False, seen=seen.seen) is None


def test_a_server_that_never_answers_is_named_after_the_wait(tmp_path: Path) -> None:
    pg, _ = _adapter(tmp_path)
    dead = ConnInfo("127.0.0.1", procs.free_port(), "u", "app", "pw-s3cret-look", "disable")
    slept: list[float] = []

    with pytest.raises(CutoverError, match="the test database did not accept a connection") as exc:
        pglook.look(pg, dead, wait=0, what="the test database", sleep=slept.append)

    assert "pw-s3cret-look" not in str(exc.value) + exc.value.details
    assert "last error:" in exc.value.details
