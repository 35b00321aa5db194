"""Sample data for sandbox databases, and per-table fingerprints to compare two databases.

:func:`seed` builds a small Rails-like schema (users, accounts, products, orders, order_items,
schema_migrations, ar_internal_metadata) with foreign keys, bigserial ids, the ``citext``
extension, unique, partial and multi-column indexes, a view, NULLs and non-ASCII text; and what
Heroku databases carry: ``uuid-ossp``, ``pg_trgm`` and ``pg_stat_statements`` in the
``heroku_ext`` schema (created by the admin), ``heroku_ext`` on the role's search_path, a trigger
calling ``uuid_generate_v4()``, ``similarity()`` in a view and a trigram index, bytea, large
objects and an empty table.
Everything is computed in SQL from ``generate_series``, so the same ``rows`` gives the same
content every time.

:func:`fingerprint_script` is a plain psql script (no Python needed on the other side): given a
libpq environment it prints one JSON line per user table, ``[schema, table, rows, md5]``, where
``md5`` covers the text of every row ordered by primary key. :func:`parse_fingerprints` reads
that output. cutover's verify-data step can run the same script through its own runner.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence

from cutover.sandbox.pgcluster import PgCluster, client_env

__all__ = [
    "PSQL_SCRIPT_ARGV",
    "SeedError",
    "admin_script",
    "fingerprint_script",
    "parse_fingerprints",
    "run_psql",
    "seed",
    "seed_script",
    "table_fingerprints",
]

# psql reading a script on stdin: no psqlrc, quiet, unaligned, tuples only, stop on error.
PSQL_SCRIPT_ARGV = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]

Fingerprints = dict[str, tuple[int, str]]


class SeedError(RuntimeError):
    """psql failed while seeding or fingerprinting a database."""


def run_psql(
    libpq: Mapping[str, str], script: str, *, single_transaction: bool = False, timeout: float = 600
) -> str:
    """Run ``script`` with psql; connection (password included) comes only from ``libpq``."""
    argv = [*PSQL_SCRIPT_ARGV, "--single-transaction"] if single_transaction else PSQL_SCRIPT_ARGV
    try:
        result = subprocess.run(
            argv,
            input=script,
            env=client_env(libpq),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SeedError(f"psql did not finish within {timeout:.0f}s") from None
    if result.returncode != 0:
        where = f"{libpq.get('PGDATABASE', '?')} on {libpq.get('PGHOST')}:{libpq.get('PGPORT')}"
        raise SeedError(f"psql failed on {where} (exit {result.returncode}):\n{result.stderr}")
    return result.stdout


_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE schema_migrations (version varchar PRIMARY KEY);
CREATE TABLE ar_internal_metadata (
    key varchar PRIMARY KEY,
    value varchar,
    created_at timestamp(6) NOT NULL,
    updated_at timestamp(6) NOT NULL
);

CREATE TABLE users (
    id bigserial PRIMARY KEY,
    email citext NOT NULL,
    name text NOT NULL,
    locale varchar(10),
    admin boolean NOT NULL DEFAULT false,
    last_sign_in_at timestamptz,
    created_at timestamp(6) NOT NULL,
    updated_at timestamp(6) NOT NULL
);
CREATE UNIQUE INDEX index_users_on_email ON users (email);
CREATE INDEX index_users_on_last_sign_in_at ON users (last_sign_in_at)
    WHERE last_sign_in_at IS NOT NULL;

CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    name text NOT NULL,
    plan varchar NOT NULL DEFAULT 'free',
    balance_cents bigint NOT NULL DEFAULT 0,
    currency char(3) NOT NULL DEFAULT 'EUR',
    closed_at timestamptz,
    created_at timestamp(6) NOT NULL,
    updated_at timestamp(6) NOT NULL,
    CONSTRAINT fk_rails_accounts_user_id FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE INDEX index_accounts_on_user_id ON accounts (user_id);
CREATE INDEX index_accounts_on_plan_open ON accounts (plan) WHERE closed_at IS NULL;

CREATE TABLE products (
    id bigserial PRIMARY KEY,
    sku varchar NOT NULL,
    title text NOT NULL,
    description text,
    price numeric(12, 2) NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamp(6) NOT NULL,
    updated_at timestamp(6) NOT NULL
);
CREATE UNIQUE INDEX index_products_on_sku ON products (sku);

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL,
    reference varchar NOT NULL,
    status varchar NOT NULL DEFAULT 'pending',
    total_cents bigint NOT NULL DEFAULT 0,
    notes text,
    placed_at timestamptz,
    created_at timestamp(6) NOT NULL,
    updated_at timestamp(6) NOT NULL,
    CONSTRAINT fk_rails_orders_account_id FOREIGN KEY (account_id) REFERENCES accounts (id)
);
CREATE UNIQUE INDEX index_orders_on_reference ON orders (reference);
CREATE INDEX index_orders_on_account_id_and_created_at ON orders (account_id, created_at);
CREATE INDEX index_orders_pending ON orders (created_at) WHERE status = 'pending';

CREATE TABLE order_items (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    product_id bigint NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(12, 2) NOT NULL,
    created_at timestamp(6) NOT NULL,
    updated_at timestamp(6) NOT NULL,
    CONSTRAINT fk_rails_order_items_order_id FOREIGN KEY (order_id)
        REFERENCES orders (id) ON DELETE CASCADE,
    CONSTRAINT fk_rails_order_items_product_id FOREIGN KEY (product_id) REFERENCES products (id)
);
CREATE UNIQUE INDEX index_order_items_on_order_id_and_product_id
    ON order_items (order_id, product_id);
CREATE INDEX index_order_items_on_product_id ON order_items (product_id);

CREATE VIEW order_totals AS
SELECT o.id AS order_id, a.user_id, o.status,
       coalesce(sum(i.quantity * i.unit_price), 0) AS total, count(i.id) AS items
FROM orders o
JOIN accounts a ON a.id = o.account_id
LEFT JOIN order_items i ON i.order_id = o.id
GROUP BY o.id, a.user_id, o.status;
"""

