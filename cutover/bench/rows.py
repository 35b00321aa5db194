"""Issue 13's figures (``database.final_sync: changed-rows``), measured by ``make bench`` next to
issue 10's.

One round (:func:`rows_round`) on a source database holding the reference data:

1. (``plain`` "first") the write workload (cutover/bench/workload.py, pgbench, a fixed number
   of transactions) on the source WITHOUT capture triggers, in the same two parts as step 4:
   timed (``workload-plain``, the parts' sum); the rounds alternate it with "last", after step 9;
2. an initial copy of the source into a fresh database on the Convox cluster
   (``pg_dump | pg_restore``, baselines.streamed; not timed);
3. the capture installed on the source (adapters/pgcapture.py ``inspect`` + ``install``) and its
   position read (``position``): the initial sync's position, after the copy (nothing else
   writes to the bench's source, so no change falls between the copy and the capture);
4. part 1 of the workload WITH the triggers: 90% of its transactions (workload.parts);
5. the catch-up: ``apply_changes(final=False)`` from the initial position, as ``cutover
   catch-up`` runs it before the window: timed (``catch-up``). Against a full final sync it
   says what a window WITHOUT a catch-up would hold (a by-key apply of ~5% of the rows spread
   over every page costs about a full copy: it touches every page on both sides);
6. part 2 of the workload WITH the triggers: the remaining 10%, standing for the writes made
   after the last catch-up (an assumption, printed with the figure); parts 1 + 2 are timed
   (``workload-captured``, the parts' sum);
7. ``apply_changes(final=True)`` from the catch-up's position (adapters/pgapply.py): the rest
   of the log, as final-sync applies it in the window: timed (``final-rows``);
8. the capture removed (``uninstall``): the other figures must see a source without it;
9. verify-data's comparison (adapters/pgverify.py ``Verifier.compare``) of the source and the
   copy: timed (``verify-rows``); any problem it finds (but a role or database setting, which
   the initial copy does not carry) is the round's failure (the post-apply databases must be
   equal).

The workload: cutover/bench/workload.py.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cutover.adapters import pgapply, pgcapture
from cutover.adapters.pgverify import Side, Verifier
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.bench import baselines, report
from cutover.bench.baselines import BaselineError, Endpoint
from cutover.bench.reference import Reference
from cutover.bench.report import Figure
from cutover.bench.workload import CATCHUP_SHARE, ROW_COUNT_SQL, parts, run_workload
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.sandbox import pgcluster
from cutover.secrets import SecretMasker

APPLY_TIMEOUT = 3600.0
ROWS_DB = "bench_rows"
HALF_ROWS_DB = "bench_rows_half"
HALF_DB = "bench_half"  # the half-size reference, on the source cluster


def conninfo(endpoint: Endpoint) -> ConnInfo:
    """cutover's view of a bench database (loopback, no TLS: as the baselines)."""
    cluster = endpoint.cluster
    return ConnInfo(
        pgcluster.HOST, cluster.port, endpoint.user, endpoint.dbname, endpoint.password, "disable"
    )


@dataclass
class RowsRun:
    """What one round's final apply did (its seconds went to the figures)."""

    target: Endpoint  # the copy, equal to the source after the apply (verify-rows said so)
    rows: int  # the source's rows before the workload
    written: int  # rows the final apply wrote on the target (upserted + deleted)
    whole: tuple[str, ...] = ()  # tables the final apply copied whole
    notes: list[str] = field(default_factory=list)
    caught_up: int = 0  # rows the catch-up wrote on the target (upserted + deleted)
    positions: tuple[str, str, str] = ("", "", "")  # initial, catch-up's, final apply's "since"
    phases: tuple[tuple[str, float], ...] = ()  # the final apply's (pgapply.ApplyResult.phases)

    @property
    def share(self) -> float:
        """Rows written by the catch-up and the final apply / the source's rows."""
        return (self.caught_up + self.written) / self.rows if self.rows else 0.0


# A round's phases ("plain", "captured", "catchup", "apply", "verify"), each recorded (seconds)
# as soon as it is measured and, for the two applies, once verify-data found the copy equal to
# the source.
Record = Callable[[str, float], None]
Plain = Literal["first", "last", "no"]


class Tools:
    """The runner, masker and psql adapter the adapters take (one per bench)."""

    def __init__(self) -> None:
        self.masker = SecretMasker()
        self.runner = Runner(self.masker)
        self.pg = PostgresAdapter(self.runner, self.masker)

    def conn(self, endpoint: Endpoint) -> ConnInfo:
        self.masker.add(endpoint.password)
        return conninfo(endpoint)


