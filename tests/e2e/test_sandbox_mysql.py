"""The whole cutover of the sandbox's ClearDB app (playbooks/sandbox-mysql.yml, issue 14).

The sandbox's second Heroku app, ``myapp-mysql-sandbox``, has a ClearDB add-on whose database is
the sandbox's "Heroku" MariaDB (seeded by cutover/sandbox/mysqlseed.py: keys, emoji, a keyless
table, a foreign key, a trigger, a view and a function with the add-on user as definer). The run
is killed (SIGKILL to its process group) while initial-sync-mysql's dump runs, then resumed: it
completes, the Convox mysql resource holds the same data (checked here again, independently of
verify-mysql), no staging database is left, and no password reached any argv.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO
from support.waiting import wait_for

from cutover.adapters import mysqlverify
from cutover.adapters.mysql import MyConn, MysqlAdapter
from cutover.runner import Runner
from cutover.sandbox import mysqlbox
from cutover.secrets import SecretMasker

pytestmark = pytest.mark.slow


def _env(argv_log: Path) -> dict[str, str]:
    return {**os.environ, "CUTOVER_TEST_ARGV_LOG": str(argv_log), "COLUMNS": "120"}


def _dump_started(argv_log: Path) -> bool:
    if not argv_log.exists():
        return False
    return any(
        "mysql-data.sql" in line and "dump" in line for line in argv_log.read_text().splitlines()
    )


@pytest.fixture(scope="module")
def mysql_run(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("mysql")
    text = (REPO / "playbooks" / "sandbox-mysql.yml").read_text()
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    playbook = work / "cutover.yml"
    playbook.write_text(text)
    argv_log = work / "argv.jsonl"
    argv = [sys.executable, "-m", "cutover", "run", "-f", str(playbook), "--yes"]
    first = subprocess.Popen(
        argv,
        cwd=work,
        env=_env(argv_log),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: _dump_started(argv_log) or first.poll() is not None,
            "initial-sync-mysql's dump",
            deadline=600,
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        killed_out, _ = first.communicate(timeout=60)
    resumed = subprocess.run(
        argv, cwd=work, env=_env(argv_log), capture_output=True, text=True, timeout=900, check=False
    )
    return {
        "killed": (first.returncode, killed_out),
        "proc": resumed,
        "work": work,
        "argv_log": argv_log,
    }


def _conns(sandbox: Path) -> tuple[MyConn, MyConn]:
    url = mysqlbox.cleardb_url(sandbox)
    assert url
    box = mysqlbox.convox_backend(sandbox)
    assert box is not None
    return MyConn.from_url(url), MyConn("127.0.0.1", box.port, "root", "app", box.admin_password)


def test_killed_during_the_copy_then_resumed_to_the_end(
    sandbox: Path, mysql_run: dict[str, Any]
) -> None:
    code, out = mysql_run["killed"]
    assert code == -signal.SIGKILL, out
    assert "initial-sync-mysql" in out
    proc = mysql_run["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = json.loads((mysql_run["work"] / ".cutover" / "state.json").read_text())
    steps = state["steps"]
    for step in ("check-mysql", "initial-sync-mysql", "final-sync-mysql", "verify-mysql"):
        assert steps[step]["status"] == "done", step
    for step in ("check-data", "initial-sync", "final-sync", "verify-data"):
        assert steps[step]["status"] == "skipped", step  # no Heroku Postgres on this app
    assert steps["check-mysql"]["outputs"]["addon"] == "cleardb"
    assert steps["initial-sync-mysql"]["outputs"]["definers"] >= 3
    assert steps["verify-mysql"]["outputs"]["tables"] == 4


def test_the_convox_database_holds_the_same_data(sandbox: Path, mysql_run: dict[str, Any]) -> None:
    assert mysql_run["proc"].returncode == 0
    source, target = _conns(sandbox)
    masker = SecretMasker()
    my = MysqlAdapter(Runner(masker), masker)
    assert mysqlverify.verify(my, source, target).mismatches == []
    names = [r[0] for r in my.query(target, "SHOW DATABASES")]
    assert not [n for n in names if "__cutover" in n]
    rows = my.query(target, "SELECT name FROM customers WHERE id = 1")
    assert rows == [["Ada 🚀"]]
    triggers = my.query(
        target, "SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'app'"
    )
    assert triggers == [["root@127.0.0.1"]]  # the Convox user, not ClearDB's


def test_no_mysql_password_in_any_argv(sandbox: Path, mysql_run: dict[str, Any]) -> None:
    source, target = _conns(sandbox)
    logged = mysql_run["argv_log"].read_text().splitlines()
    assert any("--single-transaction" in line for line in logged)
    for line in logged:
        assert source.password not in line
        assert target.password not in line


def test_a_database_section_on_an_app_without_heroku_postgres_says_database_null(
    sandbox: Path, tmp_path: Path
) -> None:
    """A new operator's playbook for a ClearDB-only app, without `database: null`: preflight
    stopped on `heroku pg:credentials:url DATABASE`'s "has no databases" and said nothing of
    the playbook; it names the field to set."""
    text = (REPO / "playbooks" / "sandbox-mysql.yml").read_text()
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = re.sub(r"(?m)^  source: \S+.*$", f"  source: {sandbox / 'app'}", text)
    text = text.replace("database: null\n", "")
    playbook = tmp_path / "cutover.yml"
    playbook.write_text(text)
    argv = [sys.executable, "-m", "cutover", "run", "-f", str(playbook), "--until", "preflight"]
    done = subprocess.run(
        argv,
        cwd=tmp_path,
        env=_env(tmp_path / "argv.jsonl"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "no Heroku Postgres" in out and "database: null" in out, out
    assert "cleardb" in out, out
    assert "Traceback" not in out
