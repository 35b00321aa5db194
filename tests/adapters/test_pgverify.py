"""verify-data's comparison (cutover/adapters/pgverify.py) against real PostgreSQL: a
Heroku-shaped database (cutover/sandbox/seed.py: heroku_ext extensions, the role's search_path,
large objects, bytea, an empty table) and an exact clone of it (CREATE DATABASE ... TEMPLATE,
objects reassigned to the clone's own role, the role's search_path set in that database as the
copy applies it). Every kind of difference must fail naming the object; identical databases
pass."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from psycopg import sql
from support.databases import AppDatabase, make_database

from cutover.adapters.pgverify import Outcome, Side, Verifier
from cutover.adapters.postgres import ConnInfo
from cutover.errors import CommandError
from cutover.runner import Runner
from cutover.sandbox import pgcluster, seed
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

pytestmark = pytest.mark.slow

SEARCH_PATH = '"$user", public, heroku_ext'


@pytest.fixture(scope="module")
def heroku_db(pg_source: PgCluster) -> AppDatabase:
    db = make_database(pg_source, "vsrc")
    seed.seed(pg_source, db.dbname, user=db.owner, password=db.password, rows=150)
    # A table of about 2.5 MB: above verify_counts_only_above_mb=1.
    db.execute(
        "CREATE TABLE big AS SELECT i, repeat('x', 100) AS pad FROM generate_series(1, 20000) i"
    )
    return db


def clone(source: AppDatabase) -> AppDatabase:
    """An exact copy of ``source`` owned by a role of its own, as a finished copy leaves it."""
    cluster = source.cluster
    target = make_database(cluster, "vdst", password="pw-" + secrets.token_hex(8))
    with pgcluster.connect(cluster) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(target.dbname)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(target.dbname),
                sql.Identifier(source.dbname),
                sql.Identifier(target.owner),
            )
        )
    with pgcluster.connect(cluster, target.dbname) as conn:
        conn.execute(
            sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                sql.Identifier(source.owner), sql.Identifier(target.owner)
            )
        )
        # REASSIGN also moved the shared object the source role owns: its database.
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(source.dbname), sql.Identifier(source.owner)
            )
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = " + SEARCH_PATH).format(
                sql.Identifier(target.owner), sql.Identifier(target.dbname)
            )
        )
    return target


@dataclass
class Pair:
    heroku: AppDatabase
    convox: AppDatabase

    def admin(self, *statements: str) -> None:
        """Run ``statements`` on the Convox copy as the cluster's superuser."""
        with pgcluster.connect(self.convox.cluster, self.convox.dbname) as conn:
            for statement in statements:
                conn.execute(statement)

    def compare(self, **options: object) -> Outcome:
        masker = SecretMasker()
        verifier = Verifier(Runner(masker), masker, **options)  # type: ignore[arg-type]
        calls: list[tuple[int, int, int, int]] = []
        outcome = verifier.compare(
            Side("Heroku", _conn(self.heroku)),
            Side("Convox", _conn(self.convox)),
            lambda *args: calls.append(args),
        )
        self.progress = calls
        return outcome

    def lo_oids(self) -> list[int]:
        with pgcluster.connect(self.heroku.cluster, self.heroku.dbname) as conn:
            rows = conn.execute("SELECT oid FROM pg_largeobject_metadata ORDER BY 1").fetchall()
        return [int(r[0]) for r in rows]


def _conn(db: AppDatabase) -> ConnInfo:
    return ConnInfo("127.0.0.1", db.cluster.port, db.owner, db.dbname, db.password)


@pytest.fixture
def pair(heroku_db: AppDatabase) -> Iterator[Pair]:
    yield Pair(heroku_db, clone(heroku_db))


