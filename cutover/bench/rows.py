"""Issue 13's figures (``database.final_sync: changed-rows``), measured by ``make bench`` next to
issue 10's: what an operator's window pays, so every timed figure is a whole cutover step or
command, run as ``cutover run`` and ``cutover catch-up`` run it (final-full, the ratio's
denominator, is the whole final-sync step too).

One round (:func:`rows_round`), on a source database holding the reference data that the
playbook's ``database.heroku_attachment`` names (the sandbox's Heroku app database; the
half-size round: a second attachment backed by the half-size database, cutover/bench/halfsize.py)
and the playbook's Convox resource database as the target:

1. (``plain`` "first") the write workload (cutover/bench/workload.py, pgbench, a fixed number
   of transactions) on the source WITHOUT capture triggers, in the same two parts as step 4:
   timed (``workload-plain``, the parts' sum); the rounds alternate it with "last", after step 9;
2. the ``capture-changes`` step, then the ``initial-sync`` step (method direct; it reads the
   capture position before its copy), each in a child (cutover/bench/child.py): not timed;
3. part 1 of the workload WITH the triggers: 90% of its transactions (workload.parts);
4. ``cutover catch-up -f PLAYBOOK`` as a subprocess, as an operator runs it before the window:
   timed (``catch-up``, the command's wall time). Against a full final sync it says what a
   window WITHOUT a catch-up would hold (a by-key apply of ~5% of the rows spread over every
   page costs about a full copy: it touches every page on both sides);
5. part 2 of the workload WITH the triggers: the remaining 10%, standing for the writes made
   after the last catch-up (an assumption, printed with the figure); parts 1 + 2 are timed
   (``workload-captured``, the parts' sum);
6. the ``final-sync`` step in a child: timed (``final-rows``): the Convox proxy, the guard,
   the capture's status, the tables and the schema fingerprints on both sides, the apply of the
   rest of the log, the markers. A final-sync that fell back to a full copy fails the figure.
   The apply alone (the step's ``seconds`` output) is information (``final-rows-apply``);
7. the ``verify-data`` step in a child: timed (``verify-rows``); a failure fails the round;
8. the capture removed from the source (adapters/pgcapture.py ``uninstall``, which reads the
   catalog back), whatever happened before: the other figures must see a source without it.

The other figures leave the state and the Convox database as they need them: ``capture-changes``
and ``initial-sync`` clear the later steps' entries in the state (as ``--from`` does), and figure
(e) runs initial-sync again after this round. The workload: cutover/bench/workload.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from cutover.adapters import pgcapture
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

HALF_ROWS_DB = "bench_rows_half"  # pgcopydb's clone of the half-size reference
FALLBACK = "changed-rows: the final sync copies everything"  # steps/datarows.py's note


def conninfo(endpoint: Endpoint) -> ConnInfo:
    """cutover's view of a bench database (loopback, no TLS: as the baselines)."""
    cluster = endpoint.cluster
    return ConnInfo(
        pgcluster.HOST, cluster.port, endpoint.user, endpoint.dbname, endpoint.password, "disable"
    )


class Steps(Protocol):
    """What a round runs (cutover/bench/harness.py's Bench): a cutover step in a child, its
    seconds (BaselineError when it failed; ``figure`` names the figure it is timed for);
    ``cutover catch-up`` in a subprocess, its seconds and the rows it wrote; a step's outputs
    as the state recorded them; the last child's stderr (its notes)."""

    stderr: str

    def cutover(self, playbook: Path, step: str, figure: str = "") -> float: ...

    def catch_up(self, playbook: Path) -> tuple[float, int]: ...

    def outputs(self, playbook: Path, step: str) -> dict[str, Any]: ...


@dataclass
class RowsRun:
    """What one round's final-sync did (its seconds went to the figures)."""

    rows: int  # the source's rows before the workload
    written: int  # rows the final-sync wrote on the target (upserted + deleted)
    whole: tuple[str, ...] = ()  # tables the final-sync copied whole
    caught_up: int = 0  # rows the catch-up wrote on the target (upserted + deleted)
    positions: tuple[str, str] = ("", "")  # initial-sync's capture position, final-sync's end
    apply_seconds: float = 0.0  # the apply inside final-sync (its outputs' seconds)

    @property
    def share(self) -> float:
        """Rows written by the catch-up and the final apply / the source's rows."""
        return (self.caught_up + self.written) / self.rows if self.rows else 0.0


