"""Heroku's schema changes since the change capture was installed, table by table (issue 13):
which tables the window's final sync must replace whole with their new definition
(cutover/adapters/pgreplace.py), and what cannot be scoped to tables (a whole-database copy).

Per table (:class:`TableChange`), from the registry ``_cutover.tables`` (fingerprints taken at
install, pgcapture_sql.RECORDED_SQL) against the fingerprints now (FINGERPRINT_SQL) and the
capture's triggers (pgcapture.status):

* ``changed``: its definition fingerprint differs (a column, type, default, constraint, index,
  trigger, rule, name...). The logged keys cannot be written into the old definition.
* ``new``: not in the registry: no trigger ever logged it.
* ``dropped``: in the registry, gone from Heroku.
* ``trigger``: a capture trigger is missing or does not fire: writes since are in no log.

Replacing a table (``DROP TABLE ... CASCADE``) drops what depends on it. Plain views reading an
affected table (or such a view), on Heroku or on Convox, are re-created from Heroku's
definitions (:attr:`SchemaChanges.views`). Whole-database (:attr:`SchemaChanges.whole`): a table
the capture cannot cover (partitioned, partition, inheritance: pgcapture.inspect), and any other
object outside the affected tables that depends on one of them: a materialized view (its rows),
a rule of another table, a column, function or policy using its row type, a default using a
sequence it owns. cutover copies everything instead and names them.

The description of a change (``orders: column added (gift_note)``) compares Heroku's columns,
indexes and constraints now with the Convox copy's, which still has the old definition.
"""

# SQL is built from catalog names (quote_ident'ed by the server) through text_array(): no
# operator input reaches it.
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from cutover.adapters import pgcapture
from cutover.adapters.pgcapture import CapturePlan, CaptureStatus, query, text_array
from cutover.adapters.pgcapture_sql import FINGERPRINT_SQL, INSPECT_SQL, RECORDED_SQL, STATUS_SQL
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import UnexpectedOutput

KINDS = ("changed", "new", "dropped", "trigger")


@dataclass(frozen=True)
class TableChange:
    name: str  # quoted "schema.table": its name on Heroku now (dropped: as recorded)
    kind: str  # one of KINDS
    detail: str = ""  # "column added (gift_note)", ...
    old_name: str = ""  # changed: the name recorded at install when it differs (a rename)

    def line(self) -> str:
        what = {
            "changed": self.detail or "definition changed",
            "new": "new table",
            "dropped": "dropped",
            "trigger": "a capture trigger is missing or does not fire",
        }[self.kind]
        return f"{self.name}: {what}"


@dataclass(frozen=True)
class SchemaChanges:
    tables: tuple[TableChange, ...] = ()
    whole: tuple[str, ...] = ()  # why only a whole-database copy is right (empty: scoped)
    views: tuple[str, ...] = ()  # plain views on affected tables, re-created from Heroku's

    @property
    def replaced(self) -> tuple[str, ...]:
        """Tables to create on Convox from Heroku's definition and rows (not the dropped)."""
        return tuple(sorted({t.name for t in self.tables if t.kind != "dropped"}))

    @property
    def dropped(self) -> tuple[str, ...]:
        return tuple(sorted({t.name for t in self.tables if t.kind == "dropped"}))

    @property
    def gone_names(self) -> tuple[str, ...]:
        """Names to drop on Convox first: every affected table's, and a renamed one's old."""
        names = {t.name for t in self.tables} | {t.old_name for t in self.tables if t.old_name}
        return tuple(sorted(names))

    def summary(self) -> str:
        return "; ".join(t.line() for t in self.tables)

    def unaffected(self, plan: CapturePlan) -> CapturePlan:
        """``plan`` without the affected tables: what the log may still be applied to."""
        gone = set(self.gone_names)
        return CapturePlan(
            tuple(t for t in plan.tables if t.name not in gone),
            tuple(k for k in plan.keyless if k not in gone),
            plan.unsupported,
            tuple(t for t in plan.logged if t.name not in gone),
        )


