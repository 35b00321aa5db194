"""Review of the Heroku API emulator against heroku CLI 11.10.0 and hostile use.

Each test pins a defect found in review: the emulator's start-up handshake, captures that
outlive an emulator restart or a broken state file, and the dyno list after scaling.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from heroku_support import API_KEY, CliRunner, EmulatorFactory
from support.heroku_emulator import Running, spawn_emulator
from support.waiting import wait_for
from test_heroku_api import APP, call
from test_heroku_api_states import emulator, state_with, tables_in

from cutover.sandbox.heroku_api import (
    Emulator,
    Request,
    load_state,
    main,
    save_state,
    update_state,
)


@pytest.mark.slow
def test_pid_file_never_read_empty(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    """Callers (``spawn_emulator`` in tests/support/heroku_emulator.py, the ``start_emulator``
    fixture) poll for ``--pid-file`` to exist and then read the pid: it must appear complete,
    never empty."""
    _, cert, key = tls_files
    state_path = tmp_path / "state.json"
    save_state(state_path, state_with())
    for attempt in range(8):
        pid_file = tmp_path / f"pid{attempt}"
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "cutover.sandbox.heroku_api", "--state", str(state_path),
                "--port", "0", "--backup-port", "0", "--tls-cert", str(cert), "--tls-key",
                str(key), "--pid-file", str(pid_file),
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while True:  # spin, as fast as a caller could
                try:
                    text = pid_file.read_text()
                except FileNotFoundError:
                    assert proc.poll() is None, "the emulator died"
                    continue
                break
            assert text == f"{proc.pid}\n", f"attempt {attempt}: read {text!r}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # fail this test, not the next one's GC
                proc.kill()
                proc.wait()
                raise


def _transfer(state_path: Path, num: int) -> dict[str, Any]:
    transfers = load_state(state_path)["apps"][APP]["transfers"]
    return dict(next(t for t in transfers if t["num"] == num))


def _spawn(state_path: Path, tls_files: tuple[Path, Path, Path], tag: str) -> Running:
    """The emulator as a subprocess on ``state_path`` (the caller stops it)."""
    _, cert, key = tls_files
    folder = state_path.parent
    return spawn_emulator(state_path, cert, key, folder / f"{tag}.log", folder / f"{tag}.pid")


@pytest.mark.slow
def test_capture_killed_with_the_emulator_finishes_after_a_restart(
    tmp_path: Path,
    tls_files: tuple[Path, Path, Path],
    cli: CliRunner,
    backing_db: dict[str, str | int],
) -> None:
    """capture.js: "the backup will continue running" whatever happens to the CLI, and
    lib/pg/backups.js poll() loops until ``finished_at``: a transfer left unfinished by an
    emulator killed mid-capture must not stay "Running" for ever once an emulator is back."""
    state_path = tmp_path / "emu" / "state.json"
    state_path.parent.mkdir(mode=0o700)
    save_state(state_path, state_with(backing_db, backup_seconds=600, backup_progress_interval=0.1))
    first = _spawn(state_path, tls_files, "first")
    try:
        addon_id = first.state()["apps"][APP]["addons"][0]["id"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{first.port}/client/v11/databases/{addon_id}/backups",
            method="POST", headers={"Authorization": f"Bearer {API_KEY}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201 and json.load(response)["num"] == 1
        wait_for(lambda: _transfer(state_path, 1)["processed_bytes"] > 0, "progress")
    finally:
        os.killpg(first.proc.pid, signal.SIGKILL)  # no clean shutdown
        first.proc.wait(timeout=30)
    assert _transfer(state_path, 1)["finished_at"] is None
    with update_state(state_path) as state:
        state["timings"]["backup_seconds"] = 1
    second = _spawn(state_path, tls_files, "second")
    try:
        wait_for(lambda: _transfer(state_path, 1)["finished_at"], "the resumed capture", 30)
        info = cli(second, "pg:backups:info", "b001", "-a", APP)
        assert info.rc == 0, info.stderr
        assert "Status:           Completed" in info.stdout
        assert tables_in(state_path.parent / "backups" / "b001.dump") == {"widgets"}
        url = cli(second, "pg:backups:url", "-a", APP)
        assert url.rc == 0 and url.stdout.strip().endswith("/b001.dump"), url.stderr
    finally:
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(timeout=30) == 0, second.log()


@pytest.mark.slow
def test_capture_outlives_a_broken_state_file(
    tmp_path: Path, backing_db: dict[str, str | int], capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file broken by hand while a capture runs (hostile use): the capture must not
    die silently and leave the transfer unfinished for ever; once the file is good again the
    transfer finishes (lib/pg/backups.js poll() waits for ``finished_at``)."""
    emu = emulator(
        tmp_path, state_with(backing_db, backup_seconds=2, backup_progress_interval=0.05)
    )
    addon_id = emu.read()["apps"][APP]["addons"][0]["id"]
    status, _, _ = call(emu, "POST", f"/client/v11/databases/{addon_id}/backups")
    assert status == 201
    good = emu.state_path.read_text()
    emu.state_path.write_text("{broken")
    (worker,) = emu.workers
    seen = ""

    def noticed() -> bool:
        nonlocal seen
        seen += capsys.readouterr().err
        return not worker.is_alive() or "cannot update the state file" in seen

    try:
        wait_for(noticed, "the capture to meet the broken state file")
    finally:
        emu.state_path.write_text(good)
    try:
        done = wait_for(lambda: _transfer(emu.state_path, 1)["finished_at"], "finish", 30)
        assert done and _transfer(emu.state_path, 1)["succeeded"] is True
    finally:
        emu.stop.set()
        worker.join(timeout=30)
    assert tables_in(tmp_path / "backups" / "b001.dump") == {"widgets"}


