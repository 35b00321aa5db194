"""The catalog queries of the change capture (cutover/adapters/pgcapture.py).

Every query that prints definitions runs with ``search_path = pg_catalog`` (set first in its
script), so ``format_type``, ``pg_get_indexdef``, ``pg_get_constraintdef`` and friends qualify
every name: a fingerprint taken at install and one taken later agree whatever the session's
search_path is (PostgreSQL docs, "System Information Functions": the output is qualified when
the object is not visible in the search path).
"""

# SQL is built from catalog names (quote_ident'ed by the server), oids, and positions checked
# against a strict pattern; text values go through literal(). No operator input reaches it.
# ruff: noqa: S608
from __future__ import annotations

CAPTURE_SCHEMA = "_cutover"
TRIGGER_PREFIX = "cutover_capture"
EVENTS = ("ins", "upd", "del", "trunc")


def after(since: str, column: str = "cutover_xid") -> str:
    """Log rows written by transactions not visible in the position ``since`` (checked by the
    caller). Every xid below a snapshot's xmin is visible in it: the first half lets the index
    on the xid skip the rows already applied."""
    snap = f"'{since}'::pg_catalog.pg_snapshot"
    return (
        f"{column} >= pg_catalog.pg_snapshot_xmin({snap}) "
        f"AND NOT pg_catalog.pg_visible_in_snapshot({column}, {snap})"
    )


# The tables a capture can see: plain and partitioned tables of user schemas, not cutover's own,
# not an extension's (pg_dump leaves those to the extension too).
USER_TABLES = r"""
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_cutover')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
"""

# One JSON document per table: its name, kind, whether it is a partition or in an inheritance
# tree, and its best key: the primary key, else the unique index with the fewest columns whose
# columns are all NOT NULL (valid, not partial, no expression; INCLUDE columns are not key).
INSPECT_SQL = (
    r"""
SET search_path = pg_catalog;
SELECT json_build_object(
  'name', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
  'relid', c.oid::bigint,
  'relkind', c.relkind,
  'partition', c.relispartition,
  'inherits', EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                      WHERE i.inhrelid = c.oid OR i.inhparent = c.oid),
  'key', (SELECT json_build_object(
              'source', CASE WHEN x.indisprimary THEN 'primary key'
                             ELSE 'unique index ' || quote_ident(xc.relname) END,
              'columns', (SELECT json_agg(quote_ident(a.attname) ORDER BY k.ord)
                          FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                          JOIN pg_catalog.pg_attribute a
                            ON a.attrelid = c.oid AND a.attnum = k.attnum
                          WHERE k.ord <= x.indnkeyatts))
          FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class xc ON xc.oid = x.indexrelid
          WHERE x.indrelid = c.oid AND x.indisunique AND x.indisvalid AND x.indisready
            AND x.indpred IS NULL AND x.indexprs IS NULL
            AND NOT EXISTS (SELECT 1
                            FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                            LEFT JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = c.oid AND a.attnum = k.attnum
                            WHERE k.ord <= x.indnkeyatts
                              AND (a.attnum IS NULL OR NOT a.attnotnull))
          ORDER BY x.indisprimary DESC, x.indnkeyatts, xc.relname
          LIMIT 1))
"""
    + USER_TABLES
    + "ORDER BY n.nspname, c.relname;\n"
)

# (relid, name, md5 of the definition) of every user table: columns (name, type, NOT NULL,
# default, generated, identity, collation), constraints, indexes, triggers but cutover's, rules,
# relkind, name, and its place in an inheritance tree or a partitioning. A definition change
# makes the logged keys (or a whole-table copy's columns) wrong.
FINGERPRINT_SELECT = (
    r"""
SELECT c.oid AS relid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
  md5(concat_ws(E'\n', c.relkind::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
    (SELECT string_agg(concat_ws(' ', quote_ident(a.attname),
                                 format_type(a.atttypid, a.atttypmod), a.attnotnull::text,
                                 coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-'),
                                 a.attgenerated::text, a.attidentity::text,
                                 a.attcollation::regcollation::text), ',' ORDER BY a.attnum)
     FROM pg_catalog.pg_attribute a
     LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), ',' ORDER BY co.conname)
     FROM pg_catalog.pg_constraint co WHERE co.conrelid = c.oid),
    (SELECT string_agg(pg_get_indexdef(i.indexrelid), ',' ORDER BY 1)
     FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid),
    (SELECT string_agg(pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text, ',' ORDER BY 1)
     FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid = c.oid AND NOT t.tgisinternal
       AND t.tgname NOT LIKE 'cutover\_capture%'),
    (SELECT string_agg(pg_get_ruledef(r.oid), ',' ORDER BY 1)
     FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid),
    -- A table that joins an inheritance tree or becomes a partition is written through its
    -- parent too, which fires the parent's statement triggers, not its own.
    'partition ' || c.relispartition::text,
    (SELECT 'parents ' || string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno)
     FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid),
    (SELECT 'children ' || string_agg(i.inhrelid::regclass::text, ',' ORDER BY 1)
     FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid))) AS def_md5
"""
    + USER_TABLES
)

