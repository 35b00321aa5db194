"""``make bench`` (``python -m cutover.bench``): cutover's data path against the plain tools, in
one go on the same machine (issue 10, "Benchmark").

1. ``cutover sandbox up`` with a small seed (``--rows``), then the reference data
   (cutover/bench/reference.py, sized by ``BENCH_SCALE``) loaded into the sandbox's "Heroku
   Postgres" as the source role;
2. ``cutover run --until initial-sync`` prepares the Convox app and its database (not timed);
3. ``--runs`` rounds (default 3), each figure once per round, interleaved so every figure sees
   the same machine: (a) guide-file, (d) final-backup, (b) pg_dump|pg_restore, (d)
   final-direct, (c) pgcopydb-clone, (d) final-in-rack, (f) verify-data and verify-psql, then
   issue 13's figures (cutover/bench/rows.py, ``final_sync: changed-rows``: the write workload
   with and without capture triggers, the capture-changes and initial-sync steps, ``cutover
   catch-up`` after 90% of the workload, the final-sync and verify-data steps after the rest,
   at the reference size and at half of it, where pgcopydb clones too, for the per-GB figures),
   then (e): initial-sync (not timed: the changed-tables baseline), the workload on Heroku, and
   the timed final-sync with ``final_sync: changed-tables``;
4. medians, ratios with their targets (cutover/bench/report.py), a rich table, and one line
   per figure.

Every cutover figure runs ``Step().apply(ctx)`` in a child Python process
(cutover/bench/child.py), with a playbook that differs only in ``database.method`` and
``database.final_sync`` (and, for issue 13's half-size round, ``database.heroku_attachment``);
the catch-up figure runs the ``cutover catch-up`` command. A figure that fails is printed as
``bench: NAME failed: <reason>`` and is not run again; the others carry on. Numbers are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from cutover.adapters.pgverify import checksum_sql
from cutover.adapters.postgres import STABLE_TEXT, TABLES_SQL
from cutover.bench import (
    baselines,
    halfsize,
    options,
    reference,
    report,
    rows,
    window,
    workload,
)
from cutover.bench.baselines import BaselineError, Endpoint
from cutover.bench.report import Figure
from cutover.bench.sandboxside import (
    SETUP_TIMINGS,
    load_reference,
    rack_proxy,
    source_endpoint,
    target_endpoint,
    write_playbook,
)
from cutover.engine.audit import EVENTS_FILE
from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.sandbox import manager
from cutover.secrets import SecretMasker
from cutover.state import StateStore


class Bench:
    """The figures, and running one of them once."""

    def __init__(self, work: Path, say: Callable[[str], None] = print) -> None:
        self.work = work
        self.say = say
        self.figures: dict[str, Figure] = {}
        self.current = ""  # the figure being measured
        self.rss: list[float] = []
        self.own: list[tuple[float, str]] = []  # (own seconds, the step it was measured in)
        self.heroku: dict[str, list[float]] = {}  # figure -> the heroku CLI's seconds per run
        self.tools: dict[str, list[dict[str, float]]] = {}  # figure -> the tools' seconds per run
        self.stderr = ""  # the last child's (its notes)
        self.rows_run: rows.RowsRun | None = None  # issue 13's reference round, the last that ran
        self.share: float | None = None  # (e)'s workload's share of the data

    def figure(self, name: str, note: str) -> Figure:
        self.figures[name] = Figure(name, note=note)
        return self.figures[name]

    def measure(self, name: str, run: Callable[[], float]) -> None:
        figure = self.figures[name]
        if figure.error is not None:
            return  # failed once: not run again
        self.current = name
        try:
            figure.add(run())
        except (BaselineError, CutoverError, subprocess.SubprocessError, OSError) as exc:
            figure.fail(str(exc))
        finally:
            self.current = ""

    def cutover(self, playbook: Path, step: str, figure: str = "") -> float:
        """One cutover step in a child process; its seconds, or BaselineError with the reason.
        ``figure``: the figure it is timed for, when not the one :meth:`measure` runs."""
        result_file = self.work / "child-result.json"
        result_file.unlink(missing_ok=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "cutover.bench.child",
                "--playbook",
                str(playbook),
                "--step",
                step,
                "--result",
                str(result_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            tail = " / ".join(proc.stderr.strip().splitlines()[-3:])
            raise BaselineError(f"{step} child exited {proc.returncode}: {tail}") from None
        self.stderr = proc.stderr
        self.rss.append(float(result["rss_mb"]))
        self.own.append((float(result["own_seconds"]), f"{step} ({playbook.stem})"))
        figure = figure or self.current
        if figure:  # not a figure's untimed preparation
            heroku = float(result.get("tools", {}).get("heroku", 0.0))
            self.heroku.setdefault(figure, []).append(heroku)
            self.tools.setdefault(figure, []).append(dict(result.get("tools", {})))
        if not result["ok"]:
            raise BaselineError(str(result["error"]))
        return float(result["seconds"])

    def catch_up(self, playbook: Path) -> tuple[float, int]:
        """``cutover catch-up -f PLAYBOOK`` as an operator runs it (a process of its own): its
        wall seconds and the rows it wrote (its audit event), or BaselineError."""
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "cutover", "catch-up", "-f", str(playbook)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            tail = " / ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise BaselineError(f"cutover catch-up exited {proc.returncode}: {tail}")
        events = load_playbook(playbook).state_dir / EVENTS_FILE
        done = [
            event
            for event in map(json.loads, events.read_text(encoding="utf-8").splitlines())
            if event.get("kind") == "catch-up" and not event.get("dry_run")
        ]
        if not done:
            raise BaselineError("cutover catch-up exited 0 but logged no catch-up event")
        return seconds, int(done[-1].get("upserted", 0)) + int(done[-1].get("deleted", 0))

    def outputs(self, playbook: Path, step: str) -> dict[str, Any]:
        """``step``'s outputs as the state file records them (after its child)."""
        loaded = load_playbook(playbook)
        state = StateStore(loaded.state_dir, SecretMasker()).load()
        return dict(state.outputs(step)) if state is not None else {}


