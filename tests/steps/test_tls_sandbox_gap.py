"""tls.mode http01 (Convox's default) in the sandbox: the convox stand-in issues the custom
domain's certificate only once the name's CNAME points at the router (cert-manager HTTP-01,
provider/k8s), so tls-ready announces the gap and asks at its gate, and verify-site waits for
the certificate, measures the gap from switch-dns and reports it; with ``tls.marker`` it checks
that Convox answered (the sample app's X-Platform header). Afterwards ``cutover verify --tls``
passes on demand.

Real parts: the heroku CLI against the API emulator, the convox stand-in, PostgreSQL, Knot:
``slow``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.paths import HEROKU_CLI, REPO

from cutover.sandbox import manager

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    if not HEROKU_CLI.exists():
        pytest.skip("the pinned heroku CLI is not installed (run `make setup`)")
    # Not pytest's tmp folder: it is 0700, and PostgreSQL runs as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="cutover-tls-"))
    try:
        manager.up(folder, rows=200, say=lambda m: None)
        yield folder
    finally:
        manager.down(folder, say=lambda m: None)
        shutil.rmtree(folder, ignore_errors=True)


def _cutover(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def finished(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("tls")
    text = (REPO / "playbooks" / "sandbox.yml").read_text()
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    # The sandbox's tls: block without accept_gap (a second tls: block is a duplicate key,
    # refused: cutover/playbook_yaml.py)
    text, found = re.subn(r"(?m)^  accept_gap: true\b.*\n", "", text)
    assert found == 1 and "  mode: http01" in text
    playbook = work / "cutover.yml"
    playbook.write_text(text)
    proc = _cutover("run", "-f", str(playbook), "--yes", cwd=work)
    state = json.loads((work / ".cutover" / "state.json").read_text())
    return {"proc": proc, "state": state, "playbook": playbook, "work": work}


def test_tls_ready_announces_the_http01_gap_and_records_the_consent(
    finished: dict[str, Any],
) -> None:
    proc = finished["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = finished["state"]["steps"]["tls-ready"]["outputs"]
    assert outputs["gap_expected"] is True
    assert outputs["consent"] == "gate"
    assert manager.RECORD not in outputs["names"]  # the router's default certificate
    assert "get a certificate error" in " ".join((proc.stdout + proc.stderr).split())


def test_verify_site_measures_and_reports_the_certificate_gap(finished: dict[str, Any]) -> None:
    steps = finished["state"]["steps"]
    gap = steps["verify-site"]["outputs"]["certificate_gap_seconds"]
    assert isinstance(gap, float)
    assert gap > 0
    output = " ".join((finished["proc"].stdout + finished["proc"].stderr).split())
    assert re.search(
        rf"certificate gap: {re.escape(manager.RECORD)} served a certificate error "
        r"for (about|at most) [0-9.]+s after switch-dns",
        output,
    )


def test_verify_tls_on_demand_passes_once_issued(finished: dict[str, Any]) -> None:
    proc = _cutover("verify", "--tls", "-f", str(finished["playbook"]), cwd=finished["work"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "certificate and smoke paths OK" in proc.stdout
    events = (finished["work"] / ".cutover" / "events.jsonl").read_text().splitlines()
    last = json.loads(next(e for e in reversed(events) if '"tls-ready"' in e))
    assert last["on_demand"] is True
    assert last["names"] == [manager.RECORD]
