"""Replace tables on Convox with Heroku's NEW definition and rows, all in one transaction: the
changed-rows final sync's answer to a schema change on Heroku (issue 13; which tables:
cutover/adapters/pgcapture_ddl.py). The plain views depending on them (which the DROP ...
CASCADE takes along) are re-created from Heroku's definitions in the same transaction.

Heroku side, one snapshot (a holder session, as in cutover/adapters/pgapply.py): BEGIN
REPEATABLE READ and ``pg_export_snapshot()``; ``pg_dump --schema-only --section=pre-data`` and
``--section=post-data`` with ``--snapshot=<id> --strict-names -t <table>...`` (pg_dump(1): with
``-t`` a table's indexes, constraints, triggers, rules, policies, comments and owned sequences
come with it), then per table ``COPY (columns) TO STDOUT`` in that snapshot. The capture's
triggers (pgcapture_filters.is_capture_schema_header) and every ``FK CONSTRAINT`` entry are
left out of the dump: foreign keys touching the tables, from them and to them (a DROP ...
CASCADE drops those of the other tables too), are re-created from Heroku's catalog ``NOT
VALID`` (the tables they link may not hold the final rows yet); the final round of
pgapply.apply_changes validates every foreign key Heroku has validated.

Convox side, ONE psql session reading one script (so one transaction: a failure anywhere, or
the end of the stream before COMMIT, rolls everything back; the tables stay as they were):
``BEGIN; DROP TABLE IF EXISTS <old and new names> CASCADE;`` ``DROP SCHEMA`` (RESTRICT) of a
schema those were in that Heroku no longer has (renamed or dropped there), ``CREATE SCHEMA``
(with Heroku's comment) of one Convox lacks, the pre-data, each table's ``COPY
... FROM STDIN`` with its rows inline, the post-data, the foreign keys, the post-data comments,
``COMMIT``. The rows pass from one psql to the other at the OS level (a bash pipeline, as in
cutover/adapters/pgtables.py), ``COMMIT`` written only once every source COPY exited 0.

Passwords travel only in the children's environment (pgtables.pipeline_env).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cutover.adapters.pgcapture import query, text_array
from cutover.adapters.pgcapture_filters import is_capture_schema_header
from cutover.adapters.pgcopy import SNAPSHOT_ID, ask
from cutover.adapters.pgparts import SOURCE_SETTINGS
from cutover.adapters.pgrestore import private_dir, private_file
from cutover.adapters.pgtables import _LIBPQ_VARS, PSQL, _conn_env, pipeline_env
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError, UnexpectedOutput
from cutover.runcapture import MAX_SCHEMA_BYTES
from cutover.runner import Runner
from cutover.runpipes import Session
from cutover.secrets import SecretMasker

# pg_dump plain-format entry header (_printTocEntry, src/bin/pg_dump/pg_backup_archiver.c,
# PostgreSQL 15): "-- Name: X; Type: T; Schema: S; Owner: O".
_HEADER = re.compile(r"^-- Name: (.*); Type: ([^;]*); Schema: ([^;]*);")
# psql meta-commands newer pg_dumps wrap a dump in (\restrict KEY ... \unrestrict KEY): in
# restricted mode psql refuses other meta-commands; the script here is cutover's own.
_RESTRICT = re.compile(r"^\\(?:un)?restrict ")

# Non-generated columns of each table (COPY's column list), in order.
COLUMNS_SQL = r"""SELECT json_build_object(
  'name', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
  'schema', quote_ident(n.nspname),
  'columns', (SELECT coalesce(json_agg(quote_ident(a.attname) ORDER BY a.attnum), '[]')
              FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated = ''))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({names});"""

# Every foreign key from or to {names} (search_path = pg_catalog: definitions fully qualified).
FKS_SQL = r"""SELECT json_build_object(
  'table', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
  'name', quote_ident(co.conname), 'def', pg_catalog.pg_get_constraintdef(co.oid),
  'comment', pg_catalog.obj_description(co.oid, 'pg_constraint'))
