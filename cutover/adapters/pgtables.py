"""Replace whole tables on the target with Heroku's, each atomically and in place, then copy
every sequence's position: the changed-tables final sync (cutover/adapters/pgchanges.py says
which tables).

One table is one transaction on the target, committed only when the source's COPY ended well
(:func:`pipeline_argv`):

1. ``LOCK TABLE`` the table and every table an FK links it to, in one sorted order (so parallel
   jobs wait for each other instead of deadlocking);
2. drop the FKs pointing at it or from it, its primary-key/unique/exclusion constraints and its
   other indexes; disable its enabled user triggers (they must not rewrite copied rows);
3. ``TRUNCATE ONLY`` and ``COPY ... FROM STDIN``: the rows come from ``COPY ... TO STDOUT`` on
   Heroku, piped at the OS level (two psql processes, one bash pipeline under the Runner; no row
   passes through Python);
4. rebuild the constraints and indexes (one sort each, faster than maintaining them row by row),
   re-add the FKs ``NOT VALID`` (no scan of tables that may not be copied yet), restore the
   triggers, index comments, CLUSTER and REPLICA IDENTITY markers (and FORCE ROW LEVEL
   SECURITY, lifted for the COPY: both sessions run with row_security=off, so a table its
   policies would filter fails instead of being copied short).

A failure anywhere rolls that table's transaction back: the table is as it was. After every
table, each FK that is validated on Heroku but not on the target is validated (``VALIDATE
CONSTRAINT``, in parallel), and every sequence gets Heroku's position (``setval``, one
transaction). The same call run again after an interruption redoes the tables and finishes the
validation: it is resumable.

Passwords travel only in the child's environment: the pipeline's argv names variables
(``"$CUTOVER_SRC_PGPASSWORD"``), never values.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cutover.adapters.postgres import STABLE_TEXT, ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError
from cutover.runner import Runner
from cutover.secrets import SecretMasker


@dataclass(frozen=True)
class CopyProgress:
    """Same fields as the copy helper's ``pgcopy.CopyProgress``."""

    tables_done: int
    tables_total: int
    bytes_done: int


@dataclass(frozen=True)
class CopyResult:
    """Same fields as ``pgcopy.CopyResult``; ``bytes`` is the copied tables' on-disk size on
    Heroku (pg_total_relation_size), ``sequences`` the positions set, ``seconds`` wall time."""

    tables: int
    bytes: int
    seconds: float
    sequences: int = 0
    table_seconds: dict[str, float] = field(default_factory=dict)


