"""Two MySQL add-ons on one Heroku app (cutover/steps/mysqladdons.py): the *-mysql steps copy one;
the other is named, with its config var, as NOT copied, with what to do (issue 14). No server.

Facts: ``heroku addons --json`` lists each add-on with ``addon_service.name`` and the
``config_vars`` it sets (tests/fakes/seed.py has the shape); ClearDB sets CLEARDB_DATABASE_URL,
JawsDB JAWSDB_URL (cutover/catalog/addons.json); a second ClearDB attached to the same app gets
another var (here CLEARDB_ONYX_URL)."""

from __future__ import annotations

from typing import Any

from cutover.steps.mysqladdons import (
    UNKNOWN,
    MysqlAddon,
    choose,
    mysql_addons,
    needs_values,
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


# ClearDB's guide has users copy CLEARDB_DATABASE_URL's value into DATABASE_URL.
CONFIG = {
    "CLEARDB_DATABASE_URL": "mysql://b1:secret-one@us-cdbr-east.cleardb.com/heroku_1",
    "JAWSDB_URL": "mysql://u2:secret-two@jaws.example.com:3306/db2",
    "CLEARDB_ONYX_URL": "mysql://b3:secret-three@us-cdbr-east.cleardb.com/heroku_3",
    "REDIS_URL": "redis://h:secret-four@ec2.example.com:6379",
}


def test_a_var_no_addon_sets_is_matched_by_value_to_the_addon_it_copies() -> None:
    found = [CLEARDB, JAWSDB, ONYX]
    config = {**CONFIG, "DATABASE_URL": CONFIG["JAWSDB_URL"]}  # JawsDB's, not the first's
    copied, others = choose(found, "DATABASE_URL", config)
    assert copied == MysqlAddon(service="jawsdb", config_var="DATABASE_URL")
    assert others == [CLEARDB, ONYX]
    assert needs_values(found, "DATABASE_URL") and not needs_values(found, "JAWSDB_URL")
    assert not needs_values(found, None)


def test_a_var_holding_no_addons_database_is_unknown_and_every_addon_not_copied() -> None:
    found = [CLEARDB, JAWSDB]
    config = {**CONFIG, "DATABASE_URL": "mysql://x:secret-five@elsewhere.example.com/db"}
    copied, others = choose(found, "DATABASE_URL", config)
    assert copied == MysqlAddon(service=UNKNOWN, config_var="DATABASE_URL")
    assert others == [CLEARDB, JAWSDB]
    # no value to compare with (the var unset, or no config read): unknown too, never the first
    assert choose(found, "DATABASE_URL", CONFIG)[0].service == UNKNOWN
    assert choose(found, "DATABASE_URL")[0].service == UNKNOWN
    # one add-on whose database the var does not hold: it is NOT copied either
    assert choose([CLEARDB], "DATABASE_URL", config) == (copied, [CLEARDB])
    text = not_copied_warning(copied, others, "database")
    assert text.startswith("WARNING: the Heroku app has 2 MySQL add-ons"), text
    assert (
        "copy only the database in DATABASE_URL (no listed add-on's var holds it: unknown)" in text
    )
    assert "NOT copied: cleardb (CLEARDB_DATABASE_URL), jawsdb (JAWSDB_URL)" in text
    assert "the run carries on" in text
    assert all(value not in text for value in config.values())  # values are never printed


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
    # with the values: a var no add-on sets, matched as check-mysql does
    config = {**CONFIG, "DATABASE_URL": CONFIG["CLEARDB_DATABASE_URL"]}
    assert which(older.mysql_addons, older.heroku_addons, "DATABASE_URL", config) == (
        MysqlAddon(service="cleardb", config_var="DATABASE_URL"),
        [],
    )
