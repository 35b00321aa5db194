"""The sandbox seed (cutover/sandbox/seed.py) against real PostgreSQL: Heroku-shaped as the
non-superuser app role, and any size seeds (the integer overflow above 271,180 rows)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from support.databases import make_database

from cutover.sandbox import pgcluster, seed
from cutover.sandbox.pgcluster import PgCluster

pytestmark = pytest.mark.slow


def test_seed_is_heroku_shaped_as_the_non_superuser_role(pg_source: PgCluster) -> None:
    db = make_database(pg_source, "seedh")
    seed.seed(pg_source, db.dbname, user=db.owner, password=db.password, rows=40)
    with psycopg.connect(db.url(), autocommit=True) as conn:
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False,)
        extensions: dict[str, str] = dict(
            conn.execute(
                "SELECT e.extname, n.nspname FROM pg_extension e "
                "JOIN pg_namespace n ON n.oid = e.extnamespace"
            ).fetchall()
        )
        assert extensions["uuid-ossp"] == extensions["pg_trgm"] == "heroku_ext"
        assert extensions["pg_stat_statements"] == "heroku_ext"
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public, heroku_ext',)
        # The role's own default, as Heroku tells users to set it (pg_db_role_setting).
        setting = conn.execute(
            "SELECT s.setdatabase, s.setconfig FROM pg_db_role_setting s "
            "JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = current_user"
        ).fetchone()
        assert setting == (0, ['search_path="$user", public, heroku_ext'])
        # The trigger finds uuid_generate_v4() only through the search_path.
        row = conn.execute("INSERT INTO events (kind) VALUES ('signup') RETURNING id").fetchone()
        assert row is not None and len(str(row[0])) == 36
        best = conn.execute(
            "SELECT title FROM product_title_matches ORDER BY score DESC, id LIMIT 1"
        ).fetchone()
        assert best == ("Kaffeebecher 7",)
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'index_products_on_title_trgm'"
        ).fetchone()
        assert index is not None and "gin_trgm_ops" in index[0]
        sizes = conn.execute(
            "SELECT count(*), sum(length(lo_get(oid))) FROM pg_largeobject_metadata"
        ).fetchone()
        assert sizes is not None and sizes[0] == 3 and sizes[1] > 1000
        payload = conn.execute("SELECT payload FROM events WHERE kind = 'login' LIMIT 1").fetchone()
        assert payload is not None and isinstance(payload[0], bytes) and len(payload[0]) == 32
        assert conn.execute("SELECT count(*) FROM audit_entries").fetchone() == (0,)
    # Without heroku_ext on the search_path the app's inserts fail (issue 10's first fault).
    with (
        psycopg.connect(db.url(), autocommit=True, options="-c search_path=public") as conn,
        pytest.raises(psycopg.errors.UndefinedFunction, match="uuid_generate_v4"),
    ):
        conn.execute("INSERT INTO events (kind) VALUES ('signup')")


@pytest.mark.parametrize("rows", [271_181, 40_000_000])
def test_any_size_seeds_without_integer_overflow(pg_source: PgCluster, rows: int) -> None:
    """The largest values of every series of a ``rows`` seed (``tail``), without seeding them
    all: those rows name ids that do not exist, so foreign keys are off for this session
    (session_replication_role, a superuser setting)."""
    db = make_database(pg_source, "seedbig")
    seed.run_psql(pg_source.libpq_env(db.dbname), seed.admin_script(db.owner))
    script = seed.seed_script(rows, tail=20)
    seed.run_psql(
        pg_source.libpq_env(db.dbname),
        "SET session_replication_role = replica;\nSET search_path = public, heroku_ext;\n" + script,
        single_transaction=True,
    )
    with pgcluster.connect(pg_source, db.dbname) as conn:
        top = conn.execute("SELECT max(reference), count(*) FROM orders").fetchone()
        assert top == (f"R{2 * rows:09d}", 20)
        balance = conn.execute(
            "SELECT count(*) FROM accounts WHERE balance_cents IS NOT NULL"
        ).fetchone()
        assert balance == (20,)


def test_sandbox_up_refuses_rows_below_one_before_starting_anything(tmp_path: Path) -> None:
    """seed_script raises ValueError below 1 row, which the CLI reported as a bug in cutover
    after starting the clusters: the option itself refuses it (a usage error, exit 2)."""
    folder = tmp_path / "sb"
    result = subprocess.run(
        [sys.executable, "-m", "cutover", "sandbox", "up", "--dir", str(folder), "--rows", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result
    assert "Invalid value for '--rows'" in result.stderr and "bug in cutover" not in result.stderr
    assert not folder.exists()
