"""The benchmark's figures, ratios and targets (issue 10, "Benchmark"), and how they print.

Pure: no clock, no process. Every figure is a list of seconds (one per run) or the reason it
failed; medians are taken over the runs; a ratio whose inputs failed is reported as failed with
the reason, never as a number.

Targets (issue 10): final-full at most 1.0 x the fastest of (b) streamed and (c) pgcopydb;
final-changed at most 0.25 x final-full; verify-data at most 1.0 x the psql baseline; cutover's
own memory under 150 MB; cutover's own time (outside external commands) under 2 s per step.
Issue 13 (cutover/bench/rows.py): final-rows (from the last catch-up, holding the workload's
last 10%: a stated assumption) at most 0.1 x final-full; the catch-up against final-full is
information (what a window without a catch-up would hold); the trigger write overhead is
information (no target: >1 = slower); the window's data part with changed-rows
(final-rows + verify-rows) at the reference size and per GB from two sizes, next to pgcopydb's.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from rich.table import Table

GUIDE = "guide-file"  # (a) pg_dump -Fc to a file, then pg_restore
STREAMED = "pg_dump|pg_restore"  # (b)
PGCOPYDB = "pgcopydb-clone"  # (c)
# (c) on loopback: no TLS to Heroku, no proxy to Convox (the tools alone; information only)
PGCOPYDB_LOOPBACK = "pgcopydb-clone-loopback"
METHODS = ("backup", "direct", "in-rack")
FINAL_CHANGED = "final-changed"  # (e)
VERIFY = "verify-data"  # (f) cutover
VERIFY_PSQL = "verify-psql"  # (f) baseline
FINAL_FULL = "final-full"

TARGET_FULL = 1.0
TARGET_CHANGED = 0.25
TARGET_VERIFY = 1.0
TARGET_RSS_MB = 150.0
TARGET_OWN_SECONDS = 2.0
# Issue 13's figures (cutover/bench/rows.py)
CATCHUP = "catch-up"  # the `cutover catch-up` command after 90% of the workload
FINAL_ROWS = "final-rows"  # the final-sync step (changed-rows) after the last 10%
FINAL_ROWS_APPLY = "final-rows-apply"  # information: the apply alone, inside final-rows
VERIFY_ROWS = "verify-rows"  # the verify-data step after it
WORKLOAD_PLAIN = "workload-plain"  # the write workload without capture triggers
WORKLOAD_CAPTURED = "workload-captured"  # the same with them
FINAL_ROWS_HALF = "final-rows-half"  # the same figures on the half-size reference
VERIFY_ROWS_HALF = "verify-rows-half"
PGCOPYDB_HALF = "pgcopydb-clone-half"
TARGET_ROWS = 0.1


def final_name(method: str) -> str:
    return f"final-{method}"


@dataclass
class Figure:
    """One measured thing: seconds per run, or why it failed (the first failure wins)."""

    name: str
    runs: list[float] = field(default_factory=list)
    error: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    def add(self, seconds: float) -> None:
        self.runs.append(seconds)

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = " ".join(reason.split()) or "failed"

    def median(self) -> float | None:
        return statistics.median(self.runs) if self.ok else None

    def why(self) -> str:
        return self.error or "not measured"


@dataclass(frozen=True)
class Ratio:
    name: str
    value: float | None
    target: float | None  # None: information, no target
    detail: str  # the figures it compares, or why it could not be computed
    info: str = "information, >1 = slower"  # said instead of a verdict when there is no target

    @property
    def met(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        return self.value <= self.target


def _fastest(figures: Iterable[Figure]) -> Figure | None:
    ok = [f for f in figures if f.ok]
    return min(ok, key=lambda f: f.median() or 0.0) if ok else None


def _failed(figures: Sequence[Figure]) -> str:
    return "; ".join(f"{f.name} failed: {f.why()}" for f in figures)


def _ratio(
    name: str, num: Figure | None, den: Figure | None, target: float | None, why: str
) -> Ratio:
    if num is None or den is None:
        return Ratio(name, None, target, why)
    top, bottom = num.median(), den.median()
    if top is None or bottom is None or bottom <= 0:
        return Ratio(name, None, target, why or "a zero denominator")
    return Ratio(name, top / bottom, target, f"{num.name} / {den.name}")


def fastest_full(figures: dict[str, Figure]) -> Figure | None:
    """Cutover's fastest full final sync among the methods that worked."""
    return _fastest(figures[final_name(m)] for m in METHODS if final_name(m) in figures)