_DATA = """
INSERT INTO schema_migrations (version)
VALUES ('20200101000000'), ('20210315120000'), ('20220607093000'), ('20230901154500');
INSERT INTO ar_internal_metadata (key, value, created_at, updated_at)
VALUES ('environment', 'production', '2020-01-01 00:00:00', '2020-01-01 00:00:00');

INSERT INTO users (email, name, locale, admin, last_sign_in_at, created_at, updated_at)
SELECT
    CASE WHEN i % 7 = 0 THEN 'User' ELSE 'user' END || i || '@example.'
        || (ARRAY['com', 'org', 'net'])[1 + i % 3],
    (ARRAY['Zoë Müller', 'José Álvarez', 'Łukasz Wąsik', '山田 太郎', 'Ørjan Nilsen',
           'Chloé Dubois', 'Αλέξανδρος Παπαδόπουλος', 'Иван Петров', 'Aoife Ní Bhriain',
           'Nguyễn Văn An', 'O''Brien', 'Ana 🚀 Silva'])[1 + i % 12] || ' #' || i,
    CASE WHEN i % 6 = 0 THEN NULL ELSE (ARRAY['en', 'de', 'fr', 'ja', 'pt-BR'])[1 + i % 5] END,
    i % 97 = 0,
    CASE WHEN i % 5 = 0 THEN NULL
         ELSE timestamptz '2024-01-01 00:00:00+00' + i * interval '17 minutes 3 seconds' END,
    timestamp '2020-01-01 00:00:00' + i * interval '37 minutes 11.123456 seconds',
    timestamp '2023-01-01 00:00:00' + i * interval '5 minutes'
FROM generate_series({first_users}, {users}::bigint) AS i;

INSERT INTO accounts (user_id, name, plan, balance_cents, currency, closed_at,
                      created_at, updated_at)
SELECT
    1 + (i * 7) % {users},
    'Account ' || i || (ARRAY['', ' GmbH', ' SARL', ' 株式会社', ' AB'])[1 + i % 5],
    (ARRAY['free', 'hobby', 'standard', 'premium'])[1 + i % 4],
    (i * 7919) % 1000000 - 500,
    (ARRAY['EUR', 'USD', 'JPY'])[1 + i % 3],
    CASE WHEN i % 11 = 0 THEN timestamptz '2024-06-01 12:00:00+00' + i * interval '1 hour' END,
    timestamp '2020-02-01 00:00:00' + i * interval '41 minutes',
    timestamp '2023-02-01 00:00:00' + i * interval '3 minutes'
FROM generate_series({first_accounts}, {accounts}::bigint) AS i;

INSERT INTO products (sku, title, description, price, metadata, created_at, updated_at)
SELECT
    'SKU-' || lpad(i::text, greatest(6, length(i::text)), '0'),
    (ARRAY['Kaffeebecher', 'Crème brûlée set', 'Łódź map', '抹茶 tea', 'Smørrebrød board',
           'Café au lait bowl', 'Ελιά oil'])[1 + i % 7] || ' ' || i,
    CASE WHEN i % 4 = 0 THEN NULL ELSE 'Description of product ' || i || ' (naïve café)' END,
    round(((i * 137) % 10000) / 100.0 + 1, 2),
    jsonb_build_object('color', (ARRAY['red', 'green', 'blue'])[1 + i % 3],
                       'weight_g', (i * 31) % 2000, 'tags', jsonb_build_array('t' || i % 5)),
    timestamp '2019-06-01 00:00:00' + i * interval '1 day',
    timestamp '2023-06-01 00:00:00' + i * interval '1 hour'
FROM generate_series({first_products}, {products}::bigint) AS i;

INSERT INTO orders (account_id, reference, status, notes, placed_at, created_at, updated_at)
SELECT
    1 + (i * 13) % {accounts},
    'R' || lpad(i::text, greatest(9, length(i::text)), '0'),
    (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + i % 4],
    CASE WHEN i % 3 = 0 THEN NULL
         ELSE (ARRAY['Bitte klingeln', 'Laisser à la réception', '置き配', 'Leave at door 📦',
                     E'two\\nlines'])[1 + i % 5] END,
    CASE WHEN i % 4 = 0 THEN NULL
         ELSE timestamptz '2024-01-01 00:00:00+00' + i * interval '7 minutes' END,
    timestamp '2021-01-01 00:00:00' + i * interval '13 minutes',
    timestamp '2024-01-01 00:00:00' + i * interval '13 minutes'
FROM generate_series({first_orders}, {orders}::bigint) AS i;

INSERT INTO order_items (order_id, product_id, quantity, unit_price, created_at, updated_at)
SELECT o.i, p.id, 1 + (o.i + k) % 5, p.price,
       timestamp '2021-01-01 00:00:00' + o.i * interval '13 minutes',
       timestamp '2021-01-01 00:00:00' + o.i * interval '13 minutes'
FROM generate_series({first_orders}, {orders}::bigint) AS o(i)
CROSS JOIN generate_series(1, {items_per_order}::bigint) AS k
JOIN products p ON p.id = 1 + (o.i * 3 + k * 11) % {products};

UPDATE orders o SET total_cents = s.cents
FROM (SELECT order_id, (sum(quantity * unit_price) * 100)::bigint AS cents
      FROM order_items GROUP BY order_id) s
WHERE s.order_id = o.id;

ANALYZE;
"""