# The target's definitions of the tables to copy: columns (COPY's column list), what to drop and
# rebuild, and the markers to put back. One JSON document per table (psql -At: one line each).
TARGET_SQL = r"""
WITH t AS (
  SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, n.nspname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r'
    AND quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({tables})
)
SELECT json_build_object(
  'name', t.name,
  'columns', (SELECT coalesce(json_agg(quote_ident(a.attname) ORDER BY a.attnum), '[]')
              FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated = ''),
  'constraints', (SELECT coalesce(json_agg(json_build_object(
        'name', quote_ident(co.conname), 'def', pg_catalog.pg_get_constraintdef(co.oid),
        'comment', pg_catalog.obj_description(co.oid, 'pg_constraint')) ORDER BY co.conname), '[]')
      FROM pg_catalog.pg_constraint co
      WHERE co.conrelid = t.oid AND co.contype IN ('p', 'u', 'x')),
  'indexes', (SELECT coalesce(json_agg(json_build_object(
        'name', quote_ident(t.nspname) || '.' || quote_ident(ic.relname),
        'short', quote_ident(ic.relname),
        'def', CASE WHEN co.oid IS NULL THEN pg_catalog.pg_get_indexdef(i.indexrelid) END,
        'clustered', i.indisclustered, 'replident', i.indisreplident,
        'comment', CASE WHEN co.oid IS NULL
                        THEN pg_catalog.obj_description(i.indexrelid, 'pg_class') END)
        ORDER BY ic.relname), '[]')
      FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      LEFT JOIN pg_catalog.pg_constraint co
        ON co.conrelid = t.oid AND co.conindid = i.indexrelid AND co.contype IN ('p', 'u', 'x')
      WHERE i.indrelid = t.oid),
  'fks', (SELECT coalesce(json_agg(json_build_object(
        'table', quote_ident(fn.nspname) || '.' || quote_ident(fc.relname),
        'other', quote_ident(on_.nspname) || '.' || quote_ident(oc.relname),
        'name', quote_ident(co.conname), 'def', pg_catalog.pg_get_constraintdef(co.oid),
        'inherited', co.conparentid <> 0,
        'comment', pg_catalog.obj_description(co.oid, 'pg_constraint')) ORDER BY co.conname), '[]')
      FROM pg_catalog.pg_constraint co
      JOIN pg_catalog.pg_class fc ON fc.oid = co.conrelid
      JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
      JOIN pg_catalog.pg_class oc ON oc.oid = co.confrelid
      JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.relnamespace
      WHERE co.contype = 'f' AND (co.conrelid = t.oid OR co.confrelid = t.oid)),
  'force_rls', (SELECT c.relforcerowsecurity FROM pg_catalog.pg_class c WHERE c.oid = t.oid),
  'triggers', (SELECT coalesce(json_agg(json_build_object(
        'name', quote_ident(tg.tgname), 'always', tg.tgenabled = 'A') ORDER BY tg.tgname), '[]')
      FROM pg_catalog.pg_trigger tg
      WHERE tg.tgrelid = t.oid AND NOT tg.tgisinternal AND tg.tgenabled IN ('O', 'A'))
)
FROM t ORDER BY t.name;
"""

SOURCE_SIZES_SQL = r"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_catalog.pg_total_relation_size(c.oid)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({tables});
"""

# Not the change capture's own sequence (cutover/adapters/pgcapture.py): it is not on Convox.
SEQUENCES_SQL = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename)
FROM pg_catalog.pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema', '_cutover') ORDER BY 1;
"""