def ratios(figures: dict[str, Figure], changed_method: str) -> list[Ratio]:
    finals = [figures[final_name(m)] for m in METHODS if final_name(m) in figures]
    baselines = [figures[n] for n in (STREAMED, PGCOPYDB) if n in figures]
    full = fastest_full(figures)
    baseline = _fastest(baselines)
    out = [
        _ratio(
            "final-full/fastest-baseline",
            full,
            baseline,
            TARGET_FULL,
            _failed([f for f in [*finals, *baselines] if not f.ok]),
        )
    ]
    changed = figures.get(FINAL_CHANGED)
    # The changed-tables sync against a full sync by the same method; the fastest method's when
    # that one failed.
    same = figures.get(final_name(changed_method))
    den = same if same is not None and same.ok else full
    out.append(
        _ratio(
            "final-changed/final-full",
            changed if changed is not None and changed.ok else None,
            den,
            TARGET_CHANGED,
            _failed([f for f in (changed, den) if f is not None and not f.ok])
            or "no full final sync worked",
        )
    )
    verify, psql = figures.get(VERIFY), figures.get(VERIFY_PSQL)
    out.append(
        _ratio(
            "verify/psql-baseline",
            verify if verify is not None and verify.ok else None,
            psql if psql is not None and psql.ok else None,
            TARGET_VERIFY,
            _failed([f for f in (verify, psql) if f is not None and not f.ok]),
        )
    )
    return out


def verdict(
    value: float | None,
    target: float | None,
    *,
    under: bool = False,
    info: str = "information, >1 = slower",
) -> str:
    """``target <= T: met`` (or ``target < T`` when the issue says "under"); ``information, >1
    = slower`` for a ratio without a target."""
    if target is None:
        return info
    sign = "<" if under else "<="
    if value is None:
        return f"target {sign} {target:g}"
    ok = value < target if under else value <= target
    return f"target {sign} {target:g}: {'met' if ok else 'MISSED'}"


def lines(
    figures: dict[str, Figure],
    computed: list[Ratio],
    *,
    peak_rss_mb: float | None,
    own_seconds_max: float | None,
    own_where: str = "",
    extra: Sequence[str] = (),
) -> list[str]:
    """``bench: NAME SECONDS`` / ``bench: NAME failed: <reason>`` per figure, then the
    ``ratio: NAME VALUE (target ...)`` lines; the value is always the third word."""
    out = []
    for figure in figures.values():
        median = figure.median()
        if median is None:
            out.append(f"bench: {figure.name} failed: {figure.why()}")
        else:
            out.append(f"bench: {figure.name} {median:.2f}")
    full = fastest_full(figures)
    if full is not None and full.median() is not None:
        out.append(f"bench: {FINAL_FULL} {full.median():.2f}")
    if peak_rss_mb is None:
        out.append("bench: cutover-peak-rss-mb failed: no cutover figure ran")
    else:
        out.append(
            f"bench: cutover-peak-rss-mb {peak_rss_mb:.0f} "
            f"({verdict(peak_rss_mb, TARGET_RSS_MB, under=True)})"
        )
    if own_seconds_max is None:
        out.append("bench: cutover-own-seconds-max failed: no cutover figure ran")
    else:
        out.append(
            f"bench: cutover-own-seconds-max {own_seconds_max:.2f} "
            f"({verdict(own_seconds_max, TARGET_OWN_SECONDS, under=True)}"
            f"{'; in ' + own_where if own_where else ''})"
        )
    out.extend(extra)
    out.extend(ratio_line(ratio) for ratio in computed)
    return out


def ratio_line(ratio: Ratio) -> str:
    """``ratio: NAME VALUE (target ...; what it compares)`` or ``ratio: NAME failed: ...``."""
    if ratio.value is None:
        return (
            f"ratio: {ratio.name} failed: {ratio.detail} "
            f"({verdict(None, ratio.target, info=ratio.info)})"
        )
    return (
        f"ratio: {ratio.name} {ratio.value:.2f} "
        f"({verdict(ratio.value, ratio.target, info=ratio.info)}; "
        f"{ratio.detail})"
    )


def _ok(figures: dict[str, Figure], name: str) -> Figure | None:
    figure = figures.get(name)
    return figure if figure is not None and figure.ok else None


def _why(figures: dict[str, Figure], *names: str) -> str:
    return _failed([figures[n] for n in names if n in figures and not figures[n].ok])


# What the final-rows ratio assumes (printed on its line): the window holds the writes made after
# the last catch-up, the workload's last 10% here.
ROWS_ASSUMPTION = (
    "assumed: the window holds only the writes made after the last catch-up, here the "
    "workload's last 10%"
)
CATCHUP_INFO = "information: what a window WITHOUT a catch-up would hold"


def rows_ratios(figures: dict[str, Figure]) -> list[Ratio]:
    """Issue 13: the final apply (from the catch-up) against cutover's fastest full final sync
    (the one issue 10's ratios use); the catch-up against the same (information: a by-key apply
    of changes spread over every page costs about a full copy, which is why the window comes
    after a catch-up); the workload with the capture triggers against the same without."""
    full = fastest_full(figures)
    final = _ratio(
        "final-rows/final-full",
        _ok(figures, FINAL_ROWS),
        full,
        TARGET_ROWS,
        _why(figures, FINAL_ROWS) or "no full final sync worked",
    )
    catchup = _ratio(
        "catch-up/final-full",
        _ok(figures, CATCHUP),
        full,
        None,
        _why(figures, CATCHUP) or "no full final sync worked",
    )
    return [
        replace(final, detail=f"{final.detail}; {ROWS_ASSUMPTION}"),
        replace(catchup, info=CATCHUP_INFO),
        _ratio(
            "trigger-write-overhead",
            _ok(figures, WORKLOAD_CAPTURED),
            _ok(figures, WORKLOAD_PLAIN),
            None,
            _why(figures, WORKLOAD_CAPTURED, WORKLOAD_PLAIN),
        ),
    ]