def test_identical_databases_pass_and_every_category_is_counted(pair: Pair) -> None:
    pair.admin(
        f"COMMENT ON DATABASE {pair.convox.dbname} IS 'cutover:synced 2026-01-01T00:00:00 writes=3'"
    )
    out = pair.compare(skip_extensions=["pg_stat_statements"])
    assert out.problems == [] and out.notes == []
    assert out.tables == 11  # 7 Rails tables, events, attachments, audit_entries, big
    assert out.rows > 150 * 8
    assert out.sequences == 7 and out.large_objects == 3 and out.settings == 1
    assert out.extensions == 5  # plpgsql, citext, uuid-ossp, pg_trgm, pg_stat_statements
    assert out.schema_objects > 40 and out.compared == "checksums" and out.counted_only == []
    assert pair.progress[0][0] == 0 and pair.progress[-1][:2] == (11, 11)
    assert pair.progress[-1][2] == pair.progress[-1][3] > 2_000_000


def test_a_changed_row_is_named(pair: Pair) -> None:
    pair.convox.execute("UPDATE users SET name = 'changed' WHERE id = 7")
    assert pair.compare().problems == ["table public.users: content differs (150 rows)"]


def test_a_missing_row_is_named(pair: Pair) -> None:
    pair.convox.execute("DELETE FROM events WHERE id = md5('event 3')::uuid")
    assert pair.compare().problems == ["table public.events: 15 rows on Heroku vs 14 on Convox"]


def test_a_sequence_position_is_named(pair: Pair) -> None:
    pair.convox.execute("SELECT setval('users_id_seq', 151)")
    assert pair.compare().problems == [
        "sequence public.users_id_seq: last_value=150 is_called=true on Heroku vs "
        "last_value=151 is_called=true on Convox"
    ]
    pair.convox.execute("SELECT setval('users_id_seq', 150, false)")  # same value, not called
    assert pair.compare().problems == [
        "sequence public.users_id_seq: last_value=150 is_called=true on Heroku vs "
        "last_value=150 is_called=false on Convox"
    ]


def test_a_removed_large_object_is_named(pair: Pair) -> None:
    oid = pair.lo_oids()[1]
    pair.convox.execute(f"SELECT lo_unlink({oid})")
    assert pair.compare().problems == [
        "large objects: 3 on Heroku vs 2 on Convox",
        f"large object {oid}: missing on Convox",
    ]


def test_a_changed_large_object_is_named(pair: Pair) -> None:
    oid = pair.lo_oids()[0]
    pair.convox.execute(f"SELECT lo_put({oid}, 3, '\\x21'::bytea)")
    assert pair.compare().problems == [f"large object {oid}: content differs (md5)"]


def test_a_missing_extension_fails_unless_skipped(pair: Pair) -> None:
    pair.admin("DROP EXTENSION pg_stat_statements")
    out = pair.compare(skip_extensions=["pg_stat_statements"])
    assert out.problems == []
    assert out.notes == ["extension pg_stat_statements: not on Convox (in skip_extensions)"]
    assert pair.compare(skip_extensions=[]).problems == [
        "extension pg_stat_statements: missing on Convox"
    ]


def test_a_missing_extension_the_app_uses_is_named(pair: Pair) -> None:
    pair.admin("DROP EXTENSION pg_trgm CASCADE")  # also drops the trigram index and the view
    problems = pair.compare(skip_extensions=["pg_stat_statements"]).problems
    assert "extension pg_trgm: missing on Convox" in problems
    assert "schema: INDEX public.index_products_on_title_trgm: missing on Convox" in problems
    assert "schema: VIEW public.product_title_matches: missing on Convox" in problems


def test_an_extension_in_another_schema_is_named(pair: Pair) -> None:
    pair.admin('ALTER EXTENSION "uuid-ossp" SET SCHEMA public')
    assert pair.compare().problems == [
        "extension uuid-ossp: in schema heroku_ext on Heroku vs public on Convox"
    ]


def test_a_changed_column_is_named(pair: Pair) -> None:
    pair.convox.execute("ALTER TABLE products ALTER COLUMN sku TYPE text")
    (problem,) = pair.compare().problems
    assert problem.startswith("schema: TABLE public.products: definition differs")
    assert "sku character varying NOT NULL" in problem and "sku text NOT NULL" in problem


