"""set-env's exclusions come from the one add-on table (cutover/catalog/addons.json)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cutover.playbook import EnvSection
from cutover.steps.app import env_plan


def _ctx(**env: Any) -> Any:
    return SimpleNamespace(model=SimpleNamespace(env=EnvSection(**env)))


def _addon(service: str, *config_vars: str) -> dict[str, Any]:
    return {"addon_service": {"name": service}, "config_vars": list(config_vars)}


def test_a_third_party_redis_url_is_not_copied_over_the_convox_resource() -> None:
    # A hand-written playbook (no translate run) with Redis Cloud: its URL would point the
    # Convox app back at the Heroku add-on; the catalogue says a redis resource replaces it.
    config = {"REDISCLOUD_URL": "redis://u:secretpw@redis.example:6379", "STRIPE_KEY": "sk_x"}
    values, excluded = env_plan(config, [_addon("rediscloud", "REDISCLOUD_URL")], _ctx())
    assert values == {"STRIPE_KEY": "sk_x"}
    assert "redis resource" in excluded["REDISCLOUD_URL"]


def test_every_postgres_attachment_and_database_url_are_excluded() -> None:
    config = {
        "DATABASE_URL": "postgres://a",
        "HEROKU_POSTGRESQL_PINK_URL": "postgres://b",
        "SENDGRID_API_KEY": "SG.x",
    }
    addons = [
        _addon("heroku-postgresql", "DATABASE_URL", "HEROKU_POSTGRESQL_PINK_URL"),
        _addon("sendgrid", "SENDGRID_API_KEY"),
    ]
    values, excluded = env_plan(config, addons, _ctx())
    assert values == {"SENDGRID_API_KEY": "SG.x"}  # an add-on Convox has no resource for
    assert set(excluded) == {"DATABASE_URL", "HEROKU_POSTGRESQL_PINK_URL"}


def test_playbook_override_wins_over_an_exclusion() -> None:
    config = {"REDISCLOUD_URL": "redis://old"}
    values, excluded = env_plan(
        config,
        [_addon("rediscloud", "REDISCLOUD_URL")],
        _ctx(override={"REDISCLOUD_URL": "redis://kept"}),
    )
    assert values == {"REDISCLOUD_URL": "redis://kept"}
    assert excluded == {}
