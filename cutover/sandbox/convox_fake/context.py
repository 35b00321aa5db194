"""One CLI invocation: its parsed command line, output, environment, and rack state store."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.sandbox.convox_fake.model import select_rack
from cutover.sandbox.convox_fake.output import Out
from cutover.sandbox.convox_fake.store import Json, Store


@dataclass
class Ctx:
    command: str  # the command words, e.g. "resources proxy"
    args: list[str]
    flags: dict[str, Any]
    out: Out
    environ: Mapping[str, str]
    cwd: Path
    store: Store
    fault: Json | None = None

    def string(self, name: str) -> str:
        value = self.flags.get(name)
        return value if isinstance(value, str) else ""

    def flag(self, name: str) -> bool:
        return bool(self.flags.get(name, False))

    def number(self, name: str) -> int | None:
        value = self.flags.get(name)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)  # e.g. --watch, registered as a string flag
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def strings(self, name: str) -> list[str]:
        value = self.flags.get(name)
        return [str(v) for v in value] if isinstance(value, list) else []

    def arg(self, index: int) -> str:
        return self.args[index] if index < len(self.args) else ""

    def app_name(self) -> str:
        """``--app``, then ``./.convox/app``, then the cwd's basename (§2)."""
        if self.string("app"):
            return self.string("app")
        with contextlib.suppress(OSError):
            text = (self.cwd / ".convox" / "app").read_text(encoding="utf-8").strip()
            if text:
                return text
        return self.cwd.name

    def rack(self, state: Json) -> tuple[str, Json]:
        return select_rack(
            state,
            flag=self.string("rack"),
            environ=self.environ,
            cwd=self.cwd,
            folder=self.store.folder,
        )