def test_a_changed_index_is_named(pair: Pair) -> None:
    pair.convox.execute(
        "DROP INDEX index_orders_pending",
        "CREATE INDEX index_orders_pending ON orders (created_at) WHERE status = 'paid'",
    )
    (problem,) = pair.compare().problems
    assert problem.startswith("schema: INDEX public.index_orders_pending: definition differs")


def test_a_missing_search_path_setting_is_named(pair: Pair) -> None:
    pair.admin(f"ALTER ROLE {pair.convox.owner} IN DATABASE {pair.convox.dbname} RESET search_path")
    assert pair.compare().problems == [
        f"setting search_path: '{SEARCH_PATH}' on Heroku vs (not set) on Convox"
    ]


def test_a_database_setting_overridden_by_the_role_compares_as_the_session_sees_it(
    pair: Pair,
) -> None:
    """Database, then role, then role in database: the role's setting wins over the database's."""
    pair.admin(f"ALTER DATABASE {pair.convox.dbname} SET search_path = public")
    assert pair.compare().problems == []
    pair.admin(f"ALTER DATABASE {pair.convox.dbname} SET statement_timeout = '5s'")
    assert pair.compare().problems == [
        "setting statement_timeout: (not set) on Heroku vs '5s' on Convox"
    ]


def test_a_read_only_default_a_sync_leaves_out_is_a_note(pair: Pair) -> None:
    """Heroku frozen by a run this state does not know of (steps/data.py app_settings leaves the
    setting out): a note, not a mismatch; known to the state, the app's value is compared."""
    heroku = pair.heroku
    with pgcluster.connect(heroku.cluster) as conn:
        conn.execute(f"ALTER DATABASE {heroku.dbname} SET default_transaction_read_only = on")
    try:
        out = pair.compare()
        assert out.problems == []
        assert out.notes == [
            "setting default_transaction_read_only: 'on' on Heroku, not carried to Convox "
            "(writes allowed)"
        ]
        known = pair.compare(source_settings={"default_transaction_read_only": None})
        assert known.problems == [] and known.notes == []
        # freeze-writes found it frozen already (its "previous" value): not carried either
        again = pair.compare(source_settings={"default_transaction_read_only": "on"})
        assert again.problems == [] and again.notes == out.notes
        pair.admin(f"ALTER DATABASE {pair.convox.dbname} SET default_transaction_read_only = off")
        assert pair.compare().problems == [
            "setting default_transaction_read_only: 'on' on Heroku vs 'off' on Convox"
        ]
    finally:
        with pgcluster.connect(heroku.cluster) as conn:
            conn.execute(f"ALTER DATABASE {heroku.dbname} RESET default_transaction_read_only")


def test_tables_above_the_size_limit_are_compared_by_count_only(pair: Pair) -> None:
    pair.convox.execute("UPDATE big SET pad = 'y' WHERE i = 1")
    out = pair.compare(counts_only_above_mb=1)
    assert out.problems == [] and out.counted_only == ["public.big"]
    assert pair.compare().problems == ["table public.big: content differs (20000 rows)"]
    pair.convox.execute("DELETE FROM big WHERE i = 2", "UPDATE users SET locale = 'xx'")
    assert pair.compare(counts_only_above_mb=1).problems == [
        "table public.big: 20000 rows on Heroku vs 19999 on Convox",
        "table public.users: content differs (150 rows)",
    ]


def test_a_missing_table_and_a_split_over_many_sessions(pair: Pair) -> None:
    pair.convox.execute("DROP TABLE audit_entries")
    out = pair.compare(jobs=4)
    assert out.problems == [
        "table public.audit_entries: missing on Convox",
        "schema: CONSTRAINT public.audit_entries audit_entries_pkey: missing on Convox",
        "schema: DEFAULT public.audit_entries id: missing on Convox",
        "schema: SEQUENCE OWNED BY public.audit_entries_id_seq: missing on Convox",
        "schema: SEQUENCE public.audit_entries_id_seq: missing on Convox",
        "schema: TABLE public.audit_entries: missing on Convox",
        "sequence public.audit_entries_id_seq: missing on Convox",
    ]
    assert out.tables == 10


