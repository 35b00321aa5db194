"""One cutover figure, in its own Python process: ``python -m cutover.bench.child --playbook P
--step STEP --result FILE``.

It builds the same context ``cutover run`` builds (engine/context.py's ``build_context``, the
state from the playbook's state folder), runs the step's ``apply`` (no gate: the bench is the
operator), records the outputs in the state as the engine does on success (engine/run.py:
status done, outputs merged; each run a fresh attempt, as after ``--from``), and writes one
JSON document to FILE:
``{"ok", "seconds", "external_seconds", "own_seconds", "children", "tools", "rss_mb", "error"}``
(``tools``: seconds per external program, cutover/bench/clock.py). A step inside the window
(final-sync, verify-data) starts after the reads ``cutover run`` makes before the window
(steps/freeze.py ``prefetch``: Heroku's credentials URL, kept in memory), untimed, as in a run.

``rss_mb`` is this process's own peak resident size (``getrusage(RUSAGE_SELF).ru_maxrss``,
kilobytes on Linux): the cutover process, not pg_dump or pg_restore, whose usage the kernel
accounts to them. ``own_seconds`` is wall time minus the time during which at least one
external command ran (cutover/bench/clock.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cutover.bench.clock import ExternalClock, install, own_seconds
from cutover.engine.audit import NullAudit
from cutover.engine.context import build_context
from cutover.engine.plan import new_state, reset_from
from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.secrets import SecretMasker
from cutover.state import RunState, StateStore, Status, now_iso
from cutover.steps import BY_ID
from cutover.steps.base import Context, dump
from cutover.ui import Ui

BENCH_STEPS = ("capture-changes", "initial-sync", "final-sync", "verify-data")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CutoverError):
        detail = next((line.strip() for line in exc.details.splitlines() if line.strip()), "")
        return f"{exc.brief}: {detail}" if detail else exc.brief
    return f"{type(exc).__name__}: {exc}"


def _result(
    masker: SecretMasker, error: str | None, wall: float = 0.0, clock: ExternalClock | None = None
) -> dict[str, Any]:
    external = clock.seconds() if clock else 0.0
    return {
        "ok": error is None,
        "seconds": wall,
        "external_seconds": external,
        "own_seconds": own_seconds(wall, external),
        "children": clock.children if clock else 0,
        "tools": dict(clock.by_tool) if clock else {},
        "rss_mb": peak_rss_mb(),
        "error": masker.mask(" ".join(error.split()))[:400] if error else None,
    }


def run_step(playbook_path: Path, step_id: str) -> dict[str, Any]:
    masker = SecretMasker()
    try:
        playbook = load_playbook(playbook_path)
        store = StateStore(playbook.state_dir, masker)
        state = store.load() or new_state(playbook)
        ui = Ui(Console(stderr=True, highlight=False), masker)
        ctx = build_context(playbook, state, masker=masker, audit=NullAudit(), reporter=ui)
    except CutoverError as exc:
        return _result(masker, f"before the step: {_reason(exc)}")
    try:
        return _attempt(ctx, store, state, masker, step_id)
    finally:
        ctx.convox.close()  # a proxy the prefetch held, as `cutover run` does at its end


def _attempt(
    ctx: Context, store: StateStore, state: RunState, masker: SecretMasker, step_id: str
) -> dict[str, Any]:
    step = BY_ID[step_id]
    # A fresh attempt, as `cutover run --from STEP` makes one: the step and the later ones are
    # cleared (their outputs kept in the history). Without it a re-run "resumes" with the
    # saved progress of the last one: final-sync would restore the previous Heroku backup.
    reset_from(state, step.id)
    st = state.step(step.id)
    st.status = Status.RUNNING
    st.started_at = now_iso()
    store.save(state)
    if step.in_window:
        # What `cutover run` reads before the window (disable-scheduler's prefetch: the
        # credentials URL, kept in memory) is read before the clock too: the figure is the
        # step's share of the downtime.
        from cutover.steps.freeze import prefetch  # noqa: PLC0415

        try:
            prefetch(ctx)
        except CutoverError as exc:
            return _result(masker, f"before the step (prefetch): {_reason(exc)}")
    clock = ExternalClock()
    restore = install(clock)
    from cutover.runner import step_scope  # noqa: PLC0415 - as engine/run.py

    error: str | None = None
    started = time.monotonic()
    try:
        with step_scope(ctx.runner, step.id):
            outputs = step.apply(ctx)
    except Exception as exc:  # the bench reports any failure and carries on
        error = _reason(exc)
    else:
        st.status = Status.DONE
        st.finished_at = now_iso()
        st.outputs.update(dump(outputs))
        store.save(state)
    wall = time.monotonic() - started
    restore()
    trace = os.environ.get("CUTOVER_BENCH_TRACE")
    if trace:
        _write_trace(Path(trace), step_id, clock, masker)
    return _result(masker, error, wall, clock)


def _write_trace(path: Path, step_id: str, clock: ExternalClock, masker: SecretMasker) -> None:
    """Append the step's children (cutover/bench/clock.py, CUTOVER_BENCH_TRACE) to ``path``."""
    lines = [f"step {step_id}"]
    for tool, start, end, label in sorted(clock.trace, key=lambda t: t[1]):
        lines.append(f"{start:8.3f} {end:8.3f} {end - start:7.3f} {tool} {masker.mask(label)}")
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cutover.bench.child")
    parser.add_argument("--playbook", type=Path, required=True)
    parser.add_argument("--step", choices=BENCH_STEPS, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    result = run_step(args.playbook, args.step)
    args.result.write_text(json.dumps(result), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
