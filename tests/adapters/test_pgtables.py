"""cutover.adapters.pgtables.copy_tables against two real PostgreSQL 15 clusters.

The "Heroku" database is on the session's source cluster, the "Convox" one on the target
cluster, both owned by NOSUPERUSER roles (make_database). The target starts as a pg_restore of
the source (the initial sync), then the source changes; pgchanges says which tables changed and
copy_tables copies exactly those. Untouched tables keep their file node and row versions (xmin).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, assert_argv_clean, read_argv_log
from support.databases import AppDatabase, make_database

from cutover.adapters.pgchanges import changed_tables, take_quiet_stats
from cutover.adapters.pgtables import (
    CopyProgress,
    TablePlan,
    copy_tables,
    pipeline_argv,
    pipeline_env,
    plan_table,
)
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

SCHEMA = (
    "CREATE TABLE parents (id serial PRIMARY KEY, name text UNIQUE)",
    "CREATE TABLE children (id bigserial PRIMARY KEY, parent_id int NOT NULL "
    "REFERENCES parents (id), note text, payload bytea, "
    "doubled bigint GENERATED ALWAYS AS (id * 2) STORED)",
    "CREATE INDEX children_parent ON children (parent_id)",
    "COMMENT ON INDEX children_parent IS 'by parent'",
    "ALTER TABLE children CLUSTER ON children_parent",
    # A trigger that would rewrite every copied row: it must not fire during the copy.
    "CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN NEW.note := NEW.note || '!'; RETURN NEW; END$$",
    "CREATE TRIGGER children_shout BEFORE INSERT ON children FOR EACH ROW EXECUTE FUNCTION shout()",
    "CREATE TABLE quiet (id int PRIMARY KEY, v text)",
    "CREATE TABLE other (id int PRIMARY KEY, parent_id int REFERENCES parents (id), v text)",
    "INSERT INTO parents (name) SELECT 'p' || g FROM generate_series(1, 50) g",
    "INSERT INTO children (parent_id, note, payload) SELECT 1 + g % 50, 'c' || g, "
    "decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g",
    "INSERT INTO quiet SELECT g, 'q' FROM generate_series(1, 20) g",
    "INSERT INTO other SELECT g, 1 + g % 50, 'o' FROM generate_series(1, 30) g",
)

RELFILE_AND_XMIN = """
SELECT c.relname, pg_relation_filenode(c.oid)::text,
       (SELECT string_agg(t.xmin::text, ',' ORDER BY t.xmin::text)
        FROM {table} t)
FROM pg_class c WHERE c.oid = '{table}'::regclass
"""

TARGET_SHAPE = """
SELECT 'con:' || conrelid::regclass || ':' || conname || ':' || convalidated
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'idx:' || indexrelid::regclass || ':' || indisclustered || ':'
       || coalesce(obj_description(indexrelid, 'pg_class'), '-')
