"""Helpers shared by the adapter contract tests (imported by conftest.py and the test modules).

Not a test module: it holds no tests and no fixtures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cutover.runner import ARGV_LOG_VAR

ARGV_LOG_ENV = ARGV_LOG_VAR


class ListAudit:
    """An AuditSink that keeps every event in memory."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, dict(fields)))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [fields for k, fields in self.events if k == kind]

    def text(self) -> str:
        """Everything the audit log would hold, as one string (to search for leaked secrets)."""
        return "\n".join(json.dumps([k, f], default=str) for k, f in self.events)


def read_argv_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def assert_argv_clean(path: Path, secret_values: Iterable[str]) -> list[list[str]]:
    """Fail if any recorded child argv contains any of ``secret_values``; return the argvs."""
    argvs = read_argv_log(path)
    values = [v for v in secret_values if v and len(v) >= 4]
    for argv in argvs:
        joined = "\x00".join(argv)
        for value in values:
            assert value not in joined, f"a secret reached a child's argv: {argv[:3]}..."
    return argvs


def group_gone(pgid: int, timeout: float = 5.0) -> bool:
    """True once no process is left in process group ``pgid`` (zombies included)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
