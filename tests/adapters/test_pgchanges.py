"""cutover.adapters.pgchanges: which tables changed on Heroku since the initial sync.

The fast tests build snapshots by hand (each rule of the module docstring); the slow ones read
real statistics from the session's PostgreSQL 15 cluster (pg_stat_user_tables,
pg_relation_filenode, pg_stat_database.stats_reset) after real writes, a TRUNCATE, a stats reset
and an added column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, assert_argv_clean
from support.databases import AppDatabase, make_database

from cutover.adapters.pgchanges import (
    ChangeSet,
    StatsSnapshot,
    TableStats,
    changed_tables,
    take_quiet_stats,
    take_stats,
)
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker


def table(**kw: object) -> TableStats:
    fields: dict[str, object] = {
        "kind": "r", "part": False, "filenode": 100, "ins": 10, "upd": 0, "del": 0,
        "live": 10, "bytes": 8192, "def": "d1",
    }  # fmt: skip
    fields.update(kw)
    return TableStats.model_validate(fields)


def snap(tables: dict[str, TableStats], **kw: object) -> StatsSnapshot:
    fields: dict[str, object] = {
        "database": "app", "taken_at": "2026-01-01T00:00:00Z",
        "server_started": "2026-01-01 00:00:00+00", "stats_reset": None, "ddl": "x",
        "tables": tables, "large_objects": {"pg_largeobject": "1 0 0 0 0"},
    }  # fmt: skip
    fields.update(kw)
    return StatsSnapshot.model_validate(fields)


BEFORE = snap({"public.a": table(), "public.b": table(filenode=200), "public.c": table()})


# --------------------------------------------------------------------------------------------
# Rules, on hand-made snapshots (fast)


def test_no_change_copies_nothing() -> None:
    got = changed_tables(BEFORE, BEFORE)
    assert got == ChangeSet(unchanged=["public.a", "public.b", "public.c"])
    assert "no table changed (3 unchanged)" in got.summary()


def test_each_counter_and_the_file_node_mark_only_that_table() -> None:
    for change, why in [
        ({"ins": 11}, "+1 inserts"),
        ({"upd": 2}, "+2 updates"),
        ({"del": 1}, "+1 deletes"),
        ({"live": 9}, "-1 live rows"),
        ({"filenode": 201}, "new file node: TRUNCATE"),
        ({"ins": 0, "live": 0}, "counters went down (reset)"),
    ]:
        after = BEFORE.model_copy(deep=True)
        fields = after.tables["public.b"].model_dump(by_alias=True) | change
        after.tables["public.b"] = TableStats.model_validate(fields)
        got = changed_tables(BEFORE, after)
        assert not got.everything, change
        assert list(got.tables) == ["public.b"], change
        assert why in got.tables["public.b"], (change, got.tables)
        assert got.unchanged == ["public.a", "public.c"]


@pytest.mark.parametrize(
    ("after", "reason"),
    [
        (BEFORE.model_copy(update={"stats_reset": "2026-01-02"}), "statistics were reset"),
        (BEFORE.model_copy(update={"server_started": "2026-01-02"}), "server restarted"),
        (BEFORE.model_copy(update={"ddl": "y"}), "the schema changed"),
        (BEFORE.model_copy(update={"large_objects": {"pg_largeobject": "1 1 0 0 1"}}), "large"),
        (snap({**BEFORE.tables, "public.d": table()}), "new table(s): public.d"),
        (
            snap({"public.a": table(), "public.b": table(filenode=200)}),
            "dropped table(s): public.c",
        ),
        (
            snap({**BEFORE.tables, "public.a": table(**{"def": "d2"})}),
            "definition changed: public.a",
        ),
        (snap({**BEFORE.tables, "public.a": table(part=True, ins=12)}), "partition"),
        (snap({**BEFORE.tables, "public.a": table(kind="m", filenode=7)}), "materialized view"),
        (BEFORE.model_copy(update={"database": "other"}), "different databases"),
        (BEFORE.model_copy(update={"unsettled_sessions": 1}), "may not be counted yet"),
        (BEFORE.model_copy(update={"track_counts": "off"}), "track_counts was off"),
    ],
)
def test_what_makes_everything_copied(after: StatsSnapshot, reason: str) -> None:
    got = changed_tables(BEFORE, after)
    assert got.everything and not got.tables
    assert any(reason in r for r in got.reasons), got.reasons
    assert got.summary().startswith("everything must be copied: ")


def test_snapshot_is_json_without_secrets_round_trip() -> None:
    text = BEFORE.model_dump_json(by_alias=True)
    assert StatsSnapshot.model_validate(json.loads(text)) == BEFORE
    assert '"del"' in text and '"def"' in text


# --------------------------------------------------------------------------------------------
# Real statistics (slow)

SCHEMA = (
    "CREATE TABLE parents (id serial PRIMARY KEY, name text UNIQUE)",
    "CREATE TABLE children (id bigserial PRIMARY KEY, parent_id int NOT NULL "
    "REFERENCES parents (id), note text)",
    "CREATE TABLE quiet (id int PRIMARY KEY, v text)",
    "INSERT INTO parents (name) SELECT 'p' || g FROM generate_series(1, 50) g",
    "INSERT INTO children (parent_id, note) SELECT 1 + g % 50, 'c' || g "
    "FROM generate_series(1, 500) g",
    "INSERT INTO quiet SELECT g, 'q' FROM generate_series(1, 20) g",
)


@dataclass
class Heroku:
    db: AppDatabase
    conn: ConnInfo
    adapter: PostgresAdapter

    def stats(self) -> StatsSnapshot:
        return take_quiet_stats(self.adapter, self.conn)


@pytest.fixture
def heroku(pg_source: PgCluster, argv_log: Path) -> Iterator[Heroku]:
    db = make_database(pg_source, "chg")
    db.execute(*SCHEMA)
    masker = SecretMasker()
    runner = Runner(masker, audit=ListAudit(), base_env={ARGV_LOG_ENV: str(argv_log)})
    yield Heroku(db, ConnInfo.from_url(db.url()), PostgresAdapter(runner, masker))
    assert_argv_clean(argv_log, [db.password])


@pytest.mark.slow
def test_real_writes_mark_exactly_the_written_tables(heroku: Heroku) -> None:
    before = heroku.stats()
    assert set(before.tables) == {"public.parents", "public.children", "public.quiet"}
    assert before.tables["public.children"].ins == 500
    assert before.other_sessions == 0
    heroku.db.execute(
        "INSERT INTO children (parent_id, note) VALUES (1, 'new')",
        "UPDATE parents SET name = 'renamed' WHERE id = 2",
    )
    got = changed_tables(before, heroku.stats())
    assert not got.everything
    assert got.tables == {
        "public.children": "+1 inserts, +1 live rows",
        "public.parents": "+1 updates",
    }
    assert got.unchanged == ["public.quiet"]
    # A snapshot of the same quiet database is stable: nothing to copy.
    assert changed_tables(heroku.stats(), heroku.stats()).tables == {}


@pytest.mark.slow
def test_real_truncate_is_caught_by_the_file_node(heroku: Heroku) -> None:
    before = heroku.stats()
    heroku.db.execute("TRUNCATE quiet")
    after = heroku.stats()
    assert after.tables["public.quiet"].filenode != before.tables["public.quiet"].filenode
    got = changed_tables(before, after)
    assert list(got.tables) == ["public.quiet"]
    assert got.tables["public.quiet"].startswith("new file node")


@pytest.mark.slow
def test_real_stats_reset_means_everything(heroku: Heroku) -> None:
    before = heroku.stats()
    # pg_stat_reset() needs a superuser (or a GRANT); Heroku's own maintenance can reset too.
    with pgcluster.connect(heroku.db.cluster, heroku.db.dbname) as conn:
        conn.execute("SELECT pg_stat_reset()")
    got = changed_tables(before, heroku.stats())
    assert got.everything
    assert any("statistics were reset" in r for r in got.reasons), got.reasons


@pytest.mark.slow
def test_real_single_table_reset_copies_that_table(heroku: Heroku) -> None:
    before = heroku.stats()
    with pgcluster.connect(heroku.db.cluster, heroku.db.dbname) as conn:
        conn.execute("SELECT pg_stat_reset_single_table_counters('children'::regclass)")
    got = changed_tables(before, heroku.stats())
    # Either the database's reset time moved (everything) or the table's counters went down.
    assert got.everything or "public.children" in got.tables, got


@pytest.mark.slow
def test_real_added_column_means_everything(heroku: Heroku) -> None:
    before = heroku.stats()
    heroku.db.execute("ALTER TABLE quiet ADD COLUMN extra int")
    got = changed_tables(before, heroku.stats())
    assert got.everything
    assert "definition changed: public.quiet" in got.reasons


@pytest.mark.slow
def test_real_ddl_elsewhere_means_everything(heroku: Heroku) -> None:
    before = heroku.stats()
    heroku.db.execute("CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'")
    got = changed_tables(before, heroku.stats())
    assert got.everything
    assert any("the schema changed" in r for r in got.reasons), got.reasons


@pytest.mark.slow
def test_real_large_object_change_means_everything(heroku: Heroku) -> None:
    before = heroku.stats()
    heroku.db.execute("SELECT lo_from_bytea(0, 'blob')")
    got = changed_tables(before, heroku.stats())
    assert got.everything
    assert "large objects changed" in got.reasons


@pytest.mark.slow
def test_take_stats_sees_other_sessions(heroku: Heroku) -> None:
    with pgcluster.connect(
        heroku.db.cluster, heroku.db.dbname, heroku.db.owner, heroku.db.password
    ):
        assert take_stats(heroku.adapter, heroku.conn).other_sessions == 1
    # Closed: the quiet snapshot waits for the backend to leave (its counters flushed).
    assert heroku.stats().other_sessions == 0


@pytest.mark.slow
def test_real_unflushed_writes_of_a_connected_session_mean_everything(heroku: Heroku) -> None:
    """A session that wrote and stays connected may hold its counters for up to
    PGSTAT_IDLE_INTERVAL (pgstat.c: at most one flush per PGSTAT_MIN_INTERVAL, 1 s; the rest
    when the idle timeout fires): the second write below is typically not in the shared
    statistics yet. Reading them then must not say "quiet unchanged"."""
    before = heroku.stats()
    with pgcluster.connect(
        heroku.db.cluster, heroku.db.dbname, heroku.db.owner, heroku.db.password
    ) as app:
        app.execute("UPDATE parents SET name = 'first' WHERE id = 3")
        app.execute("UPDATE quiet SET v = 'pending' WHERE id = 1")
        after = take_quiet_stats(heroku.adapter, heroku.conn, wait=0)
        assert after.unsettled_sessions == 1
        got = changed_tables(before, after)
        assert got.everything, got
        assert any("may not be counted yet" in r for r in got.reasons), got.reasons
    # Once the session has gone, its counters are flushed and the write is seen.
    got = changed_tables(before, heroku.stats())
    assert "public.quiet" in got.tables, got


@pytest.mark.slow
def test_real_quiet_stats_wait_for_an_idle_session_to_settle(heroku: Heroku) -> None:
    """An idle session's counters are flushed within PGSTAT_IDLE_INTERVAL: the quiet snapshot
    waits for it instead of giving up on changed-tables."""
    before = heroku.stats()
    with pgcluster.connect(
        heroku.db.cluster, heroku.db.dbname, heroku.db.owner, heroku.db.password
    ) as app:
        app.execute("UPDATE parents SET name = 'first' WHERE id = 3")
        app.execute("UPDATE quiet SET v = 'pending' WHERE id = 1")
        after = heroku.stats()
        assert after.other_sessions == 1 and after.unsettled_sessions == 0
    got = changed_tables(before, after)
    assert not got.everything, got.reasons
    assert set(got.tables) == {"public.parents", "public.quiet"}


@pytest.mark.slow
def test_real_writes_of_every_kind_are_counted(heroku: Heroku) -> None:
    """A rolled-back insert, a HOT update (n_tup_upd counts them, n_tup_hot_upd is a subset), a
    COPY, a TRUNCATE refilled to the same row count, and writes into an unlogged table, a table
    without a primary key and a table of another schema: each marks its table."""
    heroku.db.execute(
        "CREATE SCHEMA other",
        "CREATE TABLE other.t (id int PRIMARY KEY, v text)",
        "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)",
        "CREATE TABLE nokey (v text)",
        "CREATE TABLE hot (id int PRIMARY KEY, v text) WITH (fillfactor = 50)",
        "CREATE TABLE refill (id int)",
        "CREATE TABLE rolled (id int)",
        "CREATE TABLE copied (id int)",
        "INSERT INTO other.t VALUES (1, 'a')",
        "INSERT INTO scratch VALUES (1)",
        "INSERT INTO nokey VALUES ('a')",
        "INSERT INTO hot VALUES (1, 'a')",
        "INSERT INTO refill SELECT generate_series(1, 3)",
    )
    before = heroku.stats()
    with pgcluster.connect(
        heroku.db.cluster, heroku.db.dbname, heroku.db.owner, heroku.db.password
    ) as app:
        with app.transaction(force_rollback=True):
            app.execute("INSERT INTO rolled VALUES (1)")
        app.execute("UPDATE hot SET v = 'b' WHERE id = 1")  # v not indexed: HOT
        with app.cursor().copy("COPY copied FROM STDIN") as copy:
            copy.write_row((1,))
        app.execute("BEGIN")
        app.execute("TRUNCATE refill")
        app.execute("INSERT INTO refill SELECT generate_series(1, 3)")
        app.execute("COMMIT")
        app.execute("UPDATE other.t SET v = 'b'")
        app.execute("INSERT INTO scratch VALUES (2)")
        app.execute("DELETE FROM nokey")
    after = heroku.stats()
    got = changed_tables(before, after)
    assert not got.everything, got.reasons
    assert set(got.tables) == {
        "public.rolled", "public.hot", "public.copied", "public.refill", "other.t",
        "public.scratch", "public.nokey",
    }  # fmt: skip
    assert got.tables["public.refill"].startswith("new file node")
    hot = "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'hot';"
    assert heroku.adapter.psql(heroku.conn, hot) == [["1"]]  # it was a HOT update


@pytest.mark.slow
def test_real_freeze_of_the_database_is_no_schema_change(heroku: Heroku) -> None:
    """freeze-writes sets default_transaction_read_only on Heroku's database between
    initial-sync and final-sync (steps/freeze.py): that alone must not force a full sync."""
    before = heroku.stats()
    with pgcluster.connect(heroku.db.cluster, heroku.db.dbname) as conn:
        conn.execute(f'ALTER DATABASE "{heroku.db.dbname}" SET default_transaction_read_only = on')
    try:
        got = changed_tables(before, heroku.stats())
        assert not got.everything, got.reasons
        assert got.tables == {}
        # Any other database setting is still a change that needs a full sync.
        with pgcluster.connect(heroku.db.cluster, heroku.db.dbname) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f"ALTER DATABASE \"{heroku.db.dbname}\" SET work_mem = '8MB'")
        assert changed_tables(before, heroku.stats()).everything
    finally:
        with pgcluster.connect(heroku.db.cluster, heroku.db.dbname) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f'ALTER DATABASE "{heroku.db.dbname}" RESET ALL')