def seed_script(rows: int = 3000, *, tail: int | None = None, heroku_shaped: bool = True) -> str:
    """The SQL that :func:`seed` runs as the app's role (schema and data) for ``rows`` users.

    Every series counts in bigint (``i * 7919`` overflowed integer above 271,180 rows) and
    numbered keys widen past their padding (``lpad`` cuts: SKUs repeated above 20 M rows).
    ``tail``: generate only the last ``tail`` values of each series, the ones that reach the
    largest numbers (tests check the types at any size without seeding millions of rows; those
    rows reference ids that do not exist, so the script then needs foreign keys off).
    ``heroku_shaped=False``: the plain Rails schema only (no heroku_ext objects)."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    # Products stay well above 22 so an order's items always name distinct products.
    sizes = {
        "users": rows,
        "accounts": rows,
        "products": max(50, rows // 20),
        "orders": 2 * rows,
        "events": max(10, rows // 10),
    }
    firsts = {f"first_{k}": 1 if tail is None else max(1, v - tail + 1) for k, v in sizes.items()}
    data = (_DATA + _HEROKU_DATA if heroku_shaped else _DATA).format(
        items_per_order=2, **sizes, **firsts
    )
    return _SCHEMA + (_HEROKU_SHAPED if heroku_shaped else "") + data


_HEROKU_DATA = """
INSERT INTO events (id, kind, payload, created_at)
SELECT md5('event ' || i)::uuid,
       (ARRAY['signup', 'login', 'checkout', 'refund'])[1 + i % 4],
       CASE WHEN i % 9 = 0 THEN NULL ELSE decode(md5(i::text) || md5((i * 31)::text), 'hex') END,
       timestamp '2024-03-01 00:00:00' + i * interval '3 minutes'
