"""The SQL of one apply round (cutover/adapters/pgapply.py): what the snapshot holder reads on
Heroku, what each batch's source psql copies out, and the target script that replaces the
batch's keys.
"""

# SQL is built from catalog names (quote_ident'ed by the server), oids, hex strings and positions
# checked against a strict pattern. No operator input reaches it.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cutover.adapters.pgcapture import CaptureTable, dollar_quoted, text_array
from cutover.adapters.pgcapture_sql import after

# The planner's cost of a page read out of order, in each batch's sessions on both sides. Its
# default (4.0) models spinning disks: with it, the DELETE of a batch of 25,000 keys of a
# 4-million-row table (pgbench_accounts at scale 40) was planned as a hash join over a scan of the
# whole table (1.13 s here) rather than 25,000 index probes (0.23 s), and the source's read of
# those rows alike (0.43 s, 0.27 s). PostgreSQL's documentation (runtime-config-query,
# random_page_cost) gives 1.1 for solid-state storage, which both Heroku Postgres and a Convox
# resource's volume are; with it a batch holding a tenth of such a table is still joined by hash.
BATCH_PAGE_COST = "SET random_page_cost = 1.1"
PRESENT = '"cutover present"'  # the flag column of a batch (a name no app column will have)
BATCH = "cutover_batch"  # the batch's temporary table on the target
UPDATED = "cutover_updated"  # the keys an in-place batch updated (a CTE)

# The target's side of each keyed table: the columns a COPY writes (generated ones are computed),
# the identity columns GENERATED ALWAYS (an UPDATE may not set them), the columns of each unique
# index and exclusion constraint (null for one on an expression or with a predicate), the user
# triggers that are enabled (tgenabled O, A or R: disabled by name for the batch and put back as
# they were), and the foreign keys that touch it. {tables} is a text[] literal.
TARGET_SQL = r"""
SELECT json_build_object(
  'name', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
  'columns', (SELECT coalesce(json_agg(quote_ident(a.attname) ORDER BY a.attnum), '[]')
              FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated = ''),
  'always', (SELECT coalesce(json_agg(quote_ident(a.attname) ORDER BY a.attnum), '[]')
             FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attidentity = 'a'),
  'uniques', (SELECT coalesce(json_agg(CASE WHEN i.indexprs IS NULL AND i.indpred IS NULL THEN
                  (SELECT json_agg(quote_ident(a.attname) ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attnum = ANY (i.indkey)) END), '[]')
              FROM pg_catalog.pg_index i
              WHERE i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion)),
  'triggers', (SELECT coalesce(json_agg(json_build_object(
                   'name', quote_ident(g.tgname), 'mode', g.tgenabled::text)
                 ORDER BY g.tgname), '[]')
               FROM pg_catalog.pg_trigger g
               WHERE g.tgrelid = c.oid AND NOT g.tgisinternal AND g.tgenabled <> 'D'),
  'fks', (SELECT coalesce(json_agg(json_build_object(
               'table', quote_ident(fn.nspname) || '.' || quote_ident(fc.relname),
               'other', quote_ident(on_.nspname) || '.' || quote_ident(oc.relname),
               'name', quote_ident(co.conname), 'def', pg_catalog.pg_get_constraintdef(co.oid),
               'inherited', co.conparentid <> 0,
               'comment', pg_catalog.obj_description(co.oid, 'pg_constraint'))
             ORDER BY co.conname), '[]')
          FROM pg_catalog.pg_constraint co
          JOIN pg_catalog.pg_class fc ON fc.oid = co.conrelid
          JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
          JOIN pg_catalog.pg_class oc ON oc.oid = co.confrelid
          JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.relnamespace
          WHERE co.contype = 'f' AND (co.conrelid = c.oid OR co.confrelid = c.oid)))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({tables})
ORDER BY 1::text;
"""

# Whether the target's role may set session_replication_role: a superuser, or (PostgreSQL 15+)
# a role granted SET on it (PostgreSQL docs, GRANT ... ON PARAMETER; has_parameter_privilege).
ROLE_SQL = "SELECT current_setting('is_superuser'), current_setting('server_version_num');"
PARAMETER_SQL = "SELECT has_parameter_privilege('session_replication_role', 'SET');"

# ALTER TABLE ... ENABLE [ALWAYS|REPLICA] TRIGGER by pg_trigger.tgenabled.
_ENABLE = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}


