"""A hostile stand-in for the external CLIs cutover parses (issue 15, hostile CLI output).

One Python program, installed as ``heroku``, ``convox``, ``psql``... on a PATH of chosen tools,
answers each command line with the stdout, stderr and exit code a test gives it in a JSON spec
file (``HOSTILE_SPEC``): the key is ``"TOOL ARGS-PREFIX"`` and the longest matching prefix wins.
Every call is appended to ``<spec>.calls``. Output is written as raw bytes (``surrogateescape``
lets a test send bytes that are not UTF-8).

It emulates no tool's behaviour: it prints what a test says the tool printed, so a test states
the real tool's format itself, with the source it comes from.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

STUB = r"""
import json, os, sys
name = sys.argv.pop(1)
spec_path = os.environ["HOSTILE_SPEC"]
with open(spec_path, encoding="utf-8") as fh:
    spec = json.load(fh)
args = " ".join(sys.argv[1:])
with open(spec_path + ".calls", "a", encoding="utf-8") as fh:
    fh.write(json.dumps([name, *sys.argv[1:]]) + "\n")
best = None
for key, answer in spec.items():
    tool, _, prefix = key.partition(" ")
    if tool == name and (not prefix or args == prefix or args.startswith(prefix + " ")):
        if best is None or len(key) > len(best[0]):
            best = (key, answer)
if best is None:
    sys.stderr.write(f"hostile stub: no answer for {name} {args}\n")
    sys.exit(97)
answer = best[1]
if answer.get("stdin"):
    sys.stdin.read()
sys.stdout.buffer.write(answer.get("out", "").encode("utf-8", "surrogateescape"))
sys.stdout.flush()
sys.stderr.buffer.write(answer.get("err", "").encode("utf-8", "surrogateescape"))
sys.exit(answer.get("code", 0))
"""

TOOLS = ("heroku", "convox", "psql", "pg_dump", "pg_restore", "mysql", "mariadb")


class HostileTools:
    """A bin folder of stand-ins and the spec they answer from."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "hostile-bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.spec = root / "hostile-spec.json"
        stub = self.bin / "stub.py"
        stub.write_text(STUB, encoding="utf-8")
        for tool in TOOLS:
            path = self.bin / tool
            path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{stub}" {tool} "$@"\n')
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        self.answer({})

    def answer(self, spec: dict[str, dict[str, Any]]) -> None:
        self.spec.write_text(json.dumps(spec), encoding="utf-8")

    def calls(self) -> list[list[str]]:
        path = Path(str(self.spec) + ".calls")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def env(self) -> dict[str, str]:
        return {"HOSTILE_SPEC": str(self.spec)}

    def path(self) -> str:
        return os.pathsep.join([str(self.bin), "/usr/bin", "/bin"])
