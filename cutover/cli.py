"""The command line. Thin: parse options, call plain functions, map errors to exit codes.

Exit codes: 0 done, 1 a step failed (resumable), 2 invalid input, 3 waiting at a gate,
4 locked, 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cutover import __version__
from cutover.errors import EXIT_INTERRUPTED, EXIT_STEP_FAILED, CutoverError, NotYet

if TYPE_CHECKING:
    from cutover.ui import Ui

# Start-up rule: this module imports only typer and cutover's light modules at the top. Each
# command imports what it needs (the playbook model, the engine, the adapters) when it runs, and
# main() registers the translate and sandbox groups only for a command line that can use them,
# so `cutover --version` and `cutover status` do not pay for every library
# (tests/e2e/test_startup_imports.py).

# = cutover.playbook.DEFAULT_PLAYBOOK (not imported: the playbook model loads pydantic);
# tests/e2e/test_startup_imports.py checks that the two agree.
DEFAULT_PLAYBOOK = "cutover.yml"
# Commands with a playbook whose state folder a crash report can point at.
STATE_COMMANDS = (
    "plan", "run", "rollback", "status", "log", "unlock", "verify", "catch-up", "cleanup",
)  # fmt: skip
CORE_COMMANDS = STATE_COMMANDS
TRANSLATE_COMMANDS = ("translate", "init")
SANDBOX_COMMANDS = ("sandbox",)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Move a running application from Heroku to Convox in one resumable, auditable run.",
)

PlaybookOpt = Annotated[
    Path, typer.Option("-f", "--file", help="Playbook path.", show_default=True)
]


def _guard(fn: Callable[[Ui], int], *, quiet_stdout: bool = False, has_state: bool = False) -> None:
    """The one error boundary: known errors print brief/details/resolution on stderr, no
    traceback. ``quiet_stdout``: progress goes to stderr too (stdout carries data).
    ``has_state``: the command works on a playbook's state file, which a crash message points at
    (translate, init and sandbox have none)."""
    import traceback  # noqa: PLC0415 - start-up: see the module's note

    from rich.console import Console  # noqa: PLC0415

    from cutover.secrets import SecretMasker  # noqa: PLC0415
    from cutover.ui import Ui  # noqa: PLC0415

    err = Console(stderr=True, highlight=False)
    ui = Ui(err if quiet_stdout else Console(highlight=False), SecretMasker(), err)
    try:
        code = fn(ui)
    except NotYet as exc:  # nothing failed: a step runs later (exit 5)
        ui.info(f"not yet: {exc.brief}", "yellow")
        if exc.resolution:
            ui.info(exc.resolution)
        code = exc.exit_code
    except CutoverError as exc:
        ui.error(exc.brief, exc.details, exc.resolution)
        code = exc.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        code = EXIT_INTERRUPTED
    except Exception as exc:  # the boundary: a bug still gets a clear message
        report = _crash_report(ui.masker.mask(traceback.format_exc()))
        ui.error(
            f"unexpected error: {type(exc).__name__}: {ui.masker.mask(str(exc))}",
            f"this is a bug in cutover; the traceback is in {report}",
            "The state file is written atomically, so `cutover status` shows where the "
            "run stands; resume with `cutover run` once the cause is fixed."
            if has_state
            else "Please report it with that file.",
        )
        code = EXIT_STEP_FAILED
    raise typer.Exit(code)


def _crash_report(text: str) -> str:
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    try:
        fd, path = tempfile.mkstemp(prefix="cutover-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:  # a full or read-only /tmp: the report itself cannot be written
        return f"(nowhere: the crash report could not be written: {exc.strerror or exc})"
    return path


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cutover {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """cutover: Heroku to Convox, resumable and auditable."""


@app.command()
def plan(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    until: Annotated[str | None, typer.Option(help="Plan up to this step.")] = None,
    from_step: Annotated[
        str | None, typer.Option("--from", help="Plan a re-run from here.")
    ] = None,
    for_rollback: Annotated[
        bool, typer.Option("--rollback", help="Plan `cutover rollback` instead.")
    ] = False,
) -> None:
    """Show every step, what is done, the gates and the exact commands. Runs nothing."""
    from cutover.engine import run as engine  # noqa: PLC0415 - start-up: see the module's note
    from cutover.engine.plan_command import plan  # noqa: PLC0415

    if for_rollback:
        from cutover.engine.rollback import rollback_plan  # noqa: PLC0415

        _guard(lambda ui: rollback_plan(file, ui), has_state=True)
    _guard(
        lambda ui: plan(file, engine.RunOptions(until=until, from_step=from_step), ui),
        has_state=True,
    )


@app.command()
def run(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    until: Annotated[str | None, typer.Option(help="Stop after this step.")] = None,
    from_step: Annotated[
        str | None, typer.Option("--from", help="Re-run this step and clear every later one.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Confirm every gate in advance.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Same as `cutover plan`.")] = False,
    accept_changes: Annotated[
        bool, typer.Option("--accept-changes", help="Resume although the playbook changed.")
    ] = False,
    force_data: Annotated[
        bool,
        typer.Option(
            "--force-data",
            help="Sync even into a Convox database that is live, has taken writes since the "
            "last sync or holds tables cutover did not put there (asks at a gate).",
        ),
    ] = False,
) -> None:
    """Run the cutover, or resume it from the first step that is not done."""
    from cutover.engine import run as engine  # noqa: PLC0415 - start-up: see the module's note

    options = engine.RunOptions(
        until=until,
        from_step=from_step,
        yes=yes,
        accept_changes=accept_changes,
        interactive=engine.is_interactive(),
        force_data=force_data,
    )
    if dry_run:
        from cutover.engine.plan_command import plan  # noqa: PLC0415

        _guard(lambda ui: plan(file, options, ui), has_state=True)
    _guard(lambda ui: engine.run(file, options, ui), has_state=True)


@app.command()
def rollback(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Confirm the rollback's gate in advance.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Roll back although the Convox database has taken writes since the final "
            "sync (they would be lost to the app), or when that cannot be told.",
        ),
    ] = False,
    show_plan: Annotated[
        bool, typer.Option("--plan", help="Show what it would undo, with the commands.")
    ] = False,
) -> None:
    """Bring Heroku back from any point after the window started: DNS back, writes unfrozen,
    workers back, maintenance off (the last effect first). Resumable like run."""
    from cutover.engine import rollback as engine  # noqa: PLC0415 - start-up: see the note
    from cutover.engine.run import is_interactive  # noqa: PLC0415

    if show_plan:
        _guard(lambda ui: engine.rollback_plan(file, ui), has_state=True)
    options = engine.RollbackOptions(yes=yes, force=force, interactive=is_interactive())
    _guard(lambda ui: engine.rollback(file, options, ui), has_state=True)


@app.command()
def status(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each step's status, attempts, duration and outputs."""

    def body(ui: Ui) -> int:
        import json  # noqa: PLC0415 - start-up: see the module's note

        from cutover.engine import run as engine  # noqa: PLC0415
        from cutover.engine.plan import build_plan, new_state  # noqa: PLC0415
        from cutover.engine.rollback import rollback_lines  # noqa: PLC0415
        from cutover.playbook import load_playbook  # noqa: PLC0415
        from cutover.state import StateStore  # noqa: PLC0415
        from cutover.steps import STEP_IDS  # noqa: PLC0415
        from cutover.ui import status_table  # noqa: PLC0415

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
                    {
                        "id": a.step.id,
                        "next": a.kind.value,
                        "reason": a.reason,
                        **state.steps[a.step.id].model_dump(mode="json"),
                    }
                    if a.step.id in state.steps
                    else {
                        "id": a.step.id,
                        "status": "pending",
                        "next": a.kind.value,
                        "reason": a.reason,
                    }
                    for a in actions
                ],
                "rollback": None
                if state.rollback is None
                else state.rollback.model_dump(mode="json"),
            }
            sys.stdout.write(ui.masker.mask(json.dumps(doc, indent=2)) + "\n")
            return 0
        if fresh:
            ui.info(f"no run yet for {playbook.path}", "bold")
        reasons = {a.step.id: a.reason for a in actions if a.kind.value == "skip"}
        ui.console.print(status_table(state, STEP_IDS, ui.masker, reasons))
        for line in rollback_lines(state):
            ui.info(ui.masker.mask(line), "bold" if line.startswith("rollback") else None)
        rb = state.rollback
        nxt = next((a for a in actions if a.will_run), None)
        if rb is not None and rb.status.value not in ("done", "pending"):
            ui.info("the rollback is unfinished: resume it with `cutover rollback`", "yellow")
        elif nxt:
            ui.info(f"next: {nxt.step.id} ({nxt.reason}) - {engine.resume_command(playbook)}")
        return 0

    _guard(body, has_state=True)