def test_a_side_that_cannot_be_read_fails_with_the_command_error(pair: Pair) -> None:
    """A psql child failing (here: a wrong password) stops the comparison with the Runner's
    CommandError (masked), while the other side's sessions are not waited for."""
    masker = SecretMasker()
    wrong = ConnInfo(
        "127.0.0.1",
        pair.convox.cluster.port,
        pair.convox.owner,
        pair.convox.dbname,
        "nope-" + secrets.token_hex(6),
    )
    with pytest.raises(CommandError) as caught:
        Verifier(Runner(masker), masker).compare(
            Side("Heroku", _conn(pair.heroku)), Side("Convox", wrong)
        )
    assert "password authentication failed" in caught.value.stderr_tail
    assert wrong.password not in str(caught.value)


# -- a hostile review's cases ------------------------------------------------------------------


def test_null_against_an_empty_string_is_named(pair: Pair) -> None:
    """users.locale is NULL for every sixth user (seed.py): '' is another value."""
    pair.convox.execute("UPDATE users SET locale = '' WHERE id = 6")
    assert pair.compare().problems == ["table public.users: content differs (150 rows)"]


def test_one_changed_bytea_byte_is_named(pair: Pair) -> None:
    pair.convox.execute(
        "UPDATE events SET payload = set_byte(payload, 5, get_byte(payload, 5) # 1) "
        "WHERE id = md5('event 1')::uuid"
    )
    assert pair.compare().problems == ["table public.events: content differs (15 rows)"]


def test_two_rows_swapping_a_value_are_named(pair: Pair) -> None:
    pair.convox.execute(
        "UPDATE users u SET name = o.name FROM users o WHERE (u.id, o.id) IN ((1, 2), (2, 1))"
    )
    assert pair.compare().problems == ["table public.users: content differs (150 rows)"]


def test_the_same_rows_in_another_physical_order_and_other_session_defaults_pass(
    pair: Pair,
) -> None:
    """Rewritten rows move on disk; the Convox database's own output defaults (time zone, date
    and interval styles, float digits, bytea format) change no checksum: only the settings
    themselves are named."""
    pair.convox.execute("UPDATE users SET name = name WHERE id % 2 = 0")
    pair.admin(
        f"ALTER DATABASE {pair.convox.dbname} SET TimeZone = 'Asia/Tokyo'",
        f"ALTER DATABASE {pair.convox.dbname} SET DateStyle = 'SQL, DMY'",
        f"ALTER DATABASE {pair.convox.dbname} SET IntervalStyle = 'sql_standard'",
        f"ALTER DATABASE {pair.convox.dbname} SET extra_float_digits = 0",
        f"ALTER DATABASE {pair.convox.dbname} SET bytea_output = 'escape'",
    )
    assert pair.compare().problems == [
        "setting DateStyle: (not set) on Heroku vs 'SQL, DMY' on Convox",
        "setting IntervalStyle: (not set) on Heroku vs 'sql_standard' on Convox",
        "setting TimeZone: (not set) on Heroku vs 'Asia/Tokyo' on Convox",
        "setting bytea_output: (not set) on Heroku vs 'escape' on Convox",
        "setting extra_float_digits: (not set) on Heroku vs '0' on Convox",
    ]