FINGERPRINT_SQL = (
    "SET search_path = pg_catalog;\nSELECT relid, name, def_md5 FROM ("
    + FINGERPRINT_SELECT
    + ") f ORDER BY name;\n"
)

RECORDED_SQL = r"""
SET search_path = pg_catalog;
SELECT t.relid, t.name, t.def_md5, array_to_string(t.key, ','), t.log
FROM _cutover.tables t ORDER BY t.name;
"""

INSTALLED_SQL = "SELECT to_regclass('_cutover.tables') IS NOT NULL;\n"

# The captured tables as recorded, with the triggers each still has firing for the app: enabled
# (O) or ALWAYS (A). One disabled (D) or ENABLE REPLICA (R: fires only in replica sessions)
# records nothing: it counts as missing.
STATUS_SQL = r"""
SET search_path = pg_catalog;
SELECT json_build_object(
  'relid', t.relid::bigint, 'name', t.name, 'key', t.key, 'exists', c.oid IS NOT NULL,
  'triggers', (SELECT coalesce(json_agg(g.tgname ORDER BY g.tgname), '[]')
               FROM pg_catalog.pg_trigger g
               WHERE g.tgrelid = t.relid AND g.tgname LIKE 'cutover\_capture%'
                 AND g.tgenabled IN ('O', 'A')))
FROM _cutover.tables t LEFT JOIN pg_catalog.pg_class c ON c.oid = t.relid
WHERE t.log <> ''
ORDER BY t.name;
"""

# Every object of cutover's on the database, for the dry run of cleanup and its check after.
LEFTOVERS_SQL = r"""
SET search_path = pg_catalog;
SELECT 'schema _cutover' FROM pg_catalog.pg_namespace WHERE nspname = '_cutover'
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'i' THEN 'index ' ELSE 'table ' END
       || c.oid::regclass::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = '_cutover' AND c.relkind IN ('r', 'S', 'i', 'v', 'p')
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = '_cutover'
UNION ALL
SELECT 'trigger ' || quote_ident(g.tgname) || ' on ' || g.tgrelid::regclass::text
FROM pg_catalog.pg_trigger g WHERE g.tgname LIKE 'cutover\_capture%' AND NOT g.tgisinternal
ORDER BY 1;
"""

UNINSTALL_SQL = r"""
BEGIN READ WRITE;
SET LOCAL lock_timeout = '5s';
SET LOCAL search_path = pg_catalog;
DO $cutover$
DECLARE r record;
BEGIN
  FOR r IN SELECT g.tgname, g.tgrelid::regclass::text AS rel FROM pg_catalog.pg_trigger g
           WHERE g.tgname LIKE 'cutover\_capture%' AND NOT g.tgisinternal ORDER BY 2, 1
  LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.rel);
  END LOOP;
END
$cutover$;
DROP SCHEMA IF EXISTS _cutover CASCADE;
COMMIT;
"""

# The fixed part of the install (one transaction with the per-table statements).
INSTALL_HEAD = (
    "CREATE SCHEMA IF NOT EXISTS _cutover",
    "CREATE TABLE IF NOT EXISTS _cutover.tables (relid oid PRIMARY KEY, name text NOT NULL, "
    "key text[] NOT NULL, log text NOT NULL, def_md5 text NOT NULL, "
    "installed_at timestamptz NOT NULL DEFAULT now())",
    "CREATE SEQUENCE IF NOT EXISTS _cutover.seq",
    # Only when missing: the app's TRUNCATEs write this table, and a refresh must not wait for
    # them (CREATE INDEX locks its table before it looks for the name).
    """DO $cutover$
BEGIN
  IF pg_catalog.to_regclass('_cutover.truncates') IS NULL THEN
    CREATE TABLE _cutover.truncates (cutover_seq bigint NOT NULL
      DEFAULT nextval('_cutover.seq'), cutover_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
      relid oid NOT NULL);
    CREATE INDEX truncates_xid ON _cutover.truncates (cutover_xid);
    GRANT INSERT ON _cutover.truncates TO PUBLIC;
  END IF;
END
$cutover$""",
    # The triggers run as whoever writes (SECURITY INVOKER): any role that may write a captured
    # table must be able to log it. Logging a key more is harmless (applying is idempotent).
    "GRANT USAGE ON SCHEMA _cutover TO PUBLIC",
    "GRANT USAGE ON SEQUENCE _cutover.seq TO PUBLIC",
)