# What a DROP TABLE ... CASCADE of one of {names} would drop beyond the table itself and the
# foreign keys pointing at it (which cutover re-creates from Heroku's catalog): dependents of the
# table, of its row type, and of the sequences it owns (PostgreSQL docs, "Dependency Tracking";
# pg_depend deptype 'n'). Its own constraints, triggers, rules, policies and defaults go and
# come back with it.
DEPENDENTS_SQL = r"""
SET search_path = pg_catalog;
WITH t AS (
  SELECT c.oid, c.reltype, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v')
    AND quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({names})
), refs AS (
  SELECT t.name, t.oid AS owner, 'pg_catalog.pg_class'::regclass AS refclass, t.oid AS ref FROM t
  UNION ALL
  SELECT t.name, t.oid, 'pg_catalog.pg_type'::regclass, t.reltype FROM t
  UNION ALL
  SELECT t.name, t.oid, 'pg_catalog.pg_class'::regclass, s.objid
  FROM t JOIN pg_catalog.pg_depend s
    ON s.refclassid = 'pg_catalog.pg_class'::regclass AND s.refobjid = t.oid
   AND s.classid = 'pg_catalog.pg_class'::regclass AND s.deptype IN ('a', 'i')
  JOIN pg_catalog.pg_class q ON q.oid = s.objid AND q.relkind = 'S'
)
SELECT DISTINCT r.name,
  CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::regclass THEN
    (SELECT CASE v.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view '
                           ELSE 'rule ' || quote_ident(w.rulename) || ' on ' END
            || v.oid::regclass::text
     FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
     WHERE w.oid = d.objid)
  ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END,
  CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::regclass THEN
    (SELECT CASE WHEN v.relkind = 'v' AND w.rulename = '_RETURN'
                 THEN quote_ident(vn.nspname) || '.' || quote_ident(v.relname) ELSE '' END
     FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
     JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
     WHERE w.oid = d.objid)
  ELSE '' END
FROM refs r JOIN pg_catalog.pg_depend d
  ON d.refclassid = r.refclass AND d.refobjid = r.ref AND d.deptype = 'n'
WHERE NOT (d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = r.owner)
  AND NOT (d.classid = 'pg_catalog.pg_constraint'::regclass AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_constraint co
        WHERE co.oid = d.objid AND (co.contype = 'f' OR co.conrelid = r.owner)))
  AND NOT (d.classid = 'pg_catalog.pg_trigger'::regclass AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.oid = d.objid AND g.tgrelid = r.owner))
  AND NOT (d.classid = 'pg_catalog.pg_rewrite'::regclass AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_rewrite w WHERE w.oid = d.objid AND w.ev_class = r.owner))
  AND NOT (d.classid = 'pg_catalog.pg_policy'::regclass AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_policy p WHERE p.oid = d.objid AND p.polrelid = r.owner))
  AND NOT (d.classid = 'pg_catalog.pg_attrdef'::regclass AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = r.owner))
ORDER BY 1, 2;
"""

# Which of {names} are plain views (on Heroku: the views re-created from its definitions).
VIEWS_SQL = r"""
SET search_path = pg_catalog;
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'v' AND quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({names})
ORDER BY 1;
"""

# Columns (name: type), index and constraint names of {names}: what a change description says.
SHAPE_SQL = r"""
SET search_path = pg_catalog;
SELECT json_build_object(
  'name', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
  'columns', (SELECT coalesce(json_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)),
                              '{}')
              FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  'indexes', (SELECT coalesce(json_agg(ic.relname ORDER BY ic.relname), '[]')
              FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = c.oid),
  'constraints', (SELECT coalesce(json_agg(co.conname ORDER BY co.conname), '[]')
                  FROM pg_catalog.pg_constraint co WHERE co.conrelid = c.oid))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({names});
"""