def test_scaling_leaves_the_other_dynos_alone(tmp_path: Path) -> None:
    """Platform API "Dyno": ``updated_at`` is when the dyno's state last changed. Scaling web
    from 2 to 3 starts web.3 and does not restart web.1/web.2 or the workers, so ``heroku ps``
    (commands/ps/index.js prints ``state`` and ``updated_at``) must not show them as just up."""
    emu = emulator(tmp_path, state_with(dyno_start_seconds=60, dyno_stop_seconds=60))

    def dynos() -> dict[str, dict[str, Any]]:
        status, listed, _ = call(emu, "GET", f"/apps/{APP}/dynos")
        assert status == 200
        return {d["name"]: d for d in listed}

    before = dynos()
    release = max(emu.read()["apps"][APP]["releases"], key=lambda r: r["version"])
    assert {d["updated_at"] for d in before.values()} == {release["created_at"]}
    status, _, _ = call(
        emu, "PATCH", f"/apps/{APP}/formation", {"updates": [{"type": "web", "quantity": "3"}]}
    )
    assert status == 200
    after = dynos()
    for name in ("web.1", "web.2", "worker.1"):
        assert after[name]["state"] == "up"
        assert after[name]["updated_at"] == before[name]["updated_at"], name
    assert after["web.3"]["state"] == "starting"
    assert after["web.3"]["updated_at"] > before["web.1"]["updated_at"]
    started = after["web.3"]["created_at"]

    with update_state(emu.state_path) as state:  # web.3 has been starting for 61 s
        state["apps"][APP]["dyno_transitions"]["web.3"]["at"] -= 61
    up = dynos()["web.3"]
    assert up["state"] == "up" and up["created_at"] == started
    # Scaling the workers later leaves web.3 as it was: up since it came up.
    status, _, _ = call(
        emu, "PATCH", f"/apps/{APP}/formation", {"updates": [{"type": "worker", "quantity": "2"}]}
    )
    assert status == 200
    again = dynos()
    assert (again["web.3"]["state"], again["web.3"]["updated_at"]) == ("up", up["updated_at"])
    assert again["web.1"]["updated_at"] == before["web.1"]["updated_at"]


@pytest.mark.slow
def test_cli_backup_info_shows_the_database_size_and_compression(
    start_emulator: EmulatorFactory, cli: CliRunner, backing_db: dict[str, str | int]
) -> None:
    """Data API transfers: ``source_bytes`` is the database's size, ``processed_bytes`` the
    compressed backup's (commands/pg/backups/info.js prints "Original DB Size" and "Backup Size
    (N% compression)"; the CLI's own test/unit/commands/pg/backups/info.unit.test.ts has
    1_000_000 vs 100_000). A dump of a few rows is far smaller than the database it came from."""
    running = start_emulator(state_with(backing_db, backup_seconds=0.5))
    capture = cli(running, "pg:backups:capture", "-a", APP)
    assert capture.rc == 0, capture.stderr
    (transfer,) = running.state()["apps"][APP]["transfers"]
    dump = running.state_path.parent / "backups" / "b001.dump"
    assert transfer["processed_bytes"] == dump.stat().st_size
    assert transfer["source_bytes"] > 100 * transfer["processed_bytes"]  # an empty-ish db: MBs
    info = cli(running, "pg:backups:info", "b001", "-a", APP)
    assert info.rc == 0, info.stderr
    assert "(0% compression)" not in info.stdout
    assert "MB" in next(line for line in info.stdout.splitlines() if "Original DB Size" in line)


