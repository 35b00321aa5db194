"""Apply the changes captured on Heroku (cutover/adapters/pgcapture.py) to the Convox database:
one round of ``cutover catch-up`` or of the changed-rows final sync.

Why it is correct, in short. A round opens a snapshot-holding session on Heroku (the holder of
cutover/adapters/pgcopy.py): S, its snapshot, is the round's position. For every captured table,
the keys logged by transactions that are NOT visible in ``since`` but ARE visible in S (the
holder reads the log in S) are copied in batches, each a range of keys in key order (``jobs``
batches at once, of one table or several): each batch reads, in the exported snapshot S, the
source's row of each key (or its absence) and, in ONE transaction on the target, deletes those
keys and inserts the rows present. (A batch whose rows meet a unique value still held by a row
of another batch, or two batches that deadlock over one, give way: that table's keys are then
applied whole in one transaction, after the others.) After the round, for every key the
target holds the source's row as of S; keys not logged after ``since`` were already equal. A
transaction that took its log entry early but commits after S is not visible in S, so the next
round (``since`` = S) applies it: positions follow commit order. Applying a key again is
harmless, so a round interrupted anywhere (kill -9 included) is simply run again from the same
``since``: the target's marker says ``cutover:syncing ... capture=<since>`` from before the
first write until the round ends, then ``cutover:synced ... capture=<S>``; the position is
recorded on the target itself, and only after every write of the round committed.

Batches of at most pgapply_small.SMALL_KEYS keys are not piped: the holder reads their rows
(already in S) and one psql writes them on the target, each table in its own transaction with
the same script, beside the larger batches (cutover/adapters/pgapply_small.py; through pipes
again when that psql fails). The survey and the batches' ranges: pgapply_survey.py.

Tables truncated after ``since`` are copied whole by cutover/adapters/pgtables.py, which reads
them after S; keyless tables get their logged inserts, or are replaced in S, exactly once
(cutover/adapters/pgapply_rows.py), in the same pool as the batches; the final round also sets
every sequence. Outside the batches the target sees one psql session, asked before them and
after (cutover/adapters/pgapply_target.py).

On the target, a batch runs with ``session_replication_role = replica`` when its role may set
it (a superuser, as the Convox postgres resource's role is, or a role granted SET on it): no
trigger fires, foreign keys' included, so batches of related tables may land in any order. A
role that may not set it gets the fallback: its user triggers are disabled by name inside the
batch's transaction, and the foreign keys touching the table are dropped there and re-added NOT
VALID (the table owner may; no check and no cascade fires), their tables locked first in one
sorted order; the final round validates them (VALIDATE CONSTRAINT, as pgtables does). Foreign
keys inherited from a partitioned table cannot be dropped alone: the fallback refuses those.

Passwords reach the psqls only through their environment (pgtables.pipeline_env); argv holds
variable names and SQL built from catalog names.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from cutover.adapters import pgapply_rows, pgapply_small, pgapply_survey, pgstaging
from cutover.adapters.pgapply_rows import RowsJob
from cutover.adapters.pgapply_sql import (
    BATCH_PAGE_COST,
    Batch,
    batch_source_sql,
    batch_target_scripts,
    in_place,
    key_schemas_sql,
    search_path_sql,
)
from cutover.adapters.pgapply_target import (
    QUERY_TIMEOUT,
    Phases,
    finish,
    finish_script,
    marker_sql,
    parse_prepared,
    read_script,
    sequence_values,
    setval_statements,
)
from cutover.adapters.pgcapture import (
    CapturePlan,
    check_position,
)
from cutover.adapters.pgcopy import answer, ask, send
from cutover.adapters.pgparts import SOURCE_SETTINGS
from cutover.adapters.pgtables import (
    TableCopier,
    _parallel,
    copy_tables,
    pipe_script,
    pipeline_env,
)
from cutover.adapters.postgres import STABLE_TEXT, ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError, Interrupted, UnexpectedOutput
from cutover.runner import Runner
from cutover.runpipes import Session
from cutover.secrets import SecretMasker

_CAPTURE = re.compile(r" capture=(\S+)")
_BATCH_DONE = re.compile(r"^cutover-batch (\d+) (\d+)$", re.MULTILINE)
# A batch can meet a unique (or exclusion) constraint held by a row of the same table whose own
# key is in another batch (two rows swapped a unique value), or two batches of a table running
# at once can wait for each other on such a value (deadlock detected, one is cancelled): after
# the others, the whole table's keys in one transaction land the source's state at once.
_CONFLICT = re.compile(r"violates (unique|exclusion) constraint|deadlock detected")


@dataclass(frozen=True)
class ApplyProgress:
    keys_done: int
    keys_total: int
    tables_done: int
    tables_total: int


@dataclass(frozen=True)
class ApplyResult:
    since: str  # snapshot applied from
    position: str  # ... and through
    entries: int  # log rows consumed
    upserted: int  # rows written on the target (keyless tables' logged inserts included)
    deleted: int  # keys the source no longer has (removed from the target)
    tables: tuple[str, ...]  # tables touched by keyed apply, and keyless tables written
    whole: tuple[str, ...]  # tables copied whole after the round (truncated; uncaptured keyless)
    sequences: int  # sequences set
    seconds: float
    # (phase, seconds) in the order they ran: where a round's time went (the bench prints it)
    phases: tuple[tuple[str, float], ...] = ()
    # rows of keyless tables replaced whole in the round's snapshot (not in upserted)
    replaced: int = 0
    marker: str = ""  # the synced marker the round wrote on the target (its COMMENT)


def applied_position(
    pg: PostgresAdapter, target: ConnInfo, comment: str | None = None
) -> str | None:
    """The position in the target's marker (`` capture=<S>``), or None; ``comment``: just read."""
    comment = pgstaging.read_marker(pg, target)[2] if comment is None else comment
    match = _CAPTURE.search(comment)
    return check_position(match.group(1)) if match else None