# What the NEW definitions of {names} (the replaced tables and re-created views: their columns'
# types, defaults, constraints, indexes, triggers, rules, policies) use that pg_dump -t does not
# bring along: types (an enum added with the column...), functions, collations, sequences not
# owned by one of them, other relations. Built-in objects are pinned (no pg_depend row); the
# capture's own (schema _cutover) never reach Convox. One JSON object per row.
USES_SQL = r"""
SET search_path = pg_catalog;
WITH t AS (
  SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v')
    AND quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({names})
), objs AS (
  SELECT t.name, 'pg_catalog.pg_class'::regclass AS classid, t.oid AS objid FROM t
  UNION ALL SELECT t.name, 'pg_catalog.pg_attrdef'::regclass, a.oid
  FROM t JOIN pg_catalog.pg_attrdef a ON a.adrelid = t.oid
  UNION ALL SELECT t.name, 'pg_catalog.pg_constraint'::regclass, co.oid
  FROM t JOIN pg_catalog.pg_constraint co ON co.conrelid = t.oid AND co.contype <> 'f'
  UNION ALL SELECT t.name, 'pg_catalog.pg_class'::regclass, i.indexrelid
  FROM t JOIN pg_catalog.pg_index i ON i.indrelid = t.oid
  UNION ALL SELECT t.name, 'pg_catalog.pg_trigger'::regclass, g.oid
  FROM t JOIN pg_catalog.pg_trigger g ON g.tgrelid = t.oid AND NOT g.tgisinternal
  UNION ALL SELECT t.name, 'pg_catalog.pg_rewrite'::regclass, w.oid
  FROM t JOIN pg_catalog.pg_rewrite w ON w.ev_class = t.oid
  UNION ALL SELECT t.name, 'pg_catalog.pg_policy'::regclass, p.oid
  FROM t JOIN pg_catalog.pg_policy p ON p.polrelid = t.oid
), owned AS (
  SELECT s.objid FROM pg_catalog.pg_depend s
  WHERE s.classid = 'pg_catalog.pg_class'::regclass AND s.refobjid IN (SELECT oid FROM t)
    AND s.refclassid = 'pg_catalog.pg_class'::regclass AND s.deptype IN ('a', 'i')
)
SELECT DISTINCT json_build_object(
  'table', o.name, 'catalog', d.refclassid::regclass::text, 'type', i.type,
  'identity', i.identity)::text
FROM objs o JOIN pg_catalog.pg_depend d
  ON d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'n'
CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) i
WHERE d.refclassid IN ('pg_catalog.pg_type'::regclass, 'pg_catalog.pg_proc'::regclass,
                       'pg_catalog.pg_class'::regclass, 'pg_catalog.pg_collation'::regclass)
  AND NOT (d.refclassid = 'pg_catalog.pg_class'::regclass
           AND (d.refobjid IN (SELECT oid FROM t) OR d.refobjid IN (SELECT objid FROM owned)))
  AND coalesce(i.schema, '') NOT IN ('pg_catalog', 'information_schema', '_cutover');
"""

# Which of the objects {identities} (each with its catalog {catalogs}) the side it runs on lacks.
LACKS_SQL = r"""
SET search_path = pg_catalog;
SELECT x.ident FROM unnest({catalogs}, {identities}) AS x(cat, ident)
WHERE CASE x.cat
  WHEN 'pg_type' THEN pg_catalog.to_regtype(x.ident) IS NULL
  WHEN 'pg_proc' THEN pg_catalog.to_regprocedure(x.ident) IS NULL
  WHEN 'pg_class' THEN pg_catalog.to_regclass(x.ident) IS NULL
  ELSE pg_catalog.to_regcollation(x.ident) IS NULL END;
"""


def lacking(
    pg: PostgresAdapter, source: ConnInfo, target: ConnInfo, names: tuple[str, ...]
) -> list[str]:
    """What the new definitions of ``names`` on Heroku use (USES_SQL) that the Convox database
    lacks, named: the replacement would fail on it, so only a whole copy is right."""
    if not names:
        return []
    uses = [json.loads(r[0]) for r in query(pg, source, _names_sql(USES_SQL, names))]
    if not uses:
        return []
    sql = LACKS_SQL.replace("{catalogs}", text_array([u["catalog"] for u in uses])).replace(
        "{identities}", text_array([u["identity"] for u in uses])
    )
    missing = {r[0] for r in query(pg, target, sql)}
    return sorted(
        {f"{u['type']} {u['identity']} (used by {u['table']})" for u in uses
         if u["identity"] in missing}
    )  # fmt: skip


