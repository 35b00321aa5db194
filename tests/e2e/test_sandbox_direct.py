"""The whole sandbox cutover with ``database.method: direct``, then the guard in the world.

The direct copy reads the sandbox's "Heroku Postgres" over TLS (it serves ssl=on with the sandbox
CA's certificate; cutover asks for sslmode=require). After the cutover, the state folder is moved
aside, as cutover advises for a corrupt state file, and initial-sync is run again: the Convox
database says it is live (switch-dns wrote the marker), so the sync is refused and its rows stay.
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
def direct_run(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("direct")
    text = (REPO / "playbooks" / "sandbox.yml").read_text()
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    text = re.sub(r"(?m)^database:\n", "database:\n  method: direct\n", text)
    assert "method: direct" in text
    playbook = work / "cutover.yml"
    playbook.write_text(text)
    argv_log = work / "argv.jsonl"
    proc = _cutover(work, argv_log, "run", "-f", str(playbook), "--yes")
    return {"proc": proc, "work": work, "playbook": playbook, "argv_log": argv_log}


def test_direct_cutover_succeeds_and_copies_every_table(
    sandbox: Path, direct_run: dict[str, Any]
) -> None:
    proc = direct_run["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = json.loads((direct_run["work"] / ".cutover" / "state.json").read_text())
    for step in ("initial-sync", "final-sync"):
        outputs = state["steps"][step]["outputs"]
        assert outputs["method"] == "direct"
        assert outputs["marker"].startswith("cutover:synced ")
    source = pgcluster.load(sandbox / "pg-heroku.json")
    target = pgcluster.load(sandbox / "pg-convox.json")
    assert seed.table_fingerprints(source, manager.SOURCE_DB) == seed.table_fingerprints(
        target, manager.TARGET_DB
    )


def test_no_password_in_any_argv(sandbox: Path, direct_run: dict[str, Any]) -> None:
    secrets = [
        pgcluster.load(sandbox / "pg-heroku.json").password,
        pgcluster.load(sandbox / "pg-convox.json").password,
    ]
    state = json.loads((sandbox / "heroku" / "state.json").read_text())
    for addon in state["apps"][manager.HEROKU_APP]["addons"]:
        if addon.get("database"):
            secrets.append(addon["database"]["password"])
    logged = direct_run["argv_log"].read_text().splitlines()
    assert any("pg_export_snapshot" not in line and "COPY" in line for line in logged)
    for line in logged:
        for secret in secrets:
            assert secret not in line


def test_a_sync_after_the_state_was_moved_aside_is_refused(
    sandbox: Path, direct_run: dict[str, Any]
) -> None:
    assert direct_run["proc"].returncode == 0
    work = direct_run["work"]
    target = pgcluster.load(sandbox / "pg-convox.json")
    before = seed.table_fingerprints(target, manager.TARGET_DB)
    (work / ".cutover").rename(work / ".cutover.corrupt")
    # A fresh state did not create the Convox app: the operator adopts it, as create-app says.
    playbook: Path = direct_run["playbook"]
    text = playbook.read_text()
    playbook.write_text(re.sub(r"(?m)^convox:\n", "convox:\n  adopt: true\n", text))
    again = _cutover(
        work,
        direct_run["argv_log"],
        "run",
        "-f",
        str(direct_run["playbook"]),
        "--yes",
        "--until",
        "initial-sync",
    )
    assert again.returncode == 1, again.stdout + again.stderr
    said = again.stdout + again.stderr
    assert "refusing to sync: the Convox database" in said and "is live" in said
    assert "--force-data" in said
    assert seed.table_fingerprints(target, manager.TARGET_DB) == before
    # --force-data: the gate (confirmed by --yes) names the override, and the sync goes ahead.
    forced = _cutover(
        work,
        direct_run["argv_log"],
        "run",
        "-f",
        str(direct_run["playbook"]),
        "--yes",
        "--force-data",
        "--until",
        "initial-sync",
    )
    said = forced.stdout + forced.stderr
    assert forced.returncode == 0, said
    assert "gate confirmed in advance (--yes): --force-data:" in said
    assert "--force-data: syncing although the Convox database" in said
