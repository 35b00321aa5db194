"""Schema definitions compared object by object: ``pg_dump --schema-only --no-owner --no-acl``
of each side, normalised and split into objects.

pg_dump's plain format precedes every object with a header comment
``-- Name: X; Type: T; Schema: S; Owner: O`` (``_printTocEntry`` in
src/bin/pg_dump/pg_backup_archiver.c, PostgreSQL 15: ``"-- %sName: %s; Type: %s; Schema: %s;
Owner: %s"``, where the prefix is empty for definitions and "Data for " for data). The text
up to the next header is that object's definition. Normalising drops what differs between two
servers holding the same schema: comment lines (the headers themselves, the dump's banner with
its server version), the ``SET`` lines and ``set_config`` calls pg_dump writes (its own
settings only), and blank lines. Extensions are left to the extension comparison (it knows
versions and skip_extensions), and the database's own COMMENT (where cutover keeps its marker)
is never compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from cutover.adapters.pgcapture import is_capture_schema_header
from cutover.runcapture import MAX_SCHEMA_BYTES
from cutover.runner import Runner
from cutover.secrets import SecretMasker

_HEADER = re.compile(r"^-- (?:Data for )?Name: (.*); Type: ([^;]*); Schema: ([^;]*);")
# pg_dump's own session lines, and only those: a function body's ``SET n = n + 1;`` line (an
# UPDATE) is the app's. The names are the ones pg_dump sets (setup_connection and
# _doSetFixedOutputState in pg_backup_archiver.c; default_tablespace and
# default_table_access_method before an object, emitted only when they change, so their place
# depends on the objects around); ``\\restrict``/``\\unrestrict`` open and close newer dumps.
_PG_DUMP_SETTINGS = (
    "statement_timeout|lock_timeout|idle_in_transaction_session_timeout|transaction_timeout"
    "|client_encoding|standard_conforming_strings|check_function_bodies|xmloption"
    "|client_min_messages|row_security|default_tablespace|default_table_access_method"
    "|default_with_oids"
)
_DROP = re.compile(
    rf"^(SET (?:{_PG_DUMP_SETTINGS}) = .*;$|SELECT pg_catalog\.set_config\(|--|\\(?:un)?restrict )"
)


def dump_argv() -> list[str]:
    """Schema only, no ownership or privileges (their roles differ by design on Convox)."""
    return ["pg_dump", "--schema-only", "--no-owner", "--no-acl", "--no-password"]


def schema_dump(runner: Runner, masker: SecretMasker, env: dict[str, str], timeout: float) -> str:
    masker.add(env.get("PGPASSWORD"))
    with runner.stdout_limit(MAX_SCHEMA_BYTES):
        return runner.run(dump_argv(), env=env, timeout=timeout).stdout


def split_objects(text: str, skip_extensions: Iterable[str] = ()) -> dict[str, str]:
    """``{"TYPE schema.name": normalised definition}`` for every object in a plain schema dump.

    Skipped: EXTENSION entries and comments on extensions, large objects (both compared
    elsewhere), every object whose header names one of ``skip_extensions``, the database's
    COMMENT, and cutover's change capture on Heroku (schema ``_cutover``, its objects and the
    ``cutover_capture*`` triggers: never copied, issue 13).
    """
    skipped = set(skip_extensions)
    objects: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            name, kind, schema = header.group(1), header.group(2), header.group(3)
            key = f"{kind} {name}" if schema == "-" else f"{kind} {schema}.{name}"
            if _ignored(kind, name, skipped) or is_capture_schema_header(name, kind, schema):
                current = None
                continue
            current = objects.setdefault(key, [])
            continue
        if current is None or not line.strip() or _DROP.match(line):
            continue
        current.append(line.rstrip())
    return {key: "\n".join(lines) for key, lines in objects.items()}


def _ignored(kind: str, name: str, skipped: set[str]) -> bool:
    if kind == "EXTENSION" or (kind == "COMMENT" and name.startswith("EXTENSION ")):
        return True
    if kind.startswith("BLOB") or name.startswith("LARGE OBJECT "):
        return True  # large objects: compared by content (adapters/pgverify.py)
    if kind in ("COMMENT", "DATABASE", "DATABASE PROPERTIES") and name.startswith("DATABASE"):
        return True  # the database comment holds cutover's marker; never the app's schema
    return any(name == ext or name.endswith(f" {ext}") for ext in skipped)


def compare_objects(source: dict[str, str], target: dict[str, str]) -> list[str]:
    """One line per differing object, naming it (and the first differing line)."""
    problems = []
    for key in sorted(set(source) | set(target)):
        if key not in target:
            problems.append(f"schema: {key}: missing on Convox")
        elif key not in source:
            problems.append(f"schema: {key}: only on Convox")
        elif source[key] != target[key]:
            problems.append(
                f"schema: {key}: definition differs ({_first_difference(source[key], target[key])})"
            )
    return problems


def _first_difference(a: str, b: str) -> str:
    left, right = a.splitlines(), b.splitlines()
    for x, y in zip(_padded(left, len(right)), _padded(right, len(left)), strict=True):
        if x != y:
            return f"Heroku: {x.strip()[:100]!r}, Convox: {y.strip()[:100]!r}"
    return "whitespace"


def _padded(lines: Sequence[str], other: int) -> list[str]:
    return [*lines, *["(end)"] * max(0, other - len(lines))]