def _names_sql(sql: str, names: tuple[str, ...] | list[str]) -> str:
    return sql.replace("{names}", text_array(list(names)))


@dataclass(frozen=True)
class Dependent:
    table: str  # the affected table (or view) it depends on
    what: str  # "view public.order_totals", "function public.f(public.orders)", ...
    view: str  # a plain view's name (re-created from Heroku's definition), else ""

    def line(self) -> str:
        return f"{self.what} (on {self.table})"


def dependents(pg: PostgresAdapter, conn: ConnInfo, names: tuple[str, ...]) -> list[Dependent]:
    """Every object a DROP ... CASCADE of ``names`` would take with it (see DEPENDENTS_SQL);
    objects of ``names`` themselves (another affected table's column, rule...) are not counted."""
    if not names:
        return []
    rows = query(pg, conn, _names_sql(DEPENDENTS_SQL, names))
    mine = set(names)
    out = []
    for table, what, *view in rows:
        if any(what.endswith(f" {n}") for n in mine if n != table):
            continue  # an object of another affected table: replaced too
        out.append(Dependent(table, what, view[0] if view else ""))
    return out


def dependent_views(
    pg: PostgresAdapter, source: ConnInfo, target: ConnInfo | None, changes: SchemaChanges
) -> tuple[tuple[str, ...], list[str]]:
    """(the plain views to re-create from Heroku's definitions: those depending on an affected
    table or on such a view, on either side, that Heroku has; every other dependent, named)."""
    views: set[str] = set()
    others: list[str] = []
    on_heroku, on_convox = changes.replaced, changes.gone_names
    while on_heroku or on_convox:
        found = dependents(pg, source, on_heroku)
        found += dependents(pg, target, on_convox) if target is not None else []
        new = sorted({d.view for d in found if d.view} - views)
        others += [d.line() for d in found if not d.view]
        views.update(new)
        on_heroku = on_convox = tuple(new)
    on_source = [r[0] for r in query(pg, source, _names_sql(VIEWS_SQL, sorted(views)))]
    return tuple(on_source), list(dict.fromkeys(others))


def _shapes(pg: PostgresAdapter, conn: ConnInfo, names: list[str]) -> dict[str, dict[str, Any]]:
    if not names:
        return {}
    rows = query(pg, conn, _names_sql(SHAPE_SQL, names))
    return {d["name"]: d for d in (json.loads(r[0]) for r in rows)}


def describe_change(now: dict[str, Any] | None, before: dict[str, Any] | None) -> str:
    """What differs between Heroku's table now and the Convox copy (the old definition)."""
    if now is None or before is None:
        return "definition changed"
    parts = []
    cols_now, cols_before = now["columns"], before["columns"]
    added = [c for c in cols_now if c not in cols_before]
    gone = [c for c in cols_before if c not in cols_now]
    retyped = [
        f"{c}: {cols_before[c]} -> {cols_now[c]}"
        for c in cols_now
        if c in cols_before and cols_now[c] != cols_before[c]
    ]
    for label, items in (
        ("column added", added),
        ("column dropped", gone),
        ("column type changed", retyped),
    ):
        if items:
            parts.append(f"{label} ({', '.join(items)})")
    for label, key in (("index", "indexes"), ("constraint", "constraints")):
        new = sorted(set(now[key]) - set(before[key]))
        old = sorted(set(before[key]) - set(now[key]))
        if new:
            parts.append(f"{label} added ({', '.join(new)})")
        if old:
            parts.append(f"{label} dropped ({', '.join(old)})")
    return ", ".join(parts) or "definition changed"


class Reads(NamedTuple):
    """What a decision about the capture reads on Heroku, each once (:func:`read_all`)."""

    status: CaptureStatus
    plan: CapturePlan  # pgcapture.inspect: the tables now
    recorded: dict[int, list[str]]  # relid -> [name, md5] at the install
    now: dict[int, tuple[str, str]]  # relid -> (name, md5) now


