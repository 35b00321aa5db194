"""Issue 13's bench figures (cutover/bench/rows.py, workload.py and their lines in report.py):
the workload changes about 5% of the rows over every reference table, a tiny round of the rows
figures completes with the copy equal to the source after the final apply and no capture left
on the source, and the lines print with sane values. Values, never timing bounds."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.databases import make_database

from cutover.adapters import pgapply
from cutover.bench import baselines, reference, report, rows, workload
from cutover.bench.baselines import Endpoint
from cutover.bench.report import Figure
from cutover.errors import CutoverError
from cutover.sandbox.pgcluster import PgCluster

SMALL = reference.Reference(scale=2)
REFERENCE_TABLES = (
    "bench_events",
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_history",
    "pgbench_tellers",
)
# Every user table's row count and content digest (schema _cutover left out).
DIGESTS_SQL = """
SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(md5(t::text), '''' ORDER BY '
              'md5(t::text)), '''')) FROM %I.%I t', relname, schemaname, relname)
FROM pg_stat_user_tables WHERE schemaname <> '_cutover' ORDER BY relname
"""
# What pgcapture's uninstall must leave nothing of (contract: schema _cutover, triggers named
# cutover_capture*).
LEFT_SQL = """
SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = '_cutover'),
       (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cutover\\_capture%')
"""


def _digests(endpoint: Endpoint) -> dict[str, str]:
    out = {}
    for query in baselines.run_sql(endpoint, DIGESTS_SQL).splitlines():
        name, count, digest = baselines.run_sql(endpoint, query).strip().split("\t")
        out[name] = f"{count}:{digest}"
    return out


def _load(source: Endpoint, ref: reference.Reference) -> float:
    from cutover.bench.harness import load_reference  # noqa: PLC0415 - the harness's loader

    return load_reference(source, ref)


def _admin(cluster: PgCluster, dbname: str = "postgres") -> Endpoint:
    return Endpoint(cluster, dbname, cluster.superuser, cluster.password)


@pytest.fixture
def small(pg_source: PgCluster) -> Endpoint:
    """The reference at scale 2, owned and loaded by a plain role, history filled as issue 10's
    changed-tables round leaves it."""
    db = make_database(pg_source, "rows")
    source = Endpoint(pg_source, db.dbname, db.owner, db.password)
    _load(source, SMALL)
    baselines.run_sql(source, reference.workload_sql(SMALL, 1))
    return source


# -- the workload ---------------------------------------------------------------------------


def test_the_workload_script_holds_only_the_scales_numbers_and_a_fixed_transaction_count() -> None:
    script = workload.workload_script(reference.Reference(40))
    assert "random(1, 3999991)" in script  # 4,000,000 accounts, ranges of 10
    assert "UPDATE bench_events SET id = -id" in script  # a primary-key update
    assert workload.transactions(reference.Reference(40)) == 18_000
    assert workload.transactions(reference.Reference(1)) % workload.CLIENTS == 0
    assert workload.half(reference.Reference(40)) == reference.Reference(20)
    assert workload.half(reference.Reference(3)) == reference.Reference(1)
    assert workload.half(reference.Reference(1)) is None
    # The split at the last catch-up: 90% before it, the rest after (what the window holds).
    assert workload.parts(reference.Reference(40)) == (16_200, 1_800)
    for scale in (1, 2, 3, 40):
        before, after = workload.parts(reference.Reference(scale))
        assert before + after == workload.transactions(reference.Reference(scale))
        assert before % workload.CLIENTS == 0 and after % workload.CLIENTS == 0 and after > 0


def test_the_workload_changes_about_5_percent_of_rows_over_every_reference_table(
    small: Endpoint, tmp_path: Path
) -> None:
    before = _digests(small)
    rows_before = int(baselines.run_sql(small, workload.ROW_COUNT_SQL))
    baselines.run_sql(
        small,
        "CREATE TABLE snap_accounts AS SELECT * FROM pgbench_accounts;"
        "CREATE TABLE snap_events AS SELECT * FROM bench_events;",
    )
    assert workload.run_workload(small, SMALL, tmp_path) > 0
    after = _digests(small)
    changed = {name for name in REFERENCE_TABLES if before[name] != after[name]}
    assert changed == set(REFERENCE_TABLES)
    counts = baselines.run_sql(
        small,
        "SELECT (SELECT count(*) FROM pgbench_accounts a JOIN snap_accounts s USING (aid)"
        "        WHERE a.abalance <> s.abalance),"
        " (SELECT count(*) FROM bench_events e FULL JOIN snap_events s USING (id)"
        "        WHERE e IS DISTINCT FROM s),"
        " (SELECT count(*) FROM bench_events WHERE id < 0),"
        " (SELECT count(*) FROM bench_events WHERE kind = 'new'),"
        " (SELECT count(*) FROM snap_events s WHERE NOT EXISTS"
        "        (SELECT FROM bench_events e WHERE e.id IN (s.id, -s.id)))",
    ).split()
    accounts, events, moved, inserted, deleted = (int(c) for c in counts)
    assert moved > 0 and inserted > 0 and deleted > 0  # key updates, inserts, deletes
    share = (accounts + events) / rows_before
    assert 0.02 < share < 0.10, share  # "about 5%" of all rows, from the two largest alone
    assert 0.02 < accounts / (100_000 * SMALL.scale) < 0.10  # the largest table too


# -- a tiny round of the rows figures --------------------------------------------------------


def test_a_tiny_rows_round_prints_its_lines_and_leaves_the_copy_equal_to_the_source(
    small: Endpoint, pg_target: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bool, str, str]] = []  # (final, since, the round's position)
    real = pgapply.apply_changes

    def spy(*args: Any, **kwargs: Any) -> pgapply.ApplyResult:
        result: pgapply.ApplyResult = real(*args, **kwargs)
        calls.append((kwargs["final"], args[5], result.position))
        return result

    monkeypatch.setattr(pgapply, "apply_changes", spy)
    figures = {name: Figure(name) for name in rows.FIGURES}
    # The full final sync the ratio divides by: a real full copy of the same source
    # (pg_dump | pg_restore, issue 10's baseline (b)), standing for cutover's final-direct.
    full = Figure(report.final_name("direct"))
    full.add(baselines.streamed(small, baselines.fresh_database(_admin(pg_target), _name())))
    figures[full.name] = full
    pgcopydb = Figure(report.PGCOPYDB)
    figures[pgcopydb.name] = pgcopydb
    half_source = rows.half_database(small)
    half_mb = _load(half_source, reference.Reference(1))
    size_mb = float(baselines.run_sql(small, "SELECT pg_database_size(current_database())"))
    work = tmp_path
    if shutil.which("pgcopydb"):
        target = baselines.fresh_database(_admin(pg_target), _name())
        pgcopydb.add(baselines.pgcopydb_clone(small, target, work, jobs=2))
    else:
        pgcopydb.fail("pgcopydb not installed")
    sizes = rows.Sizes(small, half_source, SMALL, reference.Reference(1))
    run = rows.measure(figures, rows.Tools(), sizes, _admin(pg_target), work, jobs=2)

    for name in rows.FIGURES:
        if name != report.PGCOPYDB_HALF or shutil.which("pgcopydb"):
            assert figures[name].ok, f"{name}: {figures[name].why()}"
    assert run is not None
    assert _digests(run.target) == _digests(small)  # the post-apply databases are equal
    assert 0.01 < run.share < 0.15
    # The catch-up ran from the initial position, the final apply from the catch-up's.
    initial, caught, since = run.positions
    assert calls[0] == (False, initial, caught)
    assert calls[1][:2] == (True, caught)
    assert since == caught != initial
    assert run.caught_up > run.written > 0  # 90% of the workload's changes before, 10% after
    # keyless pgbench_history: its inserts applied from its row log, nothing copied whole
    assert run.whole == ()
    profile = rows.phases_line(run) or ""
    assert profile.startswith("bench: final-rows-phases survey ") and " batches " in profile
    for endpoint in (small, half_source):
        assert baselines.run_sql(endpoint, LEFT_SQL).split() == ["0", "0"]  # capture removed

    lines = rows.lines(figures, size_mb / 1e6, half_mb, run)
    by_name = {line.split()[1]: line for line in lines}
    values = {name: line.split()[2] for name, line in by_name.items()}
    for name in ("final-rows/final-full", "catch-up/final-full", "trigger-write-overhead",
                 "window-data-rows",
                 "window-data-rows-per-gb", "rows-changed-share"):  # fmt: skip
        assert float(values[name]) != 0, by_name[name]
    assert float(values["final-rows/final-full"]) > 0
    assert float(values["trigger-write-overhead"]) > 0
    assert "target <= 0.1" in by_name["final-rows/final-full"]
    assert report.ROWS_ASSUMPTION in by_name["final-rows/final-full"]
    assert report.CATCHUP_INFO in by_name["catch-up/final-full"]
    assert "catch-up / final-direct" in by_name["catch-up/final-full"]
    assert f"{run.caught_up} by the catch-up" in by_name["rows-changed-share"]
    assert "information, >1 = slower" in by_name["trigger-write-overhead"]
    assert "workload-captured / workload-plain" in by_name["trigger-write-overhead"]
    assert "copied whole by the final apply: none" in by_name["rows-changed-share"]
    assert by_name["final-rows-phases"] == profile
    if shutil.which("pgcopydb"):
        assert float(values["pgcopydb-clone-per-gb"]) != 0

    # The next round runs the plain workload last (after verify-data), not first.
    again = rows.measure(
        figures, rows.Tools(), rows.Sizes(small, None, SMALL, None), _admin(pg_target), work, 2
    )
    assert again is not None
    assert len(figures[report.WORKLOAD_PLAIN].runs) == 2
    assert len(figures[report.FINAL_ROWS].runs) == 2
    assert len(figures[report.CATCHUP].runs) == 2
    # Every final apply started where the catch-up before it ended.
    assert [c[0] for c in calls] == [False, True] * 3  # reference, half-size, reference again
    assert all(c[1] == calls[i - 1][2] for i, c in enumerate(calls) if c[0])
    assert _digests(again.target) != _digests(small)  # the plain run came after the comparison


def test_a_failing_round_fails_its_figures_and_removes_the_capture(
    small: Endpoint, pg_target: PgCluster, tmp_path: Path
) -> None:
    """The workload fails after the capture is installed (its table is gone): the round raises
    naming pgbench, and the source keeps no capture object."""
    baselines.run_sql(small, "DROP TABLE bench_events")
    seen: list[str] = []
    with pytest.raises(baselines.BaselineError, match="pgbench"):
        rows.rows_round(
            rows.Tools(), small, _admin(pg_target), SMALL, tmp_path, jobs=2, plain="no",
            record=lambda phase, _seconds: seen.append(phase), dbname=_name(),
        )  # fmt: skip
    assert seen == []
    assert baselines.run_sql(small, LEFT_SQL).split() == ["0", "0"]
    figures = {name: Figure(name) for name in rows.FIGURES}
    sizes = rows.Sizes(small, None, SMALL, None)
    assert rows.measure(figures, rows.Tools(), sizes, _admin(pg_target), tmp_path, 2) is None
    assert "pgbench" in figures[report.FINAL_ROWS].why()
    assert "pgbench" in figures[report.WORKLOAD_PLAIN].why()
    assert figures[report.FINAL_ROWS_HALF].why() == "one size only (BENCH_SCALE < 2)"


def test_a_failed_apply_keeps_the_workload_figures_and_removes_the_capture(
    small: Endpoint, pg_target: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgapply raises CutoverError naming the table (contract, "Errors"): here the final apply
    is patched to do so (the catch-up is real), since a real apply cannot be made to fail
    between the copy and its end from outside."""
    real = pgapply.apply_changes

    def failing(*args: Any, **kwargs: Any) -> pgapply.ApplyResult:
        if kwargs["final"]:
            raise CutoverError("public.bench_events: the batch failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(pgapply, "apply_changes", failing)
    figures = {name: Figure(name) for name in rows.FIGURES}
    sizes = rows.Sizes(small, None, SMALL, None)
    assert rows.measure(figures, rows.Tools(), sizes, _admin(pg_target), tmp_path, 2) is None
    assert figures[report.WORKLOAD_PLAIN].ok
    assert figures[report.WORKLOAD_CAPTURED].ok
    assert figures[report.FINAL_ROWS].why() == "public.bench_events: the batch failed"
    assert not figures[report.VERIFY_ROWS].ok
    assert not figures[report.CATCHUP].ok  # recorded only once verify-data found the copy equal
    assert baselines.run_sql(small, LEFT_SQL).split() == ["0", "0"]
    line = report.ratio_line(report.rows_ratios(figures)[2])
    assert line.startswith("ratio: trigger-write-overhead ")
    assert float(line.split()[2]) > 0


def _name() -> str:
    return f"bench_{secrets.token_hex(4)}"


# -- the lines, from figures ------------------------------------------------------------------


def _figures(**runs: list[float] | str) -> dict[str, Figure]:
    out = {}
    for name, value in runs.items():
        figure = Figure(name.replace("_", "-"))
        if isinstance(value, str):
            figure.fail(value)
        else:
            for seconds in value:
                figure.add(seconds)
        out[figure.name] = figure
    return out


def test_the_window_lines_add_apply_and_verify_and_take_the_slope_between_two_sizes() -> None:
    figures = _figures(
        final_rows=[2.0, 3.0, 4.0],
        verify_rows=[10.0],
        final_rows_half=[1.0],
        verify_rows_half=[5.0],
        pgcopydb_clone=[25.0],
        pgcopydb_clone_half=[12.0],
    )
    lines = report.rows_window_lines(figures, 1000.0, 500.0)
    assert lines[0].startswith("bench: window-data-rows 13.00 (final-rows + verify-rows at 1000 ")
    assert "pgcopydb-clone 25.00" in lines[0]
    # (13 - 6) s over 0.5 GB; pgcopydb (25 - 12) over 0.5 GB
    assert lines[1].startswith("bench: window-data-rows-per-gb 14.00 (from 1000 MB and 500 MB")
    assert lines[2] == "bench: pgcopydb-clone-per-gb 26.00 (from 1000 MB and 500 MB)"


def test_a_failed_figure_fails_its_lines_with_the_reason_never_a_number() -> None:
    figures = _figures(
        final_rows="pgapply: boom",
        verify_rows=[1.0],
        workload_plain=[2.0],
        workload_captured="pgbench exited 2",
        catch_up="pgapply: the catch-up failed",
        pgcopydb_clone=[3.0],
    )
    lines = report.rows_window_lines(figures, 1000.0, None)
    assert lines == [
        "bench: window-data-rows failed: final-rows failed: pgapply: boom",
        "bench: window-data-rows-per-gb failed: one size only (BENCH_SCALE < 2)",
    ]
    ratios = [report.ratio_line(r) for r in report.rows_ratios(figures)]
    assert ratios[0].startswith("ratio: final-rows/final-full failed: final-rows failed: ")
    assert "target <= 0.1" in ratios[0]
    assert ratios[1] == (
        "ratio: catch-up/final-full failed: catch-up failed: pgapply: the catch-up failed "
        f"({report.CATCHUP_INFO})"
    )
    assert ratios[2] == (
        "ratio: trigger-write-overhead failed: workload-captured failed: pgbench exited 2 "
        "(information, >1 = slower)"
    )
    assert rows.share_line(None).startswith("bench: rows-changed-share failed: ")


def test_the_rows_ratio_divides_by_cutovers_fastest_full_sync() -> None:
    figures = _figures(
        final_rows=[1.0],
        catch_up=[9.0],
        final_backup=[20.0],
        final_direct=[10.0],
        workload_plain=[4.0],
        workload_captured=[5.0],
    )
    final, catchup, overhead = report.rows_ratios(figures)
    assert final.value == pytest.approx(0.1)
    assert final.met is True
    assert final.detail == f"final-rows / final-direct; {report.ROWS_ASSUMPTION}"
    assert catchup.value == pytest.approx(0.9)
    assert catchup.met is None  # information: no target
    assert report.ratio_line(catchup) == (
        f"ratio: catch-up/final-full 0.90 ({report.CATCHUP_INFO}; catch-up / final-direct)"
    )
    assert overhead.value == pytest.approx(1.25)
    assert overhead.met is None  # information: no target
    assert report.ratio_line(overhead) == (
        "ratio: trigger-write-overhead 1.25 (information, >1 = slower; "
        "workload-captured / workload-plain)"
    )