def _sum(figures: dict[str, Figure], *names: str) -> float | None:
    medians = [f.median() for f in (figures.get(n) for n in names) if f is not None]
    if len(medians) != len(names) or any(m is None for m in medians):
        return None
    return sum(m for m in medians if m is not None)


def _per_gb(big: float | None, small: float | None, big_mb: float, small_mb: float | None) -> str:
    if big is None or small is None or small_mb is None or big_mb - small_mb <= 0:
        return "n/a"
    return f"{(big - small) / ((big_mb - small_mb) / 1000):.2f}"


def rows_window_lines(
    figures: dict[str, Figure], size_mb: float, half_mb: float | None
) -> list[str]:
    """The window's data part with changed-rows (final-rows + verify-rows) at the reference size
    and per GB (the slope between the two sizes), next to pgcopydb-clone's at the same sizes."""
    data = _sum(figures, FINAL_ROWS, VERIFY_ROWS)
    copydb = _sum(figures, PGCOPYDB)
    shown = f"{copydb:.2f}" if copydb is not None else "n/a"
    if data is None:
        why = _why(figures, FINAL_ROWS, VERIFY_ROWS) or "not measured"
        out = [f"bench: window-data-rows failed: {why}"]
    else:
        out = [
            f"bench: window-data-rows {data:.2f} (final-rows + verify-rows at {size_mb:.0f} MB; "
            f"{PGCOPYDB} {shown})"
        ]
    if half_mb is None:
        out.append("bench: window-data-rows-per-gb failed: one size only (BENCH_SCALE < 2)")
        return out
    sizes = f"from {size_mb:.0f} MB and {half_mb:.0f} MB"
    rows_gb = _per_gb(data, _sum(figures, FINAL_ROWS_HALF, VERIFY_ROWS_HALF), size_mb, half_mb)
    copydb_gb = _per_gb(copydb, _sum(figures, PGCOPYDB_HALF), size_mb, half_mb)
    if rows_gb == "n/a":
        why = _why(figures, FINAL_ROWS, VERIFY_ROWS, FINAL_ROWS_HALF, VERIFY_ROWS_HALF)
        out.append(f"bench: window-data-rows-per-gb failed: {why or 'not measured'}")
    else:
        out.append(f"bench: window-data-rows-per-gb {rows_gb} ({sizes}; {PGCOPYDB}-per-gb "
                   f"{copydb_gb})")  # fmt: skip
    if copydb_gb == "n/a":
        out.append(
            f"bench: {PGCOPYDB}-per-gb failed: {_why(figures, PGCOPYDB, PGCOPYDB_HALF) or 'n/a'}"
        )
    else:
        out.append(f"bench: {PGCOPYDB}-per-gb {copydb_gb} ({sizes})")
    return out


def table(figures: dict[str, Figure], title: str) -> Table:
    """The rich table: every figure's runs, median, and what it is."""
    grid = Table(title=title)
    grid.add_column("figure")
    grid.add_column("runs (s)")
    grid.add_column("median (s)", justify="right")
    grid.add_column("what")
    for figure in figures.values():
        runs = ", ".join(f"{r:.2f}" for r in figure.runs)
        median = figure.median()
        grid.add_row(
            figure.name,
            runs or "-",
            f"{median:.2f}" if median is not None else _short(f"failed: {figure.why()}"),
            figure.note,
        )
    return grid


def _short(text: str, limit: int = 70) -> str:
    """The table keeps one line per figure; the full reason is on the figure's own line."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def heroku_lines(figures: dict[str, Figure], heroku: dict[str, list[float]]) -> list[str]:
    """Per cutover figure that ran the heroku CLI: its median seconds inside the figure
    (information, no target: the baselines never start it, cutover must, e.g. for
    ``pg:credentials:url``), and the full-sync ratio without it, to tell that fixed cost from
    cutover's data path."""
    out = []
    for name, runs in heroku.items():
        figure = figures.get(name)
        if figure is None or not figure.ok or not any(runs):
            continue
        out.append(f"bench: {name}-heroku-cli {statistics.median(runs):.2f} (inside {name})")
    full = fastest_full(figures)
    baseline = _fastest([figures[n] for n in (STREAMED, PGCOPYDB) if n in figures])
    runs = heroku.get(full.name, []) if full is not None else []
    if full is not None and baseline is not None and runs and any(runs):
        less = [max(0.0, total - cli) for total, cli in zip(full.runs, runs, strict=False)]
        value = statistics.median(less) / (baseline.median() or 1.0)
        out.append(
            f"bench: {FINAL_FULL}-without-heroku-cli/fastest-baseline {value:.2f} "
            f"(information: {full.name} less its heroku CLI seconds / {baseline.name})"
        )
    return out
