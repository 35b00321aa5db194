"""The audit log ``.cutover/events.jsonl``: append-only, one JSON object a line, secrets masked.

Subscribers (:meth:`AuditLog.subscribe`, e.g. the webhook of cutover/notify.py) receive each
record as written (masked), after it is on disk; a subscriber must not raise.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cutover.fsutil import ensure_private_dir, make_private, unwritable
from cutover.secrets import SecretMasker
from cutover.state import now_iso

EVENTS_FILE = "events.jsonl"

Subscriber = Callable[[dict[str, Any]], None]
# Written as \\u escapes (json.dumps escapes C0 controls itself, not these with
# ensure_ascii=False): C1 controls act on a terminal that `cat`s the log (U+009B is a CSI), the
# bidi overrides disguise text, and a lone surrogate cannot be encoded at all.
_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


class AuditLog:
    def __init__(self, folder: Path, masker: SecretMasker, run_id: str | None = None) -> None:
        self.folder = folder
        self.path = folder / EVENTS_FILE
        self.masker = masker
        self.run_id = run_id
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(record)`` after each event is written (outside the file lock)."""
        self._subscribers.append(subscriber)

    def event(self, kind: str, **fields: Any) -> None:
        record: dict[str, Any] = {"ts": now_iso(), "kind": kind}
        if self.run_id:
            record["run"] = self.run_id
        record.update(fields)
        masked = self.masker.mask_data(json.loads(json.dumps(record, default=str)))
        line = _UNSAFE.sub(
            lambda m: f"\\u{ord(m.group(0)):04x}", json.dumps(masked, ensure_ascii=False)
        )
        line += "\n"
        with self._lock:
            try:
                ensure_private_dir(self.folder)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    make_private(fd)
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise unwritable(self.folder, exc, f"event log {EVENTS_FILE}") from None
        for subscriber in list(self._subscribers):
            subscriber(masked)


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Events in order; a torn last line (crash mid-write) is skipped."""
    try:
        with path.open(encoding="utf-8") as fh:
            for raw in fh:
                text = raw.strip()
                if not text:
                    continue
                try:
                    item = json.loads(text)
                except json.JSONDecodeError:
                    continue
                if isinstance(item, dict):
                    yield item
    except FileNotFoundError:
        return


class NullAudit:
    """Used by dry runs: nothing is written."""

    def event(self, kind: str, **fields: Any) -> None:
        return None