FROM pg_index WHERE indrelid::regclass::text IN ('parents', 'children', 'quiet', 'other')
UNION ALL
SELECT 'trg:' || tgname || ':' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
ORDER BY 1
"""


@dataclass
class World:
    heroku: AppDatabase
    convox: AppDatabase
    source: ConnInfo
    target: ConnInfo
    runner: Runner
    masker: SecretMasker
    adapter: PostgresAdapter
    progress: list[CopyProgress] = field(default_factory=list)

    def sql(self, conn: ConnInfo, sql: str) -> list[list[str]]:
        return self.adapter.psql(conn, sql)

    def identity(self, table: str) -> list[str]:
        return self.sql(self.target, RELFILE_AND_XMIN.format(table=table))[0]

    def copy(self, tables: list[str], jobs: int = 2) -> object:
        return copy_tables(
            self.runner,
            self.masker,
            self.source,
            self.target,
            tables,
            jobs=jobs,
            timeout=120,
            progress=self.progress.append,
        )


def restore(source: AppDatabase, target: AppDatabase) -> None:
    """The initial sync: pg_dump | pg_restore --no-owner --no-acl (passwords in the env)."""
    dump = subprocess.run(
        ["pg_dump", "-Fc", "--no-owner", "--no-acl"],
        env=pgcluster.client_env(source.libpq_env()),
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    subprocess.run(
        ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "-d", target.dbname],
        env=pgcluster.client_env(target.libpq_env()),
        input=dump,
        capture_output=True,
        check=True,
        timeout=120,
    )


@pytest.fixture
def world(pg_source: PgCluster, pg_target: PgCluster, argv_log: Path) -> Iterator[World]:
    heroku = make_database(pg_source, "tsrc")
    heroku.execute(*SCHEMA)
    convox = make_database(pg_target, "tdst")
    restore(heroku, convox)
    masker = SecretMasker()
    runner = Runner(masker, audit=ListAudit(), base_env={ARGV_LOG_ENV: str(argv_log)})
    yield World(
        heroku,
        convox,
        ConnInfo.from_url(heroku.url()),
        ConnInfo.from_url(convox.url()),
        runner,
        masker,
        PostgresAdapter(runner, masker),
    )
    argvs = assert_argv_clean(argv_log, [heroku.password, convox.password])
    assert argvs, "no command ran"


def fingerprints(world: World) -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]]]:
    return world.adapter.fingerprints(world.source), world.adapter.fingerprints(world.target)


@pytest.mark.slow
def test_copies_only_changed_tables_and_every_sequence(world: World) -> None:
    before = take_quiet_stats(world.adapter, world.source)
    shape = world.sql(world.target, TARGET_SHAPE)
    untouched = {t: world.identity(t) for t in ("parents", "quiet")}
    copied_before = world.identity("children")
    world.heroku.execute(
        "INSERT INTO children (parent_id, note) SELECT 1, 'late' FROM generate_series(1, 100)",
        "UPDATE children SET payload = NULL WHERE id % 7 = 0",
        "DELETE FROM other WHERE id > 25",
        "SELECT setval('parents_id_seq', 500)",  # a sequence moves without any table write
    )
    changes = changed_tables(before, take_quiet_stats(world.adapter, world.source))
    assert sorted(changes.tables) == ["public.children", "public.other"]

    result = world.copy(sorted(changes.tables))

    src, dst = fingerprints(world)
    assert src == dst  # rows, content checksums and every sequence's position
    assert dst["sequence:public.parents_id_seq"][1] == "500"
    assert {t: world.identity(t) for t in untouched} == untouched  # same file, same row versions
    assert world.identity("children")[1] != copied_before[1]  # replaced (TRUNCATE: new file)
    # Indexes, constraints (FKs validated again), comments, CLUSTER and triggers as before.
    assert world.sql(world.target, TARGET_SHAPE) == shape
    # The trigger fired once on Heroku, never again on the copied rows (src == dst says it too).
    assert world.sql(world.target, "SELECT count(*) FROM children WHERE note = 'late!'") == [
        ["100"]
    ]
    assert result.tables == 2 and result.sequences == 2  # type: ignore[attr-defined]
    assert world.progress[0] == CopyProgress(0, 2, 0)
    assert world.progress[-1].tables_done == 2 and world.progress[-1].bytes_done > 0


@pytest.mark.slow
def test_a_table_failing_halfway_is_left_as_it_was(world: World) -> None:
    # A constraint only the target has: the COPY fails at the last row, after TRUNCATE and after
    # the first rows went in; the table's transaction must roll all of it back.
    world.convox.execute(
        "ALTER TABLE children ADD CONSTRAINT small_ids CHECK (id <= 2050) NOT VALID"
    )
    world.heroku.execute(
        "INSERT INTO children (parent_id, note) SELECT 1, 'late' FROM generate_series(1, 100)",
        "UPDATE quiet SET v = 'changed' WHERE id = 1",
    )
    shape = world.sql(world.target, TARGET_SHAPE)
    children = world.identity("children")
    with pytest.raises(CutoverError) as caught:
        world.copy(["public.children", "public.quiet"], jobs=1)
    err = caught.value
    assert "1 of 2 table(s) could not be copied" in err.brief
    assert "public.children" in err.details and "small_ids" in err.details
    assert world.identity("children") == children  # same file, same rows, same row versions
    assert world.sql(world.target, TARGET_SHAPE) == shape  # indexes and FKs all still there
    src, dst = fingerprints(world)
    assert src["public.quiet"] == dst["public.quiet"]  # the other table was copied
    assert src["public.children"] != dst["public.children"]


@pytest.mark.slow
def test_a_source_failing_before_any_row_leaves_the_target_table_as_it_was(world: World) -> None:
    """A source COPY that fails at once must not commit an emptied table on the target."""
    quiet = world.identity("quiet")
    world.heroku.execute("ALTER TABLE quiet RENAME TO quiet_gone")
    with pytest.raises(CutoverError) as caught:
        world.copy(["public.quiet"])
    assert 'relation "public.quiet" does not exist' in caught.value.details
    assert world.identity("quiet") == quiet
    assert world.sql(world.target, "SELECT count(*) FROM quiet") == [["20"]]


@pytest.mark.slow
def test_a_source_cut_in_the_middle_of_its_rows_leaves_the_target_table_as_it_was(
    world: World,
) -> None:
    """The source's session ends while rows are streaming: nothing is committed on the target.

    A CHECK that sleeps per row (kept during the copy: only indexes and FKs are dropped) makes
    the target slow, and 40 MB of rows outgrow the pipe and socket buffers, so the source is still
    sending when its backend is terminated."""
    world.heroku.execute(
        "CREATE TABLE big (id int PRIMARY KEY, pad text)",
        "INSERT INTO big SELECT g, repeat('x', 2000) FROM generate_series(1, 20000) g",
    )
    world.convox.execute(
        "CREATE TABLE big (id int PRIMARY KEY, pad text)",
        "INSERT INTO big VALUES (1, 'old')",
        "CREATE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE sql "
        "AS 'SELECT pg_sleep(0.001) IS NOT NULL'",
        "ALTER TABLE big ADD CONSTRAINT big_slow CHECK (slow_ok(id))",
    )
    big = world.identity("big")
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            world.copy(["public.big"])
            outcome["error"] = None
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    terminated = False
    deadline = time.monotonic() + 60
    while not terminated and time.monotonic() < deadline and thread.is_alive():
        with pgcluster.connect(world.heroku.cluster) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND query LIKE 'COPY public.big%%'",
                (world.heroku.dbname,),
            ).fetchone()
        terminated = bool(row and row[0])
        time.sleep(0.05)
    thread.join(120)
    assert terminated, "the source COPY was never seen running"
    assert isinstance(outcome.get("error"), CutoverError), outcome
    assert world.identity("big") == big
    assert world.sql(world.target, "SELECT id, pad FROM big") == [["1", "old"]]


@pytest.mark.slow
def test_interrupted_copy_resumes_and_validates_left_fks(world: World) -> None:
    """FKs re-added NOT VALID by an interrupted run are validated by the next one."""
    world.convox.execute(
        "ALTER TABLE other DROP CONSTRAINT other_parent_id_fkey",
        "ALTER TABLE other ADD CONSTRAINT other_parent_id_fkey FOREIGN KEY (parent_id) "
        "REFERENCES parents (id) NOT VALID",
    )
    world.copy([])
    rows = world.sql(
        world.target,
        "SELECT convalidated FROM pg_constraint WHERE conname = 'other_parent_id_fkey'",
    )
    assert rows == [["t"]]


@pytest.mark.slow
def test_odd_names_identity_columns_and_another_schema(world: World) -> None:
    """Quotes, spaces and capitals in schema, table and column names (quote_ident end to end,
    "$1" in bash); a GENERATED ALWAYS identity column takes COPY's values; its sequence too."""
    ddl = (
        'CREATE SCHEMA "Odd Schema"',
        'CREATE TABLE "Odd Schema"."We""ird T" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,'
        ' "Val ue" text)',
        """INSERT INTO "Odd Schema"."We""ird T" ("Val ue") VALUES ('a'), ('b''s')""",
    )
    world.heroku.execute(*ddl)
    world.convox.execute(*ddl)
    world.heroku.execute(
        """DELETE FROM "Odd Schema"."We""ird T" WHERE id = 1""",
        """INSERT INTO "Odd Schema"."We""ird T" ("Val ue") SELECT 'n' || g
           FROM generate_series(1, 5) g""",
    )
    result = world.copy(['"Odd Schema"."We""ird T"'])
    src, dst = fingerprints(world)
    assert src == dst
    assert dst['"Odd Schema"."We""ird T"'][0] == 6
    assert result.tables == 1  # type: ignore[attr-defined]


