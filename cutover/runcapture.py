"""What the :class:`~cutover.runner.Runner` keeps of a child's output: bounded, whatever the child
prints (issue 15, hostile CLI output: gigabytes of output must not fill memory).

* stdout: the first MAX_STDOUT_BYTES; past them the runner stops the child and the call fails.
* stderr: the last MAX_STDERR_BYTES (an error shows the tail anyway).
* an error's tail: the last TAIL_LINES lines, each cut at TAIL_LINE_CHARS characters.
* a background child (``convox resources proxy``, the in-rack copy): the last
  BACKGROUND_KEEP characters of each stream, as numbered chunks (:class:`Chunks`).
* the temporary files a pipe's stderr goes to: read back from their last MAX_STDERR_BYTES
  (:func:`read_tail`).
"""

from __future__ import annotations

import io
import itertools
import os
import threading
from collections import deque
from typing import IO, Any

TAIL_LINES = 20
# A line of an error's tail is cut here: one 1 GB line of stderr must not reach the terminal.
TAIL_LINE_CHARS = 2000
# What the runner keeps of a child's output (see the module docstring). The largest stdout an
# adapter reads is a table listing or a JSON document of a few MB; pg_dump data goes through
# runpipes (an OS pipe), never through here.
MAX_STDOUT_BYTES = 64 * 1024 * 1024
# A schema-only pg_dump read as text (pgschema.py, pgreplace.py) may be larger: its own bound.
MAX_SCHEMA_BYTES = 1024 * 1024 * 1024
MAX_STDERR_BYTES = 1024 * 1024
# sh reads each stream in chunks of this size (its default, line buffering, would hold a whole
# line in memory however long it is).
READ_CHUNK = 64 * 1024
# What a background child's stream keeps (characters): its newest output.
BACKGROUND_KEEP = 4 * 1024 * 1024


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``, each cut at TAIL_LINE_CHARS characters."""
    return "\n".join(_cut(line) for line in text.rstrip("\n").splitlines()[-lines:])


def _cut(line: str) -> str:
    if len(line) <= TAIL_LINE_CHARS:
        return line
    return f"{line[:TAIL_LINE_CHARS]}... ({len(line) - TAIL_LINE_CHARS} more characters)"


class Head(io.BytesIO):
    """stdout of one call: the first ``limit`` bytes; past them ``overflowed`` is set and the
    rest is dropped (the runner then stops the child). A BytesIO so sh hands it raw bytes
    (sh/__init__.py ``determine_how_to_feed_output``), decoded once at the end: a multi-byte
    character split between two reads stays whole."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.chunks: list[bytes] = []
        self.kept = 0
        self.seen = 0
        self.overflowed = threading.Event()

    def write(self, chunk: Any) -> int:
        data = bytes(chunk)
        self.seen += len(data)
        room = self.limit - self.kept
        if room > 0:
            self.chunks.append(data[:room])
            self.kept += min(room, len(data))
        if len(data) > room:
            self.overflowed.set()
        return len(data)

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


class Tail(io.BytesIO):
    """stderr of one call: only the last ``limit`` bytes (at most one chunk more) are kept."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.chunks: deque[bytes] = deque()
        self.kept = 0
        self.dropped = 0

    def write(self, chunk: Any) -> int:
        data = bytes(chunk)
        self.chunks.append(data)
        self.kept += len(data)
        while self.kept - len(self.chunks[0]) >= self.limit:
            self.kept -= len(self.chunks[0])
            self.dropped += len(self.chunks.popleft())
        return len(data)

    def text(self) -> str:
        data = b"".join(self.chunks)
        if self.dropped:
            # Start at a line boundary, and say that something came before.
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else data
            return (
                f"[... {self.dropped + len(b''.join(self.chunks)) - len(data)} earlier bytes "
                "of stderr dropped]\n" + data.decode("utf-8", errors="replace")
            )
        return data.decode("utf-8", errors="replace")


class Chunks:
    """A stream's chunks numbered from 0 as they arrive; only the newest ``limit`` characters
    are kept (at least the newest chunk). :meth:`since` takes an absolute chunk number, so a
    reader that fell behind the dropped ones just resumes at the oldest kept."""

    def __init__(self, limit: int = BACKGROUND_KEEP) -> None:
        self.limit = limit
        self.items: deque[str] = deque()
        self.base = 0  # the number of the oldest chunk kept
        self.size = 0

    def add(self, chunk: str) -> None:
        self.items.append(chunk)
        self.size += len(chunk)
        while self.size > self.limit and len(self.items) > 1:
            self.size -= len(self.items.popleft())
            self.base += 1

    def text(self) -> str:
        return "".join(self.items)

    def since(self, start: int) -> tuple[str, int]:
        skip = max(0, start - self.base)
        return "".join(itertools.islice(self.items, skip, None)), self.base + len(self.items)


def read_tail(fh: IO[bytes], limit: int = MAX_STDERR_BYTES) -> str:
    """The last ``limit`` bytes of a temporary file (from a line start, with a note of what
    was dropped), decoded leniently."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - limit))
    data = fh.read()
    if size <= limit:
        return data.decode("utf-8", errors="replace")
    cut = data.find(b"\n") + 1 if b"\n" in data else 0
    dropped = size - len(data) + cut
    return f"[... {dropped} earlier bytes dropped]\n" + data[cut:].decode("utf-8", errors="replace")