def test_schema_changes_are_named_object_by_object(pair: Pair) -> None:
    pair.convox.execute(
        "ALTER TABLE order_items DROP CONSTRAINT fk_rails_order_items_product_id",
        "ALTER TABLE accounts ALTER COLUMN plan SET DEFAULT 'hobby'",
        "DROP TRIGGER events_set_id ON events",
        "CREATE OR REPLACE VIEW product_title_matches AS "
        "SELECT id, title, similarity(title, 'Kaffee') AS score FROM products",
        "ALTER SEQUENCE orders_id_seq INCREMENT BY 2",
        "CREATE OR REPLACE FUNCTION events_set_id() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n    NEW.id := uuid_generate_v4();\n    RETURN NEW;\nEND\n$$",
    )
    problems = pair.compare().problems
    assert [p.split(": definition differs")[0] for p in problems] == [
        "schema: FK CONSTRAINT public.order_items fk_rails_order_items_product_id: "
        "missing on Convox",
        "schema: FUNCTION public.events_set_id()",
        "schema: SEQUENCE public.orders_id_seq",
        "schema: TABLE public.accounts",
        "schema: TRIGGER public.events events_set_id: missing on Convox",
        "schema: VIEW public.product_title_matches",
    ]


def test_a_role_setting_and_a_large_object_under_another_oid_are_named(pair: Pair) -> None:
    oid = pair.lo_oids()[2]
    pair.convox.execute(f"SELECT lo_from_bytea(0, lo_get({oid}))", f"SELECT lo_unlink({oid})")
    pair.admin(f"ALTER ROLE {pair.convox.owner} SET work_mem = '64MB'")
    problems = pair.compare().problems
    assert problems[0] == f"large object {oid}: missing on Convox"
    assert problems[1].startswith("large object ") and problems[1].endswith(": only on Convox")
    assert problems[2:] == ["setting work_mem: (not set) on Heroku vs '64MB' on Convox"]


@pytest.fixture
def bare(pg_source: PgCluster) -> Callable[[Sequence[str], Sequence[str]], Pair]:
    """Two fresh databases (no seed) built by two lists of statements."""

    def make(heroku: Sequence[str], convox: Sequence[str]) -> Pair:
        pair = Pair(make_database(pg_source, "vh"), make_database(pg_source, "vc"))
        pair.heroku.execute(*heroku)
        pair.convox.execute(*convox)
        return pair

    return make


def test_duplicate_rows_and_a_column_named_like_the_row_alias_are_compared(
    bare: Callable[[Sequence[str], Sequence[str]], Pair],
) -> None:
    """No primary key, duplicates: {a, a, b} is not {a, b, b}. A column named t (the alias
    the checksum query gives the table) must not stand in for the whole row."""
    table = "CREATE TABLE d (t int, v text)"
    pair = bare(
        [table, "INSERT INTO d VALUES (1, 'a'), (1, 'a'), (1, 'b')"],
        [table, "INSERT INTO d VALUES (1, 'a'), (1, 'b'), (1, 'b')"],
    )
    assert pair.compare().problems == ["table public.d: content differs (3 rows)"]


def test_swapped_columns_are_named(bare: Callable[[Sequence[str], Sequence[str]], Pair]) -> None:
    pair = bare(
        ["CREATE TABLE s (a int, b int)", "INSERT INTO s VALUES (1, 2)"],
        ["CREATE TABLE s (b int, a int)", "INSERT INTO s VALUES (1, 2)"],
    )
    problems = pair.compare().problems
    assert problems == [
        "schema: TABLE public.s: definition differs (Heroku: 'a integer,', Convox: 'b integer,')"
    ]


def test_a_function_body_line_starting_with_set_is_compared(
    bare: Callable[[Sequence[str], Sequence[str]], Pair],
) -> None:
    """pg_dump's own SET lines are dropped; a body's ``SET x = ...`` line (an UPDATE) is not."""

    def body(step: int) -> str:
        return (
            "CREATE FUNCTION bump() RETURNS void LANGUAGE sql AS $$\n"
            f"UPDATE c\nSET n = n + {step};\n$$"
        )

    table = "CREATE TABLE c (n int)"
    pair = bare([table, body(1)], [table, body(2)])
    assert pair.compare().problems == [
        "schema: FUNCTION public.bump(): definition differs "
        "(Heroku: 'SET n = n + 1;', Convox: 'SET n = n + 2;')"
    ]


