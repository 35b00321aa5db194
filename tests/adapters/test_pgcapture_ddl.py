"""A schema change on Heroku after the capture's install, scoped to the tables it affects
(cutover/adapters/pgcapture_ddl.py detects, cutover/adapters/pgreplace.py replaces them whole
with the new definition in one transaction, pgapply applies the log to the others), against two
real PostgreSQL 15 clusters (the World of tests/adapters/test_pgapply.py).

After each final round the Convox schema equals Heroku's (pgschema's object-by-object
comparison of ``pg_dump --schema-only``, the one verify-data runs) and every table's rows too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from adapter_support import read_argv_log
from test_pgapply import SCHEMA, TABLES, World, world_factory  # noqa: F401  (fixture)

from cutover.adapters import pgcapture, pgcapture_ddl, pgreplace, pgschema
from cutover.adapters.pgapply import ApplyResult, apply_changes
from cutover.adapters.pgcapture_ddl import SchemaChanges
from cutover.adapters.pgreplace import ReplaceResult
from cutover.sandbox import pgcluster

pytestmark = pytest.mark.slow


@pytest.fixture
def world(world_factory: Callable[..., World]) -> World:  # noqa: F811
    return world_factory()


def detect(world: World) -> SchemaChanges:
    return pgcapture_ddl.detect(world.pg, world.source, world.target)


def final_round(world: World) -> tuple[SchemaChanges, ReplaceResult, ApplyResult]:
    """What steps/datarows.final_sync does after the freeze: replace the affected tables, then
    the final apply of the log for the others."""
    changes = detect(world)
    assert changes.whole == (), changes.whole
    replaced = pgreplace.replace_tables(
        world.runner, world.masker, world.pg, world.source, world.target,
        replace=changes.replaced, drop=changes.gone_names, timeout=300, views=changes.views,
    )  # fmt: skip
    applied = apply_changes(
        world.runner, world.masker, world.pg, world.source, world.target, world.since,
        plan=changes.unaffected(world.plan), final=True, jobs=2, timeout=300,
    )  # fmt: skip
    return changes, replaced, applied


def schema_of(world: World, side: str) -> dict[str, str]:
    conn = world.source if side == "heroku" else world.target
    done = subprocess.run(
        pgschema.dump_argv(),
        env=pgcluster.client_env(conn.env()),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return pgschema.split_objects(done.stdout)


def assert_same_schema(world: World) -> None:
    assert pgschema.compare_objects(schema_of(world, "heroku"), schema_of(world, "convox")) == []


def writes(world: World) -> None:
    """Row changes on unaffected tables, made after the copy: applied from the log."""
    world.heroku.execute(
        "INSERT INTO pairs VALUES (9, 'z', 1)",
        "DELETE FROM pairs WHERE a = 2",
        "UPDATE items SET payload = 'changed' WHERE id < 5",
        "INSERT INTO bag VALUES (7, 'late')",
    )


def test_a_column_added_replaces_only_that_table_with_its_new_definition(world: World) -> None:
    writes(world)
    world.heroku.execute(
        "ALTER TABLE items ADD COLUMN gift_note text DEFAULT 'none'",
        "UPDATE items SET gift_note = 'wrapped' WHERE id = 1",
    )
    changes, replaced, applied = final_round(world)
    assert [t.line() for t in changes.tables] == ["public.items: column added (gift_note)"]
    assert replaced.tables == ("public.items",)
    # applied from the log, not copied whole; bag (keyless) gets its logged insert, once
    assert set(applied.tables) == {"public.bag", "public.pairs"}
    assert "public.items" not in applied.tables
    assert "public.pairs" not in applied.whole and "public.bag" not in applied.whole
    assert_same_schema(world)
    world.assert_equal()
    assert world.rows(world.target, "items", "id")[0][-1] == "wrapped"


def test_a_column_type_change_and_an_index_are_described_and_land(world: World) -> None:
    world.heroku.execute(
        "ALTER TABLE pairs ALTER COLUMN v TYPE bigint",
        "CREATE INDEX items_payload ON items (payload)",
    )
    changes, replaced, _ = final_round(world)
    assert [t.line() for t in changes.tables] == [
        "public.items: index added (items_payload)",
        "public.pairs: column type changed (v: integer -> bigint)",
    ]
    assert replaced.tables == ("public.items", "public.pairs")
    assert_same_schema(world)
    world.assert_equal()


def test_a_new_table_is_created_and_a_dropped_one_dropped(world: World) -> None:
    writes(world)
    world.heroku.execute(
        "CREATE SCHEMA audit",
        "CREATE TABLE audit.audit_2026 (id serial PRIMARY KEY, what text NOT NULL)",
        "INSERT INTO audit.audit_2026 (what) SELECT 'a' || g FROM generate_series(1, 30) g",
        "DROP TABLE bag",
    )
    changes, replaced, applied = final_round(world)
    kinds = {t.name: t.kind for t in changes.tables}
    assert kinds == {"audit.audit_2026": "new", "public.bag": "dropped"}
    assert replaced.tables == ("audit.audit_2026",) and replaced.dropped == ("public.bag",)
    assert "public.bag" not in applied.whole  # keyless, but gone: not copied
    assert_same_schema(world)
    world.assert_equal("parents", "children", "pairs", "items")
    assert world.rows(world.target, "audit.audit_2026", "id") == world.rows(
        world.source, "audit.audit_2026", "id"
    )
    # The owned sequence came with the table, at Heroku's position.
    rows = world.rows(world.target, "audit.audit_2026_id_seq", "1")
    assert rows[0][0] == 30


def test_foreign_keys_to_and_from_a_replaced_table_are_re_created_and_validated(
    world: World,
) -> None:
    """parents is replaced (a column added): DROP ... CASCADE drops the FK of children (not
    replaced) pointing at it; an FK added on Heroku from items to parents is new too."""
    world.heroku.execute(
        "ALTER TABLE parents ADD COLUMN born int",
        "INSERT INTO parents (name, born) VALUES ('late', 1990)",
        "INSERT INTO children (parent_id, note) "
        "SELECT id, 'to late' FROM parents WHERE name = 'late'",
        "ALTER TABLE items ADD COLUMN parent_id int REFERENCES parents (id)",
        "UPDATE items SET parent_id = 1 WHERE id < 3",
    )
    _, replaced, applied = final_round(world)
    assert replaced.tables == ("public.items", "public.parents")
    # children from the log; the keyless bag, with no position on Convox yet, is replaced whole
    # in this first round's snapshot (cutover/adapters/pgapply_rows.py)
    assert applied.tables == ("public.children", "public.bag")
    assert replaced.foreign_keys == 2  # children -> parents, items -> parents
    assert_same_schema(world)  # validated: no NOT VALID left
    world.assert_equal()
    with pgcluster.connect(world.convox.cluster, world.convox.dbname) as c:
        left = c.execute("SELECT count(*) FROM pg_constraint WHERE NOT convalidated")
        assert left.fetchone() == (0,)


def test_views_on_a_replaced_table_are_re_created_from_herokus_definition(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    """items_view reads items, items_count reads items_view: the DROP ... CASCADE takes both;
    both come back as Heroku defines them now (items_view redefined there too)."""
    world = world_factory(
        schema=(
            *SCHEMA,
            "CREATE VIEW items_view AS SELECT id, email FROM items",
            "CREATE VIEW items_count AS SELECT count(*) AS n FROM items_view",
            "COMMENT ON VIEW items_count IS 'how many'",
        )
    )
    world.heroku.execute(
        "ALTER TABLE items ADD COLUMN extra int DEFAULT 7",
        "CREATE OR REPLACE VIEW items_view AS SELECT id, email, extra FROM items",
    )
    changes, replaced, _ = final_round(world)
    assert changes.views == ("public.items_count", "public.items_view")
    assert replaced.views == changes.views and replaced.tables == ("public.items",)
    assert_same_schema(world)
    world.assert_equal()


def test_a_materialized_view_on_an_affected_table_means_a_whole_copy_naming_it(
    world: World,
) -> None:
    world.heroku.execute(
        "CREATE MATERIALIZED VIEW item_count AS SELECT count(*) FROM items",
        "ALTER TABLE items ADD COLUMN extra int",
    )
    changes = detect(world)
    assert changes.whole == (
        "materialized view public.item_count (on public.items) depends on an affected table",
    )


def test_a_view_only_convox_has_on_a_dropped_table_goes_with_it(world: World) -> None:
    with pgcluster.connect(world.convox.cluster, world.convox.dbname) as conn:
        conn.execute("CREATE VIEW bag_view AS SELECT x FROM bag")
    world.heroku.execute("DROP TABLE bag")
    changes, replaced, _ = final_round(world)
    assert changes.views == () and replaced.dropped == ("public.bag",)
    assert_same_schema(world)  # bag_view is gone too, as on Heroku


def test_a_function_taking_the_row_type_means_a_whole_copy(world: World) -> None:
    world.heroku.execute(
        "CREATE FUNCTION item_label(i items) RETURNS text LANGUAGE sql AS $$SELECT i.email$$",
        "ALTER TABLE items ADD COLUMN extra int",
    )
    (why,) = detect(world).whole
    assert why.startswith("function public.item_label(public.items) (on public.items)")


def test_a_silenced_capture_trigger_copies_that_table_whole(world: World) -> None:
    world.heroku.execute(
        "ALTER TABLE pairs DISABLE TRIGGER cutover_capture_ins",
        "INSERT INTO pairs VALUES (42, 'unlogged', 1)",
    )
    changes, replaced, _ = final_round(world)
    assert [t.line() for t in changes.tables] == [
        "public.pairs: a capture trigger is missing or does not fire"
    ]
    assert replaced.tables == ("public.pairs",)
    world.assert_equal()
    # The capture trigger's state is Heroku's business: nothing of it reached Convox.
    with pgcluster.connect(world.convox.cluster, world.convox.dbname) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cutover%'"
        ).fetchone() == (0,)


def test_a_failing_replacement_changes_nothing_on_convox(world: World) -> None:
    """The new definition needs a function Convox lacks (a default calling it): the one
    transaction rolls back, the old table and its rows stay."""
    world.heroku.execute(
        "CREATE FUNCTION heroku_only() RETURNS text LANGUAGE sql AS $$SELECT 'x'$$",
        "ALTER TABLE items ADD COLUMN tag text DEFAULT heroku_only()",
    )
    before = world.rows(world.target, "items")
    changes = detect(world)
    with pytest.raises(Exception, match="could not replace the tables") as failed:
        pgreplace.replace_tables(
            world.runner, world.masker, world.pg, world.source, world.target,
            replace=changes.replaced, drop=changes.gone_names, timeout=300,
        )  # fmt: skip
    assert "heroku_only" in str(failed.value)
    assert world.rows(world.target, "items") == before
    with pgcluster.connect(world.convox.cluster, world.convox.dbname) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert set(TABLES) <= {r[0] for r in tables.fetchall()}


def test_no_change_says_nothing(world_factory: Callable[..., World]) -> None:  # noqa: F811
    world = world_factory()
    assert detect(world) == SchemaChanges()
    # Heroku's side read by one psql (final-sync's decision) is what the reads one by one say.
    before = len(read_argv_log(world.argv_log))
    reads = pgcapture_ddl.read_all(world.pg, world.source)
    assert len(read_argv_log(world.argv_log)) - before == 1
    assert reads is not None
    assert reads.status == pgcapture.status(world.pg, world.source)
    assert reads.plan == pgcapture.inspect(world.pg, world.source)
    assert set(reads.now) == set(reads.recorded) != set()
    assert pgcapture_ddl.detect(world.pg, world.source, world.target, reads) == SchemaChanges()
    pgcapture.uninstall(world.pg, world.source)
    assert pgcapture_ddl.read_all(world.pg, world.source) is None  # \if skipped the rest
    assert detect(world).whole == ("the change capture is not installed",)


def test_a_renamed_table_and_a_changed_keyless_one_are_replaced(world: World) -> None:
    """pairs renamed to couples: the old name goes on Convox, the new one comes; bag (no key,
    copied whole by the final round otherwise) gets a column: replaced, not copied twice."""
    writes(world)
    world.heroku.execute(
        "ALTER TABLE pairs RENAME TO couples",
        "ALTER TABLE bag ADD COLUMN z int DEFAULT 1",
    )
    changes, replaced, applied = final_round(world)
    assert [t.line() for t in changes.tables] == [
        "public.bag: column added (z)",
        "public.couples: definition changed, renamed from public.pairs",
    ]
    assert replaced.tables == ("public.bag", "public.couples")
    assert "public.bag" not in applied.whole
    assert applied.tables == ("public.items",)
    assert_same_schema(world)
    couples = [world.rows(c, "couples", "a, b") for c in (world.target, world.source)]
    assert couples[0] == couples[1]
    world.assert_equal("parents", "children", "items", "bag")


def test_an_enum_or_function_the_new_definition_uses_and_convox_lacks_means_a_whole_copy(
    world: World,
) -> None:
    """pg_dump -t brings the table, not the enum type added with its column nor the function a
    new default calls: the replacement would fail in the window. detect says so beforehand,
    naming them (the whole copy brings them); what Convox has (stamp(), pairs' trigger) is fine."""
    world.heroku.execute(
        "CREATE TYPE mood AS ENUM ('ok', 'sad')",
        "ALTER TABLE items ADD COLUMN m mood DEFAULT 'ok'",
        "CREATE FUNCTION heroku_only() RETURNS text LANGUAGE sql AS $$SELECT 'x'$$",
        "ALTER TABLE bag ADD COLUMN tag text DEFAULT heroku_only()",
        "ALTER TABLE pairs ADD COLUMN extra int",
    )
    assert detect(world).whole == (
        "function public.heroku_only() (used by public.bag) is not on the Convox database",
        "type public.mood (used by public.items) is not on the Convox database",
    )
    world.heroku.execute("ALTER TABLE items DROP COLUMN m", "ALTER TABLE bag DROP COLUMN tag")
    changes = detect(world)
    assert changes.whole == () and "public.pairs" in changes.replaced