def rows_round(
    tools: Tools,
    source: Endpoint,
    target_admin: Endpoint,
    ref: Reference,
    work: Path,
    *,
    jobs: int,
    plain: Plain,
    record: Record,
    dbname: str = ROWS_DB,
) -> RowsRun:
    """One round (the module docstring's steps 1-9), each phase's seconds given to ``record``.
    ``plain``: when the workload runs without triggers: "first", "last" (after verify-data: the
    rounds alternate, so that neither run always meets the warmer or colder machine) or "no".
    Raises BaselineError (or CutoverError from an adapter) naming what failed; the capture never
    stays installed on ``source``."""
    before, after = parts(ref)

    def workload() -> float:
        return run_workload(source, ref, work, before) + run_workload(source, ref, work, after)

    if plain == "first":
        record("plain", workload())
    target = baselines.fresh_database(target_admin, dbname)
    baselines.streamed(source, target)
    rows = int(baselines.run_sql(source, ROW_COUNT_SQL).strip() or 0)
    src, dst = tools.conn(source), tools.conn(target)

    def apply(
        plan: pgcapture.CapturePlan, since: str, *, final: bool
    ) -> tuple[pgapply.ApplyResult, float]:
        started = time.perf_counter()
        result = pgapply.apply_changes(
            tools.runner, tools.masker, tools.pg, src, dst, since,
            plan=plan, final=final, jobs=jobs, timeout=APPLY_TIMEOUT,
        )  # fmt: skip
        return result, time.perf_counter() - started

    try:
        plan = pgcapture.install(tools.pg, src, pgcapture.inspect(tools.pg, src))
        initial = pgcapture.position(tools.pg, src)
        written = run_workload(source, ref, work, before)
        caught, caught_seconds = apply(plan, initial, final=False)
        written += run_workload(source, ref, work, after)
        record("captured", written)
        result, applied = apply(plan, caught.position, final=True)
    finally:
        left = _uninstall(tools, src)
    if left:
        raise BaselineError(f"the capture could not be removed from the source: {left}")
    verifier = Verifier(tools.runner, tools.masker, jobs=jobs, timeout=APPLY_TIMEOUT)
    started = time.perf_counter()
    outcome = verifier.compare(Side("Heroku", src), Side("Convox", dst))
    verified = time.perf_counter() - started
    # Role and database settings (pg_db_role_setting) are not data: pg_dump | pg_restore (the
    # initial copy here) does not carry them, cutover's own sync does (the Heroku role's
    # search_path with heroku_ext showed up so).
    problems = [p for p in outcome.problems if not p.startswith("setting ")]
    if problems:
        raise BaselineError(
            f"verify-data after the final apply found {len(problems)} problem(s): "
            + "; ".join(problems[:3])
        )
    record("catchup", caught_seconds)
    record("apply", applied)
    record("verify", verified)
    if plain == "last":
        record("plain", workload())
    notes = [f"{name}: not captured ({why})" for name, why in _split(plan.unsupported)]
    return RowsRun(
        target, rows, result.upserted + result.deleted, result.whole, notes,
        caught_up=caught.upserted + caught.deleted,
        positions=(initial, caught.position, result.since), phases=result.phases,
    )  # fmt: skip


def _uninstall(tools: Tools, src: ConnInfo) -> str:
    """Remove the capture; what went wrong ("" when it is gone)."""
    try:
        pgcapture.uninstall(tools.pg, src)
    except CutoverError as exc:
        return exc.brief
    return ""


def _split(unsupported: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(item.partition(": ")[0], item.partition(": ")[2]) for item in unsupported]


def half_database(source: Endpoint) -> Endpoint:
    """An empty database :data:`HALF_DB` on the source's cluster, owned by the source's role
    (made by the cluster's superuser, as the sandbox made the "Heroku" one)."""
    cluster = source.cluster
    admin = Endpoint(cluster, "postgres", cluster.superuser, cluster.password)
    baselines.run_sql(admin, f'DROP DATABASE IF EXISTS "{HALF_DB}" WITH (FORCE)')
    owner = source.user.replace('"', '""')
    baselines.run_sql(admin, f'CREATE DATABASE "{HALF_DB}" OWNER "{owner}"')
    return source.other(HALF_DB)


FIGURES = {
    report.WORKLOAD_PLAIN: "(13) the write workload (pgbench), no capture triggers",
    report.WORKLOAD_CAPTURED: "(13) the same workload with the capture triggers",
    report.CATCHUP: "(13) catch-up: apply_changes(final=False) after 90% of the workload",
    report.FINAL_ROWS: "(13) apply_changes(final=True) from the catch-up: the last 10%",
    report.VERIFY_ROWS: "(13) verify-data's comparison after it",
    report.FINAL_ROWS_HALF: "(13) final-rows on the half-size reference",
    report.VERIFY_ROWS_HALF: "(13) verify-rows on the half-size reference",
    report.PGCOPYDB_HALF: "(c) pgcopydb clone of the half-size reference",
}