FROM pg_catalog.pg_constraint co
JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE co.contype = 'f' AND (co.conrelid = ANY ({oids}) OR co.confrelid = ANY ({oids}))
ORDER BY c.relname, co.conname;"""

# The schemas of {names} (tables and views) on Heroku, with their comments: the script creates
# the ones the Convox database lacks (a table or view in a schema new since the copy).
SCHEMAS_SQL = r"""SELECT DISTINCT json_build_object(
  'schema', quote_ident(n.nspname),
  'comment', pg_catalog.obj_description(n.oid, 'pg_namespace'))::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({names});"""

# Which of the schemas {schemas} exist (on the side it runs on).
HAVE_SCHEMAS_SQL = r"""SELECT quote_ident(nspname) FROM pg_catalog.pg_namespace
WHERE quote_ident(nspname) = ANY ({schemas}) ORDER BY 1;"""

# The schemas the tables {names} are in on the Convox database: one Heroku no longer has (a
# schema renamed or dropped there) is dropped with them, RESTRICT (anything else left in it makes
# the transaction fail: the full copy instead).
GONE_SCHEMAS_SQL = r"""SELECT DISTINCT quote_ident(n.nspname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY ({names}) ORDER BY 1;"""

OIDS = (
    "ARRAY(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
    "ON n.oid = c.relnamespace WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
    "= ANY ({names}))"
)


@dataclass(frozen=True)
class ReplaceResult:
    tables: tuple[str, ...]  # created from Heroku's definition and rows
    views: tuple[str, ...]  # re-created from Heroku's definition (they depend on the tables)
    dropped: tuple[str, ...]  # dropped on Convox (gone on Heroku)
    foreign_keys: int  # re-created NOT VALID
    position: str  # pg_current_snapshot() of the snapshot read
    seconds: float


@dataclass(frozen=True)
class Entry:
    type: str
    name: str
    schema: str
    text: str


def split_dump(text: str) -> tuple[str, list[Entry]]:
    """(pg_dump's preamble, its entries) of a plain-format dump."""
    preamble: list[str] = []
    entries: list[Entry] = []
    current: tuple[str, str, str] | None = None
    lines: list[str] = []

    def flush() -> None:
        if current is None:
            preamble.extend(lines)
        else:
            entries.append(Entry(current[1], current[0], current[2], "\n".join(lines)))

    for line in text.splitlines():
        if _RESTRICT.match(line):
            continue
        header = _HEADER.match(line)
        if header:
            flush()
            current, lines = (header.group(1), header.group(2), header.group(3)), []
        lines.append(line)
    flush()
    return "\n".join(preamble), entries


def keep(entry: Entry) -> bool:
    """Not the capture's (its triggers call functions Convox does not have), not a foreign key
    (re-created from the catalog, NOT VALID)."""
    if is_capture_schema_header(entry.name, entry.type, entry.schema):
        return False
    return entry.type != "FK CONSTRAINT"


def dump_argv(section: str, snapshot: str, tables: Sequence[str]) -> list[str]:
    """pg_dump(1): --section, --snapshot, --strict-names (each -t must match), -t per table."""
    argv = [
        "pg_dump", "--schema-only", f"--section={section}", "--no-owner", "--no-acl",
        "--no-password", "--strict-names", f"--snapshot={snapshot}",
    ]  # fmt: skip
    for table in tables:
        argv += ["-t", table]
    return argv


def fk_statements(fks: list[dict[str, Any]]) -> list[str]:
    out = []
    for fk in {(f["table"], f["name"]): f for f in fks}.values():
        definition = fk["def"] if fk["def"].endswith("NOT VALID") else fk["def"] + " NOT VALID"
        out += [
            f"ALTER TABLE {fk['table']} DROP CONSTRAINT IF EXISTS {fk['name']}",
            f"ALTER TABLE {fk['table']} ADD CONSTRAINT {fk['name']} {definition}",
        ]
        if fk["comment"] is not None:
            comment = "'" + fk["comment"].replace("'", "''") + "'"
            out.append(f"COMMENT ON CONSTRAINT {fk['name']} ON {fk['table']} IS {comment}")
    return out


def schema_statements(schemas: dict[str, str | None], on_convox: set[str]) -> list[str]:
    """CREATE SCHEMA (and its comment, as Heroku has it) for the schemas Convox lacks."""
    out = []
    for schema in sorted(set(schemas) - on_convox):
        out.append(f"CREATE SCHEMA {schema}")
        comment = schemas[schema]
        if comment is not None:
            out.append(f"COMMENT ON SCHEMA {schema} IS '" + comment.replace("'", "''") + "'")
    return out


def copy_pipeline(
    source: ConnInfo, target: ConnInfo, snapshot: str, copies: list[tuple[str, str]]
) -> str:
    """The bash script: the file ``$1`` (the script up to the first ``COPY ... FROM STDIN``),
    then per (source COPY, text after its ``\\.``) argument pair the source psql's rows in
    ``snapshot``, then the file ``$2`` (the rest and COMMIT), all piped into one target psql.
    What follows a table's rows is written only once that source psql exited 0. The scripts
    travel in 0600 files, not argv: a schema can outgrow one argument's limit (128 KiB on
    Linux, MAX_ARG_STRLEN)."""
    prelude = [
        *SOURCE_SETTINGS,
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        f"SET TRANSACTION SNAPSHOT '{snapshot}'",
    ]
    words = " ".join(f"-c {shlex.quote(sql)}" for sql in prelude)
    src = " ".join(f'{k}="$CUTOVER_SRC_{k}"' for k in _conn_env(source))
    dst = " ".join(f'{k}="$CUTOVER_DST_{k}"' for k in _conn_env(target))
    psql = " ".join(PSQL)
    return (
        "set -o pipefail; unset " + " ".join(_LIBPQ_VARS) + "; "
        'head="$1"; tail="$2"; shift 2; '
        '{ cat "$head" || exit 1; '
        'while [ "$#" -ge 2 ]; do '
        f'{src} {psql} {words} -c "$1" -c COMMIT || exit 1; '
        "printf '\\\\.\\n%s\\n' \"$2\" || exit 1; shift 2; done; "
        'cat "$tail" || exit 1; } '
        f"| {dst} {psql} -f -"
    )


def replace_tables(
    runner: Runner,
    masker: SecretMasker,
    pg: PostgresAdapter,
    source: ConnInfo,
    target: ConnInfo,
    *,
    replace: Sequence[str],
    drop: Sequence[str],
    timeout: float,
    views: Sequence[str] = (),
) -> ReplaceResult:
    """Drop ``drop`` (and ``replace``) on ``target``, create ``replace`` from Heroku's definitions
    and rows, in one transaction (see the module docstring). CutoverError names the tables when
    it fails (nothing changed on Convox)."""
    started = time.monotonic()
    masker.add(source.password)
    masker.add(target.password)
    tables = sorted(set(replace))
    views = sorted(set(views))
    gone = sorted(set(drop) | set(tables))
    with runner.session(
        ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"], env=source.env()
    ) as holder:
        holder.write(
            "".join(f"{sql};\n" for sql in SOURCE_SETTINGS)
            + "SET search_path = pg_catalog;\n"
            + "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
        )
        snapshot, position = ask(
            holder, "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_current_snapshot();"
        )[0]
        if not SNAPSHOT_ID.match(snapshot):
            raise UnexpectedOutput(f"pg_export_snapshot() returned {snapshot[:40]!r}")
        names = text_array(tables)
        docs = [json.loads(r[0]) for r in ask(holder, COLUMNS_SQL.replace("{names}", names))]
        fks = [
            json.loads(r[0])
            for r in ask(holder, FKS_SQL.replace("{oids}", OIDS).replace("{names}", names))
        ] if tables else []  # fmt: skip
        schema_sql = _schema_script(pg, holder, target, [*tables, *views], gone)
        missing = sorted(set(tables) - {d["name"] for d in docs})
        if missing:
            raise CutoverError(
                "not plain tables on Heroku's database: " + ", ".join(missing),
                resolution="Set database.final_sync: full, or run `cutover run --from "
                "final-sync` again.",
            )
        pre = post = ""
        if tables or views:
            pre = _dump(runner, source, "pre-data", snapshot, [*tables, *views], timeout)
            post = _dump(runner, source, "post-data", snapshot, [*tables, *views], timeout)
        head = [
            "BEGIN",
            *([f"DROP VIEW IF EXISTS {', '.join(views)} CASCADE"] if views else []),
            *([f"DROP TABLE IF EXISTS {', '.join(gone)} CASCADE"] if gone else []),
            *schema_sql,
        ]
        post_entries = _entries(post)
        tail = "\n".join(
            [
                *(e.text for e in post_entries if e.type != "COMMENT"),
                *(f"{s};" for s in fk_statements(fks)),
                *(e.text for e in post_entries if e.type == "COMMENT"),
                "COMMIT;",
            ]
        )
        script = "\n".join([*(f"{s};" for s in head), _pre_text(pre)])
        by_name = {d["name"]: d for d in docs}
        try:
            if tables:
                copies = []
                for i, name in enumerate(tables):
                    cols = by_name[name]["columns"]
                    columns = f" ({', '.join(cols)})" if cols else ""
                    after = _copy_in(tables[i + 1], by_name) if i + 1 < len(tables) else ""
                    copies.append((f"COPY {name}{columns} TO STDOUT", after))
                folder = private_dir("cutover-replace-")
                try:
                    first = private_file(
                        folder / "head.sql", script + "\n" + _copy_in(tables[0], by_name) + "\n"
                    )
                    rest = private_file(folder / "tail.sql", tail + "\n")
                    runner.run(
                        [
                            "bash", "-c", copy_pipeline(source, target, snapshot, copies),
                            "cutover-replace", str(first), str(rest),
                            *(w for pair in copies for w in pair),
                        ],
                        env=pipeline_env(source, target),
                        timeout=timeout,
                    )  # fmt: skip
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
            else:
                query(pg, target, script + "\n" + tail, timeout=timeout)
        except CommandError as exc:
            lines = exc.stderr_tail.strip().splitlines()
            errors = [ln.strip() for ln in lines if "ERROR:" in ln] or lines[-1:] or [exc.brief]
            raise CutoverError(
                "could not replace the tables whose definition changed on Heroku ("
                + ", ".join(gone)
                + f"): {masker.mask(errors[0])}",
                details="One transaction: nothing changed on the Convox database.",
                resolution="Fix the cause, then run `cutover run --from final-sync` again.",
            ) from exc
        holder.close("COMMIT;\n")
    return ReplaceResult(
        tuple(tables),
        tuple(views),
        tuple(sorted(set(drop) - set(tables))),
        len(fks),
        position,
        time.monotonic() - started,
    )


def _schema_script(
    pg: PostgresAdapter, holder: Session, target: ConnInfo, names: list[str], gone: list[str]
) -> list[str]:
    """DROP SCHEMA of the Convox schemas of ``gone`` that Heroku no longer has (RESTRICT),
    then CREATE SCHEMA (with Heroku's comment) of the schemas of ``names`` Convox lacks."""
    schemas = {
        d["schema"]: d["comment"]
        for d in (
            json.loads(r[0]) for r in ask(holder, SCHEMAS_SQL.replace("{names}", text_array(names)))
        )
    }
    old = [r[0] for r in query(pg, target, GONE_SCHEMAS_SQL.replace("{names}", text_array(gone)))]
    on_heroku = {r[0] for r in ask(holder, HAVE_SCHEMAS_SQL.replace("{schemas}", text_array(old)))}
    have = HAVE_SCHEMAS_SQL.replace("{schemas}", text_array(sorted(schemas)))
    on_convox = {r[0] for r in query(pg, target, have)}
    return [
        *(f"DROP SCHEMA IF EXISTS {s}" for s in old if s not in on_heroku),
        *schema_statements(schemas, on_convox),
    ]


def _dump(
    runner: Runner,
    source: ConnInfo,
    section: str,
    snapshot: str,
    tables: Sequence[str],
    timeout: float,
) -> str:
    try:
        with runner.stdout_limit(MAX_SCHEMA_BYTES):
            return runner.run(
                dump_argv(section, snapshot, tables), env=source.env(), timeout=timeout
            ).stdout
    except CommandError as exc:
        raise CutoverError(
            f"pg_dump --section={section} of {', '.join(tables)} on Heroku failed: {exc.brief}",
            details="Nothing was written to the Convox database.",
            resolution="Fix the cause, then run `cutover run --from final-sync` again.",
        ) from exc


def _entries(text: str) -> list[Entry]:
    return [e for e in split_dump(text)[1] if keep(e)] if text else []


def _pre_text(text: str) -> str:
    if not text:
        return ""
    preamble, entries = split_dump(text)
    return "\n".join([preamble, *(e.text for e in entries if keep(e))])


def _copy_in(name: str, by_name: dict[str, dict[str, Any]]) -> str:
    cols = by_name[name]["columns"]
    return f"COPY {name}{' (' + ', '.join(cols) + ')' if cols else ''} FROM STDIN;"