@pytest.mark.slow
def test_row_level_security_on_heroku_never_filters_rows_silently(world: World) -> None:
    """With FORCE ROW LEVEL SECURITY even the owner's ``COPY table TO`` returns only the rows
    its policies show (COPY docs: "the relevant SELECT policies will apply"): the copy would
    commit a short table. row_security=off makes it fail instead (like pg_dump, which sets it),
    and the target table stays as it was."""
    world.heroku.execute(
        "ALTER TABLE quiet ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE quiet FORCE ROW LEVEL SECURITY",
        "CREATE POLICY evens ON quiet USING (id % 2 = 0)",
        "UPDATE quiet SET v = 'changed'",
    )
    quiet = world.identity("quiet")
    with pytest.raises(CutoverError) as caught:
        world.copy(["public.quiet"])
    assert "row-level security" in caught.value.details
    assert world.identity("quiet") == quiet
    assert world.sql(world.target, "SELECT count(*) FROM quiet") == [["20"]]


@pytest.mark.slow
def test_forced_row_level_security_on_the_target_is_lifted_for_the_copy_only(
    world: World,
) -> None:
    """COPY FROM refuses a table whose policies apply to the role (FORCE, owner): the copy lifts
    FORCE inside its transaction and puts it back."""
    world.convox.execute(
        "ALTER TABLE quiet ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE quiet FORCE ROW LEVEL SECURITY",
        "CREATE POLICY evens ON quiet USING (id % 2 = 0)",
    )
    world.heroku.execute("UPDATE quiet SET v = 'changed' WHERE id = 3")
    world.copy(["public.quiet"])
    rows = world.sql(
        world.target,
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'quiet'",
    )
    assert rows == [["t", "t"]]
    # The owner sees the policy's rows only now; a superuser (RLS bypassed) sees all 20.
    with pgcluster.connect(world.convox.cluster, world.convox.dbname) as conn:
        row = conn.execute("SELECT count(*), max(v) FILTER (WHERE id = 3) FROM quiet").fetchone()
    assert row == (20, "changed")