VALIDATED_FKS_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(co.conname)
FROM pg_catalog.pg_constraint co
JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE co.contype = 'f' AND co.convalidated = {validated} ORDER BY 1, 2;
"""

# The libpq variables a ConnInfo may set (ConnInfo.env) plus those a parent may have exported:
# cleared in the pipeline so each psql sees exactly its own connection.
_LIBPQ_VARS = (
    "PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGPASSFILE",
    "PGSERVICE", "PGSSLMODE", "PGCONNECT_TIMEOUT", "PGAPPNAME", "PGOPTIONS", "PGCLIENTENCODING",
)  # fmt: skip
PSQL = ("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1")


@dataclass(frozen=True)
class TablePlan:
    name: str
    columns: list[str]
    locks: list[str]
    before: list[str]  # statements before TRUNCATE
    after: list[str]  # statements after the COPY


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _array(names: Sequence[str]) -> str:
    """``ARRAY['a', ...]::text[]`` of quoted names."""
    return "ARRAY[" + ", ".join(_literal(n) for n in names) + "]::text[]"


def plan_table(doc: dict[str, Any]) -> TablePlan:
    """The statements that replace one table in place (see the module docstring)."""
    name = doc["name"]
    fks = list({(fk["table"], fk["name"]): fk for fk in doc["fks"]}.values())
    for fk in fks:
        if fk["inherited"]:
            raise CutoverError(
                f"{name}: the foreign key {fk['name']} of {fk['table']} is inherited from a "
                "partitioned table; changed-tables copies plain tables only",
                resolution="Set database.final_sync: full in the playbook.",
            )
    before = [f"ALTER TABLE {fk['table']} DROP CONSTRAINT {fk['name']}" for fk in fks]
    before += [f"ALTER TABLE {name} DROP CONSTRAINT {co['name']}" for co in doc["constraints"]]
    before += [f"DROP INDEX {ix['name']}" for ix in doc["indexes"] if ix["def"]]
    before += [f"ALTER TABLE {name} DISABLE TRIGGER {tg['name']}" for tg in doc["triggers"]]
    if doc.get("force_rls"):
        # COPY FROM refuses a table whose policies apply to the role (its owner, forced).
        before.append(f"ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY")
    linked = {name} | {fk["table"] for fk in fks} | {fk["other"] for fk in fks}
    return TablePlan(name, list(doc["columns"]), sorted(linked), before, _rebuild(doc, fks))


def _rebuild(doc: dict[str, Any], fks: list[dict[str, Any]]) -> list[str]:
    name = doc["name"]
    after: list[str] = []
    for co in doc["constraints"]:
        after.append(f"ALTER TABLE {name} ADD CONSTRAINT {co['name']} {co['def']}")
        if co["comment"] is not None:
            after.append(
                f"COMMENT ON CONSTRAINT {co['name']} ON {name} IS {_literal(co['comment'])}"
            )
    for ix in doc["indexes"]:
        if ix["def"]:
            after.append(ix["def"])
            if ix["comment"] is not None:
                after.append(f"COMMENT ON INDEX {ix['name']} IS {_literal(ix['comment'])}")
        if ix["clustered"]:
            after.append(f"ALTER TABLE {name} CLUSTER ON {ix['short']}")
        if ix["replident"]:
            after.append(f"ALTER TABLE {name} REPLICA IDENTITY USING INDEX {ix['short']}")
    for fk in fks:
        definition = fk["def"] if fk["def"].endswith("NOT VALID") else fk["def"] + " NOT VALID"
        after.append(f"ALTER TABLE {fk['table']} ADD CONSTRAINT {fk['name']} {definition}")
        if fk["comment"] is not None:
            after.append(
                f"COMMENT ON CONSTRAINT {fk['name']} ON {fk['table']} IS {_literal(fk['comment'])}"
            )
    for tg in doc["triggers"]:
        mode = "ENABLE ALWAYS" if tg["always"] else "ENABLE"
        after.append(f"ALTER TABLE {name} {mode} TRIGGER {tg['name']}")
    if doc.get("force_rls"):
        after.append(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
    return after


def pipeline_argv(plan: TablePlan, source: ConnInfo, target: ConnInfo) -> list[str]:
    """``bash -c``: ``{ BEFORE; psql <source> -c 'COPY ... TO STDOUT' && AFTER+COMMIT; } |
    psql <target> -f -``.

    The target psql reads one script: BEGIN, the drops, TRUNCATE and ``COPY ... FROM STDIN``,
    whose rows follow inline (psql reads COPY data from the script's own stream up to ``\\.``;
    psql(1), COPY), then the rebuilds and COMMIT. ``\\.``, the rebuilds and COMMIT are written
    only once the source psql has exited 0: a source failing at any point (before its first row
    or in the middle) leaves the target's transaction without a COMMIT, rolled back when the
    session ends. (With ``\\copy ... FROM pstdin`` the end of a cut stream would look like the
    end of the data, and the table would be committed short.) A failure on the target stops its
    psql (ON_ERROR_STOP), which rolls back too.

    Values reach the two psqls through the child's environment (CUTOVER_SRC_*/CUTOVER_DST_*,
    see :func:`pipeline_env`); argv holds the variables' names and the SQL (catalog names)."""
    columns = f" ({', '.join(plan.columns)})" if plan.columns else ""
    script = pipe_script(source, target, '-c "$1"')
    before = [
        "BEGIN",
        f"LOCK TABLE {', '.join(plan.locks)} IN ACCESS EXCLUSIVE MODE",
        *plan.before,
        f"TRUNCATE ONLY {plan.name}",
        f"COPY {plan.name}{columns} FROM STDIN",
    ]
    after = [*plan.after, "COMMIT"]
    return [
        "bash",
        "-c",
        script,
        "cutover-copy",
        f"COPY {plan.name}{columns} TO STDOUT",
        "".join(f"{statement};\n" for statement in before).rstrip("\n"),
        "".join(f"{statement};\n" for statement in after).rstrip("\n"),
    ]


