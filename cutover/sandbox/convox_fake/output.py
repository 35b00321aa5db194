"""Output primitives of the convox CLI: errors, stdcli tables and info blocks, times, ids.

Facts: ``vendor/github.com/convox/stdcli`` (``table.go``, ``info.go``, ``context.go``: ``Startf``
prints ``"<text>... "``, ``OK`` prints ``"OK"``, errors print ``ERROR: <message>`` on stderr and
exit 1) and ``pkg/common`` (``Ago`` = go-humanize ``Time``, ``Duration``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --- errors and output ------------------------------------------------------------------------


class CliError(Exception):
    """Printed as ``ERROR: <message>`` on stderr; exit code 1 (stdcli's error path)."""


class ExitCode(Exception):
    """Exit with this code and print nothing more (``run``)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Out:
    """stdout/stderr with the real CLI's primitives; every write is flushed immediately."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.real_stdout = stdout
        self.stdout = stdout
        self.stderr = stderr

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def startf(self, text: str) -> None:
        self.write(f"{text}... ")

    def ok(self, ident: str = "") -> None:
        self.write(f"OK, {ident}\n" if ident else "OK\n")

    def error(self, message: str) -> None:
        self.stderr.write(f"ERROR: {message}\n")
        self.stderr.flush()

    def id_mode(self) -> None:
        """``--id``: logs go to stderr, the real stdout gets only the release id."""
        self.stdout = self.stderr

    def print_id(self, ident: str) -> None:
        self.real_stdout.write(ident)
        self.real_stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """stdcli table: 2-space gutters, every column but the last padded (§4)."""
    widths = [
        max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers) - 1)
    ]
    lines = []
    for row in [list(headers), *rows]:
        cells = "".join(f"{cell:<{widths[i]}}  " for i, cell in enumerate(row[:-1]))
        lines.append(cells + row[-1])
    return "".join(line + "\n" for line in lines)


def info(rows: Sequence[tuple[str, str]]) -> str:
    """stdcli Info block: keys padded to the longest, continuation lines indented (§4)."""
    width = max(len(key) for key, _ in rows)
    lines = []
    for key, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{key:<{width}}  {first}")
        lines.extend(" " * (width + 2) + line for line in rest)
    return "".join(line + "\n" for line in lines)


# --- time -------------------------------------------------------------------------------------

_DAY = 86400
_MONTH = 30 * _DAY
_YEAR = 12 * _MONTH
# go-humanize's magnitudes: (below this many seconds, format, divide by).
_MAGNITUDES: tuple[tuple[float, str, int], ...] = (
    (1, "now", 0),
    (2, "1 second {}", 0),
    (60, "{n} seconds {}", 1),
    (120, "1 minute {}", 0),
    (3600, "{n} minutes {}", 60),
    (7200, "1 hour {}", 0),
    (_DAY, "{n} hours {}", 3600),
    (2 * _DAY, "1 day {}", 0),
    (7 * _DAY, "{n} days {}", _DAY),
    (14 * _DAY, "1 week {}", 0),
    (_MONTH, "{n} weeks {}", 7 * _DAY),
    (2 * _MONTH, "1 month {}", 0),
    (_YEAR, "{n} months {}", _MONTH),
    (18 * _MONTH, "1 year {}", 0),
    (2 * _YEAR, "2 years {}", 0),
    (37 * _YEAR, "{n} years {}", _YEAR),
)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def ago(value: str) -> str:
    """``common.Ago``: humanize.Time of a stored timestamp; empty for none (§4)."""
    if not value:
        return ""
    delta = (datetime.now(UTC) - _parse_time(value)).total_seconds()
    label = "ago" if delta >= 0 else "from now"
    delta = abs(delta)
    for limit, fmt, divide in _MAGNITUDES:
        if delta < limit:
            if fmt == "now":
                return "now"
            return fmt.format(label, n=int(delta // divide) if divide else 0)
    return f"a long while {label}"


def rfc3339(value: str) -> str:
    return _parse_time(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def duration(start: str, end: str) -> str:
    """``common.Duration``: ``2m0s``, ``45s``; empty while unfinished."""
    if not start or not end:
        return ""
    seconds = max(0, round((_parse_time(end) - _parse_time(start)).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def new_pod_id(service: str) -> str:
    suffix = "".join(random.choice(POD_ALPHABET) for _ in range(5))
    template = "".join(random.choice(POD_ALPHABET) for _ in range(10))
    return f"{service}-{template}-{suffix}"
