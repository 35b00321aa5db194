"""cutover.adapters.pgcapture against a real PostgreSQL 15 cluster.

The "Heroku" database is owned by a NOSUPERUSER login role (make_database), as on Heroku, and
every call runs as that role through the real Runner and psql.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, assert_argv_clean
from support.databases import AppDatabase, make_database

from cutover.adapters import pgcapture
from cutover.adapters.pgcapture import (
    CapturePlan,
    CaptureTable,
    is_capture_schema_header,
    is_capture_toc_line,
)
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

SCHEMA = (
    "CREATE TABLE items (id int PRIMARY KEY, v text)",
    # No primary key: the unique index on NOT NULL columns is the key; the one on a nullable
    # column cannot be (NULLs repeat).
    "CREATE TABLE slugs (a int NOT NULL, b text NOT NULL, c int UNIQUE, note text)",
    "CREATE UNIQUE INDEX slugs_ab ON slugs (a, b)",
    "CREATE TABLE nullable_unique (x int UNIQUE, y text)",
    "CREATE TABLE bag (x int, y text)",
    'CREATE SCHEMA "Odd"',
    'CREATE TABLE "Odd"."Pairs" ("K1" int, k2 text, v int, PRIMARY KEY ("K1", k2))',
    "CREATE TABLE parted (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d)",
    "CREATE TABLE parted_2024 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE animals (id int PRIMARY KEY, name text)",
    "CREATE TABLE dogs (breed text) INHERITS (animals)",
    "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 10) g",
)


@dataclass
class World:
    db: AppDatabase
    conn: ConnInfo
    pg: PostgresAdapter

    def sql(self, sql: str) -> list[list[str]]:
        return pgcapture.query(self.pg, self.conn, sql)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return pgcluster.connect(self.db.cluster, self.db.dbname, self.db.owner, self.db.password)


@pytest.fixture
def world(pg_source: PgCluster, argv_log: Path) -> Iterator[World]:
    db = make_database(pg_source, "capt")
    db.execute(*SCHEMA)
    masker = SecretMasker()
    runner = Runner(masker, audit=ListAudit(), base_env={ARGV_LOG_ENV: str(argv_log)})
    yield World(db, ConnInfo.from_url(db.url()), PostgresAdapter(runner, masker))
    argvs = assert_argv_clean(argv_log, [db.password])
    assert argvs, "no command ran"


EXPECTED = CapturePlan(
    tables=(
        CaptureTable('"Odd"."Pairs"', 0, ('"K1"', "k2"), "primary key"),
        CaptureTable("public.items", 0, ("id",), "primary key"),
        CaptureTable("public.slugs", 0, ("a", "b"), "unique index slugs_ab"),
    ),
    keyless=("public.bag", "public.nullable_unique"),
    logged=(
        CaptureTable("public.bag", 0, (), "none: rows logged"),
        CaptureTable("public.nullable_unique", 0, (), "none: rows logged"),
    ),
    unsupported=(
        "public.animals: in an inheritance tree",
        "public.dogs: in an inheritance tree",
        "public.parted: partitioned table",
        "public.parted_2024: partition of a partitioned table",
    ),
)


def without_relids(plan: CapturePlan) -> CapturePlan:
    return CapturePlan(
        tuple(CaptureTable(t.name, 0, t.key, t.key_source) for t in plan.tables),
        plan.keyless,
        plan.unsupported,
        tuple(CaptureTable(t.name, 0, t.key, t.key_source) for t in plan.logged),
    )


def is_superuser(world: World) -> bool:
    return world.sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user;") == [["t"]]


@pytest.mark.slow
def test_inspect_classifies_tables_and_never_captures_its_own(world: World) -> None:
    plan = pgcapture.inspect(world.pg, world.conn)
    assert without_relids(plan) == EXPECTED
    relids = dict(world.sql("SELECT oid::regclass::text, oid FROM pg_class WHERE relkind = 'r';"))
    assert plan.tables[1].relid == int(relids["items"])
    pgcapture.install(world.pg, world.conn, plan)
    # _cutover's own tables (with their primary key) are not user tables.
    assert without_relids(pgcapture.inspect(world.pg, world.conn)) == EXPECTED


@pytest.mark.slow
def test_install_is_idempotent_as_a_non_superuser_under_read_only_default(world: World) -> None:
    assert not is_superuser(world)
    world.db.execute(f'ALTER DATABASE "{world.db.dbname}" SET default_transaction_read_only = on')
    plan = pgcapture.inspect(world.pg, world.conn)
    assert pgcapture.status(world.pg, world.conn).installed is False
    pgcapture.install(world.pg, world.conn, plan)
    first = pgcapture.leftovers(world.pg, world.conn)
    pgcapture.install(world.pg, world.conn, plan)
    assert pgcapture.leftovers(world.pg, world.conn) == first
    status = pgcapture.status(world.pg, world.conn)
    assert status.installed and status.missing_triggers == ()
    captured = [*plan.tables, *plan.logged]  # keyless tables too: their rows are logged
    assert sorted(t.name for t in status.tables) == sorted(t.name for t in captured)
    triggers = world.sql(
        "SELECT tgrelid::regclass::text, count(*) FROM pg_trigger "
        "WHERE tgname LIKE 'cutover\\_capture%' GROUP BY 1 ORDER BY 1;"
    )
    assert triggers == [
        ['"Odd"."Pairs"', "4"], ["bag", "4"], ["items", "4"], ["nullable_unique", "4"],
        ["slugs", "4"],
    ]  # fmt: skip
    # Every function is SECURITY INVOKER with a fixed search_path.
    functions = world.sql(
        "SELECT p.prosecdef, array_to_string(p.proconfig, ';') FROM pg_proc p "
        "WHERE p.pronamespace = '_cutover'::regnamespace;"
    )
    # Those of the keyless tables also fix how their logged rows print (read back the same).
    rows_text = (
        "search_path=pg_catalog, pg_temp;TimeZone=UTC;DateStyle=ISO, YMD;"
        "IntervalStyle=postgres;extra_float_digits=3;bytea_output=hex"
    )
    assert sorted(row[1] for row in functions) == sorted(
        ["search_path=pg_catalog, pg_temp"] * 12 + [rows_text] * 8
    )
    assert all(row[0] == "f" for row in functions)
    # A disabled trigger shows as missing, and a re-install enables it again.
    world.db.execute(
        "SET default_transaction_read_only = off",
        "ALTER TABLE items DISABLE TRIGGER cutover_capture_upd",
    )
    assert pgcapture.status(world.pg, world.conn).missing_triggers == ("public.items",)
    pgcapture.install(world.pg, world.conn, plan)
    assert pgcapture.status(world.pg, world.conn).missing_triggers == ()


@pytest.mark.slow
def test_pending_counts_committed_writes_after_a_position(world: World) -> None:
    plan = pgcapture.inspect(world.pg, world.conn)
    since = pgcapture.position(world.pg, world.conn)
    with pytest.raises(CutoverError, match="change capture is not installed"):
        pgcapture.pending(world.pg, world.conn, since)
    pgcapture.install(world.pg, world.conn, plan)
    since = pgcapture.position(world.pg, world.conn)
    assert pgcapture.pending(world.pg, world.conn, since).entries == 0
    world.db.execute(
        "INSERT INTO items VALUES (11, 'x'), (12, 'y')",
        "UPDATE items SET id = 100 WHERE id = 1",  # old and new key
        "DELETE FROM items WHERE id = 2",
        'INSERT INTO "Odd"."Pairs" VALUES (1, \'a\', 1)',
        "TRUNCATE slugs",
    )
    with world.connect() as conn, conn.transaction(force_rollback=True):  # rolled back
        conn.execute("INSERT INTO items VALUES (500, 'gone')")
    left = pgcapture.pending(world.pg, world.conn, since)
    assert left.tables == {"public.items": 5, '"Odd"."Pairs"': 1, "public.slugs": 1}
    assert left.entries == 7 and left.truncated == ("public.slugs",)
    later = pgcapture.position(world.pg, world.conn)
    assert pgcapture.pending(world.pg, world.conn, later).entries == 0
    with pytest.raises(CutoverError, match="not a capture position"):
        pgcapture.pending(world.pg, world.conn, "1:2:3'; DROP TABLE items; --")


@pytest.mark.slow
def test_a_locked_table_fails_the_install_clearly_and_installs_nothing(world: World) -> None:
    plan = pgcapture.inspect(world.pg, world.conn)
    with world.connect() as app:
        app.execute("BEGIN")
        app.execute("LOCK TABLE slugs IN ROW EXCLUSIVE MODE")  # what a writer holds
        with pytest.raises(CutoverError) as caught:
            pgcapture.install(world.pg, world.conn, plan)
        app.execute("ROLLBACK")
    assert "public.slugs stayed locked by another session for 5s" in caught.value.brief
    assert "Nothing was installed" in caught.value.details
    assert pgcapture.leftovers(world.pg, world.conn) == []
    # Once installed, a refresh takes no lock a writer holds: it goes through beside one.
    pgcapture.install(world.pg, world.conn, plan)
    with world.connect() as app:
        app.execute("BEGIN")
        app.execute("UPDATE slugs SET note = 'busy'")
        pgcapture.install(world.pg, world.conn, plan)
        app.execute("ROLLBACK")


@pytest.mark.slow
def test_another_role_writing_the_tables_is_captured_too(world: World) -> None:
    pgcapture.install(world.pg, world.conn, pgcapture.inspect(world.pg, world.conn))
    since = pgcapture.position(world.pg, world.conn)
    other = f"{world.db.owner}_app"
    with pgcluster.connect(world.db.cluster) as admin:  # the cluster's superuser makes the role
        admin.execute(f"CREATE ROLE \"{other}\" LOGIN PASSWORD 'other-pw'")
    world.db.execute(f'GRANT INSERT, UPDATE, DELETE, SELECT ON items TO "{other}"')
    with pgcluster.connect(world.db.cluster, world.db.dbname, other, "other-pw") as app:
        app.execute("INSERT INTO items VALUES (77, 'other')")
        app.execute("UPDATE items SET v = 'o' WHERE id = 1")
    assert pgcapture.pending(world.pg, world.conn, since).tables == {"public.items": 2}


@pytest.mark.slow
def test_schema_changes_name_added_columns_new_and_dropped_tables(world: World) -> None:
    plan = pgcapture.inspect(world.pg, world.conn)
    assert pgcapture.schema_changes(world.pg, world.conn) == ["the change capture is not installed"]
    pgcapture.install(world.pg, world.conn, plan)
    # The capture's own triggers, log tables and functions are not changes.
    assert pgcapture.schema_changes(world.pg, world.conn) == []
    world.db.execute(
        "ALTER TABLE items ADD COLUMN extra int",
        "CREATE TABLE fresh (id int PRIMARY KEY)",
        "DROP TABLE bag",
    )
    assert pgcapture.schema_changes(world.pg, world.conn) == [
        "public.fresh: new table, not captured",
        "public.items: definition changed since the capture was installed",
        "public.bag: dropped",
    ]
    # A refresh (what initial-sync does before copying again) makes it safe again, and
    # captures the new table.
    again = pgcapture.install(world.pg, world.conn, pgcapture.inspect(world.pg, world.conn))
    assert "public.fresh" in [t.name for t in again.tables]
    assert pgcapture.schema_changes(world.pg, world.conn) == []
    assert pgcapture.status(world.pg, world.conn).missing_triggers == ()
    # A key change rebuilds that table's log with the new key's columns.
    world.db.execute(
        "ALTER TABLE fresh DROP CONSTRAINT fresh_pkey",
        "ALTER TABLE fresh ADD COLUMN k text NOT NULL DEFAULT 'x'",
        "ALTER TABLE fresh ADD PRIMARY KEY (k)",
    )
    pgcapture.install(world.pg, world.conn, pgcapture.inspect(world.pg, world.conn))
    relid = world.sql("SELECT 'fresh'::regclass::oid;")[0][0]
    columns = world.sql(
        f"SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
        f"WHERE attrelid = '_cutover.log_{relid}'::regclass AND attnum > 0;"
    )
    assert columns == [["k,cutover_seq,cutover_xid"]]
    world.db.execute("INSERT INTO fresh (id, k) VALUES (1, 'a')")
    since_nothing = "1:1:"
    assert pgcapture.pending(world.pg, world.conn, since_nothing).tables["public.fresh"] == 1


@pytest.mark.slow
def test_uninstall_removes_every_object_and_is_a_no_op_when_clean(world: World) -> None:
    assert pgcapture.uninstall(world.pg, world.conn) == []
    plan = pgcapture.inspect(world.pg, world.conn)
    pgcapture.install(world.pg, world.conn, plan)
    listed = pgcapture.leftovers(world.pg, world.conn)
    assert "schema _cutover" in listed
    assert "trigger cutover_capture_ins on public.items" in listed
    assert "table _cutover.tables" in listed and "sequence _cutover.seq" in listed
    assert sum(item.startswith("function _cutover.capture_") for item in listed) == 20
    world.db.execute(f'ALTER DATABASE "{world.db.dbname}" SET default_transaction_read_only = on')
    assert pgcapture.uninstall(world.pg, world.conn) == listed
    # The catalog, read directly: nothing of the capture remains.
    assert world.sql(
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = '_cutover'), "
        "(SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cutover%'), "
        "(SELECT count(*) FROM pg_proc WHERE proname LIKE 'capture\\_%');"
    ) == [["0", "0", "0"]]
    assert pgcapture.leftovers(world.pg, world.conn) == []
    assert pgcapture.uninstall(world.pg, world.conn) == []
    assert pgcapture.status(world.pg, world.conn).installed is False


@pytest.mark.slow
def test_install_statements_name_catalog_objects_only(world: World) -> None:
    plan = pgcapture.inspect(world.pg, world.conn)
    statements = pgcapture.install_statements(plan)
    assert statements[0] == "BEGIN READ WRITE" and statements[-1] == "COMMIT"
    assert "SET LOCAL lock_timeout = '5s'" in statements
    text = "\n".join(statements)
    assert world.db.password not in text
    for table in plan.tables:
        assert f"CREATE TRIGGER cutover_capture_trunc AFTER TRUNCATE ON {table.name}" in text


# -- filters (no database) ---------------------------------------------------------------------
# pg_restore --list lines as pg_backup_archiver.c PrintTOCSummary prints them (PostgreSQL 15:
# "%d; %u %u %s %s %s %s\n": dumpId, catalogId.tableoid, catalogId.oid, desc, namespace, tag,
# owner).
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("3385; 2615 16390 SCHEMA - _cutover app_owner", True),
        ("215; 1259 16391 TABLE _cutover tables app_owner", True),
        ("3390; 0 16391 TABLE DATA _cutover log_16384 app_owner", True),
        ("216; 1259 16400 SEQUENCE _cutover seq app_owner", True),
        ("3400; 0 0 SEQUENCE SET _cutover seq app_owner", True),
        ("230; 1255 16402 FUNCTION _cutover capture_16384_ins() app_owner", True),
        ("3201; 2620 16410 TRIGGER public items cutover_capture_ins app_owner", True),
        ("3202; 1259 16411 INDEX _cutover log_16384_xid app_owner", True),
        ("3203; 0 0 ACL - SCHEMA _cutover app_owner", True),
        ("3205; 0 0 ACL _cutover TABLE log_16384 app_owner", True),
        ("3223; 2606 16402 CONSTRAINT _cutover tables tables_pkey app_owner", True),
        ("3204; 2620 16412 TRIGGER public items items_audit app_owner", False),
        ("214; 1259 16384 TABLE public items app_owner", False),
        ("3386; 0 16384 TABLE DATA public _cutover app_owner", False),
        ("3387; 2615 2200 SCHEMA - public pg_database_owner", False),
        (";", False),
        ("; Archive created at 2026-11-30 19:00:00 UTC", False),
        ("", False),
    ],
)
def test_is_capture_toc_line(line: str, expected: bool) -> None:
    assert is_capture_toc_line(line) is expected


def test_is_capture_schema_header() -> None:
    assert is_capture_schema_header("_cutover", "SCHEMA", "-")
    assert is_capture_schema_header("log_16384", "TABLE", "_cutover")
    assert is_capture_schema_header("items cutover_capture_upd", "TRIGGER", "public")
    assert not is_capture_schema_header("items items_audit", "TRIGGER", "public")
    assert not is_capture_schema_header("items", "TABLE", "public")