def key_schemas_sql(tables: Sequence[CaptureTable]) -> str:
    """The schemas (quoted) of the key columns' types, of a domain's base type and of an
    array's element type, but pg_catalog: an extension's type (citext in Heroku's heroku_ext)
    has its operators there, and a session whose search_path lacks that schema resolves "=" and
    ">" to text's (case-sensitive) while DISTINCT, ORDER BY and the unique index use the type's
    own; keys then go unmatched."""
    logs = "ARRAY[" + ", ".join(f"'{t.log}'::regclass" for t in tables) + "]::oid[]"
    return (
        "SELECT DISTINCT quote_ident(n.nspname) FROM pg_catalog.pg_attribute a "
        "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype "
        "LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem "
        "JOIN pg_catalog.pg_namespace n "
        "ON n.oid IN (t.typnamespace, b.typnamespace, e.typnamespace) "
        f"WHERE a.attrelid = ANY ({logs}) AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attname NOT IN ('cutover_seq', 'cutover_xid') "
        "AND n.nspname <> 'pg_catalog' ORDER BY 1;"
    )


def search_path_sql(schemas: Sequence[str], local: bool) -> str:
    """A statement (printing nothing: a DO block) that appends ``schemas`` to the session's
    search_path (for the transaction only when ``local``); empty when there are none."""
    if not schemas:
        return ""
    path = _literal(", " + ", ".join(schemas))
    return "DO " + dollar_quoted(
        "BEGIN PERFORM pg_catalog.set_config('search_path', "
        f"pg_catalog.current_setting('search_path') || {path}, {str(local).lower()}); END"
    )


def counts_sql(tables: list[CaptureTable], since: str) -> str:
    """Per table: log rows after ``since`` and distinct keys among them (read in the round's
    snapshot), one row each: relid, entries, keys."""
    parts = [
        f"SELECT {t.relid}, (SELECT count(*) FROM {t.log} WHERE {after(since)}), "
        f"(SELECT count(*) FROM (SELECT DISTINCT {', '.join(t.key)} FROM {t.log} "
        f"WHERE {after(since)}) d)"
        for t in tables
    ]
    return "\nUNION ALL\n".join(parts) + ";"


def truncates_sql(since: str) -> str:
    return (
        "SELECT relid, count(*) FROM _cutover.truncates "
        f"WHERE {after(since)} GROUP BY relid ORDER BY relid;"
    )


def key_types_sql(table: CaptureTable) -> str:
    return (
        "SELECT quote_ident(attname), pg_catalog.format_type(atttypid, atttypmod) "
        f"FROM pg_catalog.pg_attribute WHERE attrelid = '{table.log}'::regclass "
        f"AND quote_ident(attname) = ANY ({text_array(table.key)}) ORDER BY attnum;"
    )


def _hex(column: str) -> str:
    # Hex of the key's text: one token per value whatever it holds (tabs, newlines, quotes).
    return f"encode(convert_to({column}::text, 'UTF8'), 'hex')"


def boundaries_sql(table: CaptureTable, since: str, batch_keys: int) -> str:
    """The last key of every full batch of ``batch_keys`` distinct keys, in key order."""
    keys = ", ".join(table.key)
    return (
        f"SELECT {', '.join(_hex(k) for k in table.key)} FROM ("
        f"SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS cutover_n FROM ("
        f"SELECT DISTINCT {keys} FROM {table.log} WHERE {after(since)}) d) x "
        f"WHERE cutover_n % {int(batch_keys)} = 0 ORDER BY cutover_n;"
    )


def key_value(hex_text: str, type_name: str) -> str:
    if any(ch not in "0123456789abcdef" for ch in hex_text):
        raise ValueError(f"not a hex key: {hex_text[:40]!r}")
    return f"convert_from(decode('{hex_text}', 'hex'), 'UTF8')::{type_name}"


@dataclass(frozen=True)
class Batch:
    table: CaptureTable
    low: tuple[str, ...] | None  # exclusive, SQL values
    high: tuple[str, ...] | None  # inclusive
    keys: int  # distinct keys in it (for progress)


def carried(table: CaptureTable, columns: list[str]) -> list[str]:
    """The batch's columns: the written ones, then any key column they lack (a stored
    generated column may be in a key: it is matched on, never written)."""
    return [*columns, *(k for k in table.key if k not in columns)]


