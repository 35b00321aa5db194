"""The reference data and workload SQL (cutover/bench/reference.py) and the plain-tool baselines
(cutover/bench/baselines.py), on real PostgreSQL clusters at the smallest scale."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest
from support.databases import make_database

from cutover.bench import baselines, reference
from cutover.bench.baselines import Endpoint
from cutover.errors import InvalidInput
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster

TINY = reference.Reference(scale=1)

# Every user table's row count and content digest, to tell changed tables from untouched ones.
DIGESTS_SQL = """
SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(md5(t::text), '''' ORDER BY '
              'md5(t::text)), '''')) FROM %I.%I t', relname, schemaname, relname)
FROM pg_stat_user_tables ORDER BY relname
"""


def _digests(endpoint: Endpoint) -> dict[str, str]:
    queries = baselines.run_sql(endpoint, DIGESTS_SQL).splitlines()
    out = {}
    for query in queries:
        name, rows, digest = baselines.run_sql(endpoint, query).strip().split("\t")
        out[name] = f"{rows}:{digest}"
    return out


@pytest.fixture(scope="module")
def loaded(pg_source: PgCluster) -> Endpoint:
    """A database owned by a plain (non-superuser) role, loaded as that role, at scale 1."""
    db = make_database(pg_source, "bench")
    source = Endpoint(pg_source, db.dbname, db.owner, db.password)
    size_mb = _load(source)
    assert size_mb > 1
    return source


def _load(source: Endpoint) -> float:
    from cutover.bench.sandboxside import load_reference  # noqa: PLC0415 - the harness's loader

    return load_reference(source, TINY)


def test_bench_scale_comes_from_the_environment_and_bad_values_are_refused() -> None:
    assert reference.scale_from_env({}).scale == 40
    assert reference.scale_from_env({"BENCH_SCALE": " 2 "}).scale == 2
    assert reference.Reference(40).events_rows == 2_000_000
    for bad in ("0", "-1", "big", "1.5"):
        with pytest.raises(InvalidInput, match="BENCH_SCALE"):
            reference.scale_from_env({"BENCH_SCALE": bad})


def test_reference_has_pgbench_tables_and_the_events_table_with_two_indexes(
    loaded: Endpoint,
) -> None:
    counts = baselines.run_sql(
        loaded,
        "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM bench_events)",
    ).split()
    assert counts == ["100000", str(TINY.events_rows)]
    indexes = baselines.run_sql(
        loaded,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'bench_events' ORDER BY 1",
    ).split()
    assert indexes == ["bench_events_created_at", "bench_events_pkey"]
    owners = set(
        baselines.run_sql(
            loaded, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).split()
    )
    assert owners == {loaded.user}  # loaded as the source role, not a superuser


def test_workload_changes_only_the_small_tables_and_stays_under_15_percent(
    loaded: Endpoint,
) -> None:
    before = _digests(loaded)
    baselines.run_sql(loaded, reference.workload_sql(TINY, 1))
    after = _digests(loaded)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == set(reference.CHANGED_TABLES)
    history = baselines.run_sql(loaded, "SELECT count(*) FROM pgbench_history").strip()
    assert history == str(TINY.history_rows)
    changed_bytes, total = (int(v) for v in baselines.run_sql(loaded, reference.SHARE_SQL).split())
    share = reference.changed_share(changed_bytes, total)
    assert 0 < share <= reference.MAX_CHANGED_SHARE
    baselines.run_sql(loaded, reference.workload_sql(TINY, 2))
    assert _digests(loaded) != after  # every round's data is new


def test_changed_share_of_an_empty_database_is_zero() -> None:
    assert reference.changed_share(0, 0) == 0.0
    assert reference.changed_share(15, 100) == 0.15


def _admin(cluster: PgCluster) -> Endpoint:
    return Endpoint(cluster, "postgres", cluster.superuser, cluster.password)


def _copies(source: Endpoint, target: Endpoint) -> None:
    assert _digests(target) == _digests(source)


def test_guide_path_and_streamed_copy_the_reference(
    loaded: Endpoint, pg_target: PgCluster, tmp_path: Path
) -> None:
    name = f"bench_{secrets.token_hex(4)}"
    target = baselines.fresh_database(_admin(pg_target), name)
    assert baselines.guide_path(loaded, target, tmp_path) > 0
    _copies(loaded, target)
    assert list(tmp_path.iterdir()) == []  # the dump file is gone
    target = baselines.fresh_database(_admin(pg_target), name)  # dropped and made empty again
    assert baselines.run_sql(target, "SELECT count(*) FROM pg_stat_user_tables").strip() == "0"
    assert baselines.streamed(loaded, target) > 0
    _copies(loaded, target)


def test_psql_verify_runs_the_given_query_on_both_sides(
    loaded: Endpoint, pg_target: PgCluster
) -> None:
    seen: list[list[str]] = []

    def fingerprint(tables: list[str]) -> str:
        seen.append(tables)
        return "SELECT 1"

    target = baselines.fresh_database(_admin(pg_target), f"bench_{secrets.token_hex(4)}")
    baselines.psql_verify(
        loaded,
        target,
        tables_sql="SELECT relname FROM pg_stat_user_tables ORDER BY 1",
        fingerprint=fingerprint,
        pgoptions="-c TimeZone=UTC",
    )
    assert sorted(len(t) for t in seen) == [0, 5]  # the empty target, the five source tables


def test_a_failing_baseline_names_the_tool(loaded: Endpoint, pg_target: PgCluster) -> None:
    missing = _admin(pg_target).other(f"bench_missing_{secrets.token_hex(4)}")
    with pytest.raises(baselines.BaselineError, match="pg_restore exited 1"):
        baselines.streamed(loaded, missing)


@pytest.mark.skipif(shutil.which("pgcopydb") is None, reason="pgcopydb not installed")
def test_pgcopydb_clone_copies_the_reference(
    loaded: Endpoint, pg_target: PgCluster, tmp_path: Path
) -> None:
    target = baselines.fresh_database(_admin(pg_target), f"bench_{secrets.token_hex(4)}")
    assert baselines.pgcopydb_clone(loaded, target, tmp_path, jobs=2) > 0
    _copies(loaded, target)


@pytest.mark.skipif(shutil.which("pgcopydb") is None, reason="pgcopydb not installed")
def test_pgcopydb_clones_an_index_whose_opclass_lives_on_the_roles_search_path(
    pg_source: PgCluster, pg_target: PgCluster, tmp_path: Path
) -> None:
    """Heroku's shape: pg_trgm in heroku_ext, heroku_ext on the role's search_path, a trigram
    index. Without search_path=pg_catalog pgcopydb 0.10 replayed "gin (title gin_trgm_ops)"
    unqualified on the target and exited 12 (the bench's figure (c) failed so)."""
    db = make_database(pg_source, "bench_ext")
    source = Endpoint(pg_source, db.dbname, db.owner, db.password)
    baselines.run_sql(
        source,
        "CREATE SCHEMA heroku_ext; CREATE EXTENSION pg_trgm SCHEMA heroku_ext;\n"
        f'ALTER ROLE "{db.owner}" SET search_path = "$user", public, heroku_ext;\n'
        "CREATE TABLE products (id int PRIMARY KEY, title text);\n"
        "INSERT INTO products SELECT g, 'title ' || g FROM generate_series(1, 50) g;",
    )
    # A new session: the role's search_path now finds the opclass unqualified.
    baselines.run_sql(
        source, "CREATE INDEX products_title_trgm ON products USING gin (title gin_trgm_ops)"
    )
    target = baselines.fresh_database(_admin(pg_target), f"bench_{secrets.token_hex(4)}")
    assert baselines.pgcopydb_clone(source, target, tmp_path, jobs=2) > 0
    indexdef = baselines.run_sql(
        target, "SELECT indexdef FROM pg_indexes WHERE indexname = 'products_title_trgm'"
    )
    assert "heroku_ext.gin_trgm_ops" in indexdef
    assert baselines.run_sql(target, "SELECT count(*) FROM products").strip() == "50"


def test_endpoint_env_drops_inherited_pg_variables(
    pg_source: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSERVICE", "elsewhere")
    env = Endpoint(pg_source, "db", "role", "s3cret").env()
    assert "PGSERVICE" not in env
    assert env["PGPASSWORD"] == "s3cret"
    assert env["PGPORT"] == str(pg_source.port)
    assert env["PGHOST"] == pgcluster.HOST


def test_pgcopydb_gets_the_passwords_in_its_environment_never_in_argv(
    pg_source: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in pgcopydb on PATH records its argv and environment (pgcopydb 0.10 reads
    PGCOPYDB_SOURCE_PGURI / PGCOPYDB_TARGET_PGURI when --source / --target are absent)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pgcopydb"
    record = bin_dir / "pgcopydb.json"
    script = (
        "import json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('PGCOPYDB_')}\n"
        "seen = {'argv': sys.argv, 'env': env, 'pgoptions': os.environ.get('PGOPTIONS')}\n"
        "open(sys.argv[0] + '.json', 'w').write(json.dumps(seen))\n"
    )
    fake.write_text(f"#!{sys.executable}\n{script}", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    source = Endpoint(pg_source, "src", "role_a", "pw-source-secret")
    target = Endpoint(pg_source, "dst", "role_b", "pw-target-secret")
    baselines.pgcopydb_clone(source, target, tmp_path, jobs=3)
    seen = json.loads(record.read_text(encoding="utf-8"))
    argv = " ".join(seen["argv"])
    assert "secret" not in argv
    assert "--source" not in argv
    assert "--table-jobs 3" in argv
    assert seen["pgoptions"] == "-c search_path=pg_catalog"
    assert "pw-source-secret" in seen["env"]["PGCOPYDB_SOURCE_PGURI"]
    assert "pw-target-secret" in seen["env"]["PGCOPYDB_TARGET_PGURI"]


def test_a_failing_pg_dump_is_named_before_pg_restore(pg_target: PgCluster) -> None:
    target = baselines.fresh_database(_admin(pg_target), f"bench_{secrets.token_hex(4)}")
    nowhere = _admin(pg_target).other(f"bench_absent_{secrets.token_hex(4)}")
    with pytest.raises(baselines.BaselineError, match="pg_dump exited 1"):
        baselines.streamed(nowhere, target)


def test_the_events_table_loads_past_the_32_bit_products(pg_source: PgCluster) -> None:
    """Scale 6: 300,000 rows, where ``g * 7919`` passes 2^31 (the scale-40 load failed so)."""
    db = make_database(pg_source, "bench_big")
    endpoint = Endpoint(pg_source, db.dbname, db.owner, db.password)
    baselines.run_sql(endpoint, reference.events_sql(reference.Reference(scale=6)))
    count = baselines.run_sql(endpoint, "SELECT count(*), max(account_id) FROM bench_events")
    rows, top = count.split()
    assert rows == "300000"
    assert 0 < int(top) <= 600_000
