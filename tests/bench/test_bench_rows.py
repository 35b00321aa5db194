"""Issue 13's bench figures (cutover/bench/rows.py, halfsize.py, workload.py and their lines in
report.py): the workload changes about 5% of the rows over every reference table; a round runs
the capture-changes and initial-sync steps untimed, then times the catch-up command and the
whole final-sync and verify-data steps (as final-full times the whole final-sync step), with the
apply alone as information, and leaves no capture on the source; the half-size round runs the
same steps with its own playbook and Heroku attachment; the lines print with sane values. The
steps themselves run in the sandbox in ``make bench`` (here a stand-in runs them, on a real
source). Values, never timing bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.databases import make_database

from cutover.adapters import pgcapture
from cutover.bench import baselines, halfsize, reference, report, rows, workload
from cutover.bench.baselines import Endpoint
from cutover.bench.report import Figure
from cutover.sandbox import heroku_api, manager
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
    from cutover.bench.sandboxside import load_reference  # noqa: PLC0415 - the harness's loader

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


# -- a round of the rows figures -------------------------------------------------------------


class FakeSteps:
    """The harness's Bench, standing in for the sandbox: capture-changes installs the real
    capture on the source (so its removal is real), initial-sync reads its real position; the
    timed steps and the catch-up return fixed seconds, final-sync's outputs are ``final``."""

    def __init__(self, source: Endpoint, final: dict[str, Any], stderr: str = "") -> None:
        self.source = source
        self.final = final
        self.stderr = ""
        self.final_stderr = stderr
        self.calls: list[tuple[str, str, str]] = []  # (playbook, step, figure)
        self.tools = rows.Tools()
        self.position = ""

    def cutover(self, playbook: Path, step: str, figure: str = "") -> float:
        self.calls.append((playbook.name, step, figure))
        conn = self.tools.conn(self.source)
        if step == "capture-changes":
            pgcapture.install(self.tools.pg, conn, pgcapture.inspect(self.tools.pg, conn))
        if step == "initial-sync":
            self.position = pgcapture.position(self.tools.pg, conn)
        self.stderr = self.final_stderr if step == "final-sync" else ""
        return {"final-sync": 2.0, "verify-data": 3.0}.get(step, 99.0)

    def catch_up(self, playbook: Path) -> tuple[float, int]:
        self.calls.append((playbook.name, "catch-up", ""))
        return 5.0, 700

    def outputs(self, playbook: Path, step: str) -> dict[str, Any]:
        if step == "initial-sync":
            return {"capture_position": self.position}
        return self.final


FINAL = {
    "method": "changed-rows", "seconds": 0.5, "upserted": 60, "deleted": 10, "whole": [],
    "position": "900:900:",
}  # fmt: skip


def test_a_round_times_the_final_sync_and_verify_data_steps_and_the_catch_up_command(
    small: Endpoint, pg_target: PgCluster, tmp_path: Path
) -> None:
    """capture-changes and initial-sync (untimed), 90% of the workload, the catch-up command,
    the rest, then the final-sync and verify-data steps, timed as final-rows and verify-rows;
    the apply alone is information; the capture is removed from the source."""
    steps = FakeSteps(small, FINAL)
    figures = {name: Figure(name) for name in rows.FIGURES}
    playbook = tmp_path / "cutover-direct-changed-rows.yml"
    sizes = rows.Sizes(small, playbook, None, None, SMALL, None)
    run = rows.measure(figures, steps, rows.Tools(), sizes, _admin(pg_target), tmp_path, 2)

    assert run is not None
    assert [c[1:] for c in steps.calls] == [
        ("capture-changes", ""),
        ("initial-sync", ""),
        ("catch-up", ""),
        ("final-sync", report.FINAL_ROWS),
        ("verify-data", report.VERIFY_ROWS),
    ]
    assert {c[0] for c in steps.calls} == {playbook.name}
    assert figures[report.CATCHUP].runs == [5.0]
    assert figures[report.FINAL_ROWS].runs == [2.0]  # the step, not the apply inside it
    assert figures[report.FINAL_ROWS_APPLY].runs == [0.5]
    assert figures[report.VERIFY_ROWS].runs == [3.0]
    assert figures[report.WORKLOAD_PLAIN].ok and figures[report.WORKLOAD_CAPTURED].ok
    assert figures[report.FINAL_ROWS_HALF].why() == "one size only (BENCH_SCALE < 2)"
    assert (run.caught_up, run.written, run.whole) == (700, 70, ())
    assert run.positions == (steps.position, "900:900:") and steps.position
    assert run.apply_seconds == 0.5
    assert baselines.run_sql(small, LEFT_SQL).split() == ["0", "0"]  # capture removed
    line = rows.share_line(run)
    assert "700 by the catch-up" in line and "70 by the final-sync" in line

    # The next round runs the plain workload last (after verify-data), not first.
    assert rows.measure(figures, steps, rows.Tools(), sizes, _admin(pg_target), tmp_path, 2)
    assert len(figures[report.WORKLOAD_PLAIN].runs) == 2
    assert len(figures[report.FINAL_ROWS].runs) == 2