@app.command()
def verify(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    data: Annotated[
        bool, typer.Option("--data", help="Compare the Convox database with Heroku's.")
    ] = False,
    dns: Annotated[
        bool,
        typer.Option(
            "--dns", help="Ask every authoritative name server and resolver for the record."
        ),
    ] = False,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls", help="Check the certificate the router serves for the production name."
        ),
    ] = False,
) -> None:
    """Check the migration on demand (takes the run lock; changes nothing). Exit 1 on a mismatch."""
    from cutover.engine.verify_command import verify as run_verify  # noqa: PLC0415 - start-up

    _guard(lambda ui: run_verify(file, ui, data=data, dns=dns, tls=tls), has_state=True)


@app.command("catch-up")
def catch_up(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show how many changes Convox is behind.")
    ] = False,
) -> None:
    """changed-rows: apply Heroku's logged changes to the Convox database before the window
    (repeatable; takes the run lock). Shows the changes behind before and after, and the rate."""
    from cutover.engine.catchup import catch_up as run_catch_up  # noqa: PLC0415 - start-up

    _guard(lambda ui: run_catch_up(file, ui, dry_run=dry_run), has_state=True)


@app.command()
def cleanup(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm the gate in advance.")] = False,
) -> None:
    """Remove cutover's change capture (schema _cutover and its triggers) from Heroku, verified
    by reading the catalog back. Exit 0 when there is nothing to remove."""
    from cutover.engine.cleanup import cleanup as run_cleanup  # noqa: PLC0415 - start-up
    from cutover.engine.run import is_interactive  # noqa: PLC0415

    _guard(
        lambda ui: run_cleanup(file, ui, dry_run=dry_run, yes=yes, interactive=is_interactive()),
        has_state=True,
    )