# Drop what belongs to tables no longer captured (dropped, or no longer capturable): their log,
# functions, and triggers when the table still exists. {keep} is an oid[] literal.
FORGET_SQL = r"""DO $cutover$
DECLARE r record; e text;
BEGIN
  FOR r IN SELECT t.relid FROM _cutover.tables t
           WHERE t.relid <> ALL ({keep}) AND t.log <> ''
  LOOP
    FOREACH e IN ARRAY ARRAY['ins', 'upd', 'del', 'trunc'] LOOP
      IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
                 WHERE g.tgrelid = r.relid AND g.tgname = 'cutover_capture_' || e) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', 'cutover_capture_' || e, r.relid::regclass);
      END IF;
      EXECUTE format('DROP FUNCTION IF EXISTS _cutover.%I()', 'capture_' || r.relid || '_' || e);
    END LOOP;
    EXECUTE format('DROP TABLE IF EXISTS _cutover.%I', 'log_' || r.relid);
  END LOOP;
END
$cutover$"""


# -- keyless tables: a log of the inserted rows --------------------------------------------------
# A keyless table (no primary key, no unique index on NOT NULL columns: typically an insert-only
# history or audit log) has no key to fetch a row by. Its log holds each INSERTed row whole, as
# its text form (record_out: every column, dropped ones excluded), read back by a cast to the
# table's row type (record_in) when applied; an UPDATE or DELETE that touched a row, or a
# TRUNCATE, is recorded in _cutover.truncates: the table is then copied whole
# (cutover/adapters/pgapply.py). One text column, not one per table column: a column added or
# dropped on Heroku never makes the trigger fail the app's write (the fingerprint then makes
# the final sync a full one).
# The text of a logged row is the writer's session's output (record_out): with these settings
# (the function's own, whatever the app's session set) it reads back the same in the apply's
# session (cutover/adapters/pgparts.py SOURCE_SETTINGS; postgres.STABLE_TEXT): ISO dates,
# full float precision, hex bytea, UTC.
ROW_TEXT_SETTINGS = (
    "SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' "
    "SET extra_float_digits = 3 SET bytea_output = 'hex' "
)


def rows_log_sql(relid: int, log: str) -> str:
    """The body of a DO block creating the row log ``log`` of keyless table ``relid`` when
    missing (a keyed log in its place, from when the table had a key, is dropped first)."""
    return (
        "BEGIN\n"
        f"  IF EXISTS (SELECT 1 FROM _cutover.tables t WHERE t.relid = {relid}::oid "
        "AND t.key <> '{}') THEN\n"
        f"    DROP TABLE IF EXISTS {log};\n  END IF;\n"
        f"  IF pg_catalog.to_regclass('{log}') IS NULL THEN\n"
        f"    CREATE TABLE {log} (cutover_row text NOT NULL, "
        "cutover_xid xid8 NOT NULL DEFAULT pg_current_xact_id());\n"
        f"    CREATE INDEX log_{relid}_xid ON {log} (cutover_xid);\n"
        f"    GRANT INSERT ON {log} TO PUBLIC;\n"
        "  END IF;\nEND"
    )


def rows_function_body(relid: int, log: str, event: str) -> str:
    """What the statement trigger of ``event`` on a keyless table runs: inserted rows go to its
    log; an UPDATE or DELETE that touched a row, and a TRUNCATE, mark it rewritten."""
    rewritten = f"INSERT INTO {CAPTURE_SCHEMA}.truncates (relid) VALUES ({relid}::oid);"
    return {
        # (n.*): the whole row even when the table has a column named n
        "ins": f"INSERT INTO {log} (cutover_row) SELECT (n.*)::text FROM cutover_new n;",
        "upd": f"IF EXISTS (SELECT 1 FROM cutover_old) THEN\n    {rewritten}\n  END IF;",
        "del": f"IF EXISTS (SELECT 1 FROM cutover_old) THEN\n    {rewritten}\n  END IF;",
        "trunc": rewritten,
    }[event]
