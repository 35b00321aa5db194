"""``cutover sandbox up|down|status``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cutover.errors import InvalidInput
from cutover.ui import Ui

# The `sandbox` extra (pyproject.toml): the import name of each package it installs.
EXTRA_MODULES = ("psycopg", "trustme")
EXTRA_INSTALL = "pip install 'cutover[sandbox]'"

DirOpt = Annotated[Path, typer.Option("--dir", help="Sandbox folder.", show_default=True)]


def require_extra() -> None:
    """Exit 2 naming what to install when the `sandbox` extra is missing (no traceback).

    Each command imports cutover.sandbox.manager after this check, inside the command, so that
    `cutover` starts without the sandbox's libraries."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise InvalidInput(
            f"the sandbox needs the optional packages of cutover's `sandbox` extra "
            f"(missing: {', '.join(missing)})",
            resolution=f"Install them with: {EXTRA_INSTALL}   "
            "(with pipx: pipx install --force 'cutover[sandbox]').",
        )


def register(app: typer.Typer, guard: Callable[[Callable[[Ui], int]], None]) -> None:
    sandbox = typer.Typer(
        help="A local Heroku, Convox and DNS to rehearse and test against.", no_args_is_help=True
    )

    @sandbox.command("up")
    def up_cmd(
        folder: DirOpt = Path(".sandbox"),
        rows: Annotated[int, typer.Option(min=1, help="Rows to seed (scales every table).")] = 3000,
    ) -> None:
        """Start the sandbox (a no-op when it is already up)."""

        def body(ui: Ui) -> int:
            require_extra()
            from cutover.sandbox import manager  # noqa: PLC0415 - needs the extra

            manager.up(folder, rows=rows, say=lambda m: ui.info(f"sandbox: {m}"))
            ui.info(
                f"sandbox up in {folder.absolute()}; a playbook rehearses against it with "
                f"`sandbox: {folder.absolute()}` (in a cutover checkout: "
                "cutover run -f playbooks/sandbox.yml)",
                "bold",
            )
            return 0

        guard(body)

    @sandbox.command("down")
    def down_cmd(folder: DirOpt = Path(".sandbox")) -> None:
        """Stop everything the sandbox started and remove its folder."""

        def body(ui: Ui) -> int:
            require_extra()
            from cutover.sandbox import manager  # noqa: PLC0415 - needs the extra

            manager.down(folder, say=lambda m: ui.info(f"sandbox: {m}"))
            return 0

        guard(body)

    @sandbox.command("status")
    def status_cmd(folder: DirOpt = Path(".sandbox")) -> None:
        """Show the sandbox's processes."""

        def body(ui: Ui) -> int:
            require_extra()
            from cutover.sandbox import manager  # noqa: PLC0415 - needs the extra

            parts = manager.status(folder)
            if not parts:
                ui.info(f"no sandbox in {folder.absolute()}")
                return 0
            table = Table(title=f"sandbox {folder.absolute()}", title_justify="left")
            for column in ("component", "pid", "port", "state"):
                table.add_column(column)
            for part in parts:
                table.add_row(part.name, str(part.pid or ""), str(part.port or ""), part.detail)
            ui.console.print(table)
            return 0 if all(p.detail == "running" for p in parts) else 1

        guard(body)

    app.add_typer(sandbox, name="sandbox")