FROM generate_series({first_events}, {events}::bigint) AS i;

INSERT INTO attachments (name, content)
SELECT 'attachment-' || i || '.txt',
       lo_from_bytea(0, convert_to(repeat('Attachment ' || i || ' ☃ ', 50 * i), 'UTF8'))
FROM generate_series(1, 3) AS i;
"""

# What Heroku's admin does in every database (the app's role may not): the ``heroku_ext``
# schema holding the extensions Heroku installs there, and pg_stat_statements (not a trusted
# extension: only a superuser creates it).
_ADMIN = """
CREATE SCHEMA IF NOT EXISTS heroku_ext;
GRANT USAGE ON SCHEMA heroku_ext TO PUBLIC;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA heroku_ext;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA heroku_ext;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA heroku_ext;
"""

# What the app (as its own role) builds on Heroku's extensions, with heroku_ext on its
# search_path as Heroku tells users to set it: a trigger calling uuid_generate_v4() unqualified
# (resolved at run time through search_path), similarity() in a view and a trigram index, bytea,
# large objects, an empty table.
_HEROKU_SHAPED = """
CREATE TABLE events (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    payload bytea,
    created_at timestamp(6) NOT NULL DEFAULT localtimestamp
);
CREATE FUNCTION events_set_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS NULL THEN
        NEW.id := uuid_generate_v4();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_set_id BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_set_id();

CREATE INDEX index_products_on_title_trgm ON products USING gin (title gin_trgm_ops);
CREATE VIEW product_title_matches AS
SELECT id, title, similarity(title, 'Kaffeebecher') AS score FROM products;

CREATE TABLE attachments (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    content oid NOT NULL
);