# read_all's one script: each query's rows follow a line naming it; the capture's own tables are
# read only when they exist (psql's \if on the \gset flag: 't' or 'f').
_SECTION = "cutover-section:"
_READ_ALL_SQL = (
    f"\\echo {_SECTION}inspect\n{INSPECT_SQL}"
    f"\\echo {_SECTION}now\n{FINGERPRINT_SQL}"
    "SELECT pg_catalog.to_regclass('_cutover.tables') IS NOT NULL AS cutover_installed \\gset\n"
    "\\if :cutover_installed\n"
    f"\\echo {_SECTION}recorded\n{RECORDED_SQL}"
    f"\\echo {_SECTION}status\n{STATUS_SQL}"
    "\\endif\n"
)


def read_all(pg: PostgresAdapter, source: ConnInfo) -> Reads | None:
    """The capture's status, the plan and both fingerprints, read by one psql (in the window
    each psql start is paid: five of them, in two rounds at once, took 0.2 s on the bench
    machine): None when the capture is not installed."""
    sections: dict[str, list[list[str]]] = {}
    rows: list[list[str]] = []
    for row in query(pg, source, _READ_ALL_SQL):
        if len(row) == 1 and row[0].startswith(_SECTION):
            rows = sections.setdefault(row[0].removeprefix(_SECTION), [])
        else:
            rows.append(row)
    if "inspect" not in sections or "now" not in sections:
        raise UnexpectedOutput("psql printed no capture plan or fingerprints")
    if "status" not in sections:
        return None
    return Reads(
        pgcapture.status_from_rows(sections["status"]),
        pgcapture.plan_from_docs([json.loads(r[0]) for r in sections["inspect"]]),
        {int(r[0]): r[1:3] for r in sections["recorded"]},
        {int(r[0]): (r[1], r[2]) for r in sections["now"]},
    )


def detect(
    pg: PostgresAdapter,
    source: ConnInfo,
    target: ConnInfo | None = None,
    reads: Reads | None = None,
) -> SchemaChanges:
    """Heroku's schema changes since the install, per table (see the module docstring). With
    ``target`` (the Convox copy): changes described, and dependents there counted too.
    ``reads``: Heroku's side as :func:`read_all` just read it (else read here)."""
    if reads is None:
        reads = read_all(pg, source)
    if reads is None:
        return SchemaChanges(whole=("the change capture is not installed",))
    recorded, now = reads.recorded, reads.now
    changes: dict[str, TableChange] = {}
    for relid, (name, md5) in now.items():
        if relid not in recorded:
            changes[name] = TableChange(name, "new")
        elif recorded[relid][1] != md5:
            old = recorded[relid][0]
            changes[name] = TableChange(name, "changed", old_name=old if old != name else "")
    for relid, (name, _md5) in recorded.items():
        if relid not in now and name not in changes:
            changes[name] = TableChange(name, "dropped")
    for name in reads.status.missing_triggers:
        changes.setdefault(name, TableChange(name, "trigger"))
    if not changes:
        return SchemaChanges()
    plan = reads.plan
    tables = tuple(sorted(changes.values(), key=lambda t: t.name))
    whole = [f"tables the capture cannot cover: {u}" for u in plan.unsupported]
    affected = SchemaChanges(tables)
    views, others = dependent_views(pg, source, target, affected) if not whole else ((), [])
    whole += [f"{what} depends on an affected table" for what in others]
    if target is not None and not whole:
        whole += [
            f"{what} is not on the Convox database"
            for what in lacking(pg, source, target, (*affected.replaced, *views))
        ]
    if target is not None:
        changed = [t.name for t in tables if t.kind == "changed"]
        heroku_shapes = _shapes(pg, source, changed)
        convox_shapes = _shapes(pg, target, [t.old_name or t.name for t in tables])
        tables = tuple(
            TableChange(
                t.name,
                t.kind,
                describe_change(heroku_shapes.get(t.name), convox_shapes.get(t.old_name or t.name))
                + (f", renamed from {t.old_name}" if t.old_name else ""),
                t.old_name,
            )
            if t.kind == "changed"
            else t
            for t in tables
        )
    return SchemaChanges(tables, tuple(whole), views)


__all__ = [
    "KINDS",
    "Reads",
    "SchemaChanges",
    "TableChange",
    "dependent_views",
    "dependents",
    "describe_change",
    "detect",
    "read_all",
]
