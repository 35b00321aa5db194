"""Restoring a schema or a whole dump into the (staging) Convox database: extensions the
target's role may not create left out of a filtered ``pg_restore --list`` (``--use-list``),
always ``--no-owner --no-acl``; private (0600/0700) files for the dump and its list. Used by the
``direct`` copy (cutover/adapters/pgcopy.py) and the ``backup`` method (cutover/steps/data.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.secrets import SecretMasker

# pg_restore --list lines (pg_backup_archiver.c PrintTOCSummary):
#   "<dumpId>; <tableoid> <oid> <desc> <namespace> <tag> <owner>"
_TOC_EXTENSION = re.compile(r"^\d+; \d+ \d+ EXTENSION - (\S+)")
_TOC_EXT_COMMENT = re.compile(r"^\d+; \d+ \d+ COMMENT - EXTENSION (\S+)")


# -- extensions the target may not create -----------------------------------------------------
def extensions_to_skip(
    pg: PostgresAdapter,
    source: ConnInfo,
    target: ConnInfo,
    skip: Sequence[str],
    installed: Sequence[str] | None = None,
) -> list[str]:
    """Those of ``skip`` installed on the source that the target's role cannot create: not
    available there, or neither superuser nor a trusted extension (PostgreSQL 13+ lets a
    database owner create trusted ones)."""
    if not skip:
        return []
    present = set(pg.extensions(source) if installed is None else installed)
    wanted = [name for name in skip if name in present]
    if not wanted:
        return []
    rows = pg.psql(
        target,
        "SELECT 'super', rolsuper::text FROM pg_catalog.pg_roles WHERE rolname = current_user\n"
        "UNION ALL SELECT name, bool_or(trusted)::text "
        "FROM pg_catalog.pg_available_extension_versions GROUP BY name;",
    )
    facts = {row[0]: row[1] == "true" for row in rows if len(row) == 2}
    superuser = facts.pop("super", False)
    return [n for n in wanted if n not in facts or not (superuser or facts[n])]


def filter_list(listing: str, skip: Sequence[str]) -> str:
    """A ``pg_restore --list`` without the extensions in ``skip`` (and their comments), and
    without cutover's own change capture on Heroku (schema ``_cutover``, its objects and the
    ``cutover_capture*`` triggers, issue 13): the Convox copy never carries them."""
    from cutover.adapters.pgcapture import is_capture_toc_line  # noqa: PLC0415 - no cycle at load

    keep = []
    for line in listing.splitlines():
        if is_capture_toc_line(line):
            keep.append(";" + line)
            continue
        match = _TOC_EXTENSION.match(line) or _TOC_EXT_COMMENT.match(line)
        if match and match.group(1) in skip:
            keep.append(";" + line)  # a comment line: pg_restore -L skips it
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def private_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))  # 0700 (tempfile.mkdtemp)


def private_file(path: Path, text: str = "") -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def restore_list(runner: Runner, dump: Path, skip: Sequence[str], timeout: float) -> Path:
    """``pg_restore --list`` of ``dump`` filtered by ``skip``, written 0600 beside it."""
    listing = runner.run(["pg_restore", "--list", str(dump)], timeout=timeout).stdout
    return private_file(dump.with_suffix(".list"), filter_list(listing, skip))


def restore_argv(dump: Path, listfile: Path, dbname: str, jobs: int, *extra: str) -> list[str]:
    return [
        "pg_restore",
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        *extra,
        "--jobs",
        str(max(1, jobs)),
        "--use-list",
        str(listfile),
        "--dbname",
        dbname,
        str(dump),
    ]


# -- the backup method's restore into staging -------------------------------------------------
def restore_dump(
    runner: Runner,
    masker: SecretMasker,
    dump: Path,
    target: ConnInfo,
    *,
    jobs: int,
    skipped: Sequence[str],
    timeout: float,
) -> int:
    """Restore a downloaded custom-format dump into the empty database ``target`` without the
    ``skipped`` extensions; return the number of entries restored."""
    masker.add(target.password)
    listfile = restore_list(runner, dump, skipped, timeout)
    entries = [
        ln for ln in listfile.read_text(encoding="utf-8").splitlines() if ln and ln[0] != ";"
    ]
    if not entries:
        raise CutoverError(f"the dump {dump.name} holds no objects")
    try:
        runner.run(
            restore_argv(dump, listfile, target.dbname, jobs), env=target.env(), timeout=timeout
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            listfile.unlink()
    return len(entries)