def test_pipeline_argv_names_variables_never_values() -> None:
    source = ConnInfo(
        "db.heroku.example", 5432, "u1", "d1", password="s3cret-src", sslmode="require"
    )
    target = ConnInfo("127.0.0.1", 15432, "app", "app", password="s3cret-dst")
    plan = TablePlan("public.t", ['"Id"', "v"], ["public.t"], ["DROP INDEX public.i"], ["X"])
    argv = pipeline_argv(plan, source, target)
    joined = "\x00".join(argv)
    assert "s3cret" not in joined
    assert argv[:2] == ["bash", "-c"] and argv[2].startswith("set -o pipefail; unset PGHOST")
    assert 'PGPASSWORD="$CUTOVER_SRC_PGPASSWORD"' in argv[2]
    assert 'PGSSLMODE="$CUTOVER_SRC_PGSSLMODE"' in argv[2]
    assert "CUTOVER_DST_PGSSLMODE" not in argv[2]  # the target's URL sets no sslmode
    # COMMIT reaches the target only after the source psql exited 0 (`&&`).
    assert '-c "$1" && printf \'\\\\.\\n%s\\n\' "$3"; } | ' in argv[2]
    assert argv[4] == 'COPY public.t ("Id", v) TO STDOUT'
    assert argv[5].splitlines() == [
        "BEGIN;",
        "LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE;",
        "DROP INDEX public.i;",
        "TRUNCATE ONLY public.t;",
        'COPY public.t ("Id", v) FROM STDIN;',
    ]
    assert argv[6].splitlines() == ["X;", "COMMIT;"]
    env = pipeline_env(source, target)
    assert env["CUTOVER_SRC_PGPASSWORD"] == "s3cret-src"
    assert env["CUTOVER_DST_PGPASSWORD"] == "s3cret-dst"


