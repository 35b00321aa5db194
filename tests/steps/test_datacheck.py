"""check-data (cutover/steps/datacheck.py): the assessment on catalog rows (fast), and the
catalog queries against real PostgreSQL 15 clusters with a NOSUPERUSER target role (slow)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.databases import make_database

from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.state import Status
from cutover.steps import datacheck
from cutover.steps.base import Context
from cutover.steps.data import InitialSyncOutputs
from cutover.steps.datacheck import (
    GIB,
    CheckData,
    Resource,
    SourceFacts,
    TargetFacts,
    assess,
    estimate,
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
    assert "skip_extensions" in fix and "rds_superuser" in fix
    # Not "create it on the Convox database": every full sync restores into a fresh staging
    # database (<db>__cutover_next) where a hand-made extension would not be, and check-data
    # would stop the same way next time: a fix that cannot work.
    assert "create pg_stat_statements on the Convox database" not in fix


def test_a_missing_extension_other_than_postgis_is_not_told_to_use_a_postgis_image() -> None:
    heroku = source(extensions=[{"name": "hstore_plperl", "version": "1.0", "schema": "public"}])
    got = assess(heroku, target(superuser=True), [], RESOURCE)
    problem, fix = got.stops[0]
    assert "extension hstore_plperl" in problem and "not available" in problem
    assert "postgis/postgis" not in fix and "image that has hstore_plperl" in fix


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


# --------------------------------------------------------------------------------------------
# The step itself (slow): real catalogs, the Heroku and Convox CLIs replaced by what they would
# give the step (a URL; a local port where `convox resources proxy` would listen).


@dataclass
class Notes:
    lines: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.lines.append(message)


@dataclass
class UrlOnly:
    """What the step asks the CLIs for: ``pg:credentials:url`` and ``resources url``/``proxy``."""

    url: str
    port: int = 0

    def credentials_url(self, attachment: str, *, fresh: bool = False) -> str:
        assert attachment == "DATABASE"
        return self.url

    def resource_url(self, name: str, *, reuse: bool = False) -> str:
        assert name == "database"
        return self.url

    @contextlib.contextmanager
    def proxy(self, resource: str, speaks: str | None = None) -> Iterator[int]:
        yield self.port


def step_context(tmp_path: Path, heroku_url: str, convox_url: str, skip: list[str]) -> Context:
    (tmp_path / "convox.yml").write_text(
        "resources:\n  database:\n    type: rds-postgres\n    options:\n      storage: 40\n"
        "services:\n  web:\n    build: .\n    resources: [database]\n",
        encoding="utf-8",
    )
    raw: dict[str, Any] = {
        "version": 1,
        "heroku": {"app": "acme-shop"},
        "convox": {"app": "shop", "rack": "acme/production"},
        "database": {"skip_extensions": skip},
    }
    pb = LoadedPlaybook(tmp_path / "cutover.yml", Playbook.model_validate(raw), raw)
    masker = SecretMasker()
    target = ConnInfo.from_url(convox_url)
    ctx = Context.__new__(Context)
    ctx.playbook, ctx.state, ctx.masker = pb, new_state(pb), masker
    ctx.postgres = PostgresAdapter(Runner(masker), masker)
    ctx.heroku = UrlOnly(heroku_url)  # type: ignore[assignment]
    ctx.convox = UrlOnly(convox_url, target.port)  # type: ignore[assignment]
    ctx.reporter = Notes()
    ctx.sleep = lambda _s: None
    return ctx


@pytest.mark.slow
def test_step_stops_before_copying_or_records_the_skip_as_a_finding(
    pg_source: PgCluster, pg_target: PgCluster, tmp_path: Path
) -> None:
    heroku = make_database(pg_source, "dcstep")
    convox = make_database(pg_target, "dcstepdst")  # NOSUPERUSER, like rds-postgres's role
    with pgcluster.connect(pg_source, heroku.dbname) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    step = CheckData()
    heroku_url = heroku.url() + "?sslmode=disable"  # the test clusters serve no TLS

    ctx = step_context(tmp_path, heroku_url, convox.url(), skip=[])
    with pytest.raises(CutoverError) as caught:
        step.apply(ctx)
    err = caught.value
    assert "cannot take Heroku's database (1 problem(s)); nothing was copied" in err.brief
    assert "extension pg_stat_statements needs a superuser" in err.details
    assert "database.skip_extensions" in err.details
    notes = ctx.reporter.lines  # type: ignore[attr-defined]
    assert any(n.startswith("extensions on Heroku: pg_stat_statements, plpgsql") for n in notes)
    assert any("final sync duration: unknown until initial-sync" in n for n in notes)

    ctx = step_context(tmp_path, heroku_url, convox.url(), skip=["pg_stat_statements"])
    out = step.apply(ctx)
    assert out.skipped_extensions == ["pg_stat_statements"]
    assert out.capacity_bytes == 40 * GIB and out.free_bytes is not None
    assert out.heroku_pg_major == out.convox_pg_major == 15
    assert out.estimate_seconds is None
    assert any("left out of the copy (skip_extensions)" in f for f in out.findings)
    assert any("space: database has 40 GiB" in n for n in ctx.reporter.lines)  # type: ignore[attr-defined]


def test_estimate_uses_the_initial_syncs_measured_seconds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Once initial-sync records its measured ``seconds`` (the copy helper's outputs), a later
    check-data (--from) states the final sync's estimate from it; before, it says unknown."""

    class Measured(InitialSyncOutputs):
        seconds: float

    ctx = step_context(tmp_path, "postgres://h/x", "postgres://h/y", skip=[])
    assert estimate(ctx, 10 * 1024**2) == (
        None,
        "final sync duration: unknown until initial-sync has run and measured it "
        "(run `cutover run --from check-data` after it for an estimate)",
    )
    st = ctx.state.step("initial-sync")
    st.status = Status.DONE
    st.outputs = {"backup": "b001", "bytes": 1, "sha256": "x", "objects": 3, "seconds": 42.4}
    monkeypatch.setattr(datacheck, "InitialSyncOutputs", Measured)
    seconds, text = estimate(ctx, 10 * 1024**2)
    assert seconds == 42.4
    assert text == "final sync: about 42s (the initial sync of 10 MB took that)"