@dataclass
class Sizes:
    """The two sources: the reference (the sandbox's Heroku database) and the half-size one."""

    source: Endpoint
    half: Endpoint | None
    ref: Reference
    half_ref: Reference | None
    why: str = "one size only (BENCH_SCALE < 2)"  # when there is no half-size reference


REFERENCE_NAMES = {
    "plain": report.WORKLOAD_PLAIN,
    "captured": report.WORKLOAD_CAPTURED,
    "catchup": report.CATCHUP,
    "apply": report.FINAL_ROWS,
    "verify": report.VERIFY_ROWS,
}
HALF_NAMES = {"apply": report.FINAL_ROWS_HALF, "verify": report.VERIFY_ROWS_HALF}


def _recorded(
    figures: dict[str, Figure], names: dict[str, str], call: Callable[[Record], RowsRun]
) -> RowsRun | None:
    """``call`` with a recorder into the figures ``names`` gives for its phases; a failure fails
    the figures not yet recorded."""
    done: set[str] = set()

    def record(phase: str, seconds: float) -> None:
        if phase in names:
            figures[names[phase]].add(seconds)
            done.add(phase)

    try:
        return call(record)
    except (BaselineError, CutoverError, subprocess.SubprocessError, OSError) as exc:
        for phase, name in names.items():
            if phase not in done:
                figures[name].fail(str(exc))
        return None


def measure(
    figures: dict[str, Figure],
    tools: Tools,
    sizes: Sizes,
    target_admin: Endpoint,
    work: Path,
    jobs: int,
) -> RowsRun | None:
    """One round of issue 13's figures into ``figures`` (the keys of :data:`FIGURES`): a
    failure fails the figures it stops (printed as ``bench: NAME failed: <reason>``) and they
    are not run again. Returns the reference round's run (for the changed share)."""
    run: RowsRun | None = None
    plain: Plain = "first" if len(figures[report.WORKLOAD_PLAIN].runs) % 2 == 0 else "last"
    if figures[report.FINAL_ROWS].error is None:
        run = _recorded(
            figures,
            REFERENCE_NAMES,
            lambda record: rows_round(
                tools, sizes.source, target_admin, sizes.ref, work,
                jobs=jobs, plain=plain, record=record,
            ),
        )  # fmt: skip
    if sizes.half is None or sizes.half_ref is None:
        for name in (report.FINAL_ROWS_HALF, report.VERIFY_ROWS_HALF, report.PGCOPYDB_HALF):
            figures[name].fail(sizes.why)
        return run
    half_source, half_ref = sizes.half, sizes.half_ref
    if figures[report.FINAL_ROWS_HALF].error is None:
        _recorded(
            figures,
            HALF_NAMES,
            lambda record: rows_round(
                tools, half_source, target_admin, half_ref, work,
                jobs=jobs, plain="no", record=record, dbname=HALF_ROWS_DB,
            ),
        )  # fmt: skip
    copydb = figures[report.PGCOPYDB_HALF]
    if copydb.error is None:
        try:
            target = baselines.fresh_database(target_admin, HALF_ROWS_DB)
            copydb.add(baselines.pgcopydb_clone(half_source, target, work, jobs))
        except (BaselineError, subprocess.SubprocessError, OSError) as exc:
            copydb.fail(str(exc))
    return run


def share_line(run: RowsRun | None) -> str:
    """``bench: rows-changed-share V (...)``: the rows the catch-up and the final apply wrote /
    the source's, and how they split between the two."""
    if run is None:
        return "bench: rows-changed-share failed: no round of final-rows worked"
    whole = ", ".join(run.whole) or "none"
    notes = "; ".join(run.notes)
    return (
        f"bench: rows-changed-share {run.share:.3f} ({run.caught_up + run.written} of {run.rows} "
        f"rows written: {run.caught_up} by the catch-up after {CATCHUP_SHARE:.0%} of the "
        f"workload, {run.written} by the final apply after the rest; copied whole by the final "
        f"apply: {whole}{'; ' + notes if notes else ''})"
    )


def phases_line(run: RowsRun | None) -> str | None:
    """``bench: final-rows-phases NAME SECONDS, ...``: where the final apply's time went."""
    if run is None or not run.phases:
        return None
    parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in run.phases)
    return f"bench: final-rows-phases {parts} (the reference round's last final apply)"


def lines(
    figures: dict[str, Figure], size_mb: float, half_mb: float | None, run: RowsRun | None
) -> list[str]:
    """Issue 13's lines after issue 10's: the window's data part, the changed share, the
    ratios (``ratio: NAME VALUE (...)``, the value the third word as issue 10's)."""
    out = report.rows_window_lines(figures, size_mb, half_mb)
    out.append(share_line(run))
    profile = phases_line(run)
    if profile is not None:
        out.append(profile)
    out.extend(report.ratio_line(ratio) for ratio in report.rows_ratios(figures))
    return out
