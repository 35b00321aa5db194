"""The benchmark's report maths (cutover/bench/report.py): medians, ratios against the right
figures, targets, failed figures and ratios printed as failures, never as numbers."""

from __future__ import annotations

import pytest
from rich.console import Console

from cutover.bench import report
from cutover.bench.report import Figure

# Keyword names for the report's figure names (pg_dump|pg_restore cannot be a keyword).
ALIASES = {
    "streamed": report.STREAMED,
    "pgcopydb": report.PGCOPYDB,
    "guide": report.GUIDE,
    "final_backup": "final-backup",
    "final_direct": "final-direct",
    "final_in_rack": "final-in-rack",
    "final_changed": report.FINAL_CHANGED,
    "verify": report.VERIFY,
    "verify_psql": report.VERIFY_PSQL,
}


def _named(**runs: list[float] | str) -> dict[str, Figure]:
    """Figures by keyword: a list of seconds per run, or a string: the reason it failed."""
    out = {}
    for key, value in runs.items():
        figure = Figure(ALIASES[key])
        if isinstance(value, str):
            figure.fail(value)
        else:
            for seconds in value:
                figure.add(seconds)
        out[figure.name] = figure
    return out


def test_median_is_the_middle_run_not_the_mean() -> None:
    figure = Figure("x", [9.0, 1.0, 2.0])
    assert figure.median() == 2.0


def test_a_failed_figure_has_no_median_and_keeps_its_first_reason() -> None:
    figure = Figure("x", [1.0])
    figure.fail("pg_restore exited 1:\n  ERROR: boom")
    figure.fail("second reason")
    assert figure.median() is None
    assert figure.why() == "pg_restore exited 1: ERROR: boom"


def test_full_ratio_is_cutovers_fastest_method_over_the_faster_of_streamed_and_pgcopydb() -> None:
    figures = _named(
        guide=[1.0, 1.0, 1.0],  # (a) is not a candidate for the baseline
        streamed=[10.0, 12.0, 11.0],
        pgcopydb=[8.0, 6.0, 7.0],
        final_backup=[30.0, 30.0, 30.0],
        final_direct=[14.0, 14.0, 14.0],
        final_in_rack="convox run exited 1",
    )
    ratio = report.ratios(figures, "direct")[0]
    assert ratio.name == "final-full/fastest-baseline"
    assert ratio.value == pytest.approx(14.0 / 7.0)
    assert ratio.met is False
    assert ratio.detail == "final-direct / pgcopydb-clone"


def test_changed_ratio_uses_the_full_sync_of_the_same_method() -> None:
    figures = _named(
        streamed=[10.0],
        final_backup=[4.0],
        final_direct=[8.0],
        final_changed=[1.0],
    )
    changed = report.ratios(figures, "direct")[1]
    assert changed.value == pytest.approx(1.0 / 8.0)
    assert changed.met is True


def test_changed_ratio_falls_back_to_the_fastest_method_when_its_own_failed() -> None:
    figures = _named(final_backup=[4.0], final_direct="not built", final_changed=[2.0])
    changed = report.ratios(figures, "direct")[1]
    assert changed.value == pytest.approx(0.5)
    assert changed.detail == "final-changed / final-backup"


def test_a_ratio_whose_figure_failed_is_failed_with_the_reason() -> None:
    figures = _named(
        streamed=[10.0],
        final_backup=[5.0],
        verify="CutoverError: the Convox database differs",
        verify_psql=[2.0],
    )
    verify = report.ratios(figures, "backup")[2]
    assert verify.value is None
    assert "verify-data failed: CutoverError: the Convox database differs" in verify.detail
    lines = report.lines(figures, report.ratios(figures, "backup"), peak_rss_mb=80.4,
                         own_seconds_max=0.5)  # fmt: skip
    assert "bench: verify-data failed: CutoverError: the Convox database differs" in lines
    failed = [line for line in lines if line.startswith("ratio: verify/psql-baseline")]
    assert failed[0].startswith("ratio: verify/psql-baseline failed: ")
    assert "target <= 1" in failed[0]


def test_lines_put_the_value_third_and_the_target_beside_it() -> None:
    figures = _named(
        streamed=[10.0, 10.0, 10.0],
        pgcopydb=[20.0, 20.0, 20.0],
        final_backup=[9.0, 9.5, 8.5],
        final_changed=[2.0, 2.0, 2.0],
        verify=[3.0, 3.0, 3.0],
        verify_psql=[2.0, 2.0, 2.0],
    )
    lines = report.lines(
        figures,
        report.ratios(figures, "backup"),
        peak_rss_mb=150.0,
        own_seconds_max=1.25,
        own_where="final-sync (cutover-direct-full)",
    )
    values = {line.split()[1]: line.split()[2] for line in lines}
    assert values["final-backup"] == "9.00"
    assert values["final-full"] == "9.00"
    assert values["pg_dump|pg_restore"] == "10.00"
    assert values["final-full/fastest-baseline"] == "0.90"
    assert values["final-changed/final-full"] == "0.22"
    assert values["verify/psql-baseline"] == "1.50"
    assert values["cutover-peak-rss-mb"] == "150"
    assert values["cutover-own-seconds-max"] == "1.25"
    by_name = {line.split()[1]: line for line in lines}
    assert "target <= 1: met" in by_name["final-full/fastest-baseline"]
    assert "target <= 0.25: met" in by_name["final-changed/final-full"]
    assert "target <= 1: MISSED" in by_name["verify/psql-baseline"]
    assert "target < 150: MISSED" in by_name["cutover-peak-rss-mb"]  # "under 150 MB"
    assert by_name["cutover-own-seconds-max"].endswith(
        "(target < 2: met; in final-sync (cutover-direct-full))"
    )


def test_no_cutover_figure_ran_prints_memory_and_own_time_as_failed() -> None:
    lines = report.lines({}, [], peak_rss_mb=None, own_seconds_max=None)
    assert lines == [
        "bench: cutover-peak-rss-mb failed: no cutover figure ran",
        "bench: cutover-own-seconds-max failed: no cutover figure ran",
    ]


def test_the_table_shows_runs_medians_and_failures() -> None:
    figures = _named(final_backup=[1.0, 3.0, 2.0], final_direct="no such method")
    console = Console(width=200, record=True)
    console.print(report.table(figures, "t"))
    text = console.export_text()
    assert "1.00, 3.00, 2.00" in text
    assert "2.00" in text
    assert "failed: no such method" in text


def test_the_heroku_cli_share_is_reported_and_taken_out_of_the_full_ratio_as_information() -> None:
    figures = _named(
        streamed=[10.0, 12.0, 11.0], pgcopydb=[8.0, 9.0, 10.0], final_direct=[20.0, 19.0, 18.0]
    )
    heroku = {"final-direct": [5.0, 4.0, 6.0], report.VERIFY: [0.0]}
    out = report.heroku_lines(figures, heroku)
    assert out[0] == "bench: final-direct-heroku-cli 5.00 (inside final-direct)"
    # (20-5, 19-4, 18-6) -> median 15 over pgcopydb's median 9
    assert out[1].startswith("bench: final-full-without-heroku-cli/fastest-baseline 1.67 ")
    assert len(out) == 2  # verify-data never ran the heroku CLI (and did not run here)
    assert report.heroku_lines(figures, {}) == []