def test_a_custom_setting_is_named_without_its_value(pair: Pair) -> None:
    """``app.jwt_secret``-style settings often hold a secret: the mismatch (printed, saved in the
    state and the audit log) names the setting, never the value."""
    pair.admin(f"ALTER DATABASE {pair.convox.dbname} SET app.jwt_secret = 'hunter2-s3cret'")
    problems = pair.compare().problems
    assert problems == [
        "setting app.jwt_secret: (not set) on Heroku vs (set, value not shown) on Convox"
    ]


def test_another_encoding_fails_and_another_locale_is_a_note(pg_source: PgCluster) -> None:
    """The test clusters are UTF8, C.UTF-8 (pgcluster.py initdb)."""
    heroku = make_database(pg_source, "vh")
    convox = make_database(pg_source, "vc")
    with pgcluster.connect(pg_source) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(convox.dbname)))
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'SQL_ASCII' LOCALE 'C'"
            ).format(sql.Identifier(convox.dbname), sql.Identifier(convox.owner))
        )
    out = Pair(heroku, convox).compare()
    assert out.problems == ["database encoding: 'UTF8' on Heroku vs 'SQL_ASCII' on Convox"]
    assert out.notes == [
        "database LC_COLLATE: 'C.UTF-8' on Heroku vs 'C' on Convox "
        "(text sorts and compares differently)",
        "database LC_CTYPE: 'C.UTF-8' on Heroku vs 'C' on Convox "
        "(text sorts and compares differently)",
    ]


def test_a_failing_side_cancels_the_other_sides_sessions_at_once(pair: Pair) -> None:
    """Heroku's sessions wait on a lock the test holds; Convox cannot log in. The comparison
    raises without waiting for Heroku's catalog (the failure is seen whichever side it is on),
    and cancels Heroku's waiting sessions: otherwise they would run on, and the process would
    wait for their threads at exit. Generous deadlines only (polling), no timed assertion."""
    masker = SecretMasker()
    wrong = ConnInfo(
        "127.0.0.1",
        pair.convox.cluster.port,
        pair.convox.owner,
        pair.convox.dbname,
        "nope-" + secrets.token_hex(6),
    )
    verifier = Verifier(Runner(masker), masker, timeout=600)
    raised: list[BaseException] = []
    with pgcluster.connect(pair.heroku.cluster, pair.heroku.dbname) as locker:
        locker.autocommit = False
        locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(
            target=lambda: _catch(
                raised,
                lambda: verifier.compare(Side("Heroku", _conn(pair.heroku)), Side("Convox", wrong)),
            )
        )
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), "compare waited for the blocked side"
        assert [type(e) for e in raised] == [CommandError]
        deadline = time.monotonic() + 60
        while _sessions(pair.heroku, verifier) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _sessions(pair.heroku, verifier) == 0
        locker.rollback()


def _catch(into: list[BaseException], fn: Callable[[], object]) -> None:
    try:
        fn()
    except BaseException as exc:  # handed to the test thread
        into.append(exc)


def _sessions(db: AppDatabase, verifier: Verifier) -> int:
    with pgcluster.connect(db.cluster, db.dbname) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (verifier._app,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_rows_hidden_by_a_forced_row_security_policy_are_not_compared_as_equal(
    bare: Callable[[Sequence[str], Sequence[str]], Pair],
) -> None:
    """A policy that hides every row from the owner (FORCE ROW LEVEL SECURITY) made both sides
    count 0 rows and compare identical; with row_security off the read fails naming the table."""
    rls = [
        "CREATE TABLE secret (id int, v text)",
        "ALTER TABLE secret ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE secret FORCE ROW LEVEL SECURITY",
        "CREATE POLICY nobody ON secret USING (false)",
    ]
    pair = bare(rls, rls)
    with pgcluster.connect(pair.heroku.cluster, pair.heroku.dbname) as conn:
        conn.execute("INSERT INTO secret VALUES (1, 'a')")  # as the superuser: no policy
    with pytest.raises(CommandError) as caught:
        pair.compare()
    assert 'row-level security policy for table "secret"' in caught.value.stderr_tail
