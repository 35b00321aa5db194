"""The Procfile: ``name: command`` lines (Dev Center, "The Procfile")."""

from __future__ import annotations

import re
from typing import Final

from cutover.translate.model import input_error
from cutover.translate.sourcetypes import PROCFILE_LINE as _PROCFILE_LINE
from cutover.translate.sourcetypes import ProcessType, ReleaseSpec

__all__ = ["parse_procfile"]

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    return _LINE_BREAK.split(text)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_procfile(
    text: str, path: str = "Procfile"
) -> tuple[list[ProcessType], ReleaseSpec | None]:
    """Parse a Procfile into its process types (in file order) and its ``release`` command.

    Blank lines and ``#`` comments are skipped; CRLF and CR line ends are accepted.
    """
    processes: list[ProcessType] = []
    release: ReleaseSpec | None = None
    first_line: dict[str, int] = {}
    for number, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if match is None:
            raise input_error(
                path, f'expected "name: command", got "{_shorten(line)}"', line=number
            )
        name, command = match.group(1), match.group(2).strip()
        if name in first_line:
            raise input_error(
                path,
                f"duplicate process type (first defined on line {first_line[name]})",
                line=number,
                field=name,
            )
        first_line[name] = number
        if not command:
            raise input_error(path, "the command is empty", line=number, field=name)
        if name == "release":
            release = ReleaseSpec(command=command, source=path, line=number)
        else:
            processes.append(ProcessType(name=name, command=command, source=path, line=number))
    return processes, release
