"""Issue 13 in the sandbox: ``database.final_sync: changed-rows`` under a live workload.

One sandbox, the tests in file order. While a workload (tests/e2e/workload.py) keeps writing to
the Heroku database through the app and a second client, cutover installs the change capture and
copies the database (``run --until initial-sync``); Heroku then takes changes of every kind (a
primary-key update, deletes, a TRUNCATE, rows in a table without a key), ``catch-up`` applies
them; a bulk update gives the next catch-up many batches and it is killed (SIGKILL to its process
group) in the middle of them, then run again; the window runs and is killed inside the final
apply, then resumed to the end. Every acknowledged write must be on Convox, verify-data must
pass, and ``cleanup`` must leave no cutover object on Heroku.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_sandbox_cutover import collect_secrets, write_playbook
from workload import Workload, jobs, references

from cutover.sandbox import manager, pgcluster, seed

pytestmark = pytest.mark.slow

BATCH = 20  # database.catchup_batch_keys: small, so a catch-up of ~1,000 keys takes many batches


def cutover_env(argv_log: Path) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "160", "CUTOVER_TEST_ARGV_LOG": str(argv_log)}


def run(work: Path, playbook: Path, argv_log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args, "-f", str(playbook)],
        cwd=work,
        env=cutover_env(argv_log),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def start(work: Path, playbook: Path, argv_log: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cutover", *args, "-f", str(playbook)],
        cwd=work,
        env=cutover_env(argv_log),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes its psql children too
    )


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def apply_batches(argv_log: Path, after: int = 0) -> int:
    """The apply pipelines (one per batch) the Runner started, counted from line ``after``."""
    if not argv_log.exists():
        return 0
    lines = argv_log.read_text().splitlines()[after:]
    return sum(1 for line in lines if "_cutover.log_" in line and "COPY" in line)


def log_lines(argv_log: Path) -> int:
    return len(argv_log.read_text().splitlines()) if argv_log.exists() else 0


def kill_after_batches(work: Path, playbook: Path, argv_log: Path, batches: int, *args: str) -> str:
    """Start ``cutover <args>``, SIGKILL its process group once ``batches`` more apply
    pipelines have started; its output."""
    seen = log_lines(argv_log)
    proc = start(work, playbook, argv_log, *args)
    try:
        wait_for(lambda: apply_batches(argv_log, seen) >= batches, f"{batches} apply batches")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, out
    return out


def heroku(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=False) as conn:
        for statement in statements:
            conn.execute(statement)


def convox_url(sandbox: Path) -> str:
    return pgcluster.load(sandbox / "pg-convox.json").url(manager.TARGET_DB)


def marker(sandbox: Path) -> str:
    with psycopg.connect(convox_url(sandbox), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = current_database()"
        ).fetchone()
    return str(row[0] if row else "")


def capture_objects(url: str) -> list[str]:
    """Every cutover object on the Heroku database, read from the catalog."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = '_cutover' "
            "UNION ALL SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass FROM pg_trigger "
            "WHERE tgname LIKE 'cutover\\_capture%' "
            "UNION ALL SELECT 'function ' || p.oid::regprocedure FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '_cutover'"
        ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.fixture(scope="module")