def test_the_half_size_round_runs_the_same_steps_with_its_own_playbook(
    small: Endpoint, pg_target: PgCluster, tmp_path: Path
) -> None:
    half = halfsize.half_database(small)
    _load(half, reference.Reference(1))
    steps = FakeSteps(half, FINAL)
    figures = {name: Figure(name) for name in rows.FIGURES}
    figures[report.FINAL_ROWS].fail("not this test's")  # the reference round is skipped
    figures[report.PGCOPYDB_HALF].fail("not this test's")
    sizes = rows.Sizes(
        small, tmp_path / "ref.yml", half, tmp_path / "half.yml", SMALL, reference.Reference(1)
    )
    assert rows.measure(figures, steps, rows.Tools(), sizes, _admin(pg_target), tmp_path, 2) is None
    assert steps.calls == [
        ("half.yml", "capture-changes", ""),
        ("half.yml", "initial-sync", ""),
        ("half.yml", "catch-up", ""),
        ("half.yml", "final-sync", report.FINAL_ROWS_HALF),
        ("half.yml", "verify-data", report.VERIFY_ROWS_HALF),
    ]
    assert figures[report.FINAL_ROWS_HALF].runs == [2.0]
    assert figures[report.VERIFY_ROWS_HALF].runs == [3.0]
    assert baselines.run_sql(half, LEFT_SQL).split() == ["0", "0"]


def test_a_final_sync_that_fell_back_to_a_full_copy_fails_the_figures_naming_why(
    small: Endpoint, pg_target: PgCluster, tmp_path: Path
) -> None:
    note = f"  note: {rows.FALLBACK}: tables the capture cannot cover: x"
    steps = FakeSteps(small, {**FINAL, "method": "direct"}, stderr=f"other\n{note}\n")
    figures = {name: Figure(name) for name in rows.FIGURES}
    sizes = rows.Sizes(small, tmp_path / "p.yml", None, None, SMALL, None)
    assert rows.measure(figures, steps, rows.Tools(), sizes, _admin(pg_target), tmp_path, 2) is None
    assert figures[report.FINAL_ROWS].why() == (
        f"final-sync did not apply the changed rows: {rows.FALLBACK}: tables the capture "
        "cannot cover: x"
    )
    assert not figures[report.CATCHUP].ok  # recorded only once verify-data passed
    assert figures[report.WORKLOAD_CAPTURED].ok
    assert steps.calls[-1][1] == "final-sync"  # verify-data not run
    assert baselines.run_sql(small, LEFT_SQL).split() == ["0", "0"]
    assert rows.fallback_note("") == "its outputs' method is not changed-rows"


def test_a_failing_round_fails_its_figures_and_removes_the_capture(
    small: Endpoint, pg_target: PgCluster, tmp_path: Path
) -> None:
    """The workload fails after the capture is installed (its table is gone): the round raises
    naming pgbench, and the source keeps no capture object."""
    baselines.run_sql(small, "DROP TABLE bench_events")
    seen: list[str] = []
    steps = FakeSteps(small, FINAL)
    with pytest.raises(baselines.BaselineError, match="pgbench"):
        rows.rows_round(
            steps, rows.Tools(), small, SMALL, tmp_path, tmp_path / "p.yml", plain="no",
            record=lambda phase, _seconds: seen.append(phase),
        )  # fmt: skip
    assert seen == []
    assert [c[1] for c in steps.calls] == ["capture-changes", "initial-sync"]
    assert baselines.run_sql(small, LEFT_SQL).split() == ["0", "0"]
    figures = {name: Figure(name) for name in rows.FIGURES}
    sizes = rows.Sizes(small, tmp_path / "p.yml", None, None, SMALL, None)
    steps = FakeSteps(small, FINAL)
    assert rows.measure(figures, steps, rows.Tools(), sizes, _admin(pg_target), tmp_path, 2) is None
    assert "pgbench" in figures[report.FINAL_ROWS].why()
    assert "pgbench" in figures[report.WORKLOAD_PLAIN].why()
    assert figures[report.FINAL_ROWS_HALF].why() == "one size only (BENCH_SCALE < 2)"


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


def test_the_tools_line_ranks_the_last_final_sync_steps_programs() -> None:
    assert rows.tools_line([]) is None
    line = rows.tools_line([{"psql": 9.0}, {"psql": 1.25, "heroku": 2.5, "convox": 0.5}])
    assert line == (
        "bench: final-rows-tools heroku 2.50, psql 1.25, convox 0.50 "
        "(the last final-rows step's programs)"
    )


def test_the_half_size_database_is_attached_to_the_heroku_app_and_detached_after(
    tmp_path: Path,
) -> None:
    primary: dict[str, str | int] = {
        "host": "127.0.0.1", "port": 5999, "database": "app", "user": "u", "password": "pw",
    }  # fmt: skip
    state = heroku_api.default_state(
        manager.HEROKU_APP, db=primary, domain="example.test", heroku_dns_target="t.example",
        api_key="k",
    )  # fmt: skip
    path = tmp_path / "heroku" / "state.json"
    path.parent.mkdir()
    heroku_api.save_state(path, state)
    before = heroku_api.load_state(path)["apps"][manager.HEROKU_APP]
    half = Endpoint(PgCluster.__new__(PgCluster), halfsize.HALF_DB, "u", "pw")

    assert halfsize.attach(tmp_path, half) == halfsize.ATTACHMENT
    entry = heroku_api.load_state(path)["apps"][manager.HEROKU_APP]
    dbs = [a["database"] for a in entry["addons"] if isinstance(a.get("database"), dict)]
    assert [d["database"] for d in dbs] == ["app", halfsize.HALF_DB]
    assert dbs[1]["port"] == 5999 and dbs[1]["user"] == "u"
    assert f"{halfsize.ATTACHMENT}_URL" in entry["config_vars"]

    halfsize.detach(tmp_path, halfsize.ATTACHMENT)
    after = heroku_api.load_state(path)["apps"][manager.HEROKU_APP]
    assert after["addons"] == before["addons"]
    assert after["config_vars"] == before["config_vars"]
