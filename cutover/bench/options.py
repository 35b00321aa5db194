"""``python -m cutover.bench``'s command line: ``--runs``, ``--rows``, ``--changed-method`` and
``--only`` (figure names checked before the sandbox starts)."""

from __future__ import annotations

import argparse

from cutover.bench import report, rows

# Every figure's name, for --only (the order the table prints them; `window`: the window's cost).
FIGURE_NAMES = (
    report.GUIDE,
    report.final_name("backup"),
    report.STREAMED,
    report.final_name("direct"),
    report.PGCOPYDB,
    report.PGCOPYDB_LOOPBACK,
    report.final_name("in-rack"),
    report.VERIFY,
    report.VERIFY_PSQL,
    report.FINAL_CHANGED,
    *rows.FIGURES,
    "window",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cutover.bench",
        description="Issue 10's benchmark (BENCH_SCALE=N sizes the reference data; 40 ~ 1 GB).",
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds (medians; at least 3)")
    parser.add_argument("--rows", type=int, default=1000, help="the sandbox's own seed rows")
    parser.add_argument(
        "--changed-method",
        choices=report.METHODS,
        default="direct",
        help="the method of figure (e), final-sync with changed-tables",
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="NAME[,NAME]",
        help="measure only these figures (their `bench:` names; `window` for the window's cost): "
        "a developer's loop; the issue's targets are judged on the whole bench",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.rows < 1:
        parser.error("--runs and --rows must be at least 1")
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = sorted(args.only - set(FIGURE_NAMES))
    if unknown:  # before the sandbox and the reference data, which take minutes
        parser.error(
            f"--only: no figure named {', '.join(unknown)} (figures: {', '.join(FIGURE_NAMES)})"
        )
    return args


def wanted(args: argparse.Namespace, *names: str) -> bool:
    """Whether ``--only`` (empty: everything) asks for any of ``names``."""
    return not args.only or bool(args.only.intersection(names))
