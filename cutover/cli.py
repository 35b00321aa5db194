"""The command line. Thin: parse options, call plain functions, map errors to exit codes.

Exit codes: 0 done, 1 a step failed (resumable), 2 invalid input, 3 waiting at a gate,
4 locked, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cutover import __version__
from cutover.engine import run as engine
from cutover.engine.audit import EVENTS_FILE, read_events
from cutover.engine.lock import unlock as clear_lock
from cutover.engine.plan import build_plan, new_state
from cutover.engine.state import StateStore
from cutover.errors import EXIT_INTERRUPTED, EXIT_STEP_FAILED, CutoverError
from cutover.playbook import DEFAULT_PLAYBOOK, load_playbook
from cutover.secrets import SecretMasker
from cutover.steps import STEP_IDS
from cutover.ui import Ui, status_table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Move a running application from Heroku to Convox in one resumable, auditable run.",
)

PlaybookOpt = Annotated[
    Path, typer.Option("-f", "--file", help="Playbook path.", show_default=True)
]


def _guard(fn: Callable[[Ui], int], *, quiet_stdout: bool = False) -> None:
    """The one error boundary: known errors print brief/details/resolution on stderr, no
    traceback. ``quiet_stdout``: progress goes to stderr too (stdout carries data)."""
    err = Console(stderr=True, highlight=False)
    ui = Ui(err if quiet_stdout else Console(highlight=False), SecretMasker(), err)
    try:
        code = fn(ui)
    except CutoverError as exc:
        ui.error(exc.brief, exc.details, exc.resolution)
        code = exc.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        code = EXIT_INTERRUPTED
    except Exception as exc:  # the boundary: a bug still gets a clear message
        report = _crash_report(ui.masker.mask(traceback.format_exc()))
        ui.error(f"unexpected error: {type(exc).__name__}: {ui.masker.mask(str(exc))}",
                 f"this is a bug in cutover; the traceback is in {report}",
                 "The state file is written atomically, so `cutover status` shows where the "
                 "run stands; resume with `cutover run` once the cause is fixed.")
        code = EXIT_STEP_FAILED
    raise typer.Exit(code)


def _crash_report(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="cutover-crash-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cutover {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """cutover: Heroku to Convox, resumable and auditable."""


@app.command()
def plan(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    until: Annotated[str | None, typer.Option(help="Plan up to this step.")] = None,
    from_step: Annotated[str | None, typer.Option("--from", help="Plan a re-run from here.")]
    = None,
) -> None:
    """Show every step, what is done, the gates and the exact commands. Runs nothing."""
    _guard(lambda ui: engine.plan(file, engine.RunOptions(until=until, from_step=from_step), ui))


@app.command()
def run(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    until: Annotated[str | None, typer.Option(help="Stop after this step.")] = None,
    from_step: Annotated[str | None, typer.Option(
        "--from", help="Re-run this step and clear every later one.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm every gate in advance.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Same as `cutover plan`.")] = False,
    accept_changes: Annotated[bool, typer.Option(
        "--accept-changes", help="Resume although the playbook changed.")] = False,
) -> None:
    """Run the cutover, or resume it from the first step that is not done."""
    options = engine.RunOptions(until=until, from_step=from_step, yes=yes,
                                accept_changes=accept_changes,
                                interactive=engine.is_interactive())
    if dry_run:
        _guard(lambda ui: engine.plan(file, options, ui))
    _guard(lambda ui: engine.run(file, options, ui))


@app.command()
def status(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each step's status, attempts, duration and outputs."""

    def body(ui: Ui) -> int:
        playbook = load_playbook(file)
        store = StateStore(playbook.state_dir, ui.masker)
        state = store.load()
        fresh = state is None
        state = state or new_state(playbook)
        actions = build_plan(playbook, state)
        if as_json:
            doc: dict[str, Any] = {
                "playbook": str(playbook.path),
                "started": not fresh,
                "run_id": None if fresh else state.run_id,
                "steps": [
                    {"id": a.step.id, "next": a.kind.value, "reason": a.reason,
                     **state.steps[a.step.id].model_dump(mode="json")}
                    if a.step.id in state.steps else
                    {"id": a.step.id, "status": "pending", "next": a.kind.value,
                     "reason": a.reason}
                    for a in actions
                ],
            }
            sys.stdout.write(ui.masker.mask(json.dumps(doc, indent=2)) + "\n")
            return 0
        if fresh:
            ui.info(f"no run yet for {playbook.path}", "bold")
        reasons = {a.step.id: a.reason for a in actions if a.kind.value == "skip"}
        ui.console.print(status_table(state, STEP_IDS, ui.masker, reasons))
        nxt = next((a for a in actions if a.will_run), None)
        if nxt:
            ui.info(f"next: {nxt.step.id} ({nxt.reason}) - {engine.resume_command(playbook)}")
        return 0

    _guard(body)


@app.command()
def log(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    as_json: Annotated[bool, typer.Option("--json", help="Raw JSON lines.")] = False,
    step: Annotated[str | None, typer.Option(help="Only events of this step.")] = None,
) -> None:
    """Show the audit log readably."""

    def body(ui: Ui) -> int:
        playbook = load_playbook(file)
        path = playbook.state_dir / EVENTS_FILE
        for event in read_events(path):
            if step and event.get("step") != step:
                continue
            if as_json:
                sys.stdout.write(json.dumps(event) + "\n")
            else:
                ui.info(format_event(event))
        return 0

    _guard(body)


def format_event(event: dict[str, Any]) -> str:
    ts = str(event.get("ts", ""))
    with contextlib.suppress(ValueError):
        ts = datetime.fromisoformat(ts).strftime("%Y-%m-%d %H:%M:%S")
    kind = str(event.get("kind", "?"))
    step = event.get("step")
    head = f"{ts}  {kind:<16} {step or '':<15}"
    if kind == "command":
        argv = shlex.join(event.get("argv") or [])
        line = f"{head} $ {argv}  -> exit {event.get('exit_code')} in {event.get('duration')}s"
        if event.get("outcome") not in ("ok", None):
            line += f" [{event.get('outcome')}]"
            if event.get("stderr_tail"):
                line += "\n" + "\n".join("      " + ln
                                         for ln in str(event["stderr_tail"]).splitlines())
        return line
    skip = {"ts", "kind", "step", "run", "traceback"}
    rest = ", ".join(f"{k}={v}" for k, v in event.items() if k not in skip)
    return f"{head} {rest}"


@app.command()
def unlock(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    force: Annotated[bool, typer.Option("--force", help="Clear even a live lock (unsafe).")]
    = False,
) -> None:
    """Clear the run lock when its process is gone (or with --force)."""

    def body(ui: Ui) -> int:
        playbook = load_playbook(file)
        ui.info(clear_lock(playbook.state_dir, force=force))
        return 0

    _guard(body)


def _register_optional() -> None:
    """Command groups that live in their own modules."""
    from cutover.sandbox.commands import register as register_sandbox  # noqa: PLC0415
    from cutover.translate.cli import register as register_translate  # noqa: PLC0415

    register_translate(app, _guard)
    register_sandbox(app, _guard)


def main() -> None:
    from cutover.translate.cli import extract_timers  # noqa: PLC0415

    _register_optional()
    try:
        argv = extract_timers(sys.argv[1:])
    except CutoverError as exc:
        Ui(Console(), SecretMasker()).error(exc.brief, exc.details, exc.resolution)
        sys.exit(exc.exit_code)
    app(args=argv, prog_name="cutover")
