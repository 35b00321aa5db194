"""The schema-change final sync (issue 13: cutover/adapters/pgreplace.py) and the schemas the
replaced tables live in: identifiers needing quotes, a schema renamed on Heroku (its old name
goes on Convox too), a schema new there (created, with its comment), row security and comments
on a replaced table, a second final round after the first. Each ends with verify-data's schema
comparison (pgschema) finding nothing.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_pgapply import SCHEMA, World, world_factory  # noqa: F401  (fixture)
from test_pgcapture_ddl import assert_same_schema, final_round

from cutover.sandbox import pgcluster

pytestmark = pytest.mark.slow


@pytest.fixture
def world(world_factory: Callable[..., World]) -> World:  # noqa: F811
    return world_factory()


QUOTED = (
    'CREATE SCHEMA "user"',
    'CREATE TABLE "user"."Order Items" ("Id" int PRIMARY KEY, "Note Text" text)',
    'INSERT INTO "user"."Order Items" SELECT g, \'n\' || g FROM generate_series(1, 9) g',
)


def test_a_keyword_schema_and_mixed_case_names_with_spaces_are_replaced(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=(*SCHEMA, *QUOTED))
    world.heroku.execute(
        'ALTER TABLE "user"."Order Items" ADD COLUMN "Gift?" text DEFAULT \'g\'',
        "INSERT INTO \"user\".\"Order Items\" VALUES (10, 'late', 'x')",
    )
    _, replaced, _ = final_round(world)
    assert replaced.tables == ('"user"."Order Items"',)
    assert_same_schema(world)
    table = '"user"."Order Items"'
    assert world.rows(world.target, table, '"Id"') == world.rows(world.source, table, '"Id"')


def test_a_schema_renamed_on_heroku_goes_on_convox_under_its_old_name(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=(*SCHEMA, *QUOTED))
    world.heroku.execute('ALTER SCHEMA "user" RENAME TO shop')
    _, replaced, _ = final_round(world)
    assert replaced.tables == ('shop."Order Items"',)
    assert_same_schema(world)  # before: 'SCHEMA user: only on Convox'
    with pgcluster.connect(world.convox.cluster, world.convox.dbname) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'user'")
        assert found.fetchone() == (0,)


def test_row_security_policies_and_comments_come_with_a_replaced_table(world: World) -> None:
    world.heroku.execute(
        "ALTER TABLE items ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY p ON items USING (id > 0)",
        "COMMENT ON COLUMN items.email IS 'mail'",
        "COMMENT ON INDEX items_email_key IS 'idx'",
        "ALTER TABLE items ADD COLUMN extra int",
    )
    _, replaced, _ = final_round(world)
    assert replaced.tables == ("public.items",)
    assert_same_schema(world)
    with pgcluster.connect(world.convox.cluster, world.convox.dbname) as conn:
        found = conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'items'")
        assert found.fetchone() == (True,)


def test_a_new_schema_is_created_with_its_comment(world: World) -> None:
    world.heroku.execute(
        "CREATE SCHEMA rep",
        "COMMENT ON SCHEMA rep IS 'reports'",
        "CREATE TABLE rep.t (id int PRIMARY KEY)",
        "CREATE VIEW rep.v AS SELECT id FROM rep.t",
    )
    _, replaced, _ = final_round(world)
    assert replaced.tables == ("rep.t",)
    assert_same_schema(world)  # before: 'COMMENT SCHEMA rep: missing on Convox'


def test_a_second_final_round_converges_to_the_same(world: World) -> None:
    world.heroku.execute("ALTER TABLE items ADD COLUMN extra int")
    first = final_round(world)[1]
    second = final_round(world)[1]
    assert first.tables == second.tables == ("public.items",)
    assert_same_schema(world)
    world.assert_equal()


def test_the_scripts_travel_in_0600_files_in_a_0700_folder_removed_after(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replacement's scripts (schema text) are files, private while they exist, and gone
    when replace_tables returns; no password in them."""
    seen: list[tuple[Path, int, int, str]] = []
    real = world.runner.run

    def spy(argv: list[str], **kwargs: Any) -> Any:
        if argv[:4] == ["bash", "-c", argv[2], "cutover-replace"]:
            for name in argv[4:6]:
                path = Path(name)
                seen.append(
                    (
                        path,
                        stat.S_IMODE(path.parent.stat().st_mode),
                        stat.S_IMODE(path.stat().st_mode),
                        path.read_text(),
                    )
                )
        return real(argv, **kwargs)

    monkeypatch.setattr(world.runner, "run", spy)
    world.heroku.execute("ALTER TABLE items ADD COLUMN extra int")
    final_round(world)
    assert [(p.name, d, f) for p, d, f, _ in seen] == [
        ("head.sql", 0o700, 0o600),
        ("tail.sql", 0o700, 0o600),
    ]
    assert "CREATE TABLE public.items" in seen[0][3] and "COMMIT;" in seen[1][3]
    for password in (world.source.password, world.target.password):
        assert password and all(password not in text for *_, text in seen)
    assert not seen[0][0].parent.exists()
