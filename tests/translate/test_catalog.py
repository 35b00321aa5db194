"""The add-on table is data shared by translate and set-env (cutover/catalog/addons.json)."""

from __future__ import annotations

import json
from importlib import resources

from cutover.catalog import (
    addons,
    dyno_size,
    resource_addon,
    resource_config_vars,
    shared_advice,
)


def test_resource_addon_maps_services_to_convox_types() -> None:
    assert resource_addon("heroku-postgresql") == "postgres"
    assert resource_addon("rediscloud") == "redis"
    assert resource_addon("memcachier") == "memcached"
    assert resource_addon("sendgrid") is None  # kept: its config vars are copied
    assert resource_addon("no-such-addon") is None


def test_resource_config_vars_for_set_env() -> None:
    # the live attachment's names plus the table's, only for add-ons a resource replaces
    assert resource_config_vars("rediscloud", ["REDISCLOUD_URL"]) == {"REDISCLOUD_URL"}
    assert resource_config_vars("heroku-postgresql", ["HEROKU_POSTGRESQL_RED_URL"]) == {
        "HEROKU_POSTGRESQL_RED_URL",
        "DATABASE_URL",
    }
    assert resource_config_vars("sendgrid", ["SENDGRID_API_KEY"]) == frozenset()


def test_every_entry_is_well_formed() -> None:
    data = json.loads(resources.files("cutover.catalog").joinpath("addons.json").read_text())
    assert set(data["addons"]) == set(addons())
    for slug, kind in addons().items():
        assert kind.category, slug
        assert all(v == v.upper() for v in kind.default_vars), slug
        assert not kind.advice.startswith("@"), slug  # shared advice is resolved
    assert "direct account" in shared_advice("keep-account")


def test_dyno_sizes_are_case_insensitive() -> None:
    size = dyno_size("Performance-M")
    assert size is not None
    assert (size.cpu, size.memory) == (2000, 2560)
    assert dyno_size("nonsense") is None
