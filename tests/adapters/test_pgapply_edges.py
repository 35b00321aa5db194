"""Review of issue 13's capture and apply (pgcapture, pgapply) at their edges, against real
PostgreSQL (the clusters and the World of tests/adapters/test_pgapply.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from test_pgapply import World, world_factory  # noqa: F401  (fixture)

from cutover.adapters import pgcapture

# A name holding the install's dollar-quote tag: inside a DO $cutover$ ... $cutover$ block it
# ended the block early (the table name came from the catalog, but the quoting did not hold).
DOLLAR = (
    'CREATE TABLE "odd$cutover$T" ("k$cutover$" int PRIMARY KEY, v text)',
    "INSERT INTO \"odd$cutover$T\" SELECT g, 'v' FROM generate_series(1, 5) g",
)


@pytest.mark.slow
def test_names_holding_the_dollar_quote_tag_are_captured_and_applied(
    world_factory: Callable[..., World],  # noqa: F811
) -> None:
    world = world_factory(schema=DOLLAR)
    assert [t.key for t in world.plan.tables] == [('"k$cutover$"',)]
    assert pgcapture.status(world.pg, world.source).missing_triggers == ()
    world.heroku.execute(
        'UPDATE "odd$cutover$T" SET v = \'w\' WHERE "k$cutover$" < 3',
        'DELETE FROM "odd$cutover$T" WHERE "k$cutover$" = 5',
        "INSERT INTO \"odd$cutover$T\" VALUES (6, 'n')",
    )
    world.apply(world.since)
    table, order = '"odd$cutover$T"', '"k$cutover$"'
    assert world.rows(world.target, table, order) == world.rows(world.source, table, order)
    assert pgcapture.uninstall(world.pg, world.source)
    assert pgcapture.leftovers(world.pg, world.source) == []
