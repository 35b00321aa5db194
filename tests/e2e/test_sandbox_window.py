"""Issue 11 in the sandbox: the window loses no write, a rollback brings Heroku back, and the
window's estimate after a rehearsal holds on a re-run.

While the whole cutover runs, a workload (tests/e2e/workload.py) keeps writing to the Heroku
database through the app, through a second client attached to the same database, and through
the Heroku worker dynos (real processes following the formation). The tests run in file order
on one sandbox: the cutover, what it left, the rollback, then the window again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_sandbox_cutover import write_playbook
from workload import Workload, jobs, references

from cutover.adapters.dns import query_authoritative
from cutover.sandbox import heroku_api, manager, pgcluster

pytestmark = pytest.mark.slow


def cutover(
    work: Path, playbook: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args, "-f", str(playbook)],
        cwd=work,
        env={**os.environ, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def convox_url(sandbox: Path) -> str:
    return pgcluster.load(sandbox / "pg-convox.json").url(manager.TARGET_DB)


def heroku_app(sandbox: Path) -> dict[str, Any]:
    return heroku_api.load_state(sandbox / "heroku" / "state.json")["apps"][manager.HEROKU_APP]


def state_of(work: Path) -> dict[str, Any]:
    return json.loads((work / ".cutover" / "state.json").read_text())


def step_finished(work: Path, step: str) -> float:
    from datetime import datetime  # noqa: PLC0415

    text = state_of(work)["steps"][step]["finished_at"]
    return datetime.fromisoformat(text).timestamp()


@pytest.fixture(scope="module")
def window(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("window")
    playbook = write_playbook(work, sandbox)
    with Workload(sandbox) as load:
        # Writes flow before the run starts (the worker needs jobs to do).
        wait_for(lambda: len(load.client.acked) >= 5 and len(load.app.acked) >= 5, "writes")
        proc = cutover(work, playbook, "run", "--yes")
        yield {"proc": proc, "work": work, "playbook": playbook, "load": load}


def test_the_cutover_completes_under_load(window: dict[str, Any]) -> None:
    proc = window["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cutover complete" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_no_acknowledged_write_is_lost(sandbox: Path, window: dict[str, Any]) -> None:
    load: Workload = window["load"]
    on_heroku = references(load.url)
    on_convox = references(convox_url(sandbox))
    acked = {r for _, r in load.app.acked + load.client.acked}
    assert acked, "the workload wrote nothing"
    assert acked <= on_heroku
    # Everything Heroku holds (so every write acknowledged before the freeze) is on Convox,
    # and Heroku took nothing after the freeze that Convox lacks.
    assert on_heroku <= on_convox, sorted(on_heroku - on_convox)[:10]


def test_writes_after_the_freeze_fail(window: dict[str, Any]) -> None:
    load: Workload = window["load"]
    frozen_at = step_finished(window["work"], "freeze-writes")
    late = [r for t, r in load.client.acked if t > frozen_at]
    assert late == [], f"writes acknowledged by Heroku after the freeze: {late[:5]}"
    refused = [reason for t, reason in load.client.refused if t > frozen_at]
    assert "25006" in refused, refused[:10]  # read_only_sql_transaction
    # The app itself was in maintenance: its writes were refused with Heroku's 503.
    assert any(reason == "HTTP 503" for _, reason in load.app.refused)


def test_the_heroku_worker_wrote_until_scale_down_and_convox_has_it(
    sandbox: Path, window: dict[str, Any]
) -> None:
    load: Workload = window["load"]
    heroku_jobs = jobs(load.url)
    convox_jobs = jobs(convox_url(sandbox))
    done_on_heroku = {i: by for i, by in heroku_jobs.items() if by}
    assert done_on_heroku, "the Heroku worker did no job"
    assert all(str(by).startswith("v") for by in done_on_heroku.values())
    assert set(heroku_jobs) <= set(convox_jobs)
    for job, by in done_on_heroku.items():
        assert convox_jobs[job] == by


def test_rollback_refuses_after_a_write_on_convox(sandbox: Path, window: dict[str, Any]) -> None:
    # The Convox database takes writes (the freeze's read-only default stayed on Heroku).
    with psycopg.connect(convox_url(sandbox), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO orders (account_id, reference, created_at, updated_at) "
            "SELECT min(id), 'convox-after-switch', now(), now() FROM accounts"
        )
    proc = cutover(window["work"], window["playbook"], "rollback", "--yes", timeout=300)
    assert proc.returncode != 0, proc.stdout
    text = proc.stdout + proc.stderr
    assert "--force" in text and "Traceback" not in text
    assert heroku_app(sandbox)["app"]["maintenance"] is True  # nothing was undone


def test_rollback_brings_heroku_back(sandbox: Path, window: dict[str, Any]) -> None:
    load: Workload = window["load"]
    proc = cutover(window["work"], window["playbook"], "rollback", "--yes", "--force", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    app = heroku_app(sandbox)
    assert app["app"]["maintenance"] is False
    assert {f["type"]: int(f["quantity"]) for f in app["formation"]} == {"web": 2, "worker": 1}
    env = json.loads((sandbox / "env.json").read_text())
    record = query_authoritative("127.0.0.1", env["dns"]["port"], manager.RECORD, "CNAME")
    assert record is not None
    assert [v.rstrip(".") for v in record.values] == [manager.HEROKU_DNS_TARGET]
    # Writes are accepted again, and the Heroku worker works the queue again.
    since = time.time()
    wait_for(lambda: any(t > since for t, _ in load.client.acked), "a write accepted again")
    wait_for(lambda: any(t > since for t, _ in load.app.acked), "the app writing again")
    with psycopg.connect(load.url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO sandbox_jobs DEFAULT VALUES RETURNING id").fetchone()
    assert row is not None
    job = int(row[0])
    wait_for(lambda: bool(jobs(load.url).get(job)), "the Heroku worker working again")
    assert str(jobs(load.url)[job]).startswith("v")


def test_plan_estimates_the_second_window_from_the_first(
    sandbox: Path, window: dict[str, Any]
) -> None:
    """The first window was the rehearsal: after the rollback, plan's estimate for the window
    comes from the timings the rolled-back window measured, with every window step known; the
    second window runs (the guard asks for --force-data: Convox took a write above) and reports
    its measured downtime.

    The issue's 20% bound is checked where step times are controlled (the fakes take set
    times: tests/engine/test_window_estimate.py): here `make test` runs four test files at once,
    and two sandbox windows measured 47 and 64 s under that load. A factor of two still catches
    a step left out or counted twice."""
    plan = cutover(window["work"], window["playbook"], "plan", timeout=120)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    found = re.search(r"window estimate: ([0-9.]+) ?s", plan.stdout)
    assert found, plan.stdout
    assert "not in the total" not in plan.stdout, plan.stdout
    assert "an earlier attempt of this run" in plan.stdout
    estimate = float(found.group(1))
    proc = cutover(window["work"], window["playbook"], "run", "--yes", "--force-data")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    downtime = state_of(window["work"])["steps"]["verify-site"]["outputs"]["downtime_seconds"]
    assert "measured downtime" in proc.stdout
    assert downtime / 2 <= estimate <= downtime * 2, (estimate, downtime)