def scenario(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("rows")
    playbook = write_playbook(work, sandbox)
    text = playbook.read_text()
    text = re.sub(
        r"(?m)^database:\n",
        f"database:\n  final_sync: changed-rows\n  catchup_batch_keys: {BATCH}\n",
        text,
    )
    playbook.write_text(text)
    argv_log = work / "argv.jsonl"
    out: dict[str, Any] = {"work": work, "playbook": playbook, "argv_log": argv_log}
    with Workload(sandbox, interval=0.05) as load:
        url = load.url
        out["load"] = load
        out["url"] = url
        # A table without a key: captured by a log of its inserted rows.
        heroku(
            url,
            "CREATE TABLE page_views (path text, seen_at timestamptz DEFAULT now())",
            "INSERT INTO page_views (path) SELECT '/p/' || g FROM generate_series(1, 50) g",
        )
        wait_for(lambda: len(load.client.acked) >= 5, "the workload's first writes")
        out["initial"] = run(work, playbook, argv_log, "run", "--yes", "--until", "initial-sync")
        out["marker_initial"] = marker(sandbox)
        # Changes of every kind after the copy.
        heroku(
            url,
            "UPDATE schema_migrations SET version = version || '9' "
            "WHERE version = (SELECT min(version) FROM schema_migrations)",
            "DELETE FROM order_items WHERE id IN (SELECT id FROM order_items ORDER BY id LIMIT 5)",
            "TRUNCATE ar_internal_metadata",
            "INSERT INTO ar_internal_metadata (key, value, created_at, updated_at) "
            "VALUES ('environment', 'production', now(), now())",
            "INSERT INTO page_views (path) VALUES ('/after-copy')",
        )
        out["catchup_1"] = run(work, playbook, argv_log, "catch-up")
        # Enough keys for many batches, then a catch-up killed in the middle of them.
        heroku(url, "UPDATE orders SET updated_at = now()", "UPDATE accounts SET plan = plan")
        out["killed_catchup"] = kill_after_batches(work, playbook, argv_log, 3, "catch-up")
        out["marker_after_kill"] = marker(sandbox)
        out["catchup_2"] = run(work, playbook, argv_log, "catch-up")
        # The window: another bulk change waits for the final apply, which is killed too.
        heroku(
            url,
            "UPDATE orders SET updated_at = now()",
            "DELETE FROM page_views WHERE path = '/p/1'",
        )
        out["killed_window"] = kill_after_batches(work, playbook, argv_log, 3, "run", "--yes")
        out["window"] = run(work, playbook, argv_log, "run", "--yes")
    out["dry_cleanup"] = run(work, playbook, argv_log, "cleanup", "--dry-run")
    out["objects_before_cleanup"] = capture_objects(url)
    out["cleanup"] = run(work, playbook, argv_log, "cleanup", "--yes")
    out["cleanup_again"] = run(work, playbook, argv_log, "cleanup", "--yes")
    yield out


def said(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def test_initial_sync_installs_the_capture_and_records_its_position(
    scenario: dict[str, Any],
) -> None:
    initial = scenario["initial"]
    assert initial.returncode == 0, said(initial)
    assert "page_views" in said(initial)  # the keyless table is named
    assert " capture=" in scenario["marker_initial"]


def test_catch_up_applies_and_shows_the_lag(scenario: dict[str, Any]) -> None:
    first = scenario["catchup_1"]
    assert first.returncode == 0, said(first)
    assert "change(s) behind" in said(first) and re.search(r"applied \d+ change", said(first))
    assert "Traceback" not in said(first)


def test_a_killed_catch_up_resumes(scenario: dict[str, Any]) -> None:
    # Killed mid-way, the position recorded on Convox is still the previous round's (or marked
    # syncing from it): the next catch-up redoes the round from there.
    killed = scenario["marker_after_kill"]
    assert killed.startswith(("cutover:syncing ", "cutover:synced ")) and " capture=" in killed
    second = scenario["catchup_2"]
    assert second.returncode == 0, said(second)
    assert re.search(r"applied \d+ change\(s\)", said(second)), said(second)
    assert "now " in said(second) and "behind" in said(second)


def test_the_window_killed_in_the_final_apply_completes(scenario: dict[str, Any]) -> None:
    window = scenario["window"]
    assert window.returncode == 0, said(window)
    assert "cutover complete" in window.stdout
    assert "applied to the Convox database in place" in window.stdout  # the final-sync gate
    assert "cutover cleanup removes it" in window.stdout  # the capture is still on Heroku
    state = json.loads((scenario["work"] / ".cutover" / "state.json").read_text())
    final = state["steps"]["final-sync"]
    assert final["outputs"]["method"] == "changed-rows"
    assert final["attempts"] >= 2
    assert state["steps"]["verify-data"]["status"] == "done"


def test_convox_equals_heroku_and_no_acknowledged_write_is_lost(
    sandbox: Path, scenario: dict[str, Any]
) -> None:
    """Every table as Heroku holds it, but the job queue: start-workers started Convox's worker,
    which has been marking the jobs left pending since (tests/e2e/test_sandbox_window.py)."""
    source = pgcluster.load(sandbox / "pg-heroku.json")
    target = pgcluster.load(sandbox / "pg-convox.json")
    src = seed.table_fingerprints(source, manager.SOURCE_DB)
    dst = seed.table_fingerprints(target, manager.TARGET_DB)
    assert not [t for t in dst if t.startswith("_cutover.")]
    queue = "public.sandbox_jobs"
    mine = {t: v for t, v in src.items() if not t.startswith("_cutover.") and t != queue}
    assert mine == {t: v for t, v in dst.items() if t != queue}
    assert "public.page_views" in mine  # the keyless table (its inserted rows logged)
    load: Workload = scenario["load"]
    heroku_jobs, convox_jobs = jobs(load.url), jobs(convox_url(sandbox))
    assert set(heroku_jobs) == set(convox_jobs)
    assert all(convox_jobs[j] == by for j, by in heroku_jobs.items() if by)
    acked = {r for _, r in load.app.acked + load.client.acked}
    assert acked and acked <= references(convox_url(sandbox))


def test_every_kind_of_change_arrived(sandbox: Path, scenario: dict[str, Any]) -> None:
    with psycopg.connect(convox_url(sandbox), autocommit=True) as conn:
        versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        metadata = conn.execute("SELECT key, value FROM ar_internal_metadata").fetchall()
        paths = {r[0] for r in conn.execute("SELECT path FROM page_views")}
    with psycopg.connect(scenario["url"], autocommit=True) as conn:
        heroku_versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    assert versions == heroku_versions and any(v.endswith("9") for v in versions)  # a key update
    assert metadata == [("environment", "production")]  # TRUNCATE, then one insert
    assert "/after-copy" in paths and "/p/1" not in paths


def test_cleanup_removes_every_cutover_object(scenario: dict[str, Any]) -> None:
    dry = scenario["dry_cleanup"]
    assert dry.returncode == 0, said(dry)
    assert "_cutover" in said(dry)
    assert scenario["objects_before_cleanup"], "the capture was not installed"
    assert scenario["cleanup"].returncode == 0, said(scenario["cleanup"])
    assert capture_objects(scenario["url"]) == []
    again = scenario["cleanup_again"]
    assert again.returncode == 0, said(again)


def test_no_password_in_any_argv(sandbox: Path, scenario: dict[str, Any]) -> None:
    logged = scenario["argv_log"].read_text()
    for where, secret in collect_secrets(sandbox).items():
        assert secret not in logged, where
