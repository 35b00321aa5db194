"""check-data (cutover/steps/datacheck.py): the assessment on catalog rows (fast), and the
catalog queries against real PostgreSQL 15 clusters with a NOSUPERUSER target role (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.databases import make_database

from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.steps.datacheck import (
    GIB,
    Resource,
    SourceFacts,
    TargetFacts,
    assess,
    source_facts,
    target_facts,
)

RESOURCE = Resource("database", "postgres", None, None, "convox.yml")
PG15 = 150004


def source(**kw: object) -> SourceFacts:
    fields: dict[str, object] = {
        "version": PG15,
        "bytes": 100 * 1024**2,
        "schemas": ["heroku_ext", "public"],
        "extensions": [
            {"name": "plpgsql", "version": "1.0", "schema": "pg_catalog"},
            {"name": "pg_trgm", "version": "1.6", "schema": "heroku_ext"},
            {"name": "pg_stat_statements", "version": "1.10", "schema": "heroku_ext"},
        ],
        "settings": [{"scope": "role", "config": ['search_path="$user", public, heroku_ext']}],
    }
    fields.update(kw)
    return SourceFacts.model_validate(fields)


def target(**kw: object) -> TargetFacts:
    # Rows as PostgreSQL 15's contrib packages report them in pg_available_extension_versions.
    fields: dict[str, object] = {
        "version": PG15,
        "superuser": False,
        "create_on_database": True,
        "admin_roles": [],
        "available": {
            "plpgsql": {"trusted": True, "superuser": True},
            "pg_trgm": {"trusted": True, "superuser": True},
            "pg_stat_statements": {"trusted": False, "superuser": True},
            "uuid-ossp": {"trusted": True, "superuser": True},
        },
        "settings": {"search_path": "user", "log_min_duration_statement": "superuser"},
        "bytes": 8 * 1024**2,
        "used_bytes": 30 * 1024**2,
    }
    fields.update(kw)
    return TargetFacts.model_validate(fields)


def test_untrusted_extension_not_in_skip_list_stops() -> None:
    got = assess(source(), target(), [], RESOURCE)
    assert len(got.stops) == 1
    problem, fix = got.stops[0]
    assert "extension pg_stat_statements needs a superuser" in problem
    assert "skip_extensions" in fix and "administrator create pg_stat_statements" in fix


def test_untrusted_extension_in_skip_list_is_a_finding() -> None:
    got = assess(source(), target(), ["pg_stat_statements"], RESOURCE)
    assert got.stops == []
    assert got.skipped_extensions == ["pg_stat_statements"]
    assert any("pg_stat_statements" in f and "left out" in f for f in got.findings)


def test_superuser_or_rds_superuser_may_create_it() -> None:
    assert assess(source(), target(superuser=True), [], RESOURCE).stops == []
    assert assess(source(), target(admin_roles=["rds_superuser"]), [], RESOURCE).stops == []


def test_trusted_extension_needs_create_on_the_database() -> None:
    got = assess(source(), target(create_on_database=False), ["pg_stat_statements"], RESOURCE)
    assert [p for p, _ in got.stops if "pg_trgm" in p]


def test_missing_postgis_is_named_with_the_fix() -> None:
    heroku = source(extensions=[{"name": "postgis", "version": "3.3.2", "schema": "heroku_ext"}])
    got = assess(heroku, target(superuser=True), ["pg_stat_statements"], RESOURCE)
    problem, fix = got.stops[0]
    assert "extension postgis" in problem and "not available" in problem
    assert "official postgres image" in problem
    assert "resources.database.image" in fix and "postgis/postgis:15-3.4" in fix
    assert "rds-postgres" in fix


def test_older_target_server_stops() -> None:
    got = assess(source(version=160002), target(), ["pg_stat_statements"], RESOURCE)
    assert any("runs PostgreSQL 15, older than Heroku's 16" in p for p, _ in got.stops)
    assert any('options.version to "16"' in f for _, f in got.stops)


def test_settings_unknown_or_superuser_only_stop_missing_schema_is_a_finding() -> None:
    heroku = source(
        settings=[
            {"scope": "database", "config": ["search_path=public, nowhere", "auto.x=1"]},
            {"scope": "role", "config": ["log_min_duration_statement=10", "no_such_param=1"]},
        ]
    )
    got = assess(heroku, target(), ["pg_stat_statements"], RESOURCE)
    stops = " | ".join(p for p, _ in got.stops)
    assert "log_min_duration_statement=10 may be set by a superuser only" in stops
    assert "no_such_param=1 names a parameter the Convox server does not know" in stops
    assert "auto.x" not in stops  # dotted: a placeholder any server accepts
    assert any("nowhere" in f for f in got.findings)


def test_space_twice_the_size_with_default_and_declared_storage() -> None:
    big = source(bytes=6 * GIB)
    got = assess(big, target(), ["pg_stat_statements"], RESOURCE)  # default 10 GiB volume
    problem, fix = got.stops[0]
    assert "holds 10 GiB" in problem and "staging database swap" in problem
    assert "options.storage" in fix and "at least 14" in fix
    roomy = Resource("database", "postgres", None, 50, "convox.yml")
    got = assess(big, target(), ["pg_stat_statements"], roomy)
    assert got.stops == [] and got.capacity_bytes == 50 * GIB
    assert got.free_bytes == 50 * GIB - 30 * 1024**2
    unknown = Resource("database", "custom", None, None, "convox.yml")
    got = assess(big, target(), ["pg_stat_statements"], unknown)
    assert got.capacity_bytes is None
    assert any("cannot be known" in f for f in got.findings)


# --------------------------------------------------------------------------------------------
# Real catalogs (slow)


@pytest.mark.slow
def test_real_nosuperuser_target_stops_on_pg_stat_statements(
    pg_source: PgCluster, pg_target: PgCluster, tmp_path: Path
) -> None:
    heroku = make_database(pg_source, "dcsrc")
    convox = make_database(pg_target, "dcdst")  # a NOSUPERUSER owner, like rds-postgres's role
    with pgcluster.connect(
        pg_source, heroku.dbname
    ) as conn:  # Heroku installs pg_stat_statements itself (a superuser does it)
        conn.execute("CREATE SCHEMA IF NOT EXISTS heroku_ext")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA heroku_ext")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA heroku_ext")
    heroku.execute(f'ALTER ROLE "{heroku.owner}" IN DATABASE "{heroku.dbname}" '
                   "SET search_path = \"$user\", public, heroku_ext")  # fmt: skip
    masker = SecretMasker()
    postgres = PostgresAdapter(Runner(masker), masker)
    src = source_facts(postgres, ConnInfo.from_url(heroku.url()))
    dst = target_facts(postgres, ConnInfo.from_url(convox.url()))
    assert {e["name"] for e in src.extensions} >= {"pg_stat_statements", "pg_trgm", "plpgsql"}
    assert {"scope": "role in database",
            "config": ['search_path="$user", public, heroku_ext']} in src.settings  # fmt: skip
    assert not dst.superuser and dst.create_on_database
    assert dst.available["pg_stat_statements"]["trusted"] is False
    assert dst.available["pg_trgm"]["trusted"] is True
    assert dst.used_bytes is not None and dst.used_bytes >= dst.bytes > 0

    stopped = assess(src, dst, [], RESOURCE)
    assert [p for p, _ in stopped.stops] == [
        "extension pg_stat_statements needs a superuser to create and the Convox role is not "
        "one (not trusted, no rds_superuser-like membership)"
    ]
    skipped = assess(src, dst, ["pg_stat_statements"], RESOURCE)
    assert skipped.stops == [] and skipped.skipped_extensions == ["pg_stat_statements"]