def test_plan_table_orders_drops_and_rebuilds() -> None:
    plan = plan_table(
        {
            "name": "public.a",
            "columns": ["id"],
            "constraints": [{"name": "a_pkey", "def": "PRIMARY KEY (id)", "comment": None}],
            "indexes": [
                {"name": "public.a_pkey", "short": "a_pkey", "def": None, "clustered": False,
                 "replident": True, "comment": None},
                {"name": "public.a_x", "short": "a_x", "def": "CREATE INDEX a_x ON public.a (x)",
                 "clustered": True, "replident": False, "comment": "it's"},
            ],
            "fks": [
                {"table": "public.b", "other": "public.a", "name": "b_a_fkey",
                 "def": "FOREIGN KEY (a_id) REFERENCES public.a(id)", "inherited": False,
                 "comment": None},
            ],
            "triggers": [{"name": "t1", "always": True}],
        }
    )  # fmt: skip
    assert plan.locks == ["public.a", "public.b"]
    assert plan.before == [
        "ALTER TABLE public.b DROP CONSTRAINT b_a_fkey",
        "ALTER TABLE public.a DROP CONSTRAINT a_pkey",
        "DROP INDEX public.a_x",
        "ALTER TABLE public.a DISABLE TRIGGER t1",
    ]
    assert plan.after == [
        "ALTER TABLE public.a ADD CONSTRAINT a_pkey PRIMARY KEY (id)",
        "ALTER TABLE public.a REPLICA IDENTITY USING INDEX a_pkey",
        "CREATE INDEX a_x ON public.a (x)",
        "COMMENT ON INDEX public.a_x IS 'it''s'",
        "ALTER TABLE public.a CLUSTER ON a_x",
        "ALTER TABLE public.b ADD CONSTRAINT b_a_fkey "
        "FOREIGN KEY (a_id) REFERENCES public.a(id) NOT VALID",
        "ALTER TABLE public.a ENABLE ALWAYS TRIGGER t1",
    ]


def test_plan_table_refuses_partition_inherited_fks() -> None:
    doc = {
        "name": "public.p1", "columns": [], "constraints": [], "indexes": [], "triggers": [],
        "fks": [{"table": "public.p1", "other": "public.a", "name": "f", "def": "x",
                 "inherited": True, "comment": None}],
    }  # fmt: skip
    with pytest.raises(CutoverError, match="inherited from a partitioned table"):
        plan_table(doc)


def test_read_argv_log_helper_is_used() -> None:
    assert read_argv_log(Path("/nonexistent/argv.jsonl")) == []


def test_an_interrupt_while_waiting_does_not_start_the_queued_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C reaches the main thread, in ``wait``; the executor's exit used to run every
    queued table anyway (shutdown(wait=True) keeps pending futures). Only the running one may
    finish (its transaction is atomic); none is started after the interrupt."""
    from cutover.adapters import pgtables  # noqa: PLC0415 - patched below

    started: list[int] = []
    gate = threading.Event()

    def call(i: int) -> None:
        started.append(i)
        gate.wait(30)

    def interrupted(*_: object, **__: object) -> None:
        deadline = time.monotonic() + 30
        while not started and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        raise KeyboardInterrupt

    monkeypatch.setattr(pgtables, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pgtables._parallel(1, [partial(call, i) for i in range(5)])
    assert started == [0]
