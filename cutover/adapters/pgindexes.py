"""A table's indexes built as soon as its rows are in (the direct copy, cutover/adapters/pgcopy.py),
while other tables are still being copied, instead of all of them in one post-data pass after
the last copy (pgcopydb does the same: its "CREATE INDEX, CONSTRAINTS" run beside its COPY jobs).

Which entries: the schema dump's post-data ``INDEX`` entries and the ``CONSTRAINT`` entries of
primary keys, unique and exclusion constraints (the only ones that build an index), of ordinary
tables that are not partitions. Everything else stays in the final post-data pass: foreign keys
(they need the referenced table's key and rows), triggers, rules, comments, partition indexes
(``INDEX ATTACH``), and any entry this module does not recognise.

They are found by catalog id, never by name: a ``pg_restore --list`` line is
``<dumpId>; <catalog tableoid> <oid> <desc> <namespace> <tag> <owner>``
(pg_backup_archiver.c PrintTOCSummary), and pg_dump gives an index entry the index's pg_class
row and a constraint entry its pg_constraint row (pg_dump.c getIndexes: ``t.tableoid, t.oid``
and ``c.tableoid AS contableoid, c.oid AS conoid``). :data:`INDEXES_SQL` reads the same ids
from the source's catalog in the copy's snapshot.

Each table's entries are restored by ``pg_restore --section=post-data --use-list <its entries>``
(so pg_restore itself writes the statements, with pg_dump's own settings) once its last part is
copied, and the final pass runs the rest with those lines commented out (an entry never handed
out, e.g. of a table the copy did not list, stays in it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cutover.adapters.pgrestore import private_file, restore_argv
from cutover.runner import Runner

# Per table (quoted as TABLES_SQL quotes it): the oid of every index that backs no constraint,
# and of every primary key, unique or exclusion constraint.
INDEXES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), i.indexrelid
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                  WHERE k.conindid = i.indexrelid AND k.conrelid = c.oid
                    AND k.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), k.oid
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype IN ('p', 'u', 'x') AND c.relkind = 'r' AND NOT c.relispartition;
"""

_ENTRY = re.compile(r"^\d+; \d+ (\d+) (INDEX|CONSTRAINT) ")


@dataclass
class PostData:
    """A post-data list whose tables' index entries are handed out one table at a time."""

    listing: str
    by_table: dict[str, list[str]] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)

    def take(self, tables: Iterable[str]) -> list[str]:
        """The index entries of ``tables`` not handed out yet (each handed out once)."""
        out: list[str] = []
        for table in tables:
            out += self.by_table.pop(table, [])
        self.taken.update(out)
        return out

    def rest(self) -> str:
        """The listing without the entries handed out (commented: pg_restore -L skips them)."""
        lines = self.listing.splitlines()
        return "\n".join(";" + ln if ln in self.taken else ln for ln in lines) + "\n"


def split_post_data(listing: str, rows: Iterable[list[str]]) -> PostData:
    """Each table's index entries in a (filtered) ``pg_restore --list``, by :data:`INDEXES_SQL`'s
    ``rows`` (table, oid)."""
    owner = {int(row[1]): row[0] for row in rows if len(row) == 2 and row[1].isdigit()}
    split = PostData(listing)
    for line in listing.splitlines():
        match = _ENTRY.match(line)
        table = owner.get(int(match.group(1))) if match else None
        if table is not None:
            split.by_table.setdefault(table, []).append(line)
    return split


class IndexBuilds:
    """Restores a table's index entries (one ``pg_restore`` per batch of tables that finished
    together), ``jobs`` at once, beside the copies."""

    def __init__(
        self,
        runner: Runner,
        post: PostData,
        schema: Path,
        dbname: str,
        *,
        jobs: int,
        env: Mapping[str, str | None],
        timeout: float,
    ) -> None:
        self.runner, self.post, self.schema, self.dbname = runner, post, schema, dbname
        self.env, self.timeout = dict(env), timeout
        self.pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="index")
        self.builds: list[Future[object]] = []

    def tables_done(self, tables: list[str]) -> None:
        lines = self.post.take(tables)
        if not lines:
            return
        entries = private_file(
            self.schema.parent / f"index-{len(self.builds)}.list", "\n".join(lines) + "\n"
        )
        argv = restore_argv(self.schema, entries, self.dbname, 1, "--section=post-data")
        self.builds.append(
            self.pool.submit(self.runner.run, argv, env=self.env, timeout=self.timeout)
        )

    def wait(self) -> None:
        """Every build finished; the first failure raised."""
        for build in self.builds:
            build.result()

    def close(self) -> None:
        """Stop queued builds. A running one is not waited for: after a failure it ends with the
        staging database, which the caller drops."""
        self.pool.shutdown(wait=False, cancel_futures=True)
