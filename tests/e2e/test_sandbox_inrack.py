"""The whole sandbox cutover with ``database.method: in-rack`` and ``final_sync:
changed-tables`` (issue 10).

The initial sync runs inside the rack (the convox stand-in's ``convox run pgclient`` with this
machine's PostgreSQL 15 tools, the Heroku connection on stdin) and records Heroku's statistics
before copying. Between the day-ahead run and the window a row is written on Heroku; the final
sync then replaces only the changed table in place, and verify-data compares everything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO

from cutover.sandbox import manager, pgcluster, seed

pytestmark = pytest.mark.slow


def _cutover(work: Path, argv_log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUTOVER_TEST_ARGV_LOG": str(argv_log), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def inrack_run(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("inrack")
    text = (REPO / "playbooks" / "sandbox.yml").read_text()
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    text = re.sub(
        r"(?m)^database:\n", "database:\n  method: in-rack\n  final_sync: changed-tables\n", text
    )
    playbook = work / "cutover.yml"
    playbook.write_text(text)
    argv_log = work / "argv.jsonl"
    day_ahead = _cutover(
        work, argv_log, "run", "-f", str(playbook), "--yes", "--until", "initial-sync"
    )
    source = pgcluster.load(sandbox / "pg-heroku.json")
    with pgcluster.connect(source, manager.SOURCE_DB) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES ('29991231000000')")
    window = _cutover(work, argv_log, "run", "-f", str(playbook), "--yes")
    return {"day_ahead": day_ahead, "window": window, "work": work, "argv_log": argv_log}


def test_in_rack_cutover_with_changed_tables_succeeds(
    sandbox: Path, inrack_run: dict[str, Any]
) -> None:
    for name in ("day_ahead", "window"):
        proc = inrack_run[name]
        assert proc.returncode == 0, name + "\n" + proc.stdout + proc.stderr
    state = json.loads((inrack_run["work"] / ".cutover" / "state.json").read_text())
    initial = state["steps"]["initial-sync"]["outputs"]
    assert initial["method"] == "in-rack" and initial["stats"]
    final = state["steps"]["final-sync"]["outputs"]
    assert "public.schema_migrations" in final["tables_copied"]
    assert "public.orders" not in final["tables_copied"]
    assert state["steps"]["verify-data"]["status"] == "done"
    source = pgcluster.load(sandbox / "pg-heroku.json")
    target = pgcluster.load(sandbox / "pg-convox.json")
    assert seed.table_fingerprints(source, manager.SOURCE_DB) == seed.table_fingerprints(
        target, manager.TARGET_DB
    )


def test_no_password_in_any_argv(sandbox: Path, inrack_run: dict[str, Any]) -> None:
    secrets = [
        pgcluster.load(sandbox / "pg-heroku.json").password,
        pgcluster.load(sandbox / "pg-convox.json").password,
    ]
    state = json.loads((sandbox / "heroku" / "state.json").read_text())
    for addon in state["apps"][manager.HEROKU_APP]["addons"]:
        if addon.get("database"):
            secrets.append(addon["database"]["password"])
    logged = inrack_run["argv_log"].read_text().splitlines()
    assert any("run" in line and "pgclient" in line for line in logged)
    for line in logged:
        for secret in secrets:
            assert secret not in line