def batch_source_sql(batch: Batch, columns: list[str], since: str) -> str:
    """``COPY (present flag, the table's columns) TO STDOUT`` for the batch's keys: the row as
    of the snapshot, or NULLs and the flag false when the source has no row with that key."""
    table = batch.table
    keys = ", ".join(table.key)
    logged = ", ".join(f"l.{k}" for k in table.key)
    where = [after(since, "l.cutover_xid")]
    if batch.low is not None:
        where.append(f"({logged}) > ({', '.join(batch.low)})")
    if batch.high is not None:
        where.append(f"({logged}) <= ({', '.join(batch.high)})")
    # A key column holds the source row's value when there is one: the log's may be another
    # value equal to it (citext 'a' / 'A', numeric 1.0 / 1.00), and DISTINCT keeps either.
    cols = ", ".join(
        f"coalesce(t.{c}, k.{c})" if c in table.key else f"t.{c}" for c in carried(table, columns)
    )
    return (
        f"COPY (SELECT t.{table.key[0]} IS NOT NULL, {cols} FROM ("
        f"SELECT DISTINCT {keys} FROM {table.log} l WHERE {' AND '.join(where)}) k "
        f"LEFT JOIN {table.name} t USING ({keys})) TO STDOUT"
    )


def batch_size_sql(batch: Batch, columns: list[str], since: str) -> str:
    """The bytes of the batch's rows as text, all and the widest (one row: sum, max), from the
    same query as :func:`batch_source_sql`."""
    select = batch_source_sql(batch, columns, since).removeprefix("COPY (")
    select = select.removesuffix(") TO STDOUT")
    return (
        "SELECT coalesce(sum(pg_catalog.octet_length(r::text)), 0), "
        f"coalesce(max(pg_catalog.octet_length(r::text)), 0) FROM ({select}) r;"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fk_statements(fks: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(drop, re-add NOT VALID) of the foreign keys touching a table (as pgtables does)."""
    drop = [f"ALTER TABLE {fk['table']} DROP CONSTRAINT {fk['name']}" for fk in fks]
    add = []
    for fk in fks:
        definition = fk["def"] if fk["def"].endswith("NOT VALID") else fk["def"] + " NOT VALID"
        add.append(f"ALTER TABLE {fk['table']} ADD CONSTRAINT {fk['name']} {definition}")
        if fk["comment"] is not None:
            add.append(
                f"COMMENT ON CONSTRAINT {fk['name']} ON {fk['table']} IS {_literal(fk['comment'])}"
            )
    return drop, add


def in_place(table: CaptureTable, doc: dict[str, Any]) -> list[str] | None:
    """The columns a batch may UPDATE in place on the target (``doc``: TARGET_SQL's document of
    the table), or None when its rows must be deleted and inserted again.

    In place needs every unique index and exclusion constraint to be on exactly the capture's
    key: PostgreSQL checks a non-deferrable one "immediately whenever a row is inserted or
    modified" (docs, CREATE TABLE, "Non-Deferred Uniqueness Constraints"), so an UPDATE of two
    rows of a batch that swapped a unique value fails, where a DELETE of both and an INSERT
    does not; and no
    identity column GENERATED ALWAYS outside the key (UPDATE may set one only to DEFAULT).
    Key columns GENERATED ALWAYS are left out of the SET list: identity columns are integers,
    whose equality (the join) means the same value."""
    key = set(table.key)
    uniques = doc.get("uniques")
    always = doc.get("always")
    if uniques is None or always is None:
        return None
    if any(u is None or set(u) != key for u in uniques) or set(always) - key:
        return None
    return [c for c in doc["columns"] if c not in always]


def batch_target_scripts(
    table: CaptureTable,
    columns: list[str],
    triggers: list[dict[str, str]],
    replica: bool,
    fks: Sequence[dict[str, Any]] = (),
    key_schemas: Sequence[str] = (),
    update: Sequence[str] | None = None,
) -> tuple[str, str]:
    """The target's script before its COPY's rows, and after them (up to COMMIT).

    The rows: with ``update`` (:func:`in_place`'s columns) the keys the source no longer has
    are deleted, those both sides have are updated in place, and the others inserted; without
    it every key of the batch is deleted and the source's rows inserted. In place writes no
    dead row and no index entry for an unchanged indexed value (a HOT update, when the page
    has room): measured on 20,000 keys of the bench's 4-million-row pgbench_accounts, 0.36 s
    against 0.52 s.

    With ``replica`` the session runs as a replica (session_replication_role): no ordinary
    trigger fires, foreign-key checks and cascades included (they are triggers); the triggers
    that fire anyway in that mode (ENABLE ALWAYS, ENABLE REPLICA) are disabled by name for the
    transaction. Without it (a role that may not set it) the enabled user triggers (ORIGIN and
    ALWAYS) are disabled the same way, and the foreign keys touching the table (``fks``) are
    dropped for the transaction and re-added NOT VALID (no check, no cascade: the round's other
    batches bring the related rows; the caller validates them after the round). Their tables
    are locked first, in one sorted order, so batches of related tables wait for each other
    instead of deadlocking. ``key_schemas``: see :func:`key_schemas_sql`."""
    fire = ("A", "R") if replica else ("O", "A")
    off = [t for t in triggers if t["mode"] in fire]
    cols = ", ".join(columns)
    match = " AND ".join(f"t.{k} = b.{k}" for k in table.key)
    if replica:
        fks = ()
    drop_fks, add_fks = _fk_statements(fks)
    linked = sorted({table.name} | {f["table"] for f in fks} | {f["other"] for f in fks})
    path = search_path_sql(key_schemas, local=True)
    before = [
        "BEGIN",
        BATCH_PAGE_COST.replace("SET", "SET LOCAL", 1),
        *([path] if path else []),
        *(["SET LOCAL session_replication_role = replica"] if replica else []),
        *([f"LOCK TABLE {', '.join(linked)} IN ACCESS EXCLUSIVE MODE"] if fks else []),
        *drop_fks,
        *(f"ALTER TABLE {table.name} DISABLE TRIGGER {t['name']}" for t in off),
        f"CREATE TEMPORARY TABLE {BATCH} ON COMMIT DROP AS "
        f"SELECT true AS {PRESENT}, {', '.join(carried(table, columns))} FROM {table.name} "
        "WITH NO DATA",
        f"COPY {BATCH} FROM STDIN",
    ]
    # OVERRIDING SYSTEM VALUE: identity columns (GENERATED ALWAYS too) take the source's
    # values; generated columns are not in the list and are computed.
    insert = f"INSERT INTO {table.name} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {BATCH}"
    if update is None:
        rows = [
            f"DELETE FROM {table.name} t USING {BATCH} b WHERE {match}",
            f"{insert} WHERE {PRESENT}",
        ]
    else:
        sets = ", ".join(f"{c} = b.{c}" for c in update)
        rows = [f"DELETE FROM {table.name} t USING {BATCH} b WHERE {match} AND NOT b.{PRESENT}"]
        if sets:
            # The keys the UPDATE found are the ones not to insert: an anti-join against its
            # RETURNING (in memory), not a second probe of the table's index per key.
            found = " AND ".join(f"u.{k} = b.{k}" for k in table.key)
            rows.append(
                f"WITH {UPDATED} AS (UPDATE {table.name} t SET {sets} FROM {BATCH} b "
                f"WHERE {match} AND b.{PRESENT} "
                f"RETURNING {', '.join(f't.{k}' for k in table.key)}) "
                f"{insert} b WHERE b.{PRESENT} AND NOT EXISTS (SELECT FROM {UPDATED} u "
                f"WHERE {found})"
            )
        else:  # only key columns: nothing to update, present keys are left as they are
            rows.append(
                f"{insert} b WHERE b.{PRESENT} AND NOT EXISTS (SELECT FROM {table.name} t "
                f"WHERE {match})"
            )
    after_rows = [
        f"ANALYZE {BATCH}",  # a temporary table has no statistics: the join's plan needs them
        *rows,
        *add_fks,
        *(f"ALTER TABLE {table.name} {_ENABLE[t['mode']]} TRIGGER {t['name']}" for t in off),
    ]
    tail = (
        f"SELECT count(*) FILTER (WHERE {PRESENT}) AS cutover_up, "
        f"count(*) FILTER (WHERE NOT {PRESENT}) AS cutover_gone FROM {BATCH} \\gset\n"
        "COMMIT;\n"
        "\\echo cutover-batch :cutover_up :cutover_gone"
    )
    return (
        "".join(f"{s};\n" for s in before).rstrip("\n"),
        "".join(f"{s};\n" for s in after_rows) + tail,
    )
