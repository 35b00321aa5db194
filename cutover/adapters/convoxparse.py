"""What the convox CLI prints, parsed, and what ``convox env set`` reads, checked.

stdcli (github.com/convox/stdcli, used by every convox command) prints tables as left-justified
columns with two-space gutters and Info blocks as ``Key  Value`` lines; ``env set`` reads
KEY=VALUE lines from stdin (pkg/cli/env.go, bufio.Scanner: 64 KiB per line at most).
"""

from __future__ import annotations

import re

from cutover.errors import CutoverError, UnexpectedOutput

MAX_ENV_LINE = 64 * 1024 - 1


def _header_names(line: str) -> list[str]:
    """Column names of a stdcli table header: separated by the two-space gutter, so a name
    may hold one space (``NLB PORTS`` in pkg/cli/services.go)."""
    return [n for n in re.split(r"\s{2,}", line.strip()) if n]


def parse_table(text: str, required: list[str], command: str = "") -> list[dict[str, str]]:
    """Parse a stdcli table by the header's column offsets (cells are left-justified), so any
    extra column a rack adds (SCALE, AUTOSCALE, COLD, BUDGET in services.go) is harmless.
    ``command`` (the masked command line) names what printed it in the error."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header_index = next(
        (i for i, ln in enumerate(lines) if all(h in _header_names(ln) for h in required)), None
    )
    if header_index is None:
        raise UnexpectedOutput(
            f"{command or 'convox'} printed no table with columns {', '.join(required)}",
            details="got: " + (lines[0][:200] if lines else "(no output)"),
        )
    header = lines[header_index]
    names = _header_names(header)
    starts = []
    pos = 0
    for name in names:
        pos = header.index(name, pos)
        starts.append(pos)
        pos += len(name)
    rows = []
    for line in lines[header_index + 1 :]:
        row = {}
        for i, name in enumerate(names):
            end = starts[i + 1] if i + 1 < len(starts) else None
            row[name] = line[starts[i] : end].strip()
        rows.append(row)
    return rows


def parse_info(text: str) -> dict[str, str]:
    """Parse a stdcli Info block (``Key<pad>  Value``, continuation lines indented)."""
    info: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith(" ") and last is not None:
            info[last] += "\n" + line.strip()
            continue
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        last = parts[0]
        info[last] = parts[1] if len(parts) > 1 else ""
    return info


def env_lines(values: dict[str, str]) -> str:
    """KEY=VALUE lines for ``convox env set`` stdin; refuse what convox cannot store."""
    lines = []
    for key, value in sorted(values.items()):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise CutoverError(f"environment variable name {key!r} cannot be set on Convox")
        if "\n" in value or "\r" in value:
            raise CutoverError(
                f"the value of {key} contains a newline; convox stores one KEY=VALUE per line "
                "and would silently drop the rest",
                resolution=f"Encode it (e.g. base64) on Heroku, or add {key} to env.exclude "
                "and set it another way.",
            )
        line = f"{key}={value}"
        if len(line.encode()) > MAX_ENV_LINE:
            raise CutoverError(
                f"{key} is {len(line.encode())} bytes; convox env set reads stdin lines of at "
                "most 64 KiB and silently drops everything after a longer one",
                resolution=f"Add {key} to env.exclude and move the value to a file or resource.",
            )
        lines.append(line)
    return "".join(line + "\n" for line in lines)