@dataclass
class _Round:
    runner: Runner
    masker: SecretMasker
    pg: PostgresAdapter
    source: ConnInfo
    target: ConnInfo
    since: str
    snapshot: str
    position: str
    replica: bool
    timeout: float
    docs: dict[str, dict[str, Any]]
    progress: Callable[[ApplyProgress], None] | None
    keys_total: int
    tables_total: int
    key_schemas: tuple[str, ...]
    keys_done: int = 0
    tables_done: int = 0
    upserted: int = 0
    deleted: int = 0
    replaced: int = 0
    holder: Session | None = None  # the snapshot holder (reads the small batches' rows)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def argv(self, batch: Batch) -> list[str]:
        before, after = self.scripts(batch)
        doc = self.docs[batch.table.name]
        path = search_path_sql(self.key_schemas, local=False)
        source = [
            *SOURCE_SETTINGS,
            BATCH_PAGE_COST,
            *([path] if path else []),
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            f"SET TRANSACTION SNAPSHOT '{self.snapshot}'",
            batch_source_sql(batch, doc["columns"], self.since),
            "COMMIT",
        ]
        args = [word for sql in source for word in ("-c", sql)]
        script = pipe_script(self.source, self.target, '"${@:4}"')
        return ["bash", "-c", script, "cutover-apply", "", before, after, *args]

    def scripts(self, batch: Batch) -> tuple[str, str]:
        """The batch's target scripts (pgapply_sql.batch_target_scripts): in place when the
        table allows it (pgapply_sql.in_place)."""
        doc = self.docs[batch.table.name]
        return batch_target_scripts(
            batch.table, doc["columns"], doc["triggers"], self.replica, doc["fks"],
            self.key_schemas, in_place(batch.table, doc),
        )  # fmt: skip

    def run_batch(self, batch: Batch) -> tuple[int, int]:
        out = self.runner.run(
            self.argv(batch), env=pipeline_env(self.source, self.target), timeout=self.timeout
        ).stdout
        match = _BATCH_DONE.search(out)
        if not match:
            raise UnexpectedOutput(f"{batch.table.name}: the batch's psql printed no counts")
        return int(match.group(1)), int(match.group(2))

    def run_rows(self, job: RowsJob) -> None:
        """One keyless table (cutover/adapters/pgapply_rows.py), one transaction."""
        doc = self.docs[job.table.name]
        before, after = pgapply_rows.target_scripts(
            job, doc, self.replica, self.since, self.position
        )
        source = [
            *SOURCE_SETTINGS,
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            f"SET TRANSACTION SNAPSHOT '{self.snapshot}'",
            pgapply_rows.source_sql(job, doc["columns"]),
            "COMMIT",
        ]
        args = [word for sql in source for word in ("-c", sql)]
        script = pipe_script(self.source, self.target, '"${@:4}"')
        argv = ["bash", "-c", script, "cutover-apply", "", before, after, *args]
        try:
            out = self.runner.run(
                argv, env=pipeline_env(self.source, self.target), timeout=self.timeout
            ).stdout
        except CommandError as exc:
            raise self.failure(job.table.name, exc) from exc
        match = _BATCH_DONE.search(out)
        if not match:
            raise UnexpectedOutput(f"{job.table.name}: the rows' psql printed no count")
        with self.lock:
            if job.replace:
                self.replaced += int(match.group(1))
            else:
                self.upserted += int(match.group(1))
            self.keys_done += job.rows
            self.tables_done += 1
            self.report()

    def run_all(self, work: list[list[Batch]], jobs: int, rows: Sequence[RowsJob] = ()) -> None:
        """Every batch, up to ``jobs`` at once (batches of one table too: their keys differ),
        with the keyless tables' ``rows``; then each table whose batch met a conflict, whole, in
        one transaction."""
        left = {batches[0].table.name: len(batches) for batches in work}
        split = {name for name, n in left.items() if n > 1}
        conflicted: dict[str, int] = {}  # table -> keys of its batches that met a conflict
        # The small batches, read by the holder and written by one psql beside the others
        # (cutover/adapters/pgapply_small.py); through pipes only when that psql failed.
        small = [b[0] for b in work if len(b) == 1 and b[0].keys <= pgapply_small.SMALL_KEYS]
        work = [b for b in work if not (len(b) == 1 and b[0] in small)]
        together = self.start_small(small, left, conflicted)

        def one(batch: Batch) -> None:
            name = batch.table.name
            try:
                up, gone = self.run_batch(batch)
            except CommandError as exc:
                if name not in split or not _CONFLICT.search(exc.stderr_tail):
                    raise self.failure(name, exc) from exc
                with self.lock:
                    conflicted[name] = conflicted.get(name, 0) + batch.keys
                return
            self.count(up, gone, batch.keys)
            self.batch_done(left, name, conflicted)

        # Largest first (a keyless table replaced whole counts as the largest): the round ends
        # when its longest call does, so none of those starts last.
        sized: list[tuple[float, Callable[[], None]]] = [
            *((math.inf if j.replace else j.rows, partial(self.run_rows, j)) for j in rows),
            *((b.keys, partial(one, b)) for batches in work for b in batches),
        ]
        try:
            _parallel(jobs, [call for _, call in sorted(sized, key=lambda sc: -sc[0])])
        except BaseException as exc:
            if together is not None:  # wait for it
                try:
                    together.result()
                except CutoverError as small:
                    # The holder's reads failed: its psql (and the snapshot the batches import)
                    # is gone, which is what made the batches fail too.
                    if isinstance(exc, CutoverError) and not isinstance(exc, Interrupted):
                        raise small from exc
            raise
        failed = together.result() if together is not None else []
        if failed:  # the small batches' psql failed: each through a pipe, as any batch
            _parallel(jobs, [partial(one, b) for b in failed])
            work = [*work, *([b] for b in failed)]
        for batches in work:
            name = batches[0].table.name
            if name in conflicted:
                try:
                    up, gone = self.run_batch(Batch(batches[0].table, None, None, 0))
                except CommandError as exc:
                    raise self.failure(name, exc) from exc
                self.count(up, gone, conflicted.pop(name))
                self.batch_done(left, name, conflicted, whole=True)

    def start_small(
        self, small: list[Batch], left: dict[str, int], conflicted: dict[str, int]
    ) -> Future[list[Batch]] | None:
        """pgapply_small.start for this round; each batch applied is counted as done."""
        if not small:
            return None
        assert self.holder is not None

        def done(batch: Batch, up: int, gone: int) -> None:
            self.count(up, gone, batch.keys)
            self.batch_done(left, batch.table.name, conflicted)

        scripts = [self.scripts(b) for b in small]
        return pgapply_small.start(
            pgapply_small.Round(
                self.runner, self.holder, self.target, self.since, self.key_schemas, self.timeout
            ),
            [
                pgapply_small.SmallBatch(b, self.docs[b.table.name]["columns"], *script)
                for b, script in zip(small, scripts, strict=True)
            ],
            done,
        )

    def batch_done(
        self, left: dict[str, int], name: str, conflicted: dict[str, int], whole: bool = False
    ) -> None:
        with self.lock:
            left[name] = 0 if whole else left[name] - 1
            if left[name] == 0 and name not in conflicted:
                self.tables_done += 1
                self.report()

    def failure(self, name: str, exc: CommandError) -> CutoverError:
        lines = exc.stderr_tail.strip().splitlines()
        errors = [ln.strip() for ln in lines if "ERROR:" in ln] or lines[-1:] or [exc.brief]
        return CutoverError(
            f"{name}: applying its changes failed: {self.masker.mask(errors[0])}",
            details="The failed batch rolled back; the batches applied are harmless to apply "
            "again, and the position stays where the round started.",
            resolution="Fix the cause, then run the same command again.",
        )

    def count(self, up: int, gone: int, keys: int) -> None:
        with self.lock:
            self.upserted += up
            self.deleted += gone
            self.keys_done += keys
            self.report()

    def report(self) -> None:
        if self.progress is not None:
            self.progress(
                ApplyProgress(self.keys_done, self.keys_total, self.tables_done, self.tables_total)
            )


