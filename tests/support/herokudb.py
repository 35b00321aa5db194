"""A Heroku-shaped database on a real test cluster, and the checks that a copy of it works.

Shaped like a Heroku Postgres database per Heroku's docs on the ``heroku_ext`` schema: trusted
extensions live in ``heroku_ext`` and the role's search_path names it (``ALTER ROLE ... IN
DATABASE ... SET search_path``), a trigger calls ``uuid_generate_v4()`` unqualified (so it works
only with that search_path), ``pg_stat_statements`` is installed (by the superuser, as Heroku
does), plus foreign keys, sequences, bytea, large objects and an empty table. The target is an
RDS-like role: NOSUPERUSER CREATEDB (sandbox/convox_fake/provision.py, ``rds-postgres``).
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from cutover.sandbox import pgcluster
from support.databases import AppDatabase, make_database

SCHEMA = (
    "CREATE SCHEMA heroku_ext",
    'CREATE EXTENSION "uuid-ossp" WITH SCHEMA heroku_ext',
    "CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE books (id bigserial PRIMARY KEY, author_id int NOT NULL REFERENCES authors(id),"
    " uid uuid NOT NULL, title text, cover bytea, doc oid)",
    "CREATE INDEX books_author ON books (author_id)",
    "CREATE TABLE empty_table (id int PRIMARY KEY, note text)",
    "CREATE FUNCTION set_uid() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN NEW.uid := uuid_generate_v4(); RETURN NEW; END $$",
    "CREATE TRIGGER books_uid BEFORE INSERT ON books FOR EACH ROW EXECUTE FUNCTION set_uid()",
)
ROWS = (
    "INSERT INTO authors (name) SELECT 'author ' || g FROM generate_series(1, 50) g",
    "INSERT INTO books (author_id, title, cover, doc) SELECT 1 + g % 50, 'book ' || g, "
    "decode(md5(g::text), 'hex') || '\\x00ff'::bytea, CASE WHEN g <= 3 THEN "
    "lo_from_bytea(0, convert_to('large object ' || g, 'UTF8')) END "
    "FROM generate_series(1, 400) g",
    "SELECT nextval('authors_id_seq') FROM generate_series(1, 7)",  # a gap: last_value 57
)


def heroku_shaped(cluster: pgcluster.PgCluster) -> AppDatabase:
    db = make_database(cluster, "heroku")
    with pgcluster.connect(cluster, db.dbname) as conn:  # the superuser, as Heroku does
        conn.execute("CREATE EXTENSION pg_stat_statements")
    db.execute(
        *SCHEMA,
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = '$user', public, heroku_ext")
        .format(sql.Identifier(db.owner), sql.Identifier(db.dbname))
        .as_string(None),
        sql.SQL("ALTER DATABASE {} SET lock_timeout = '7s'")
        .format(sql.Identifier(db.dbname))
        .as_string(None),
    )
    db.execute(*ROWS)  # a new session: the role's search_path (with heroku_ext) applies
    return db


def rds_target(cluster: pgcluster.PgCluster) -> AppDatabase:
    """The Convox resource's role and (empty) database: NOSUPERUSER CREATEDB, like RDS."""
    db = make_database(cluster, "convox")
    with pgcluster.connect(cluster) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER CREATEDB").format(sql.Identifier(db.owner)))
    return db


def query(db: AppDatabase, statement: str) -> list[tuple[Any, ...]]:
    with pgcluster.connect(db.cluster, db.dbname, db.owner, db.password) as conn:
        return list(conn.execute(statement).fetchall())


CONTENT = (
    "SELECT (SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM authors a),"
    " (SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM books b),"
    " (SELECT count(*) FROM empty_table),"
    " (SELECT string_agg(convert_from(lo_get(doc), 'UTF8'), ',' ORDER BY id) FROM books"
    "  WHERE doc IS NOT NULL),"
    " (SELECT last_value FROM authors_id_seq), (SELECT last_value FROM books_id_seq)"
)


def assert_works_like(source: AppDatabase, target: AppDatabase) -> None:
    """The target holds the source's data and the app's writes work on it."""
    assert query(target, CONTENT) == query(source, CONTENT)
    fks = query(target, "SELECT conname FROM pg_constraint WHERE contype = 'f'")
    assert fks == [("books_author_id_fkey",)]
    extensions = dict(
        query(
            target,
            "SELECT e.extname, n.nspname FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace",
        )
    )
    assert extensions.get("uuid-ossp") == "heroku_ext"
    assert "pg_stat_statements" not in extensions
    # The role's search_path came along: the trigger finds uuid_generate_v4() in heroku_ext.
    row = query(
        target,
        "INSERT INTO books (author_id, title) VALUES (1, 'after the copy') RETURNING id, uid",
    )
    assert row[0][0] == query(source, "SELECT last_value FROM books_id_seq")[0][0] + 1
    assert row[0][1] is not None
    assert query(target, "SHOW lock_timeout") == [("7s",)]
    authors_next = query(source, "SELECT last_value + 1 FROM authors_id_seq")
    assert query(target, "SELECT nextval('authors_id_seq')") == authors_next
