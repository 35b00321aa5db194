"""The Heroku API emulator behaves like Heroku over time: dyno states, backups that take time and
report progress, scheduled backups beside ours, and a second Postgres attachment.

What each test emulates is read from heroku CLI 11.10.0 (node_modules/heroku/dist):
``commands/pg/backups/capture.js`` (resolve the attachment, POST the backup, poll the transfer
every max(3, --wait-interval) s until ``finished_at``), ``lib/pg/backups.js`` (``name()``: ``a``
for a transfer with a ``schedule``, ``b`` otherwise), ``commands/pg/backups/url.js`` (no id: the
newest successful ``gof3r`` transfer of the app by ``created_at``), ``commands/ps/index.js``
(``ps --json`` prints ``GET /apps/<app>/dynos``), and the Platform API's dyno states
(``crashed``, ``down``, ``idle``, ``starting``, ``up``).

No test asserts on elapsed time: state changes that depend on time are provoked by moving the
recorded transition time back, and long-running work is awaited by polling with a deadline.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from heroku_support import API_KEY, CliRunner, EmulatorFactory
from support.databases import backing_database
from support.paths import needs_heroku_cli
from support.waiting import wait_for
from test_heroku_api import APP, DNS_TARGET, DOMAIN, FAKE_DB, call

from cutover.sandbox.heroku_api import (
    Emulator,
    add_postgres_attachment,
    default_state,
    main,
    save_state,
    update_state,
)
from cutover.sandbox.pgcluster import PgCluster

PINK = "HEROKU_POSTGRESQL_PINK"


def state_with(
    db: dict[str, str | int] = FAKE_DB,
    *,
    scheduled: bool = False,
    pink: dict[str, str | int] | None = None,
    **timings: float,
) -> dict[str, Any]:
    state = default_state(
        APP, db=db, domain=DOMAIN, heroku_dns_target=DNS_TARGET, api_key=API_KEY,
        scheduled_backups=scheduled,
    )  # fmt: skip
    state["timings"].update(timings)
    if pink is not None:
        add_postgres_attachment(state, APP, db=pink)
    return state


def emulator(tmp_path: Path, state: dict[str, Any]) -> Emulator:
    path = tmp_path / "state.json"
    save_state(path, state)
    return Emulator(path, backup_port=4443)


def dyno_states(emu: Emulator) -> dict[str, str]:
    status, dynos, _ = call(emu, "GET", f"/apps/{APP}/dynos")
    assert status == 200
    return {d["name"]: d["state"] for d in dynos}


def age_transitions(state_path: Path, seconds: float) -> None:
    """Move every recorded dyno transition ``seconds`` into the past."""
    with update_state(state_path) as state:
        for item in state["apps"][APP].get("dyno_transitions", {}).values():
            item["at"] -= seconds


def scale(emu: Emulator, ptype: str, quantity: str) -> list[dict[str, Any]]:
    status, body, _ = call(
        emu, "PATCH", f"/apps/{APP}/formation", {"updates": [{"type": ptype, "quantity": quantity}]}
    )
    assert status == 200
    return list(body)


def test_main_refuses_a_missing_or_broken_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--port", "0", "--backup-port", "0", "--tls-cert", "c", "--tls-key", "k"]
    assert main(["--state", str(tmp_path / "missing.json"), *args]) == 2
    err = capsys.readouterr().err
    assert "cannot read the state file" in err and "missing.json" in err
    assert "Traceback" not in err
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert main(["--state", str(broken), *args]) == 2
    assert "must be a JSON object" in capsys.readouterr().err


# ============================================================================================
# Dynos (fast, in-process)


def test_seed_timings_are_a_few_seconds() -> None:
    timings = state_with()["timings"]
    assert 0 < timings["backup_seconds"] <= 10
    assert 0 < timings["dyno_start_seconds"] <= 10 and 0 < timings["dyno_stop_seconds"] <= 10


def test_scaled_down_dynos_go_up_then_down_then_away(tmp_path: Path) -> None:
    emu = emulator(tmp_path, state_with(dyno_start_seconds=60, dyno_stop_seconds=60))
    assert dyno_states(emu) == {"web.1": "up", "web.2": "up", "worker.1": "up"}
    assert scale(emu, "worker", "0")[0]["quantity"] == 0
    # The formation changes at once, as the API's answer says; the dyno is still finishing.
    _, formation, _ = call(emu, "GET", f"/apps/{APP}/formation")
    assert {p["type"]: p["quantity"] for p in formation} == {"web": 2, "worker": 0}
    assert dyno_states(emu)["worker.1"] == "up"
    age_transitions(emu.state_path, 40)
    assert dyno_states(emu) == {"web.1": "up", "web.2": "up", "worker.1": "down"}
    age_transitions(emu.state_path, 21)
    assert dyno_states(emu) == {"web.1": "up", "web.2": "up"}


def test_one_off_dynos_are_listed_as_run_and_stop_like_scaled_away_dynos(tmp_path: Path) -> None:
    """ps/index.js lists ``type === 'run'`` dynos as one-off processes; ps/stop.js posts
    ``/apps/<app>/dynos/<name>/actions/stop`` (Platform API "Dyno Stop": 202)."""
    state = state_with(dyno_stop_seconds=60)
    state["apps"][APP]["one_off_dynos"] = {"run.4711": {"command": "bash", "size": "Basic"}}
    emu = emulator(tmp_path, state)
    _, dynos, _ = call(emu, "GET", f"/apps/{APP}/dynos")
    one_off = next(d for d in dynos if d["name"] == "run.4711")
    assert (one_off["type"], one_off["state"], one_off["command"]) == ("run", "up", "bash")
    status, body, _ = call(emu, "POST", f"/apps/{APP}/dynos/run.4711/actions/stop")
    assert (status, body) == (202, {})
    assert dyno_states(emu)["run.4711"] == "up"  # SIGTERM: it finishes its work first
    with update_state(emu.state_path) as changed:
        changed["apps"][APP]["one_off_dynos"]["run.4711"]["stopped_at"] -= 40
    assert dyno_states(emu)["run.4711"] == "down"
    with update_state(emu.state_path) as changed:
        changed["apps"][APP]["one_off_dynos"]["run.4711"]["stopped_at"] -= 21
    assert "run.4711" not in dyno_states(emu)


def test_stopping_a_formation_dyno_restarts_it_and_an_unknown_one_is_404(tmp_path: Path) -> None:
    emu = emulator(tmp_path, state_with(dyno_stop_seconds=60))
    status, _, _ = call(emu, "POST", f"/apps/{APP}/dynos/worker.1/actions/stop")
    assert status == 202
    assert dyno_states(emu)["worker.1"] == "up"  # the platform restarts a scaled process's dyno
    status, body, _ = call(emu, "POST", f"/apps/{APP}/dynos/run.9/actions/stop")
    assert (status, body["id"]) == (404, "not_found")


def test_scaled_up_dynos_start_first(tmp_path: Path) -> None:
    emu = emulator(tmp_path, state_with(dyno_start_seconds=60, dyno_stop_seconds=60))
    scale(emu, "web", "3")
    assert dyno_states(emu) == {"web.1": "up", "web.2": "up", "web.3": "starting", "worker.1": "up"}
    age_transitions(emu.state_path, 61)
    assert dyno_states(emu)["web.3"] == "up"
    # Scaling back up while a dyno is stopping replaces it with a starting one.
    scale(emu, "worker", "0")
    scale(emu, "worker", "1")
    assert dyno_states(emu)["worker.1"] == "starting"


def test_state_without_timings_changes_dynos_at_once(tmp_path: Path) -> None:
    state = state_with()
    del state["timings"]
    emu = emulator(tmp_path, state)
    scale(emu, "worker", "0")
    scale(emu, "web", "+1")
    assert dyno_states(emu) == {"web.1": "up", "web.2": "up", "web.3": "up"}


# ============================================================================================
# Second attachment, schedule and scheduled backups (fast, in-process)


def test_second_postgres_attachment(tmp_path: Path) -> None:
    pink_db: dict[str, str | int] = {
        "host": "127.0.0.1", "port": 2, "dbname": "pinkdb", "user": "pu", "password": "pink-pw"
    }  # fmt: skip
    emu = emulator(tmp_path, state_with(pink=pink_db))
    entry = emu.read()["apps"][APP]
    assert entry["config_vars"][f"{PINK}_URL"] == "postgres://pu:pink-pw@127.0.0.1:2/pinkdb"
    assert entry["releases"][-1]["description"].startswith(f"Attach {PINK} (@ref:")
    service = "heroku-postgresql"
    primary, pink = (a for a in entry["addons"] if a["addon_service"]["name"] == service)
    assert primary["id"] != pink["id"]
    for wanted, addon in (
        (PINK, pink), (f"{PINK}_URL", pink), ("DATABASE_URL", primary), ("DATABASE", primary)
    ):  # fmt: skip
        status, found, _ = call(
            emu, "POST", "/actions/addon-attachments/resolve",
            {"addon_attachment": wanted, "app": APP, "addon_service": "heroku-postgresql"},
        )  # fmt: skip
        assert status == 200 and [a["addon"]["id"] for a in found] == [addon["id"]], wanted
    status, cred, _ = call(emu, "GET", f"/postgres/v0/databases/{pink['name']}/credentials/default")
    assert status == 200 and (cred["database"], cred["port"]) == ("pinkdb", 2)
    with pytest.raises(ValueError, match="already has an attachment"):
        add_postgres_attachment(emu.read(), APP, db=pink_db)


def test_backup_schedule_and_scheduled_backups(tmp_path: Path) -> None:
    emu = emulator(tmp_path, state_with(scheduled=True))
    entry = emu.read()["apps"][APP]
    primary = entry["addons"][0]
    path = f"/client/v11/databases/{primary['id']}/transfer-schedules"
    status, schedules, _ = call(emu, "GET", path)
    assert status == 200
    assert [(s["name"], s["hour"], s["timezone"]) for s in schedules] == [
        ("DATABASE_URL", 2, "UTC")
    ]
    _, transfers, _ = call(emu, "GET", f"/client/v11/apps/{APP}/transfers")
    assert [t["num"] for t in transfers] == [1, 2, 3]
    for transfer in transfers:
        assert transfer["schedule"] == {"uuid": schedules[0]["uuid"]}
        assert (transfer["from_type"], transfer["to_type"]) == ("pg_dump", "gof3r")
        assert transfer["succeeded"] is True and transfer["finished_at"]
        assert transfer["from_name"] == "DATABASE" and " 02:00:00 +0000" in transfer["created_at"]
        assert "file" not in transfer and "token" not in transfer and "addon_id" not in transfer
    assert sorted(t["created_at"] for t in transfers) == [t["created_at"] for t in transfers]
    assert [t["file"] for t in entry["transfers"]] == [f"backups/a00{n}.dump" for n in (1, 2, 3)]
    assert emu.read()["next_backup_num"] == 4
    # Without the flag there are none (the adapter tests count transfers).
    assert state_with()["apps"][APP]["transfers"] == []


# ============================================================================================
# Backups over time, against a real database


@pytest.mark.slow
def test_capture_runs_in_the_background_with_progress(
    tmp_path: Path, backing_db: dict[str, str | int]
) -> None:
    emu = emulator(tmp_path, state_with(backing_db, backup_seconds=2, backup_progress_interval=0.1))
    addon_id = emu.read()["apps"][APP]["addons"][0]["id"]
    status, body, _ = call(emu, "POST", f"/client/v11/databases/{addon_id}/backups")
    assert status == 201
    assert body["finished_at"] is None and body["succeeded"] is False
    assert body["processed_bytes"] == 0 and body["started_at"]
    seen: list[int] = []

    def finished() -> dict[str, Any] | None:
        _, polled, _ = call(emu, "GET", f"/client/v11/apps/{APP}/transfers/{body['uuid']}")
        seen.append(int(polled["processed_bytes"]))
        return dict(polled) if polled["finished_at"] else None

    done = wait_for(finished, "the backup to finish")
    dump = tmp_path / "backups" / "b001.dump"
    assert done["succeeded"] is True and done["processed_bytes"] == dump.stat().st_size
    assert seen == sorted(seen)  # never goes back
    assert any(0 < n < done["processed_bytes"] for n in seen), seen  # progress in between


# ============================================================================================
# The real CLI


@pytest.fixture
def pink_db(pg_source: PgCluster) -> dict[str, str | int]:
    """A second real database (table ``gadgets``) for the PINK attachment."""
    return backing_database(
        pg_source,
        "pink",
        "p",
        "CREATE TABLE gadgets (id int PRIMARY KEY)",
        "INSERT INTO gadgets VALUES (1)",
    )


def tables_in(dump: Path) -> set[str]:
    listing = subprocess.run(
        ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True
    )
    return {
        line.split()[-2] for line in listing.stdout.splitlines() if " TABLE DATA public " in line
    }


@pytest.mark.slow
@needs_heroku_cli
def test_cli_capture_targets_the_named_attachment(
    start_emulator: EmulatorFactory,
    cli: CliRunner,
    backing_db: dict[str, str | int],
    pink_db: dict[str, str | int],
) -> None:
    running = start_emulator(state_with(backing_db, pink=pink_db))
    entry = running.state()["apps"][APP]
    pink_addon = next(a for a in entry["addons"] if a["attachments"][0]["name"] == PINK)

    result = cli(running, "pg:backups:capture", PINK, "-a", APP)
    assert result.rc == 0, result.stderr
    assert f"Backing up {PINK} to b001... done" in result.stderr
    result = cli(running, "pg:backups:capture", "-a", APP)
    assert result.rc == 0, result.stderr
    assert "Backing up DATABASE to b002... done" in result.stderr

    first, second = running.state()["apps"][APP]["transfers"]
    assert first["addon_id"] == pink_addon["id"] and second["addon_id"] == entry["addons"][0]["id"]
    backups = running.state_path.parent / "backups"
    assert tables_in(backups / "b001.dump") == {"gadgets"}
    assert tables_in(backups / "b002.dump") == {"widgets"}
    # The CLI polled each transfer more than once: the capture took a while.
    assert running.log().count(f"api GET /client/v11/apps/{APP}/transfers/{first['uuid']} 200") >= 2
    assert f"api POST /client/v11/databases/{pink_addon['id']}/backups 201" in running.log()

    result = cli(running, "pg:credentials:url", PINK, "-a", APP)
    assert result.rc == 0, result.stderr
    assert f"dbname={pink_db['dbname']} " in result.stdout


@pytest.mark.slow
@needs_heroku_cli
def test_cli_url_without_id_returns_a_scheduled_backup_finished_in_between(
    start_emulator: EmulatorFactory, cli: CliRunner, backing_db: dict[str, str | int]
) -> None:
    state = state_with(backing_db, scheduled=True)
    state["apps"][APP]["scheduled_backup_during_capture"] = 1
    running = start_emulator(state)

    result = cli(running, "pg:backups:capture", "-a", APP)
    assert result.rc == 0, result.stderr
    assert "Backing up DATABASE to b004... done" in result.stderr

    def scheduled_done() -> bool:
        transfers = running.state()["apps"][APP]["transfers"]
        return any(t["num"] == 5 and t["finished_at"] for t in transfers)

    wait_for(scheduled_done, "the scheduled backup a005")
    transfers = {t["num"]: t for t in running.state()["apps"][APP]["transfers"]}
    assert transfers[5]["schedule"] and transfers[5]["created_at"] > transfers[4]["created_at"]
    assert running.state()["apps"][APP]["scheduled_backup_during_capture"] == 0

    latest = cli(running, "pg:backups:url", "-a", APP)
    assert latest.rc == 0, latest.stderr
    assert latest.stdout.strip().endswith("/a005.dump")  # not the backup just captured
    ours = cli(running, "pg:backups:url", "b004", "-a", APP)
    assert ours.rc == 0, ours.stderr
    assert ours.stdout.strip().endswith("/b004.dump")

    listing = cli(running, "pg:backups", "-a", APP)
    assert listing.rc == 0, listing.stderr
    for name in ("a001", "a002", "a003", "b004", "a005"):
        assert name in listing.stdout
    schedules = cli(running, "pg:backups:schedules", "-a", APP)
    assert "DATABASE_URL: daily at 2:00 UTC" in schedules.stdout

    # An older scheduled backup gets a real dump the first time its URL is asked for.
    old = cli(running, "pg:backups:url", "a001", "-a", APP)
    assert old.rc == 0, old.stderr
    assert tables_in(running.state_path.parent / "backups" / "a001.dump") == {"widgets"}


@pytest.mark.slow
@needs_heroku_cli
def test_cli_ps_shows_dynos_stopping_and_starting(
    start_emulator: EmulatorFactory, cli: CliRunner
) -> None:
    # Windows far longer than the real time the CLI calls take (node starts slowly on a busy
    # machine: with 60 s windows, two calls taking over 20 s crossed a phase): each call below
    # has 200 s of real time before the phase it checks ends; the clock is moved, not waited.
    running = start_emulator(state_with(dyno_start_seconds=600, dyno_stop_seconds=600))

    def ps() -> dict[str, str]:
        result = cli(running, "ps", "-a", APP, "--json")
        assert result.rc == 0, result.stderr
        return {d["name"]: d["state"] for d in result.json()}

    assert cli(running, "ps:scale", "worker=0", "web=3", "-a", APP).rc == 0
    assert ps() == {"web.1": "up", "web.2": "up", "web.3": "starting", "worker.1": "up"}
    age_transitions(running.state_path, 400)  # stopping: "up" for 300 s, then "down"
    assert ps() == {"web.1": "up", "web.2": "up", "web.3": "starting", "worker.1": "down"}
    age_transitions(running.state_path, 201)
    assert ps() == {"web.1": "up", "web.2": "up", "web.3": "up"}