def pipe_script(source: ConnInfo, target: ConnInfo, source_args: str) -> str:
    """The ``bash -c`` script of :func:`pipeline_argv`: ``$2`` (the target's script up to its
    ``COPY ... FROM STDIN``), the source psql's output run with ``source_args`` (shell words,
    e.g. ``-c "$1"``), then ``\\.`` and ``$3`` only once that psql exited 0, all piped into
    the target psql. Also used by cutover/adapters/pgapply.py (several ``-c`` on the source)."""
    src = " ".join(f'{k}="$CUTOVER_SRC_{k}"' for k in _conn_env(source))
    dst = " ".join(f'{k}="$CUTOVER_DST_{k}"' for k in _conn_env(target))
    psql = " ".join(PSQL)
    return (
        "set -o pipefail; unset " + " ".join(_LIBPQ_VARS) + "; "
        f'{{ printf \'%s\\n\' "$2" && {src} {psql} {source_args} '
        f'&& printf \'\\\\.\\n%s\\n\' "$3"; }} '
        f"| {dst} {psql} -f -"
    )


# row_security=off: a query that row-level security policies would filter fails instead (as in
# pg_dump and pg_restore, which set it): ``COPY table TO`` of a table whose policies apply to the
# role (FORCE ROW LEVEL SECURITY, or a role that is not the owner) would otherwise return only
# the rows the policies show, and a short table would be committed on the target.
ROW_SECURITY_OFF = " -c row_security=off"


def _conn_env(conn: ConnInfo) -> dict[str, str]:
    return {
        **conn.env(),
        "PGOPTIONS": STABLE_TEXT + ROW_SECURITY_OFF,
        "PGCLIENTENCODING": "UTF8",
    }


def pipeline_env(source: ConnInfo, target: ConnInfo) -> dict[str, str]:
    env = {f"CUTOVER_SRC_{k}": v for k, v in _conn_env(source).items()}
    env.update({f"CUTOVER_DST_{k}": v for k, v in _conn_env(target).items()})
    return env


class TableCopier:
    """copy_tables' moving parts (see :func:`copy_tables`)."""

    def __init__(
        self, runner: Runner, masker: SecretMasker, source: ConnInfo, target: ConnInfo
    ) -> None:
        self.runner = runner
        self.postgres = PostgresAdapter(runner, masker)
        self.source = source
        self.target = target
        masker.add(source.password)
        masker.add(target.password)

    def query(self, conn: ConnInfo, sql: str, tables: Sequence[str]) -> list[list[str]]:
        # The SQL's only placeholder is {tables}; the rest of it has no braces but JSON's.
        return self.postgres.psql(conn, sql.replace("{tables}", _array(tables)))

    def plans(self, tables: Sequence[str]) -> list[TablePlan]:
        docs = {
            doc["name"]: doc
            for doc in (json.loads(r[0]) for r in self.query(self.target, TARGET_SQL, tables))
        }
        missing = sorted(set(tables) - set(docs))
        if missing:
            raise CutoverError(
                "not plain tables on the Convox database: " + ", ".join(missing),
                resolution="The schemas differ: set database.final_sync: full, or run "
                "`cutover run --from final-sync` with it.",
            )
        return [plan_table(docs[t]) for t in tables]

    def sizes(self, tables: Sequence[str]) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.query(self.source, SOURCE_SIZES_SQL, tables)}

    def copy_one(self, plan: TablePlan, timeout: float) -> float:
        started = time.monotonic()
        self.runner.run(
            pipeline_argv(plan, self.source, self.target),
            env=pipeline_env(self.source, self.target),
            timeout=timeout,
        )
        return time.monotonic() - started

    def validate_fks(self, jobs: int, timeout: float) -> int:
        on_source = {
            (r[0], r[1])
            for r in self.postgres.psql(self.source, VALIDATED_FKS_SQL.format(validated="true"))
        }
        pending = [
            (r[0], r[1])
            for r in self.postgres.psql(self.target, VALIDATED_FKS_SQL.format(validated="false"))
            if (r[0], r[1]) in on_source
        ]
        statements = [f"ALTER TABLE {t} VALIDATE CONSTRAINT {c};" for t, c in pending]
        _parallel(
            jobs,
            [partial(self.postgres.psql, self.target, s, timeout=timeout) for s in statements],
        )
        return len(statements)

    def copy_sequences(self, timeout: float) -> int:
        names = [r[0] for r in self.postgres.psql(self.source, SEQUENCES_SQL)]
        if not names:
            return 0
        reads = "\nUNION ALL\n".join(
            # Names come from pg_sequences through quote_ident: no user input reaches the SQL.
            f"SELECT {_literal(n)}, last_value, is_called FROM {n}"  # noqa: S608
            for n in names
        )
        rows = self.postgres.psql(self.source, reads + ";", timeout=timeout)
        sets = "\n".join(
            f"SELECT pg_catalog.setval({_literal(r[0])}::regclass, {int(r[1])}, "
            f"{'true' if r[2] == 't' else 'false'});"
            for r in rows
        )
        self.postgres.psql(self.target, f"BEGIN;\n{sets}\nCOMMIT;", timeout=timeout)
        return len(rows)