# A round's phases ("plain", "captured", "catchup", "apply", "apply-only", "verify"), each
# recorded (seconds) as soon as it is measured and, for the catch-up and final-sync, once
# verify-data passed.
Record = Callable[[str, float], None]
Plain = Literal["first", "last", "no"]


class Tools:
    """The runner, masker and psql adapter the capture's removal takes (one per bench)."""

    def __init__(self) -> None:
        self.masker = SecretMasker()
        self.runner = Runner(self.masker)
        self.pg = PostgresAdapter(self.runner, self.masker)

    def conn(self, endpoint: Endpoint) -> ConnInfo:
        self.masker.add(endpoint.password)
        return conninfo(endpoint)


def fallback_note(stderr: str) -> str:
    """final-sync's note saying why it copied everything (steps/datarows.py), or a stand-in."""
    for line in stderr.splitlines():
        if FALLBACK in line:
            return " ".join(line[line.index(FALLBACK) :].split())
    return "its outputs' method is not changed-rows"


def rows_round(
    steps: Steps,
    tools: Tools,
    source: Endpoint,
    ref: Reference,
    work: Path,
    playbook: Path,
    *,
    plain: Plain,
    record: Record,
    timed: tuple[str, str] = (report.FINAL_ROWS, report.VERIFY_ROWS),
) -> RowsRun:
    """One round (the module docstring's steps 1-8), each phase's seconds given to ``record``.
    ``playbook`` (final_sync: changed-rows) names ``source`` as its Heroku database. ``plain``:
    when the workload runs without triggers: "first", "last" (after verify-data: the rounds
    alternate, so that neither run always meets the warmer or colder machine) or "no".
    ``timed``: the figures the final-sync and verify-data steps are timed for (the harness
    keeps the heroku CLI's and the tools' seconds per figure). Raises BaselineError (or
    CutoverError) naming what failed; the capture never stays installed on ``source``."""
    before, after = parts(ref)

    def workload() -> float:
        return run_workload(source, ref, work, before) + run_workload(source, ref, work, after)

    if plain == "first":
        record("plain", workload())
    rows = int(baselines.run_sql(source, ROW_COUNT_SQL).strip() or 0)
    src = tools.conn(source)
    try:
        steps.cutover(playbook, "capture-changes")
        steps.cutover(playbook, "initial-sync")
        initial = str(steps.outputs(playbook, "initial-sync").get("capture_position") or "")
        written = run_workload(source, ref, work, before)
        caught_seconds, caught_up = steps.catch_up(playbook)
        written += run_workload(source, ref, work, after)
        record("captured", written)
        applied = steps.cutover(playbook, "final-sync", timed[0])
        final = steps.outputs(playbook, "final-sync")
        if final.get("method") != "changed-rows":
            raise BaselineError(
                f"final-sync did not apply the changed rows: {fallback_note(steps.stderr)}"
            )
        verified = steps.cutover(playbook, "verify-data", timed[1])
    finally:
        left = _uninstall(tools, src)
    if left:
        raise BaselineError(f"the capture could not be removed from the source: {left}")
    record("catchup", caught_seconds)
    record("apply", applied)
    record("apply-only", float(final.get("seconds") or 0.0))
    record("verify", verified)
    if plain == "last":
        record("plain", workload())
    return RowsRun(
        rows,
        int(final.get("upserted") or 0) + int(final.get("deleted") or 0),
        tuple(final.get("whole") or ()),
        caught_up=caught_up,
        positions=(initial, str(final.get("position") or "")),
        apply_seconds=float(final.get("seconds") or 0.0),
    )


def _uninstall(tools: Tools, src: ConnInfo) -> str:
    """Remove the capture; what went wrong ("" when it is gone)."""
    try:
        pgcapture.uninstall(tools.pg, src)
    except CutoverError as exc:
        return exc.brief
    return ""


