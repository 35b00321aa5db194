"""What a step is, and the context every step receives.

Every step is check-then-apply: ``check`` looks at the world without changing it and returns the
step's outputs when its effect is already there (a crash after the effect but before the
checkpoint), or None; only then does ``apply`` act. ``describe`` lists the commands a step would
run, for ``cutover plan`` and dry runs, without running anything.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.dns import DnsProvider
from cutover.adapters.heroku import HerokuAdapter
from cutover.adapters.http import HttpClient
from cutover.adapters.postgres import PostgresAdapter
from cutover.state import RunState
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.runner import Runner
from cutover.secrets import SecretMasker


class Reporter(Protocol):
    def note(self, message: str) -> None: ...


@dataclass
class Context:
    playbook: LoadedPlaybook
    state: RunState
    runner: Runner
    masker: SecretMasker
    heroku: HerokuAdapter
    convox: ConvoxAdapter
    postgres: PostgresAdapter
    http: HttpClient
    dns: DnsProvider | None
    reporter: Reporter
    work_dir: Path
    # Saves partial outputs of the running step (e.g. the original DNS record before changing
    # it), so a crash right after the change still knows what to restore.
    progress: Callable[[dict[str, Any]], None] = lambda outputs: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> Playbook:
        return self.playbook.model

    def outputs(self, step_id: str) -> dict[str, Any]:
        return self.state.outputs(step_id)

    def note(self, message: str) -> None:
        self.reporter.note(self.masker.mask(message))

    def marker(self, step_id: str, *, create: bool = False) -> str | None:
        """The build description that identifies one attempt of a deploying step on the rack.

        Saved in the step's outputs before the build starts, so a crash mid-deploy finds that
        build on resume; a step cleared by ``--from`` has none, so it builds afresh.
        """
        saved = self.state.step(step_id).outputs.get("marker")
        if saved or not create:
            return str(saved) if saved else None
        marker = f"cutover {self.state.run_id} {step_id} {secrets.token_hex(3)}"
        self.progress({"marker": marker})
        return marker


Outputs = dict[str, Any]


class Step:
    """Base class. Subclasses set ``id``, ``title`` and optionally ``gate``."""

    id: str = ""
    title: str = ""
    gate: str | None = None

    def describe(self, ctx: Context) -> list[str]:
        """The external commands this step would run (masked), for plans and dry runs."""
        return []

    def check(self, ctx: Context) -> Outputs | None:
        return None

    def apply(self, ctx: Context) -> Outputs:
        raise NotImplementedError

    def applies(self, model: Playbook) -> str | None:
        """None when the step runs for this playbook, else why it is skipped."""
        return None

    def gate_text(self, ctx: Context) -> str:
        return self.gate or ""


def cmd(argv: list[str]) -> str:
    return " ".join(_quote(a) for a in argv)


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=@%+,*" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"