CREATE TABLE audit_entries (
    id bigserial PRIMARY KEY,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


def admin_script(user: str) -> str:
    """What Heroku's admin does in the app's database (:data:`_ADMIN`), and the app role's
    search_path with heroku_ext on it (``ALTER ROLE ... SET``, the role's own default)."""
    role = '"' + user.replace('"', '""') + '"'
    return _ADMIN + f'ALTER ROLE {role} SET search_path = "$user", public, heroku_ext;\n'


def seed(
    cluster: PgCluster,
    dbname: str,
    *,
    user: str,
    password: str,
    rows: int = 3000,
    heroku_shaped: bool = True,
) -> None:
    """Create the sample schema and data in ``dbname`` (expected empty), Heroku-shaped.

    First, through the cluster's admin connection, what Heroku's admin does (:func:`admin_script`:
    heroku_ext with uuid-ossp, pg_trgm and pg_stat_statements, the role's search_path); then, as
    ``user`` (not a superuser), in one transaction of a new session (so the search_path applies),
    the app's schema and data: ``rows`` users, as many accounts, twice as many orders, four
    times as many order items, ``rows / 10`` events, three large objects.
    ``heroku_shaped=False``: only the plain Rails schema and its data, no admin part.
    """
    if heroku_shaped:
        run_psql(cluster.libpq_env(dbname), admin_script(user), single_transaction=True)
    run_psql(
        cluster.libpq_env(dbname, user, password),
        seed_script(rows, heroku_shaped=heroku_shaped),
        single_transaction=True,
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_FINGERPRINT_TEMPLATE = r"""
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';
SET timezone = 'UTC';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SET lc_monetary = 'C';
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT format(
    'SELECT json_build_array(%L, %L, count(*), '
    'md5(coalesce(string_agg(md5((x.*)::text), %L ORDER BY %s), %L)))::text FROM %I.%I AS x',
    n.nspname, c.relname, '', coalesce(pk.cols, '(x.*)::text COLLATE "C"'), '',
    n.nspname, c.relname)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT string_agg(
               format('x.%I', a.attname)
                   || CASE WHEN a.attcollation <> 0 THEN ' COLLATE "C"' ELSE '' END,
               ', ' ORDER BY k.ord) AS cols
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = c.oid AND i.indisprimary
) pk ON true
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND __SCHEMA_FILTER__
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
\gexec
COMMIT;
"""


def fingerprint_script(schemas: Sequence[str] | None = None) -> str:
    """A psql script printing ``[schema, table, rows, md5]`` as one JSON line per user table.

    Run it with ``psql -X -q -A -t -v ON_ERROR_STOP=1 -f -`` (:data:`PSQL_SCRIPT_ARGV`) and
    the script on stdin. It only reads, in one REPEATABLE READ snapshot. Tables are those of
    ``schemas`` (default: every schema but the system ones), minus tables owned by extensions;
    partitions count under their parent. Rows are hashed as their text form, ordered by primary
    key (or by the whole row without one) under the "C" collation, with fixed date, time zone
    and float output settings, so the same data hashes alike on two servers of one major version.
    """
    if schemas:
        names = ", ".join(_literal(name) for name in schemas)
        schema_filter = f"n.nspname IN ({names})"
    else:
        schema_filter = (
            "n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
        )
    return _FINGERPRINT_TEMPLATE.replace("__SCHEMA_FILTER__", schema_filter)


def parse_fingerprints(output: str) -> Fingerprints:
    """Read :func:`fingerprint_script` output into ``{"schema.table": (rows, md5)}``."""
    result: Fingerprints = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            schema, table, count, digest = json.loads(line)
        except (ValueError, TypeError):
            raise SeedError(f"unexpected line in fingerprint output: {line[:200]!r}") from None
        result[f"{schema}.{table}"] = (int(count), str(digest))
    return result


def table_fingerprints(
    target: PgCluster | Mapping[str, str],
    dbname: str | None = None,
    *,
    user: str | None = None,
    password: str | None = None,
    schemas: Sequence[str] | None = None,
    timeout: float = 600,
) -> Fingerprints:
    """Row count and content md5 of every user table, keyed ``"schema.table"``.

    ``target`` is a cluster (connect as ``user``/``password``, default its superuser, to
    ``dbname``) or a libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE...),
    where ``dbname`` if given overrides PGDATABASE.
    """
    if isinstance(target, PgCluster):
        if dbname is None:
            raise ValueError("dbname is required with a cluster")
        libpq = target.libpq_env(dbname, user, password)
    else:
        libpq = dict(target)
        if dbname is not None:
            libpq["PGDATABASE"] = dbname
    return parse_fingerprints(run_psql(libpq, fingerprint_script(schemas), timeout=timeout))