def _only(bench: Bench, args: argparse.Namespace) -> None:
    """Figures ``--only`` leaves out are reported as not measured (options.parse_args checks
    the names)."""
    if not args.only:
        return
    for name, figure in bench.figures.items():
        if name not in args.only:
            figure.fail("not measured (--only)")


def main(argv: list[str] | None = None) -> int:
    args = options.parse_args(argv)
    console = Console(width=160) if not sys.stdout.isatty() else Console()
    try:
        ref = reference.scale_from_env()
    except CutoverError as exc:
        console.print(f"bench: {exc.brief}")
        return 2
    sandbox = Path(tempfile.mkdtemp(prefix="cutover-bench-"))
    work = Path(tempfile.mkdtemp(prefix="cutover-bench-run-"))
    started = time.monotonic()
    try:
        return _bench(args, ref, sandbox, work, console, started)
    except (BaselineError, CutoverError, subprocess.SubprocessError, OSError) as exc:
        # Before the rounds (sandbox, reference data): nothing to measure without them.
        console.print(f"bench: failed: {exc}")
        return 1
    finally:
        manager.down(sandbox, say=lambda m: None)
        shutil.rmtree(sandbox, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _bench(
    args: argparse.Namespace,
    ref: reference.Reference,
    sandbox: Path,
    work: Path,
    console: Console,
    started: float,
) -> int:
    console.print(f"bench: sandbox up ({args.rows} seed rows), reference scale {ref.scale} ...")
    manager.up(sandbox, rows=args.rows, say=lambda m: None, rack_timings=SETUP_TIMINGS)
    source = source_endpoint(sandbox)
    size_mb = load_reference(source, ref)
    console.print(f"bench: reference data loaded ({size_mb:.0f} MB); preparing the Convox app ...")
    playbooks = {m: write_playbook(work, sandbox, m, "full") for m in report.METHODS}
    changed_playbook = write_playbook(work, sandbox, args.changed_method, "changed-tables")
    prep_started = time.monotonic()
    prep = subprocess.run(
        [sys.executable, "-m", "cutover", "run", "-f", str(playbooks["backup"]),
         "--until", "initial-sync", "--yes"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if prep.returncode != 0:
        console.print(prep.stdout[-2000:] + prep.stderr[-2000:])
        console.print("bench: failed: cutover run --until initial-sync did not finish")
        return 1
    console.print(
        f"bench: Convox app ready and first sync done in {time.monotonic() - prep_started:.0f} s"
    )
    target = target_endpoint(sandbox)
    bench = Bench(work, say=console.print)
    sizes, half_mb = _declare(bench, args, ref, console, (source, work, sandbox))
    with rack_proxy(playbooks["direct"]) as port:
        _rounds(bench, args, ref, work, playbooks, changed_playbook, sizes, (source, target), port)
    share = bench.share
    _print(bench, args, ref, size_mb, share, console, time.monotonic() - started)
    _rows_end(bench, sizes, sandbox, (size_mb, half_mb), bench.rows_run)
    # Last, once: the window changes the world (maintenance, DNS), so it ends the bench.
    if not options.wanted(args, "window"):
        return 0
    console.print("bench: the rest of the cutover, for the window's fixed cost ...")
    try:
        for line in window.measure_window(playbooks["backup"]).lines():
            print(line)
    except (window.WindowError, OSError, ValueError) as exc:
        print(f"bench: window failed: {exc}")
    return 0


def _rounds(
    bench: Bench,
    args: argparse.Namespace,
    ref: reference.Reference,
    work: Path,
    playbooks: dict[str, Path],
    changed_playbook: Path,
    sizes: rows.Sizes,
    ends: tuple[Endpoint, Endpoint],
    port: int,
) -> None:
    """``args.runs`` interleaved rounds of every figure. ``ends``: Heroku's and Convox's
    databases as loaded. The baselines reach Heroku's over TLS and Convox's through the
    ``convox resources proxy`` on ``port``, as cutover's sync does (baselines.py says why); the
    loopback pgcopydb shows the tools alone (information)."""
    source, target = ends
    jobs = 2  # playbooks/sandbox.yml: database.restore_jobs
    tools = rows.Tools()
    heroku = source.reached(sslmode="require")  # Heroku Postgres requires TLS
    convox = target.reached(port=port)

    def fresh() -> Endpoint:
        return baselines.fresh_database(convox)

    for round_no in range(1, args.runs + 1):
        bench.say(f"bench: round {round_no} of {args.runs} ...")
        bench.measure(report.GUIDE, lambda: baselines.guide_path(heroku, fresh(), work))
        bench.measure(
            report.final_name("backup"), lambda: bench.cutover(playbooks["backup"], "final-sync")
        )
        bench.measure(report.STREAMED, lambda: baselines.streamed(heroku, fresh()))
        bench.measure(
            report.final_name("direct"), lambda: bench.cutover(playbooks["direct"], "final-sync")
        )
        bench.measure(
            report.PGCOPYDB, lambda: baselines.pgcopydb_clone(heroku, fresh(), work, jobs)
        )
        bench.measure(
            report.PGCOPYDB_LOOPBACK,
            lambda: baselines.pgcopydb_clone(source, baselines.fresh_database(target), work, jobs),
        )
        bench.measure(
            report.final_name("in-rack"),
            lambda: bench.cutover(playbooks["in-rack"], "final-sync"),
        )
        if options.wanted(args, report.VERIFY, report.VERIFY_PSQL):
            baselines.warm(convox, tables_sql=TABLES_SQL)
        bench.measure(report.VERIFY, lambda: bench.cutover(playbooks["backup"], "verify-data"))
        bench.measure(
            report.VERIFY_PSQL,
            lambda: baselines.psql_verify(
                heroku, convox, tables_sql=TABLES_SQL,
                fingerprint=lambda tables: checksum_sql(tables, lambda _t: True),
                pgoptions=STABLE_TEXT,
            ),
        )  # fmt: skip
        # Before (e): (e) ends with a final-sync after the last change on Heroku, which the
        # window (below) relies on (its verify-data compares Heroku with that sync).
        if options.wanted(args, *rows.FIGURES):
            bench.rows_run = (
                rows.measure(bench.figures, bench, tools, sizes, convox, work, jobs)
                or bench.rows_run
            )
        if options.wanted(args, report.FINAL_CHANGED):
            bench.share = (
                _changed_round(bench, source, ref, round_no, changed_playbook) or bench.share
            )


def _declare(
    bench: Bench,
    args: argparse.Namespace,
    ref: reference.Reference,
    console: Console,
    where: tuple[Endpoint, Path, Path],
) -> tuple[rows.Sizes, float | None]:
    """Every figure, in the order the table prints them; issue 13's sizes (the half-size
    reference loaded when its figures are wanted); ``--only`` applied. ``where``: the source,
    the bench's work folder and the sandbox."""
    source, work, sandbox = where
    jobs = 2  # playbooks/sandbox.yml: database.restore_jobs
    b = bench.figure
    b(report.GUIDE, "(a) pg_dump -Fc to a file, then pg_restore --clean --if-exists")
    b(report.final_name("backup"), "(d) cutover final-sync, method backup")
    b(report.STREAMED, "(b) pg_dump -Fc | pg_restore, streamed")
    b(report.final_name("direct"), "(d) cutover final-sync, method direct")
    b(report.PGCOPYDB, f"(c) pgcopydb clone, {jobs} table and index jobs")
    b(report.PGCOPYDB_LOOPBACK, "(c) on loopback: no TLS, no proxy (the tools alone: information)")
    b(report.final_name("in-rack"), "(d) cutover final-sync, method in-rack")
    b(report.VERIFY, "(f) cutover verify-data")
    b(report.VERIFY_PSQL, "(f) the same checksum query by psql, both sides at once")
    b(report.FINAL_CHANGED, f"(e) final-sync changed-tables ({args.changed_method})")
    if options.wanted(args, *rows.FIGURES):
        sizes, half_mb = _rows_setup(bench, source, ref, console, work, sandbox)
    else:  # the half-size reference takes minutes to load at the default scale
        for name, note in rows.FIGURES.items():
            b(name, note)
        playbook = write_playbook(work, sandbox, "direct", "changed-rows")
        sizes = rows.Sizes(source, playbook, None, None, ref, None, "not measured (--only)")
        half_mb = None
    _only(bench, args)
    return sizes, half_mb


def _rows_setup(
    bench: Bench,
    source: Endpoint,
    ref: reference.Reference,
    console: Console,
    work: Path,
    sandbox: Path,
) -> tuple[rows.Sizes, float | None]:
    """Issue 13's figures, their changed-rows playbook (method direct, the fastest full one
    here), and the half-size reference for their per-GB figures, in its own database on the
    source's cluster attached to the Heroku app (cutover/bench/halfsize.py), with its own
    playbook (not timed); none below BENCH_SCALE=2 or when it fails to load."""
    for name, note in rows.FIGURES.items():
        bench.figure(name, note)
    # pgbench_history as (e)'s workload leaves it, in every round (the rows round runs before
    # (e)): pgbench -i leaves it empty, and the final apply copies it whole (no key).
    baselines.run_sql(source, reference.workload_sql(ref, 0))
    playbook = write_playbook(work, sandbox, "direct", "changed-rows")
    half_ref = workload.half(ref)
    if half_ref is None:
        return rows.Sizes(source, playbook, None, None, ref, None), None
    try:
        half = halfsize.half_database(source)
        half_mb = load_reference(half, half_ref)
        baselines.run_sql(half, reference.workload_sql(half_ref, 0))  # history, as above
        attachment = halfsize.attach(sandbox, half)
    except (BaselineError, subprocess.SubprocessError, OSError, ValueError) as exc:
        why = f"the half-size reference failed to load: {exc}"
        console.print(f"bench: {why}")
        return rows.Sizes(source, playbook, None, None, ref, None, why), None
    half_playbook = write_playbook(work, sandbox, "direct", "changed-rows", attachment)
    console.print(f"bench: half-size reference loaded ({half_mb:.0f} MB) as {attachment}")
    return rows.Sizes(source, playbook, half, half_playbook, ref, half_ref), half_mb


def _rows_end(
    bench: Bench,
    sizes: rows.Sizes,
    sandbox: Path,
    mb: tuple[float, float | None],
    run: rows.RowsRun | None,
) -> None:
    """Issue 13's lines; the half-size attachment removed (the window runs with the app's own
    config)."""
    if sizes.half_playbook is not None:
        halfsize.detach(sandbox, halfsize.ATTACHMENT)
    for line in rows.lines(bench.figures, mb[0], mb[1], run):
        print(line)
    tools_line = rows.tools_line(bench.tools.get(report.FINAL_ROWS, []))
    if tools_line is not None:
        print(tools_line)


def _changed_round(
    bench: Bench, source: Endpoint, ref: reference.Reference, round_no: int, playbook: Path
) -> float | None:
    """(e): a full sync as the changed-tables baseline (not timed), the workload on Heroku,
    then the timed final-sync with changed-tables. Returns the share of data the workload
    touched."""
    figure = bench.figures[report.FINAL_CHANGED]
    if figure.error is not None:
        return None
    try:
        bench.cutover(playbook, "initial-sync")
    except BaselineError as exc:
        figure.fail(f"its baseline (initial-sync) failed: {exc}")
        return None
    try:
        baselines.run_sql(source, reference.workload_sql(ref, round_no))
        measured = baselines.run_sql(source, reference.SHARE_SQL).split()
    except (BaselineError, subprocess.SubprocessError) as exc:
        figure.fail(f"the workload failed: {exc}")
        return None
    changed, total = (int(v) for v in measured)
    share = reference.changed_share(changed, total)
    if share > reference.MAX_CHANGED_SHARE:
        figure.fail(f"the workload touched {share:.1%} of the data, above 15%")
        return share
    bench.measure(report.FINAL_CHANGED, lambda: bench.cutover(playbook, "final-sync"))
    return share


def _print(
    bench: Bench,
    args: argparse.Namespace,
    ref: reference.Reference,
    size_mb: float,
    share: float | None,
    console: Console,
    elapsed: float,
) -> None:
    figures = bench.figures
    title = (
        f"BENCH_SCALE={ref.scale}: reference {size_mb:.0f} MB, medians of {args.runs} "
        f"interleaved runs"
    )
    console.print(report.table(figures, title))
    extra = [f"bench: reference-mb {size_mb:.0f}", f"bench: total-seconds {elapsed:.0f}"]
    extra += report.heroku_lines(figures, bench.heroku)
    for line in report.lines(
        figures,
        report.ratios(figures, args.changed_method),
        peak_rss_mb=max(bench.rss) if bench.rss else None,
        own_seconds_max=max(bench.own)[0] if bench.own else None,
        own_where=max(bench.own)[1] if bench.own else "",
        extra=extra,
    ):
        print(line)
    if share is not None:  # the workload of (e), measured on Heroku after it ran
        print(
            f"ratio: changed-data-share {share:.3f} "
            f"({report.verdict(share, reference.MAX_CHANGED_SHARE)})"
        )