FIGURES = {
    report.WORKLOAD_PLAIN: "(13) the write workload (pgbench), no capture triggers",
    report.WORKLOAD_CAPTURED: "(13) the same workload with the capture triggers",
    report.CATCHUP: "(13) cutover catch-up (the command) after 90% of the workload",
    report.FINAL_ROWS: "(13) the final-sync step, changed-rows, after the last 10%",
    report.FINAL_ROWS_APPLY: "(13) information: the apply alone, inside final-rows",
    report.VERIFY_ROWS: "(13) the verify-data step after it",
    report.FINAL_ROWS_HALF: "(13) final-rows on the half-size reference (its own attachment)",
    report.VERIFY_ROWS_HALF: "(13) verify-rows on the half-size reference",
    report.PGCOPYDB_HALF: "(c) pgcopydb clone of the half-size reference",
}


@dataclass
class Sizes:
    """The two sources, each with the changed-rows playbook whose Heroku attachment names it:
    the reference (the sandbox's Heroku app database) and the half-size one."""

    source: Endpoint
    playbook: Path
    half: Endpoint | None
    half_playbook: Path | None
    ref: Reference
    half_ref: Reference | None
    why: str = "one size only (BENCH_SCALE < 2)"  # when there is no half-size round


REFERENCE_NAMES = {
    "plain": report.WORKLOAD_PLAIN,
    "captured": report.WORKLOAD_CAPTURED,
    "catchup": report.CATCHUP,
    "apply": report.FINAL_ROWS,
    "apply-only": report.FINAL_ROWS_APPLY,
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
    steps: Steps,
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
                steps, tools, sizes.source, sizes.ref, work, sizes.playbook,
                plain=plain, record=record,
            ),
        )  # fmt: skip
    if sizes.half is None or sizes.half_ref is None or sizes.half_playbook is None:
        for name in (report.FINAL_ROWS_HALF, report.VERIFY_ROWS_HALF, report.PGCOPYDB_HALF):
            figures[name].fail(sizes.why)
        return run
    half_source, half_ref, half_playbook = sizes.half, sizes.half_ref, sizes.half_playbook
    if figures[report.FINAL_ROWS_HALF].error is None:
        _recorded(
            figures,
            HALF_NAMES,
            lambda record: rows_round(
                steps, tools, half_source, half_ref, work, half_playbook,
                plain="no", record=record,
                timed=(report.FINAL_ROWS_HALF, report.VERIFY_ROWS_HALF),
            ),
        )  # fmt: skip
    copydb = figures[report.PGCOPYDB_HALF]
    if copydb.error is None:
        try:
            target = baselines.fresh_database(target_admin, HALF_ROWS_DB)
            # Heroku over TLS, as the reference size's pgcopydb (harness._rounds)
            heroku = half_source.reached(sslmode="require")
            copydb.add(baselines.pgcopydb_clone(heroku, target, work, jobs))
        except (BaselineError, subprocess.SubprocessError, OSError) as exc:
            copydb.fail(str(exc))
    return run


def share_line(run: RowsRun | None) -> str:
    """``bench: rows-changed-share V (...)``: the rows the catch-up and the final-sync wrote /
    the source's, and how they split between the two."""
    if run is None:
        return "bench: rows-changed-share failed: no round of final-rows worked"
    whole = ", ".join(run.whole) or "none"
    return (
        f"bench: rows-changed-share {run.share:.3f} ({run.caught_up + run.written} of {run.rows} "
        f"rows written: {run.caught_up} by the catch-up after {CATCHUP_SHARE:.0%} of the "
        f"workload, {run.written} by the final-sync after the rest; copied whole by the "
        f"final-sync: {whole})"
    )


def lines(
    figures: dict[str, Figure], size_mb: float, half_mb: float | None, run: RowsRun | None
) -> list[str]:
    """Issue 13's lines after issue 10's: the window's data part, the changed share, the
    ratios (``ratio: NAME VALUE (...)``, the value the third word as issue 10's)."""
    out = report.rows_window_lines(figures, size_mb, half_mb)
    out.append(share_line(run))
    out.extend(report.ratio_line(ratio) for ratio in report.rows_ratios(figures))
    return out


def tools_line(runs: list[dict[str, float]]) -> str | None:
    """``bench: final-rows-tools NAME SECONDS, ...``: where the last final-sync step's time went
    by external program (cutover/bench/clock.py; overlapping programs each count their own),
    the rest being cutover's own."""
    if not runs:
        return None
    ranked = sorted(runs[-1].items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{name} {seconds:.2f}" for name, seconds in ranked) or "none"
    return f"bench: {report.FINAL_ROWS}-tools {listed} (the last final-rows step's programs)"