def apply_changes(
    runner: Runner,
    masker: SecretMasker,
    pg: PostgresAdapter,
    source: ConnInfo,
    target: ConnInfo,
    since: str,
    *,
    plan: CapturePlan,
    final: bool,
    jobs: int,
    timeout: float,
    batch_keys: int = 50_000,
    progress: Callable[[ApplyProgress], None] | None = None,
) -> ApplyResult:
    """One round from ``since`` (see the module docstring)."""
    started = time.monotonic()
    clock = Phases(started)
    check_position(since)
    masker.add(source.password)
    masker.add(target.password)
    by_relid = {t.relid: t for t in plan.tables}
    psql = ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    # One psql on the target (pgapply_target.py), started with the holder and asked at once,
    # for every captured table (the round's own are known after the survey): its docs and
    # its role, read while the holder surveys (about 0.2 s off a small round); kept open for
    # the round's last statements and marker (pgapply_target.finish).
    with runner.session(psql, env={**target.env(), "PGOPTIONS": STABLE_TEXT}) as convox:
        with runner.session(psql, env=source.env()) as holder:
            send(
                convox,
                read_script([t.name for t in (*plan.tables, *plan.logged)], bool(plan.logged)),
            )
            seen = pgapply_survey.survey(holder, plan, since)
            clock.lap("survey")
            whole = sorted({by_relid[r].name for r in seen.truncated if r in by_relid})
            keyed = [
                t
                for t in plan.tables
                if seen.counts.get(t.relid, (0, 0))[0] and t.name not in whole
            ]
            names = [*(t.name for t in keyed), *(t.name for t in plan.logged)]
            ready = parse_prepared(answer(convox, QUERY_TIMEOUT))
            docs, replica = ready.docs, ready.replica
            pgapply_survey.check_docs(docs, [t.name for t in keyed], target)
            if not replica:
                pgapply_survey.refuse_inherited_fks(
                    {n: d for n, d in docs.items() if n in names}, target
                )
            # The marker saying from where a new round must start, before the round's first write
            # (and not when the round was refused: the target is left as it was).
            ask(convox, marker_sql(target.dbname, since, bool(plan.logged)), QUERY_TIMEOUT)
            prepared = time.monotonic()
            clock.lap("target-prepare")
            rows = pgapply_rows.survey(holder, plan.logged, ready.applied, since)
            pgapply_survey.check_docs(docs, [j.table.name for j in rows.jobs], target)
            if final:  # keyless tables without a row log (a capture from before it): whole
                logged = {t.name for t in plan.logged} - set(rows.uncaptured)
                whole = sorted({*whole, *(n for n in plan.keyless if n not in logged)})
            work = [
                pgapply_survey.batches(
                    holder, t, seen.counts[t.relid][1], since, max(1, batch_keys)
                )
                for t in keyed
            ]
            schemas = tuple(r[0] for r in ask(holder, key_schemas_sql(keyed))) if keyed else ()
            clock.lap("keyless+boundaries")
            state = _Round(
                runner, masker, pg, source, target, since, seen.snapshot, seen.position, replica,
                timeout, docs, progress,
                sum(seen.counts[t.relid][1] for t in keyed) + sum(j.rows for j in rows.jobs),
                len(keyed) + len(rows.jobs), schemas, holder=holder,
            )  # fmt: skip
            state.report()
            state.run_all(work, jobs, rows.jobs)
            clock.lap("batches")
            # Sequences are not transactional: read now, in this session (no new psql).
            values = sequence_values(holder) if final and not whole else []
            holder.close("COMMIT;\n")
        sequences = len(values)
        if whole:
            # Read after S while the app may still write (a catch-up): its rows can reference rows
            # the keyed batches (as of S) do not have yet, so a catch-up leaves the foreign keys it
            # lifted NOT VALID, for the final round to check. In the final round it validates them
            # itself (after its copies) and sets every sequence.
            sequences = copy_tables(
                runner, masker, source, target, whole, jobs=jobs, timeout=timeout, validate=final
            ).sequences
            clock.lap("whole-copies")
        elif final and (not replica or ready.not_valid):
            # Foreign keys re-added NOT VALID (by the fallback's batches, or by whole copies of an
            # earlier round), checked once every table is in (the target now equals the source).
            # A replica round over a target with none has nothing to check.
            TableCopier(runner, masker, source, target).validate_fks(jobs, timeout)
            clock.lap("validate-fks")
        last = [
            *setval_statements(values),
            *(
                pgapply_rows.advance_statements(rows.idle, since, seen.position)
                if not final
                else []
            ),
            # Before the marker, which counts the database's row writes (dropping a table takes
            # its count away). Killed in between: the next round replaces the keyless tables whole
            # (whatever this round's plan: an earlier round's positions may be there).
            *([pgapply_rows.DROP_SQL.rstrip(";")] if final else []),
        ]
        finished = finish(
            pg, target, convox, prepared,
            finish_script(last, target.dbname, f" capture={seen.position}"),
        )  # fmt: skip
    marker = next(("\t".join(r[1:]) for r in finished if r and r[0] == "marker"), "")
    clock.lap("finish")
    return ApplyResult(
        since=since,
        position=seen.position,
        entries=sum(c[0] for c in seen.counts.values())
        + sum(seen.truncated.values())
        + sum(j.rows for j in rows.jobs),
        upserted=state.upserted,
        deleted=state.deleted,
        tables=tuple(t.name for t in keyed) + tuple(j.table.name for j in rows.jobs),
        whole=tuple(whole),
        sequences=sequences,
        seconds=time.monotonic() - started,
        phases=tuple(clock.laps),
        replaced=state.replaced,
        marker=marker,
    )
