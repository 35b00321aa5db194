"""What the operator sees: step i of N, what it does, elapsed time, a summary table.

Every line goes through the secret masker, then :func:`visible`: text from outside (a tool's
stderr, an add-on or release name, a build log line) may hold terminal control sequences, and
none of it may reach the operator's terminal raw. Colour only on a terminal (rich decides).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cutover.secrets import SecretMasker
from cutover.state import RunState, Status

if TYPE_CHECKING:  # rich.progress loads when a step first draws progress (start-up time)
    from rich.progress import Progress, TaskID


# Every C0 control but newline and tab (ESC starts CSI/OSC sequences; CR and BS overwrite what is
# shown; BEL rings), DEL, every C1 control (U+0080-U+009F: U+009B is a one-character CSI and
# U+009D an OSC on terminals that honour 8-bit controls), and the bidirectional overrides and
# isolates that make text read differently from what it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with every terminal control character shown as an escape (``\\x1b``,
    ``\\r``, ``\\u202e``) instead of acting on the terminal. Newlines and tabs stay."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return {"\r": "\\r", "\x1b": "\\x1b"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


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


PLAIN_PROGRESS_EVERY = 5.0


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def progress_text(record: dict[str, Any]) -> str:
    """``12/40 tables, 1.2 GB of 3.4 GB, 45.0 MB/s, elapsed 20.0s, ETA 48.0s``."""
    parts = [f"{record['done']}/{record['total']} {record['unit']}"]
    if record.get("bytes_total"):
        parts.append(f"{fmt_bytes(record['bytes_done'])} of {fmt_bytes(record['bytes_total'])}")
    elif record.get("bytes_done"):
        parts.append(fmt_bytes(record["bytes_done"]))
    if record.get("bytes_done"):
        parts.append(f"{fmt_bytes(record['bytes_rate'])}/s")
    else:
        parts.append(f"{record['rate']:.1f} {record['unit']}/s")
    parts.append(f"elapsed {fmt_duration(record['elapsed'])}")
    if record.get("eta") is not None and record["done"] < record["total"]:
        parts.append(f"ETA {fmt_duration(record['eta'])}")
    return ", ".join(parts)


class Ui:
    def __init__(
        self, console: Console, masker: SecretMasker, err_console: Console | None = None
    ) -> None:
        self.console = console
        self.err_console = err_console or Console(stderr=True, highlight=False)
        self.masker = masker
        self.started = time.monotonic()
        self._bar: tuple[Progress, TaskID] | None = None
        self._plain_at = 0.0

    def _print(self, text: str, style: str | None = None, *, err: bool = False) -> None:
        console = self.err_console if err else self.console
        console.print(
            Text(visible(self.masker.mask(text)), style=style or ""),
            highlight=False,
            soft_wrap=True,
        )

    def elapsed(self) -> str:
        return fmt_duration(time.monotonic() - self.started)

    def heading(self, text: str) -> None:
        self._print(text, "bold")

    def step_start(self, index: int, total: int, step_id: str, title: str, why: str) -> None:
        self._end_progress()
        extra = f"  ({why})" if why and why != "pending" else ""
        self._print(f"[{index:>2}/{total}] {step_id}: {title}{extra}   +{self.elapsed()}", "bold")

    def note(self, message: str) -> None:
        self._print(f"        {message}", "dim")

    def step_done(self, duration: float, found: bool) -> None:
        self._end_progress()
        how = "found already applied" if found else "done"
        self._print(f"        {how} in {fmt_duration(duration)}", "green")

    def step_skipped(self, index: int, total: int, step_id: str, reason: str) -> None:
        self._print(f"[{index:>2}/{total}] {step_id}: {reason}", "dim")

    def error(self, brief: str, details: str = "", resolution: str = "") -> None:
        self._end_progress()
        self._print(f"error: {brief}", "bold red", err=True)
        if details:
            self._print(details, err=True)
        if resolution:
            self._print(resolution, "yellow", err=True)

    def progress(self, record: dict[str, Any]) -> None:
        """Context.progress's numbers: a live rich line on a terminal; otherwise a plain line
        at most every PLAIN_PROGRESS_EVERY seconds, and the last one."""
        line = progress_text(record)
        finished = record["done"] >= record["total"]
        if self.console.is_terminal:
            if self._bar is None:
                from rich.progress import Progress  # noqa: PLC0415 - start-up: see above

                bar = Progress(console=self.console, transient=False)
                self._bar = (bar, bar.add_task(line, total=record["total"] or 1))
                bar.start()
            bar, task = self._bar
            bar.update(task, completed=record["done"], description="        " + line)
            if finished:
                self._end_progress()
            return
        now = time.monotonic()
        if finished or now - self._plain_at >= PLAIN_PROGRESS_EVERY:
            self._plain_at = now
            self._print(f"        {line}", "dim")

    def _end_progress(self) -> None:
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None

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
    # The engine's view of the window (its modules are loaded by the callers already).
    from cutover.engine.timings import downtime_text  # noqa: PLC0415 - ui sits below the engine

    window = downtime_text(state)
    table = Table(
        title=f"cutover run {state.run_id}",
        title_justify="left",
        caption=Text(visible(masker.mask(window))) if window else None,
        caption_justify="left",
    )
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
            # Text, not str: a str cell is read as rich markup ("[/]" in a hostile name
            # would raise MarkupError), and the note may come from a tool's output.
            Text(visible(masker.mask(note))[:80]),
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