@pytest.mark.slow
def test_cli_capture_of_a_failing_database(start_emulator: EmulatorFactory, cli: CliRunner) -> None:
    """lib/pg/backups.js poll(): a transfer finished without ``succeeded`` makes the CLI fetch
    ``?verbose=true`` and print the last 5 log messages, then ``ux.error`` exits 2; the failed
    backup is listed as Failed and ``pg:backups:url`` without an id skips it (url.js)."""
    running = start_emulator(state_with(backup_seconds=0.5))  # FAKE_DB: port 1, refused
    result = cli(running, "pg:backups:capture", "-a", APP)
    assert result.rc == 2, result.stderr
    assert "An error occurred and the backup did not finish." in result.stderr
    assert "pg_dump exited with status 1" in result.stderr
    assert "heroku pg:backups:info b001" in result.stderr
    listing = cli(running, "pg:backups", "-a", APP)
    assert listing.rc == 0 and "Failed " in listing.stdout, listing.stderr
    url = cli(running, "pg:backups:url", "-a", APP)
    assert url.rc == 1 and "No backups on myapp" in url.stderr


def _public_download(emu: Emulator, num: int) -> tuple[int, Path | None]:
    """``pg:backups:url a00N`` (POST .../transfers/N/actions/public-url), then the download."""
    path = f"/client/v11/apps/{APP}/transfers/{num}/actions/public-url"
    status, body, _ = call(emu, "POST", path)
    assert status == 200, body
    response = emu.handle_backup(Request("GET", "/" + body["url"].split("/", 3)[3]))
    return response.status, response.file


@pytest.mark.slow
def test_seeded_scheduled_backup_cut_short_is_dumped_again(
    tmp_path: Path, backing_db: dict[str, str | int]
) -> None:
    """A seeded scheduled backup gets its dump when its URL is first asked for. An emulator
    killed during that dump left a cut-short file, which was then served as the backup for
    ever (the file's existence counted as done). The flag decides, and files appear whole."""
    emu = emulator(tmp_path, state_with(backing_db, scheduled=True))
    cut_short = tmp_path / "backups" / "a001.dump"
    cut_short.parent.mkdir(mode=0o700)
    cut_short.write_bytes(b"PGDMP\x01")  # the first bytes of a custom-format dump, then nothing
    status, served = _public_download(emu, 1)
    assert status == 200 and served is not None
    assert tables_in(served) == {"widgets"}


def test_seeded_scheduled_backup_of_an_unreachable_database_is_not_served(
    tmp_path: Path,
) -> None:
    """Documented in the package docstring: if the dump of a seeded scheduled backup fails, the
    URL still comes back but the download answers 404 (not an empty or partial file)."""
    emu = emulator(tmp_path, state_with(scheduled=True))  # FAKE_DB: port 1, refused
    status, _ = _public_download(emu, 1)
    assert status == 404
    assert not (tmp_path / "backups" / "a001.dump").exists()
    assert list((tmp_path / "backups").glob("*.part")) == []


