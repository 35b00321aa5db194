"""The house's layers (issue 9): the state sits below the engine, the steps and the ui; steps and
the engine's plan/status path load no adapter (nor httpx, dnspython, sh), so ``status`` and
``--version`` do not pay for them. Checked in a fresh interpreter, by what it imported."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("httpx", "dns", "sh", "psycopg")


def imported_by(*modules: str) -> list[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def heavy(loaded: list[str]) -> list[str]:
    return [
        m
        for m in loaded
        if m.split(".")[0] in HEAVY or m.startswith(("cutover.adapters", "cutover.runner"))
    ]


def test_engine_plan_run_and_steps_load_no_adapter() -> None:
    loaded = imported_by("cutover.engine.run", "cutover.engine.plan", "cutover.steps", "cutover.ui")
    assert heavy(loaded) == []


def test_the_state_imports_nothing_above_it() -> None:
    loaded = imported_by("cutover.state")
    assert [
        m for m in loaded if m.startswith(("cutover.engine", "cutover.steps", "cutover.ui"))
    ] == []
