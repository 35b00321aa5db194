"""``python -m cutover.bench``'s options (cutover/bench/options.py): ``--only`` names are checked
before anything starts (the sandbox and the reference data take minutes), and ``wanted`` is true
for everything without it."""

from __future__ import annotations

import pytest

from cutover.bench import options, report


def test_only_takes_known_figures_and_window() -> None:
    args = options.parse_args(["--only", f"{report.PGCOPYDB}, final-direct,window"])
    assert args.only == {report.PGCOPYDB, "final-direct", "window"}
    assert options.wanted(args, "window")
    assert options.wanted(args, "final-rows", report.PGCOPYDB)
    assert not options.wanted(args, "final-rows")


def test_without_only_every_figure_is_wanted() -> None:
    args = options.parse_args([])
    assert args.only == set()
    assert options.wanted(args, "anything")


def test_an_unknown_figure_is_refused_at_once_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        options.parse_args(["--only", "final-direkt"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no figure named final-direkt" in err and "final-direct" in err