def test_main_refuses_a_busy_port_or_missing_tls_files(
    tmp_path: Path, tls_files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """House rule (bad input: a clear message naming the thing, non-zero exit, no traceback):
    a port already taken (a stale emulator) or a TLS file that is missing."""
    _, cert, key = tls_files
    state_path = tmp_path / "state.json"
    save_state(state_path, state_with())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main([
            "--state", str(state_path), "--port", str(port), "--backup-port", "0",
            "--tls-cert", str(cert), "--tls-key", str(key),
        ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"cannot listen on 127.0.0.1 ports {port}" in err, err
    assert "Traceback" not in err
    missing = tmp_path / "nope.pem"
    code = main([
        "--state", str(state_path), "--port", "0", "--backup-port", "0",
        "--tls-cert", str(missing), "--tls-key", str(key),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"cannot load the TLS certificate {missing}" in err, err


@pytest.mark.slow
def test_scheduled_backup_in_between_outlives_a_broken_state_file(
    tmp_path: Path, backing_db: dict[str, str | int], capsys: pytest.CaptureFixture[str]
) -> None:
    """``scheduled_backup_during_capture`` is spent when the capture starts; the scheduled
    backup it promises (url.js then returns it, not ours) must still come if the state file is
    unreadable at the moment it starts, instead of the thread dying and the tests waiting."""
    state = state_with(backing_db, backup_seconds=2, backup_progress_interval=0.05)
    state["apps"][APP]["scheduled_backup_during_capture"] = 1
    emu = emulator(tmp_path, state)
    addon_id = emu.read()["apps"][APP]["addons"][0]["id"]
    # The scheduled backup starts in the second after ours: start ours early in a second, so
    # the state file is broken well before that (a synchronisation, not a timed assertion).
    wait_for(lambda: time.time() % 1 < 0.1, "the start of a second", 5)
    status, _, _ = call(emu, "POST", f"/client/v11/databases/{addon_id}/backups")
    assert status == 201
    good = emu.state_path.read_text()
    assert '"num": 2' not in good
    broken = tmp_path / "broken.json"
    broken.write_text("{broken")
    os.replace(broken, emu.state_path)  # atomically, as update_state() would write
    ours, scheduled = emu.workers
    seen = ""

    def noticed() -> bool:
        nonlocal seen
        seen += capsys.readouterr().err
        return not scheduled.is_alive() or "scheduled backup: cannot update" in seen

    try:
        wait_for(noticed, "the scheduled backup to meet the broken state file")
    finally:
        fixed = tmp_path / "fixed.json"
        fixed.write_text(good)
        os.replace(fixed, emu.state_path)

    def scheduled_done() -> bool:
        transfers = load_state(emu.state_path)["apps"][APP]["transfers"]
        return any(t["num"] == 2 and t["finished_at"] for t in transfers)

    try:
        wait_for(scheduled_done, "the scheduled backup a002", 30)
    finally:
        emu.stop.set()
        ours.join(timeout=30)
        scheduled.join(timeout=30)
    assert _transfer(emu.state_path, 2)["schedule"] is not None


def test_a_stopping_dyno_keeps_its_times_until_it_is_down(tmp_path: Path) -> None:
    """Platform API "Dyno": ``created_at`` is when the dyno was created and ``updated_at`` when
    its state last changed. A worker scaled to 0 that is still finishing (``up``) has not
    changed; once ``down`` its ``updated_at`` moves, and its ``created_at`` never does."""
    emu = emulator(tmp_path, state_with(dyno_start_seconds=60, dyno_stop_seconds=60))

    def worker() -> dict[str, Any]:
        status, listed, _ = call(emu, "GET", f"/apps/{APP}/dynos")
        assert status == 200
        return dict(next(d for d in listed if d["name"] == "worker.1"))

    before = worker()
    status, _, _ = call(
        emu, "PATCH", f"/apps/{APP}/formation", {"updates": [{"type": "worker", "quantity": "0"}]}
    )
    assert status == 200
    stopping = worker()
    assert stopping["state"] == "up"
    assert (stopping["created_at"], stopping["updated_at"]) == (
        before["created_at"], before["updated_at"]
    )  # fmt: skip
    with update_state(emu.state_path) as state:  # 40 s later: past half of dyno_stop_seconds
        state["apps"][APP]["dyno_transitions"]["worker.1"]["at"] -= 40
    down = worker()
    assert down["state"] == "down" and down["created_at"] == before["created_at"]
    assert down["updated_at"] > before["updated_at"]


@pytest.mark.slow
def test_capture_of_an_app_removed_meanwhile_ends(
    tmp_path: Path, backing_db: dict[str, str | int]
) -> None:
    """A test (or the sandbox) that replaces the state while a capture runs: once its app is
    gone there is nothing to store the outcome in, and the capture thread must end rather
    than retry for ever."""
    emu = emulator(
        tmp_path, state_with(backing_db, backup_seconds=1, backup_progress_interval=0.05)
    )
    addon_id = emu.read()["apps"][APP]["addons"][0]["id"]
    status, _, _ = call(emu, "POST", f"/client/v11/databases/{addon_id}/backups")
    assert status == 201
    (worker,) = emu.workers
    with update_state(emu.state_path) as state:
        state["apps"]["other"] = state["apps"].pop(APP)
        state["apps"]["other"]["app"]["id"] = "another-id"
    try:
        wait_for(lambda: not worker.is_alive(), "the capture thread to end", 30)
    finally:
        emu.stop.set()
        worker.join(timeout=30)


@pytest.mark.slow
def test_cli_lists_seeded_scheduled_backups_with_their_sizes(
    start_emulator: EmulatorFactory, cli: CliRunner, backing_db: dict[str, str | int]
) -> None:
    """A finished backup on Heroku has its sizes (pg:backups Size column, pg:backups:info
    "Original DB Size", commands/pg/backups/index.js and info.js); the seeded scheduled ones
    listed "Completed ... 0.00B" until someone asked for their URL."""
    running = start_emulator(state_with(backing_db, scheduled=True))

    def sized() -> bool:
        transfers = running.state()["apps"][APP]["transfers"]
        return len(transfers) == 3 and all(t["processed_bytes"] > 0 for t in transfers)

    wait_for(sized, "the seeded scheduled backups' dumps", 60)
    listing = cli(running, "pg:backups", "-a", APP)
    assert listing.rc == 0, listing.stderr
    rows = [line for line in listing.stdout.splitlines() if line.strip().startswith("a00")]
    assert len(rows) == 3 and not any("0.00B" in row for row in rows), rows
    info = cli(running, "pg:backups:info", "a001", "-a", APP)
    assert info.rc == 0 and "(0% compression)" not in info.stdout, info.stdout
    assert "/backups/" not in running.log()  # no URL was asked for
