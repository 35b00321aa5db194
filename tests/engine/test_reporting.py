"""After a whole run: no secret anywhere, private files, and readable status and log output.

These tests only read the session's finished run (``finished``)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys

import pytest
from fakes.harness import SKIPPED_IN_FAKES, STEP_IDS, Finished

pytestmark = pytest.mark.slow


def test_no_secret_reaches_state_log_terminal_or_argv(finished: Finished) -> None:
    project = finished.project
    places = {
        "state.json": project.state_path.read_text(),
        "events.jsonl": project.events_path.read_text(),
        "terminal": finished.result.output,
        "argv of every call": json.dumps(project.argvs()),
        "argv log of the runner": project.argv_log.read_text(),
    }
    secrets = project.secret_values()
    assert len(secrets) >= 12  # the fixed ones, the TSIG secret and two backup URL tokens
    leaks = [
        f"{name} in {where}"
        for name, value in secrets.items()
        for where, text in places.items()
        if value in text
    ]
    assert leaks == []


def test_secrets_reach_the_tools_only_through_env_and_stdin(finished: Finished) -> None:
    calls = finished.project.calls()
    secrets = finished.project.secrets
    for call in calls:
        connects = not {"--version", "--list"} & set(call["argv"])
        if call["argv"][0] in ("psql", "pg_restore") and connects:
            assert "PGPASSWORD" in call["env"], call["argv"]
    (env_set,) = [c for c in calls if c["argv"][:3] == ["convox", "env", "set"]]
    assert f"SECRET_KEY_BASE={secrets.secret_key_base}\n" in env_set["stdin"]
    assert f"STRIPE_SECRET_KEY={secrets.stripe_key}\n" in env_set["stdin"]
    assert "DATABASE_URL" not in env_set["stdin"]
    assert "PAPERTRAIL_API_TOKEN" not in env_set["stdin"]
    assert not any("=" in arg for arg in env_set["argv"][3:])
    # Every command without input saw a closed stdin (a hanging `env set` is the hazard).
    open_stdin = [
        c["argv"][:4]
        for c in calls
        if c["stdin_state"] == "open" and c["argv"][:3] != ["convox", "resources", "proxy"]
    ]
    assert open_stdin == []


def test_state_folder_is_private(finished: Finished) -> None:
    folder = finished.project.state_dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    wrong = [
        f"{p.relative_to(folder)} {oct(stat.S_IMODE(p.stat().st_mode))}"
        for p in sorted(folder.rglob("*"))
        if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)
    ]
    assert wrong == []
    # The lock file stays, emptied: deleting it while locked would let two runs lock.
    assert (folder / "lock").read_bytes() == b""
    assert not [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".dump", ".part"))]


def test_status_json_lists_every_step_in_order(finished: Finished) -> None:
    result = finished.project.run("status", "--json")

    assert result.returncode == 0, result
    doc = json.loads(result.stdout)
    assert doc["started"] is True
    assert doc["run_id"] == finished.project.state()["run_id"]
    assert [s["id"] for s in doc["steps"]] == STEP_IDS
    status = {s["id"]: s["status"] for s in doc["steps"]}
    assert {sid for sid, st in status.items() if st != "done"} == set(SKIPPED_IN_FAKES)
    assert {status[sid] for sid in SKIPPED_IN_FAKES} == {"skipped"}
    by_id = {s["id"]: s for s in doc["steps"]}
    assert by_id["verify-data"]["outputs"]["compared"] == "checksums"


def test_status_of_a_missing_playbook_is_a_clear_error(finished: Finished) -> None:
    result = finished.project.run("status", "--json", "-f", "elsewhere/cutover.yml")
    assert result.returncode == 2, result
    assert "elsewhere/cutover.yml: playbook not found" in result.output
    assert "Traceback" not in result.output


def test_status_table_is_readable(finished: Finished) -> None:
    result = finished.project.run("status")

    assert result.returncode == 0, result
    for step in STEP_IDS:
        word = "skipped" if step in SKIPPED_IN_FAKES else "done"
        assert re.search(rf"\b{re.escape(step)}\s.*\b{word}\b", result.stdout), step


def test_log_prints_readable_lines(finished: Finished) -> None:
    result = finished.project.run("log")

    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    events = finished.project.events()
    assert len([ln for ln in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", ln)]) == len(
        events
    )
    assert not [ln for ln in lines if ln.lstrip().startswith("{")]
    text = result.stdout
    assert re.search(r"run-start\s+playbook=", text)
    assert re.search(r"step-start\s+preflight", text)
    assert re.search(r"command\s+preflight\s+\$ heroku --version  -> exit 0 in [\d.]+s", text)
    assert re.search(r"gate\s+maintenance-on .*answered_by=--yes", text)
    assert re.search(r"run-complete", text)


def test_log_filters_by_step_and_prints_json(finished: Finished) -> None:
    result = finished.project.run("log", "--json", "--step", "deploy")

    assert result.returncode == 0, result
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and {e["step"] for e in events} == {"deploy"}
    kinds = [e["kind"] for e in events]
    assert (kinds[0], kinds[-1]) == ("step-start", "step-finish")


def test_python_dash_m_cutover_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cutover", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cutover ")
