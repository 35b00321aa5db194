from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cutover.engine.audit import AuditLog, read_events
from cutover.engine.lock import RunLock, unlock
from cutover.engine.plan import reset_from
from cutover.errors import LockedError, StateError
from cutover.secrets import SecretMasker
from cutover.state import CheckpointError, PlaybookRef, RunState, StateStore, Status


def make_state() -> RunState:
    return RunState(playbook=PlaybookRef(path="/x/cutover.yml", fingerprint="abc", fields={}))


def test_roundtrip_and_permissions(tmp_path: Path) -> None:
    store = StateStore(tmp_path / ".cutover")
    state = make_state()
    state.step("preflight").status = Status.DONE
    store.save(state)
    loaded = store.load()
    assert loaded is not None and loaded.steps["preflight"].status == Status.DONE
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert not [p for p in store.folder.iterdir() if p.name.endswith(".tmp")]


def test_secret_in_outputs_is_masked_on_disk(tmp_path: Path) -> None:
    masker = SecretMasker()
    masker.add("hunter2-very-secret")
    store = StateStore(tmp_path, masker)
    state = make_state()
    state.step("set-env").outputs["oops"] = "value hunter2-very-secret"
    store.save(state)
    assert "hunter2-very-secret" not in store.path.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b'{"schema_version": 1, "playbook": {"pa', "corrupt"),
        (b"\x00\xff\xfegarbage", "cannot read state"),
        (
            json.dumps({"schema_version": 99, "written_by": "cutover 9.0"}).encode(),
            "schema version 99 was written by cutover 9.0",
        ),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"schema_version": 1, "playbook": 3}).encode(), "does not match schema"),
    ],
)
def test_bad_state_files_are_refused_and_untouched(
    tmp_path: Path, content: bytes, message: str
) -> None:
    store = StateStore(tmp_path)
    store.path.write_bytes(content)
    with pytest.raises(StateError) as info:
        store.load()
    assert message in str(info.value)
    assert str(store.path) in str(info.value)
    assert store.path.read_bytes() == content


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path)
    store.save(make_state())
    before = store.path.read_bytes()

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CheckpointError, match="disk full") as info:
        store.save(make_state())
    assert "previous state file is intact" in info.value.resolution
    assert store.path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


HOLD = """
import sys, time
from pathlib import Path
from cutover.engine.lock import RunLock
lock = RunLock(Path(sys.argv[1]), "cutover run")
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_names_holder_and_survives_kill_9(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError) as info:
            RunLock(tmp_path, "cutover run").acquire()
        assert f"pid {holder.pid}" in str(info.value)
        assert "since" in str(info.value)
        with pytest.raises(LockedError, match="live process"):
            unlock(tmp_path, force=False)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # The kernel released the flock: a new run takes over and says whose lock it was.
    lock = RunLock(tmp_path, "cutover run")
    lock.acquire()
    assert lock.took_over is not None and lock.took_over.pid == holder.pid
    lock.release()
    assert (tmp_path / "lock").read_bytes() == b""  # emptied, never deleted while locked
    assert unlock(tmp_path, force=False) == "no lock is held"


def test_unlock_clears_a_dead_holders_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    holder.stdout.close()
    time.sleep(0.05)
    assert "lock cleared" in unlock(tmp_path, force=False)
    assert not (tmp_path / "lock").exists()
    assert unlock(tmp_path, force=False) == "no lock is held"


def test_masking_never_breaks_the_json(tmp_path: Path) -> None:
    masker = SecretMasker()
    for value in ("null", "0.25", "status", "started_at", "true"):
        masker.add(value)  # config values that look like JSON or like our own keys
    store = StateStore(tmp_path, masker)
    state = make_state()
    st = state.step("preflight")
    st.status = Status.DONE
    st.duration = 10.253
    st.started_at = None
    st.outputs = {"note": "status is fine", "ratio": 0.25}
    store.save(state)
    loaded = store.load()
    assert loaded is not None
    assert loaded.steps["preflight"].duration == 10.253
    assert loaded.steps["preflight"].outputs["ratio"] == 0.25
    assert loaded.steps["preflight"].outputs["note"] == "**** is fine"


def test_audit_lines_stay_valid_json(tmp_path: Path) -> None:
    masker = SecretMasker()
    masker.add("0.25")
    masker.add("null")
    masker.add("hunter2-secret")
    log = AuditLog(tmp_path, masker)
    log.event("command", duration=10.253, exit_code=None, stderr_tail="x hunter2-secret 0.25")
    (event,) = list(read_events(tmp_path / "events.jsonl"))
    assert event["duration"] == 10.253
    assert event["exit_code"] is None
    assert "hunter2-secret" not in event["stderr_tail"]


def test_from_keeps_the_first_outputs_of_cleared_steps() -> None:

    state = make_state()
    state.step("switch-dns").status = Status.DONE
    state.step("switch-dns").outputs = {"previous": {"type": "CNAME", "values": ["h."]}}
    reset_from(state, "switch-dns")
    assert "switch-dns" not in state.steps
    assert state.remembered("switch-dns", "previous") == {"type": "CNAME", "values": ["h."]}
    # A second attempt's outputs do not replace what the first one saw.
    state.step("switch-dns").status = Status.DONE
    state.step("switch-dns").outputs = {"previous": None}
    reset_from(state, "switch-dns")
    assert state.remembered("switch-dns", "previous") == {"type": "CNAME", "values": ["h."]}