def test_an_unreachable_side_is_named_with_the_fix_and_no_password() -> None:
    """A refused connection (nothing listens on port 1) reads as which database could not be
    read and what to check, not as a bare psql command line."""
    masker = SecretMasker()
    adapter = PostgresAdapter(Runner(masker), masker)
    down = ConnInfo("127.0.0.1", 1, "u", "d", "s3cret-pw", None)
    with pytest.raises(CutoverError) as heroku:
        source_facts(adapter, down)
    assert heroku.value.brief.startswith(
        "check-data cannot read Heroku's database (u@127.0.0.1:1/d)"
    )
    assert "Connection refused" in heroku.value.details
    assert "pg:credentials:url" in heroku.value.resolution
    with pytest.raises(CutoverError) as convox:
        target_facts(adapter, down)
    assert "cannot read the Convox database" in convox.value.brief
    assert "convox resources" in convox.value.resolution
    for err in (heroku.value, convox.value):
        assert "s3cret-pw" not in str(err)


class _LocalTools:
    def __init__(self, major: int) -> None:
        self.major = major

    def client_major(self, tool: str = "pg_dump") -> int:
        assert tool == "pg_dump"
        return self.major


def test_a_local_pg_dump_older_than_the_convox_server_stops_before_the_window(
    tmp_path: Path,
) -> None:
    """verify-data dumps the Convox schema with this machine's pg_dump, which refuses a newer
    server (src/bin/pg_dump/pg_dump.c, "server version mismatch")."""
    ctx = step_context(tmp_path, "postgres://h/x", "postgres://h/y", skip=[])
    ctx.postgres = _LocalTools(15)  # type: ignore[assignment]
    [(problem, fix)] = CheckData()._local_tools(ctx, 16)
    assert "pg_dump is PostgreSQL 15; the Convox database runs 16" in problem
    assert "postgresql-client-16" in fix
    ctx.postgres = _LocalTools(16)  # type: ignore[assignment]
    assert CheckData()._local_tools(ctx, 16) == []
