"""What the operator sees: step i of N, what it does, elapsed time, a summary table.

Every line goes through the secret masker. Colour only on a terminal (rich decides).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cutover.secrets import SecretMasker
from cutover.state import RunState, Status


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Ui:
    def __init__(
        self, console: Console, masker: SecretMasker, err_console: Console | None = None
    ) -> None:
        self.console = console
        self.err_console = err_console or Console(stderr=True, highlight=False)
        self.masker = masker
        self.started = time.monotonic()

    def _print(self, text: str, style: str | None = None, *, err: bool = False) -> None:
        console = self.err_console if err else self.console
        console.print(
            Text(self.masker.mask(text), style=style or ""), highlight=False, soft_wrap=True
        )

    def elapsed(self) -> str:
        return fmt_duration(time.monotonic() - self.started)

    def heading(self, text: str) -> None:
        self._print(text, "bold")

    def step_start(self, index: int, total: int, step_id: str, title: str, why: str) -> None:
        extra = f"  ({why})" if why and why != "pending" else ""
        self._print(f"[{index:>2}/{total}] {step_id}: {title}{extra}   +{self.elapsed()}", "bold")

    def note(self, message: str) -> None:
        self._print(f"        {message}", "dim")

    def step_done(self, duration: float, found: bool) -> None:
        how = "found already applied" if found else "done"
        self._print(f"        {how} in {fmt_duration(duration)}", "green")

    def step_skipped(self, index: int, total: int, step_id: str, reason: str) -> None:
        self._print(f"[{index:>2}/{total}] {step_id}: {reason}", "dim")

    def error(self, brief: str, details: str = "", resolution: str = "") -> None:
        self._print(f"error: {brief}", "bold red", err=True)
        if details:
            self._print(details, err=True)
        if resolution:
            self._print(resolution, "yellow", err=True)

    def info(self, text: str, style: str | None = None) -> None:
        self._print(text, style)

    def summary(self, state: RunState, order: list[str]) -> None:
        self.console.print(status_table(state, order, self.masker))


STATUS_STYLE = {
    Status.DONE: "green",
    Status.FAILED: "red",
    Status.RUNNING: "yellow",
    Status.INTERRUPTED: "yellow",
    Status.SKIPPED: "dim",
    Status.PENDING: "",
}


def status_table(
    state: RunState, order: list[str], masker: SecretMasker, reasons: dict[str, str] | None = None
) -> Table:
    table = Table(title=f"cutover run {state.run_id}", title_justify="left")
    for column in ("#", "step", "status", "tries", "duration", "notes"):
        table.add_column(column, justify="right" if column in ("#", "tries") else "left")
    for i, sid in enumerate(order, 1):
        st = state.steps.get(sid)
        status = st.status if st else Status.PENDING
        label = str(status) + (" (found)" if st and st.found_applied else "")
        note = ""
        if st and st.error:
            note = st.error.splitlines()[0]
        elif st and st.outputs:
            note = summarize_outputs(st.outputs)
        elif reasons and sid in reasons:
            note = reasons[sid]
        table.add_row(
            str(i),
            sid,
            Text(label, style=STATUS_STYLE.get(status, "")),
            str(st.attempts if st else 0),
            fmt_duration(st.duration if st else None),
            masker.mask(note)[:80],
        )
    return table


def summarize_outputs(outputs: dict[str, Any]) -> str:
    for key in ("release", "router", "domain", "backup", "answer", "downtime_seconds", "rows"):
        value = outputs.get(key)
        if value not in (None, ""):
            if key == "downtime_seconds":
                return f"downtime {value}s"
            return f"{key} {value}"
    return ""
