"""cutover.adapters.pgapply against two real PostgreSQL 15 clusters.

"Heroku" is a database on the source cluster owned by a NOSUPERUSER role (as on Heroku), with
the change capture installed (pgcapture). "Convox" is a database on the target cluster, filled
by the initial sync (pg_dump | pg_restore, the capture's objects filtered out with
pgcapture.is_capture_toc_line), reached as the cluster's superuser (as the Convox postgres
resource's role is) or, for the fallback, as its NOSUPERUSER owner. After each round the tables
are compared whole, row by row in key order.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, assert_argv_clean, read_argv_log
from support.databases import AppDatabase, make_database

from cutover.adapters import pgapply, pgapply_small, pgapply_survey, pgcapture, pgstaging
from cutover.adapters.pgapply import ApplyProgress, ApplyResult, apply_changes
from cutover.adapters.pgapply_sql import Batch, batch_target_scripts, in_place, key_value
from cutover.adapters.pgcapture import CapturePlan
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

SCHEMA = (
    "CREATE TABLE parents (id serial PRIMARY KEY, name text UNIQUE)",
    "CREATE TABLE children (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "parent_id int REFERENCES parents (id) ON UPDATE CASCADE ON DELETE CASCADE, note text, "
    "doubled bigint GENERATED ALWAYS AS (id * 2) STORED)",
    # Triggers that would change every row written: they must not fire on the target.
    "CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN NEW.note := NEW.note || '!'; RETURN NEW; END$$",
    "CREATE TRIGGER children_shout BEFORE INSERT ON children FOR EACH ROW EXECUTE FUNCTION shout()",
    "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN NEW.v := NEW.v + 1000; RETURN NEW; END$$",
    "CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b))",
    "CREATE TRIGGER pairs_stamp BEFORE INSERT ON pairs FOR EACH ROW EXECUTE FUNCTION stamp()",
    "ALTER TABLE pairs ENABLE ALWAYS TRIGGER pairs_stamp",
    "CREATE TABLE bag (x int, y text)",
    "CREATE TABLE items (id int PRIMARY KEY, email text UNIQUE, payload text)",
    "INSERT INTO parents (name) SELECT 'p' || g FROM generate_series(1, 20) g",
    "INSERT INTO children (parent_id, note) SELECT 1 + g % 20, 'c' || g "
    "FROM generate_series(1, 200) g",
    "INSERT INTO pairs SELECT g % 7, 'b' || g, g FROM generate_series(1, 50) g",
    "INSERT INTO bag SELECT g, 'y' FROM generate_series(1, 5) g",
    "INSERT INTO items SELECT g, 'e' || g || '@x', 'i' FROM generate_series(1, 30) g",
)
NO_FK_SCHEMA = tuple(s for s in SCHEMA if "parents" not in s and "children" not in s)
TABLES = {
    "parents": "id",
    "children": "id",
    "pairs": "a, b",
    "bag": "x, y",
    "items": "id",
}


@dataclass
class World:
    heroku: AppDatabase
    convox: AppDatabase
    source: ConnInfo
    target: ConnInfo
    runner: Runner
    masker: SecretMasker
    pg: PostgresAdapter
    plan: CapturePlan
    since: str
    argv_log: Path
    progress: list[ApplyProgress] = field(default_factory=list)

    def apply(
        self, since: str, *, final: bool = False, batch_keys: int = 50_000, jobs: int = 2
    ) -> ApplyResult:
        return apply_changes(
            self.runner, self.masker, self.pg, self.source, self.target, since,
            plan=self.plan, final=final, jobs=jobs, timeout=300, batch_keys=batch_keys,
            progress=self.progress.append,
        )  # fmt: skip

    def rows(
        self, conn: ConnInfo, table: str, order: str | None = None
    ) -> list[tuple[object, ...]]:
        with pgcluster.connect(
            self.heroku.cluster if conn is self.source else self.convox.cluster,
            conn.dbname,
            conn.user,
            conn.password,
        ) as c:
            return c.execute(f"SELECT * FROM {table} ORDER BY {order or TABLES[table]}").fetchall()

    def assert_equal(self, *tables: str) -> None:
        for table in tables or tuple(TABLES):
            assert self.rows(self.target, table) == self.rows(self.source, table), table


def initial_sync(source: AppDatabase, target: AppDatabase) -> None:
    """pg_dump | pg_restore --use-list, without the capture's objects (what the initial sync's
    restore list filter does)."""
    env = pgcluster.client_env(source.libpq_env())
    dump = subprocess.run(
        ["pg_dump", "-Fc", "--no-owner", "--no-acl"], env=env, capture_output=True, check=True
    ).stdout
    listing = subprocess.run(
        ["pg_restore", "--list"], input=dump, capture_output=True, check=True
    ).stdout.decode()
    kept = [ln for ln in listing.splitlines() if not pgcapture.is_capture_toc_line(ln)]
    assert len(kept) < len(listing.splitlines())  # the capture was there, and is left out
    list_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"list-{target.dbname}"
    list_file.write_text("\n".join(kept) + "\n")
    try:
        restore = ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error"]
        subprocess.run(
            [*restore, "--use-list", str(list_file), "-d", target.dbname],
            env=pgcluster.client_env(target.libpq_env()),
            input=dump,
            capture_output=True,
            check=True,
        )
    finally:
        list_file.unlink()


def make_world(
    pg_source: PgCluster,
    pg_target: PgCluster,
    argv_log: Path,
    *,
    superuser: bool,
    schema: tuple[str, ...],
) -> World:
    heroku = make_database(pg_source, "asrc")
    heroku.execute(*schema)
    convox = make_database(pg_target, "adst")
    masker = SecretMasker()
    runner = Runner(masker, audit=ListAudit(), base_env={ARGV_LOG_ENV: str(argv_log)})
    pg = PostgresAdapter(runner, masker)
    source = ConnInfo.from_url(heroku.url())
    plan = pgcapture.install(pg, source, pgcapture.inspect(pg, source))
    since = pgcapture.position(pg, source)  # read BEFORE the copy, as initial-sync does
    initial_sync(heroku, convox)
    target = ConnInfo.from_url(pg_target.url(convox.dbname) if superuser else convox.url())
    assert pgcapture.leftovers(pg, target) == []  # nothing of the capture reached Convox
    return World(heroku, convox, source, target, runner, masker, pg, plan, since, argv_log)


@pytest.fixture
def world_factory(
    pg_source: PgCluster, pg_target: PgCluster, argv_log: Path
) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(superuser: bool = True, schema: tuple[str, ...] = SCHEMA) -> World:
        made.append(make_world(pg_source, pg_target, argv_log, superuser=superuser, schema=schema))
        return made[-1]

    yield make
    secrets = [pg_target.password] + [
        p for w in made for p in (w.source.password, w.convox.password)
    ]
    assert assert_argv_clean(argv_log, secrets), "no command ran"


@pytest.fixture
def world(world_factory: Callable[..., World]) -> World:
    return world_factory()


def writes(world: World) -> None:
    """Inserts (multi-row), updates (of a primary key too, cascading), deletes, a TRUNCATE, a
    rolled-back transaction, and subtransactions kept and rolled back."""
    world.heroku.execute(
        "INSERT INTO parents (name) SELECT 'n' || g FROM generate_series(1, 5) g",
        "INSERT INTO children (parent_id, note) VALUES (1, 'new'), (2, 'new2')",
        "UPDATE children SET note = note || '-u' WHERE id % 10 = 0",
        "UPDATE parents SET id = 1000 WHERE id = 3",  # cascades to its children
        "DELETE FROM parents WHERE id = 4",  # cascades: deletes its children
        "UPDATE pairs SET b = b || 'x', v = v + 1 WHERE a = 1",  # composite key update
        "DELETE FROM pairs WHERE a = 2",
        "INSERT INTO pairs VALUES (9, 'z', 1), (9, 'y', 2)",
        "TRUNCATE items",
        "INSERT INTO items SELECT g, 'f' || g || '@x', 'j' FROM generate_series(1, 12) g",
        "INSERT INTO bag VALUES (6, 'new')",
        "DELETE FROM bag WHERE x = 1",
    )
    with pgcluster.connect(
        world.heroku.cluster, world.heroku.dbname, world.heroku.owner, world.heroku.password
    ) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO parents (name) VALUES ('rolled back')")
            conn.execute("DELETE FROM children WHERE id = 5")
        with conn.transaction():
            conn.execute("UPDATE parents SET name = 'outer' WHERE id = 5")
            with conn.transaction():  # SAVEPOINT ... RELEASE
                conn.execute("UPDATE parents SET name = 'in savepoint' WHERE id = 6")
            with conn.transaction(force_rollback=True):  # SAVEPOINT ... ROLLBACK TO
                conn.execute("UPDATE parents SET name = 'undone' WHERE id = 7")


@pytest.mark.slow
def test_every_kind_of_write_arrives_and_triggers_do_not_fire(world: World) -> None:
    world.assert_equal()
    writes(world)
    first = world.apply(world.since)
    # The keyless bag has no position on the target yet: replaced whole, in the round's snapshot
    world.assert_equal()
    assert first.whole == ("public.items",)  # truncated: copied whole
    assert set(first.tables) == {"public.parents", "public.children", "public.pairs", "public.bag"}
    assert first.deleted > 0 and first.upserted > 0 and first.entries > first.upserted
    assert world.progress[-1].keys_done == world.progress[-1].keys_total > 0
    assert world.progress[-1].tables_done == world.progress[-1].tables_total == 4
    # The small batches (parents, children, pairs) are read by the holder and written by one
    # psql (pgapply_small); the keyless bag's rows go through one bash pipeline between two
    # psqls; passwords only by variable name.
    argvs = read_argv_log(world.argv_log)
    pipelines = [a for a in argvs if a[3:4] == ["cutover-apply"]]
    assert len(pipelines) == 1
    assert sum(a[-3:] == ["-At", "-f", "-"] for a in argvs) == 1
    for argv in pipelines:
        assert 'PGPASSWORD="$CUTOVER_SRC_PGPASSWORD"' in argv[2]
        assert 'PGPASSWORD="$CUTOVER_DST_PGPASSWORD"' in argv[2]
        assert "SET LOCAL session_replication_role = replica;" in argv[5]
    # The position is on the target itself.
    assert pgapply.applied_position(world.pg, world.target) == first.position
    _, marker, comment = pgstaging.read_marker(world.pg, world.target)
    assert marker is not None and marker.kind == "synced"
    assert comment.endswith(f" capture={first.position}")
    # The final round: two equal rows inserted in the keyless table (applied from its log of
    # rows, exactly once: not copied whole) and the sequences.
    world.heroku.execute(
        "SELECT setval('parents_id_seq', 5000)", "INSERT INTO bag VALUES (7, 'z'), (7, 'z')"
    )
    last = world.apply(first.position, final=True)
    world.assert_equal()
    assert last.entries == 2 and last.tables == ("public.bag",) and last.whole == ()
    # The marker the round wrote comes back with it (final-sync does not read it again).
    assert last.marker == pgstaging.read_marker(world.pg, world.target)[2]
    assert last.marker.endswith(f" capture={last.position}")
    assert last.upserted == 2
    # Nothing of cutover's is left on the Convox database after the final round.
    assert pgcapture.query(
        world.pg, world.target, "SELECT to_regnamespace('_cutover') IS NULL;"
    ) == [["t"]]
    # The target's user triggers are enabled as before (ALWAYS stays ALWAYS).
    assert pgcapture.query(
        world.pg, world.target,
        "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1;",
    ) == [["children_shout", "O"], ["pairs_stamp", "A"]]  # fmt: skip
    assert last.sequences == 2  # parents_id_seq, children_id_seq (identity)
    assert world.rows(world.target, "parents")[-1][0] == 1000
    target_seq = pgcapture.query(world.pg, world.target, "SELECT last_value FROM parents_id_seq;")
    assert target_seq == [["5000"]]


@pytest.mark.slow
def test_a_transaction_committing_after_the_round_is_applied_by_the_next(world: World) -> None:
    early = pgcluster.connect(
        world.heroku.cluster, world.heroku.dbname, world.heroku.owner, world.heroku.password,
        autocommit=False,
    )  # fmt: skip
    try:
        # Takes its xid (and log entry) first ...
        early.execute("INSERT INTO items VALUES (100, 'early@x', 'e')")
        # ... then another transaction writes and commits.
        world.heroku.execute("INSERT INTO items VALUES (101, 'late@x', 'l')")
        first = world.apply(world.since)
        ids = [r[0] for r in world.rows(world.target, "items")]
        assert 101 in ids and 100 not in ids
        early.commit()  # commits after the round's snapshot
    finally:
        early.close()
    assert pgcapture.pending(world.pg, world.source, first.position).tables == {"public.items": 1}
    second = world.apply(first.position)
    world.assert_equal("items")
    assert second.entries == 1 and second.upserted == 1


@pytest.mark.slow
def test_applying_the_same_since_twice_gives_the_same_target(world: World) -> None:
    writes(world)
    first = world.apply(world.since, batch_keys=3)
    snapshot = {t: world.rows(world.target, t) for t in TABLES}
    again = world.apply(world.since, batch_keys=3)
    assert {t: world.rows(world.target, t) for t in TABLES} == snapshot
    assert again.entries == first.entries
    world.assert_equal("parents", "children", "pairs", "items")


@pytest.mark.slow
def test_unique_values_swapped_across_batches_land(world: World) -> None:
    world.heroku.execute(
        "UPDATE items SET email = 'tmp' WHERE id = 1",
        "UPDATE items SET email = 'e1@x' WHERE id = 30",
        "UPDATE items SET email = 'e30@x' WHERE id = 1",
    )
    result = world.apply(world.since, batch_keys=1, jobs=1)
    world.assert_equal("items")
    # Both one-key batches met the other row's value; the table then went in one transaction.
    # (The fourth pipeline: the keyless bag, replaced whole as it has no position yet.)
    pipelines = [a for a in read_argv_log(world.argv_log) if a[3:4] == ["cutover-apply"]]
    assert len(pipelines) == 4
    assert "l.id) > (" not in pipelines[-1][-4] and "l.id) <= (" not in pipelines[-1][-4]
    bag = len(world.rows(world.source, "bag"))
    assert result.upserted == 2 and result.replaced == bag and world.progress[-1].keys_done == 2
    assert world.progress[-1].tables_done == 2


def _writes_by_table(world: World) -> dict[str, tuple[int, int, int]]:
    """(inserted, updated, deleted) rows per table on the target, from its statistics (each
    batch's backend flushes them as it exits: pgstat_shutdown_hook)."""
    rows = pgcapture.query(
        world.pg, world.target,
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables;",
    )  # fmt: skip
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


@pytest.mark.slow
def test_tables_keyed_by_their_only_unique_index_are_updated_in_place(world: World) -> None:
    before = _writes_by_table(world)
    writes(world)
    world.heroku.execute(
        # a swap inside one batch: items' email is unique too, so items deletes and inserts
        "UPDATE items SET email = 'tmp' WHERE id = 1",
        "UPDATE items SET email = 'f1@x' WHERE id = 2",
        "UPDATE items SET email = 'f2@x' WHERE id = 1",
    )
    world.apply(world.since, jobs=1)
    world.assert_equal()
    after = _writes_by_table(world)
    ins, upd, dele = (after["children"][i] - before["children"][i] for i in range(3))
    # children (identity key, GENERATED ALWAYS, no other unique index): the 20 notes edited
    # and the children of parent 3 (its key changed, cascading) updated in place; parent 4's
    # children deleted; the 2 new ones inserted
    assert upd >= 20 and dele == 10 and ins == 2
    # parents has a second unique index (name): its keys are deleted and inserted again
    assert after["parents"][1] == before["parents"][1]
    assert after["parents"][2] > before["parents"][2]
    first = world.rows(world.target, "children")[0]
    assert isinstance(first[0], int) and first[3] == 2 * first[0]  # generated: computed


def test_in_place_needs_every_unique_index_on_the_key_and_no_other_identity() -> None:
    table = pgcapture.CaptureTable("public.t", 1, ("id",), "primary key")
    doc = {"columns": ["id", "v", "w"], "always": [], "uniques": [["id"]]}
    assert in_place(table, doc) == ["id", "v", "w"]
    assert in_place(table, {**doc, "always": ["id"]}) == ["v", "w"]  # the key: never SET
    assert in_place(table, {**doc, "always": ["w"]}) is None  # UPDATE may set it to DEFAULT only
    assert in_place(table, {**doc, "uniques": [["id"], ["v"]]}) is None
    assert in_place(table, {**doc, "uniques": [["id"], None]}) is None  # on an expression
    assert in_place(table, {**doc, "uniques": [["id", "v"]]}) is None
    assert in_place(table, {"columns": ["id"]}) is None  # a document without the fields
    _, after = batch_target_scripts(table, ["id", "v"], [], True, update=["v"])
    update = "UPDATE public.t t SET v = b.v FROM cutover_batch b WHERE t.id = b.id AND b."
    assert update + '"cutover present" RETURNING t.id)' in after
    assert after.index("DELETE FROM") < after.index("UPDATE") < after.index("INSERT INTO")
    assert "NOT EXISTS (SELECT FROM cutover_updated u WHERE u.id = b.id)" in after
    assert 'NOT b."cutover present"' in after
    _, after = batch_target_scripts(table, ["id"], [], True, update=[])  # only the key
    assert (
        "UPDATE" not in after and "NOT EXISTS (SELECT FROM public.t t WHERE t.id = b.id)" in after
    )


def _apply_in_child(world: World, since: str) -> None:
    world.apply(since, batch_keys=500)


@pytest.mark.slow
def test_kill_9_during_a_round_then_again_converges(world: World) -> None:
    world.heroku.execute(
        "INSERT INTO items SELECT g, 'k' || g || '@x', repeat('p', 200) "
        "FROM generate_series(1000, 60999) g"
    )
    child = multiprocessing.get_context("fork").Process(
        target=_apply_in_child, args=(world, world.since)
    )
    child.start()
    deadline = time.monotonic() + 120
    count = 0
    try:
        while time.monotonic() < deadline:
            count = int(
                pgcapture.query(world.pg, world.target, "SELECT count(*) FROM items;")[0][0]
            )
            if count > 2000:  # some batches committed, most not yet
                break
            time.sleep(0.05)
        os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert 2000 < count < 60030
    # Not recorded: the marker still says where the interrupted round started.
    _, marker, comment = pgstaging.read_marker(world.pg, world.target)
    assert marker is not None and marker.kind == "syncing"
    assert comment.endswith(f" capture={world.since}")
    assert pgapply.applied_position(world.pg, world.target) == world.since
    assert len(world.rows(world.target, "items")) < 60030
    world.apply(pgapply.applied_position(world.pg, world.target) or "")
    world.assert_equal("items")


@pytest.mark.slow
def test_without_replication_role_user_triggers_are_disabled_in_the_transaction(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(superuser=False, schema=NO_FK_SCHEMA)
    assert not pgapply_survey.may_replicate(world.pg, world.target)
    world.heroku.execute(
        "INSERT INTO pairs VALUES (20, 'n', 1)",
        "UPDATE pairs SET v = 0 WHERE a = 3",
        "UPDATE items SET payload = 'changed' WHERE id < 5",
    )
    world.apply(world.since)
    world.assert_equal("pairs", "items")
    # The ALWAYS trigger is back as it was.
    assert pgcapture.query(
        world.pg, world.target, "SELECT tgenabled FROM pg_trigger WHERE tgname = 'pairs_stamp';"
    ) == [["A"]]


@pytest.mark.slow
def test_without_replication_role_foreign_keys_are_lifted_per_batch_and_validated_at_the_end(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(superuser=False)
    assert not pgapply_survey.may_replicate(world.pg, world.target)
    writes(world)  # a cascading key update and a cascading delete among them
    first = world.apply(world.since, batch_keys=4)
    world.assert_equal("parents", "children", "pairs", "items")
    fks = "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f';"
    world.heroku.execute("DELETE FROM parents WHERE id = 6")  # cascades on Heroku only
    world.apply(first.position, final=True)
    world.assert_equal()
    assert pgcapture.query(world.pg, world.target, fks) == [["children_parent_id_fkey", "t"]]
    # ON UPDATE/DELETE CASCADE is back as it was.
    definition = "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f';"
    assert pgcapture.query(world.pg, world.target, definition) == pgcapture.query(
        world.pg, world.source, definition
    )


@pytest.mark.slow
def test_a_missing_capture_or_a_bad_position_is_refused_before_any_write(world: World) -> None:
    before = pgstaging.read_marker(world.pg, world.target)
    with pytest.raises(CutoverError, match="not a capture position"):
        world.apply("yesterday")
    pgcapture.uninstall(world.pg, world.source)
    with pytest.raises(CutoverError) as caught:
        world.apply(world.since)
    assert caught.value.brief.startswith("could not read the change log on Heroku's database")
    assert "_cutover" in caught.value.brief
    assert pgstaging.read_marker(world.pg, world.target) == before


ODD_KEYS = (
    'CREATE TABLE "Odd Keys" (t text, at timestamptz, n numeric, v text, PRIMARY KEY (t, at, n))',
    "INSERT INTO \"Odd Keys\" SELECT chr(65 + g % 5) || E'\\t\\n''\"' || g, "
    "'2024-01-01 00:00:00.123456+00'::timestamptz + g * interval '1 hour', g / 3.0, 'v' "
    "FROM generate_series(1, 40) g",
)


@pytest.mark.slow
def test_batches_split_at_keys_holding_tabs_newlines_quotes_and_fractions(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(schema=ODD_KEYS)
    world.heroku.execute(
        "UPDATE \"Odd Keys\" SET v = 'changed' WHERE n > 2",
        "UPDATE \"Odd Keys\" SET t = t || 'é' WHERE n < 1",  # key update
        'DELETE FROM "Odd Keys" WHERE n BETWEEN 5 AND 6',
        "INSERT INTO \"Odd Keys\" VALUES (E'new\\nline', now(), 0.1, 'n')",
    )
    result = world.apply(world.since, batch_keys=4)
    table, order = '"Odd Keys"', "t, at, n"
    assert world.rows(world.target, table, order) == world.rows(world.source, table, order)
    assert result.upserted > 4 and result.deleted > 0
    assert len(world.progress) > 5  # one report per batch


def test_batch_scripts_disable_the_triggers_that_would_fire() -> None:
    table = pgcapture.CaptureTable("public.t", 1, ("id",), "primary key")
    triggers = [
        {"name": "origin", "mode": "O"},
        {"name": "always", "mode": "A"},
        {"name": "replica", "mode": "R"},
    ]
    before, after = batch_target_scripts(table, ["id", "v"], triggers, replica=True)
    assert "ALTER TABLE public.t DISABLE TRIGGER always;" in before
    assert "ALTER TABLE public.t DISABLE TRIGGER replica;" in before
    assert "DISABLE TRIGGER origin" not in before  # replica mode: ORIGIN triggers do not fire
    assert "ALTER TABLE public.t ENABLE ALWAYS TRIGGER always;" in after
    assert "ALTER TABLE public.t ENABLE REPLICA TRIGGER replica;" in after
    before, after = batch_target_scripts(table, ["id", "v"], triggers, replica=False)
    assert "session_replication_role" not in before
    assert "DISABLE TRIGGER origin;" in before and "DISABLE TRIGGER replica" not in before
    assert before.endswith("COPY cutover_batch FROM STDIN;")
    assert after.index("DELETE FROM public.t") < after.index("INSERT INTO public.t")
    assert "OVERRIDING SYSTEM VALUE" in after and after.count("COMMIT;") == 1
    fk = {
        "table": "public.c", "other": "public.t", "name": "c_t_fkey",
        "def": "FOREIGN KEY (t_id) REFERENCES t(id)", "inherited": False, "comment": None,
    }  # fmt: skip
    before, after = batch_target_scripts(table, ["id"], [], replica=False, fks=[fk])
    assert "LOCK TABLE public.c, public.t IN ACCESS EXCLUSIVE MODE;" in before
    assert "ALTER TABLE public.c DROP CONSTRAINT c_t_fkey;" in before
    assert (
        "ALTER TABLE public.c ADD CONSTRAINT c_t_fkey FOREIGN KEY (t_id) REFERENCES t(id) "
        "NOT VALID;" in after
    )
    before, after = batch_target_scripts(table, ["id"], [], replica=True, fks=[fk])
    assert "c_t_fkey" not in before + after  # replica mode: foreign keys do not fire


def test_key_values_are_hex_only() -> None:
    assert key_value("61", "text") == "convert_from(decode('61', 'hex'), 'UTF8')::text"
    with pytest.raises(ValueError, match="not a hex key"):
        key_value("61'); DROP TABLE t; --", "text")
    assert Batch(pgcapture.CaptureTable("public.t", 1, ("id",), "pk"), None, None, 0).keys == 0


@pytest.mark.slow
def test_a_key_on_a_generated_column_is_matched_not_written(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(
        schema=(
            "CREATE TABLE gen (a int NOT NULL, b int GENERATED ALWAYS AS (a * 2) STORED "
            "PRIMARY KEY, v text)",
            "INSERT INTO gen (a, v) SELECT g, 'v' FROM generate_series(1, 10) g",
        )
    )
    assert [t.key for t in world.plan.tables] == [("b",)]
    world.heroku.execute(
        "UPDATE gen SET a = 100 WHERE a = 1",  # its key moves from 2 to 200
        "UPDATE gen SET v = 'w' WHERE a = 2",
        "DELETE FROM gen WHERE a = 3",
    )
    world.apply(world.since)
    assert world.rows(world.target, "gen", "b") == world.rows(world.source, "gen", "b")


@pytest.mark.slow
def test_small_batches_go_through_pipes_when_their_one_psql_fails(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgapply_small: when the psql writing the small batches together fails, each of them runs
    through a pipe of its own (applying a key again is harmless), and the round lands."""
    calls: list[int] = []

    def failing(*args: object, **kwargs: object) -> list[tuple[int, int]]:
        calls.append(1)
        raise CommandError(["psql"], 3, "ERROR:  canceling statement due to lock timeout")

    monkeypatch.setattr(pgapply_small, "apply", failing)
    writes(world)
    result = world.apply(world.since)
    world.assert_equal()
    assert calls == [1]
    pipelines = [a for a in read_argv_log(world.argv_log) if a[3:4] == ["cutover-apply"]]
    assert len(pipelines) == 4  # three keyed tables and the keyless bag
    assert world.progress[-1].keys_done == world.progress[-1].keys_total > 0
    assert world.progress[-1].tables_done == world.progress[-1].tables_total == 4
    assert result.upserted > 0 and result.deleted > 0