@app.command()
def log(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    as_json: Annotated[bool, typer.Option("--json", help="Raw JSON lines.")] = False,
    step: Annotated[str | None, typer.Option(help="Only events of this step.")] = None,
) -> None:
    """Show the audit log readably."""

    def body(ui: Ui) -> int:
        import json  # noqa: PLC0415 - start-up: see the module's note

        from cutover.engine.audit import EVENTS_FILE, read_events  # noqa: PLC0415
        from cutover.playbook import load_playbook  # noqa: PLC0415

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

    _guard(body, has_state=True)


def format_event(event: dict[str, Any]) -> str:
    import contextlib  # noqa: PLC0415 - start-up: see the module's note
    import shlex  # noqa: PLC0415
    from datetime import datetime  # noqa: PLC0415

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
                line += "\n" + "\n".join(
                    "      " + ln for ln in str(event["stderr_tail"]).splitlines()
                )
        return line
    skip = {"ts", "kind", "step", "run", "traceback"}
    rest = ", ".join(f"{k}={v}" for k, v in event.items() if k not in skip)
    return f"{head} {rest}"


@app.command()
def unlock(
    file: PlaybookOpt = Path(DEFAULT_PLAYBOOK),
    force: Annotated[
        bool, typer.Option("--force", help="Clear another host's lock (never a live one here).")
    ] = False,
) -> None:
    """Clear the run lock when its process is gone (or with --force)."""

    def body(ui: Ui) -> int:
        from cutover.engine.lock import unlock as clear_lock  # noqa: PLC0415
        from cutover.playbook import load_playbook  # noqa: PLC0415

        playbook = load_playbook(file)
        ui.info(clear_lock(playbook.state_dir, force=force))
        return 0

    _guard(body, has_state=True)


def _register_optional(argv: list[str]) -> str | None:
    """Register the command groups that live in their own modules, only those this command
    line can use (all of them for help or an unknown command). Returns the command's name."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in CORE_COMMANDS or (command is None and "--version" in argv):
        return command
    if command not in SANDBOX_COMMANDS:
        from cutover.translate.cli import register as register_translate  # noqa: PLC0415

        register_translate(app, _guard)
    if command not in TRANSLATE_COMMANDS:
        from cutover.sandbox.commands import register as register_sandbox  # noqa: PLC0415

        register_sandbox(app, _guard)
    return command


def main() -> None:
    argv = sys.argv[1:]
    command = _register_optional(argv)
    if command in TRANSLATE_COMMANDS:
        from cutover.translate.cli import extract_timers  # noqa: PLC0415

        try:
            argv = extract_timers(argv)
        except CutoverError as exc:
            from rich.console import Console  # noqa: PLC0415

            from cutover.secrets import SecretMasker  # noqa: PLC0415
            from cutover.ui import Ui  # noqa: PLC0415

            Ui(Console(), SecretMasker()).error(exc.brief, exc.details, exc.resolution)
            sys.exit(exc.exit_code)
    app(args=argv, prog_name="cutover")