def copy_tables(
    runner: Runner,
    masker: SecretMasker,
    source: ConnInfo,
    target: ConnInfo,
    tables: Sequence[str],
    *,
    jobs: int,
    timeout: float,
    progress: Callable[[CopyProgress], None] | None = None,
) -> CopyResult:
    """Replace each of ``tables`` (quoted ``schema.table`` names, as pgchanges gives them) on
    ``target`` with ``source``'s rows, up to ``jobs`` at a time; then validate the FKs left NOT
    VALID and copy every sequence. Raises CutoverError naming the tables that failed (each of
    them left as it was; the others are copied)."""
    started = time.monotonic()
    copier = TableCopier(runner, masker, source, target)
    plans = copier.plans(list(tables)) if tables else []
    sizes = copier.sizes(list(tables)) if tables else {}
    done: dict[str, float] = {}
    failed: dict[str, str] = {}
    bytes_done = 0

    lock = threading.Lock()

    def one(plan: TablePlan) -> None:
        nonlocal bytes_done
        try:
            seconds = copier.copy_one(plan, timeout)
        except CommandError as exc:
            lines = exc.stderr_tail.strip().splitlines()
            errors = [ln.strip() for ln in lines if "ERROR:" in ln] or lines[-1:] or [exc.brief]
            with lock:
                failed[plan.name] = errors[0]
            return
        with lock:
            done[plan.name] = seconds
            bytes_done += sizes.get(plan.name, 0)
            if progress is not None:
                progress(CopyProgress(len(done), len(plans), bytes_done))

    if progress is not None:
        progress(CopyProgress(0, len(plans), 0))
    _parallel(jobs, [partial(one, p) for p in plans])
    if failed:
        raise CutoverError(
            f"{len(failed)} of {len(plans)} table(s) could not be copied; each of them is as it "
            "was before (its transaction rolled back)",
            details="\n".join(f"  {t}: {masker.mask(why)}" for t, why in sorted(failed.items())),
            resolution="Fix the cause and run the final sync again: cutover run --from final-sync",
        )
    copier.validate_fks(jobs, timeout)
    sequences = copier.copy_sequences(timeout)
    return CopyResult(
        tables=len(done),
        bytes=bytes_done,
        seconds=time.monotonic() - started,
        sequences=sequences,
        table_seconds=done,
    )


def _parallel(jobs: int, calls: Sequence[Callable[[], Any]]) -> None:
    """Run ``calls`` on up to ``jobs`` threads; re-raise the first exception once they stop."""
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures: list[Future[Any]] = [pool.submit(c) for c in calls]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            # On a worker's failure or an interrupt (Ctrl-C reaches this thread): start no
            # queued call; the executor's exit then waits for the running ones only.
            for f in futures:
                f.cancel()
    for f in futures:
        if not f.cancelled() and f.exception() is not None:
            raise f.exception()  # type: ignore[misc]
