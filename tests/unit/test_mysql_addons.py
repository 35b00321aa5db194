"""Two MySQL add-ons on one Heroku app (cutover/steps/mysqladdons.py): the *-mysql steps copy one;
the other is named, with its config var, as NOT copied, with what to do (issue 14). No server.

Facts: ``heroku addons --json`` lists each add-on with ``addon_service.name`` and the
``config_vars`` it sets (tests/fakes/seed.py has the shape); ClearDB sets CLEARDB_DATABASE_URL,
JawsDB JAWSDB_URL (cutover/catalog/addons.json); a second ClearDB attached to the same app gets
another var (here CLEARDB_ONYX_URL)."""

from __future__ import annotations

from typing import Any

from cutover.steps.mysqladdons import (
    MysqlAddon,
    choose,
    mysql_addons,
    not_copied_warning,
    which,
)
from cutover.steps.preflight import PreflightOutputs


def addon(service: str, *config_vars: str) -> dict[str, Any]:
    return {"addon_service": {"name": service}, "config_vars": list(config_vars)}


HEROKU_ADDONS = [
    addon("heroku-redis", "REDIS_URL"),
    addon("cleardb", "CLEARDB_DATABASE_URL"),
    addon("papertrail", "PAPERTRAIL_API_TOKEN"),
    addon("jawsdb", "JAWSDB_URL"),
    addon("cleardb", "CLEARDB_ONYX_URL"),
]
CLEARDB = MysqlAddon(service="cleardb", config_var="CLEARDB_DATABASE_URL")
JAWSDB = MysqlAddon(service="jawsdb", config_var="JAWSDB_URL")
ONYX = MysqlAddon(service="cleardb", config_var="CLEARDB_ONYX_URL")


def test_every_mysql_addon_is_found_with_its_own_var() -> None:
    assert mysql_addons(HEROKU_ADDONS) == [CLEARDB, JAWSDB, ONYX]
    # no config_vars listed: the catalog's var
    assert mysql_addons([addon("jawsdb-maria")]) == [
        MysqlAddon(service="jawsdb-maria", config_var="JAWSDB_MARIA_URL")
    ]
    assert mysql_addons([addon("heroku-postgresql", "DATABASE_URL")]) == []


def test_the_first_is_copied_unless_mysql_config_var_names_another() -> None:
    found = [CLEARDB, JAWSDB, ONYX]
    assert choose(found, None) == (CLEARDB, [JAWSDB, ONYX])
    assert choose(found, "JAWSDB_URL") == (JAWSDB, [CLEARDB, ONYX])
    # a var no add-on sets (the URL copied under another name): the first add-on, read from it
    copied, others = choose(found, "MY_MYSQL_URL")
    assert copied == MysqlAddon(service="cleardb", config_var="MY_MYSQL_URL")
    assert others == [JAWSDB, ONYX]


def test_the_warning_names_what_is_copied_what_is_not_and_what_to_do() -> None:
    text = not_copied_warning(CLEARDB, [JAWSDB, ONYX], "cleardb-database")
    assert text.startswith("WARNING: the Heroku app has 3 MySQL add-ons")
    assert "copy only cleardb (CLEARDB_DATABASE_URL) into the Convox cleardb-database" in text
    assert "NOT copied: jawsdb (JAWSDB_URL), cleardb (CLEARDB_ONYX_URL)" in text
    assert "mysql.config_var: JAWSDB_URL" in text  # how to copy the other instead
    assert "second MySQL resource" in text  # how to keep both


def test_check_mysql_reads_preflights_list_and_older_states_still_work() -> None:
    out = PreflightOutputs(
        heroku_cli="11",
        heroku_formation={},
        heroku_addons=["cleardb", "jawsdb"],
        mysql_addons=[CLEARDB, JAWSDB],
        scheduler=False,
        router="r",
        rack="t",
    )
    assert which(out.mysql_addons, out.heroku_addons, None) == (CLEARDB, [JAWSDB])
    # a state saved before preflight kept the add-ons: the services only, as before
    older = PreflightOutputs.model_validate(
        {k: v for k, v in out.model_dump().items() if k != "mysql_addons"}
    )
    assert older.mysql_addons == []
    assert which(older.mysql_addons, older.heroku_addons, None) == (CLEARDB, [])
    assert which([], ["heroku-postgresql"], None) is None
