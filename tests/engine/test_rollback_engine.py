"""`cutover rollback`'s engine, as a real process, on toy steps (tests/engine/toy_rollback.py):
the order, the checkpoints, resume after kill -9 at each undo, the lock, the gate, the audit
events, plan and status, and the forward steps reset so `cutover run` does the window again.

The real undos of maintenance-on, scale-down, freeze-writes and start-workers live on other
branches; switch-dns's real undo is tested against Knot in test_rollback_dns.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TOY = Path(__file__).with_name("toy_rollback.py")
pytestmark = pytest.mark.slow  # ~40 cutover processes

UNDO_ORDER = ["start-workers", "switch-dns", "freeze-writes", "scale-down", "maintenance-on"]
END_WORLD = {
    "maintenance": False,
    "workers": 2,
    "frozen": False,
    "dns": "heroku",
    "convox_workers": 0,
}
PLAYBOOK = """\
version: 1
heroku:
  app: acme-shop
convox:
  app: shop
  rack: acme/production
database: null  # the toys have none: the writes check is tested in test_rollback_dns.py
"""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Toys:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "cutover.yml").write_text(PLAYBOOK)
        self.world_path.write_text(
            json.dumps({**END_WORLD, "maintenance": False, "effects": [], "fired": []})
        )

    @property
    def world_path(self) -> Path:
        return self.root / "toy.json"

    def env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "COLUMNS": "200",
        }
        env.update(extra or {})
        return env

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(TOY), *args],
            cwd=self.root,
            env=self.env(env),
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        proc = self.start(*args, env=env)
        out, err = proc.communicate(timeout=120)
        return Result(proc.returncode, out, err)

    def world(self) -> dict[str, Any]:
        return dict(json.loads(self.world_path.read_text()))

    def set_world(self, **changes: Any) -> None:
        # Under the toy's own lock and replaced atomically (toy_rollback.world): the toy
        # polls the file meanwhile, and a truncated read was a JSONDecodeError in CI.
        with open(str(self.world_path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.world()
            data.update(changes)
            tmp = self.world_path.with_suffix(".set")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.world_path)

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.root / ".cutover" / "state.json").read_text()))

    def events(self) -> list[dict[str, Any]]:
        lines = (self.root / ".cutover" / "events.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line]

    def effects(self) -> list[str]:
        return list(self.world()["effects"])

    def facts(self) -> dict[str, Any]:
        return {k: self.world()[k] for k in END_WORLD}


def window_failed(tmp_path: Path) -> Toys:
    """Every toy through the switch; verify fails: the window is open, traffic on Convox."""
    toys = Toys(tmp_path / "project")
    toys.set_world(verify_fails=True)
    failed = toys.run("run", "--yes")
    assert failed.returncode == 1, failed
    assert toys.facts() == {
        **END_WORLD,
        "maintenance": True,
        "workers": 0,
        "frozen": True,
        "dns": "convox",
    }
    return toys


def complete_run(tmp_path: Path) -> Toys:
    toys = Toys(tmp_path / "project")
    done = toys.run("run", "--yes")
    assert done.returncode == 0, done
    return toys


def test_a_failure_in_the_window_names_rollback_as_the_way_back(tmp_path: Path) -> None:
    toys = Toys(tmp_path / "project")
    toys.set_world(verify_fails=True)
    failed = toys.run("run", "--yes")
    assert failed.returncode == 1
    assert "step verify failed: toy verify failed" in failed.output
    assert "resume with: cutover run" in failed.output  # resume is still offered
    assert "Or bring Heroku back with: cutover rollback" in failed.output


def test_rollback_undoes_in_reverse_order_and_resets_the_window(tmp_path: Path) -> None:
    toys = complete_run(tmp_path)
    before = len(toys.effects())

    done = toys.run("rollback", "--yes")

    assert done.returncode == 0, done
    assert toys.facts() == END_WORLD
    assert toys.effects()[before:] == [
        "convox workers 0",
        "dns heroku",
        "unfreeze",
        "workers 2",  # the formation scale-down recorded
        "maintenance off",
    ]
    state = toys.state()
    rb = state["rollback"]
    assert rb["status"] == "done" and rb["attempts"] == 1 and rb["reset_from"] == "maintenance-on"
    assert {sid: u["status"] for sid, u in rb["steps"].items()} == dict.fromkeys(UNDO_ORDER, "done")
    assert all(u["reason"] for u in rb["steps"].values())
    # Forward steps from the first undone one on are cleared; their first outputs kept.
    assert sorted(state["steps"]) == ["prep"]
    assert state["history"]["scale-down"]["stopped"] == {"worker": 2}
    assert "does the window again from maintenance-on" in done.output
    kinds = [e["kind"] for e in toys.events() if e["kind"].startswith("rollback")]
    assert kinds[0] == "rollback-writes-check"  # traffic was on Convox: checked first
    assert kinds[1:] == ["rollback-start"] + ["rollback-step-start", "rollback-step-finish"] * 5 + [
        "rollback-complete"
    ]
    starts = [e["step"] for e in toys.events() if e["kind"] == "rollback-step-start"]
    assert starts == UNDO_ORDER

    again = toys.run("run", "--yes")  # the window again, from maintenance-on

    assert again.returncode == 0, again
    assert toys.facts() == {
        **END_WORLD,
        "maintenance": True,
        "workers": 0,
        "frozen": True,
        "dns": "convox",
        "convox_workers": 2,
    }
    assert toys.state()["steps"]["prep"]["attempts"] == 1


def test_rollback_from_a_failed_window_and_status_shows_it(tmp_path: Path) -> None:
    toys = window_failed(tmp_path)

    done = toys.run("rollback", "--yes")

    assert done.returncode == 0, done
    assert toys.facts() == END_WORLD
    rb = toys.state()["rollback"]
    assert "start-workers" not in rb["steps"]  # never ran: nothing to undo
    assert "start-workers: never ran: nothing to undo" in done.output
    status = toys.run("status")
    assert "rollback: done" in status.output
    assert "switch-dns: undone" in status.output
    assert "forward steps reset from maintenance-on" in status.output
    as_json = json.loads(toys.run("status", "--json").stdout)
    assert as_json["rollback"]["status"] == "done"


def test_without_yes_rollback_waits_at_its_gate(tmp_path: Path) -> None:
    toys = window_failed(tmp_path)
    effects = toys.effects()

    waiting = toys.run("rollback")

    assert waiting.returncode == 3, waiting
    assert "waiting at the gate before the rollback" in waiting.output
    assert "Traffic goes back to Heroku" in waiting.output
    assert "cutover rollback --yes" in waiting.output
    assert toys.effects() == effects
    assert toys.state()["rollback"] is None


def test_nothing_to_roll_back_before_the_window(tmp_path: Path) -> None:
    toys = Toys(tmp_path / "project")
    assert toys.run("run", "--yes", "--until", "prep").returncode == 0

    refused = toys.run("rollback", "--yes")

    assert refused.returncode == 2, refused
    assert "nothing to roll back: the cutover window has not started" in refused.output
    assert "Traceback" not in refused.output


def test_a_rollback_run_again_after_it_completed_is_done_not_refused(tmp_path: Path) -> None:
    """Found by `make chaos` (issue 15): a rollback killed just after its last undo finished
    gave, on resume, exit 0 or exit 2 ("nothing to roll back") depending on whether the kill
    came before or after the completion checkpoint. Re-running a completed rollback is the
    same resume: exit 0, nothing undone twice."""
    toys = complete_run(tmp_path)
    assert toys.run("rollback", "--yes").returncode == 0
    effects = toys.effects()

    again = toys.run("rollback", "--yes")

    assert again.returncode == 0, again
    assert "already rolled back" in again.output
    assert "Traceback" not in again.output
    assert toys.effects() == effects
    assert toys.facts() == END_WORLD
    assert toys.state()["rollback"]["status"] == "done"


def test_plan_shows_what_rollback_would_undo(tmp_path: Path) -> None:
    toys = window_failed(tmp_path)
    effects = toys.effects()
    state = toys.state()

    for args in (("rollback", "--plan"), ("plan", "--rollback")):
        shown = toys.run(*args)
        assert shown.returncode == 0, shown
        out = shown.stdout
        positions = [out.index(f"{sid}: Toy") for sid in UNDO_ORDER]
        assert positions == sorted(positions)
        assert "will undo: traffic on convox" in out
        assert "will undo: workers 0, recorded 2" in out
        assert "$ toy maintenance:off" in out
        assert "nothing to undo: never ran" in out  # start-workers
    assert toys.effects() == effects
    assert toys.state() == state


def test_a_failed_undo_stops_and_resumes(tmp_path: Path) -> None:
    toys = window_failed(tmp_path)
    toys.set_world(undo_fails=True)
    env = {"TOY_FAIL_UNDO": "freeze-writes"}

    failed = toys.run("rollback", "--yes", env=env)

    assert failed.returncode == 1, failed
    assert "rollback: undoing freeze-writes failed: toy freeze-writes undo refused" in failed.output
    assert "resume the rollback with: cutover rollback" in failed.output
    assert toys.world()["dns"] == "heroku" and toys.world()["frozen"]
    status = toys.run("status")
    assert "freeze-writes: failed" in status.output
    assert "resume it with `cutover rollback`" in status.output
    kinds = [e["kind"] for e in toys.events()]
    assert "rollback-step-failed" in kinds
    forward = toys.run("run", "--yes")  # would take the half-undone window for done
    assert forward.returncode == 2, forward
    assert "a rollback of this cutover is unfinished (failed: freeze-writes:" in forward.output
    assert "Finish it first: cutover rollback" in forward.output

    toys.set_world(undo_fails=False)
    done = toys.run("rollback", "--yes", env=env)

    assert done.returncode == 0, done
    assert toys.facts() == END_WORLD
    assert toys.effects().count("dns heroku") == 1
    rb = toys.state()["rollback"]
    assert rb["attempts"] == 2 and rb["steps"]["freeze-writes"]["attempts"] == 2


def test_a_second_rollback_or_run_is_refused_while_one_holds_the_lock(tmp_path: Path) -> None:
    toys = window_failed(tmp_path)
    first = toys.start("rollback", "--yes", env={"TOY_HANG": "switch-dns"})
    try:
        deadline = time.monotonic() + 60
        while not toys.world().get("hanging"):
            assert time.monotonic() < deadline, "the first rollback never reached switch-dns"
            time.sleep(0.05)
        for args in (("rollback", "--yes"), ("run", "--yes")):
            refused = toys.run(*args)
            assert refused.returncode == 4, refused
            assert "another cutover holds the lock" in refused.output
            assert "cutover rollback" in refused.output  # the holder's command
        toys.set_world(release=True)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, out + err
    assert toys.facts() == END_WORLD


@pytest.mark.parametrize("moment", ["before", "after"])
def test_kill_9_at_each_undo_resumes_to_the_same_end(tmp_path: Path, moment: str) -> None:
    """SIGKILL before (then after) the effect of every undo in turn; each re-run of
    `cutover rollback --yes` resumes from the state the killed one left. The end equals an
    uninterrupted rollback's, and no undo effect is applied twice."""
    reference = complete_run(tmp_path / "reference")
    base = len(reference.effects())
    assert reference.run("rollback", "--yes").returncode == 0
    expected_effects = reference.effects()[base:]
    expected_state = reference.state()

    toys = complete_run(tmp_path / "killed")
    env = {"TOY_KILL": ";".join(f"{sid}:{moment}" for sid in UNDO_ORDER)}
    results = []
    for _ in range(len(UNDO_ORDER) + 2):
        result = toys.run("rollback", "--yes", env=env)
        results.append(result)
        if result.returncode != -signal.SIGKILL:
            break
        rb = toys.state()["rollback"]
        killed = UNDO_ORDER[len(results) - 1]
        assert rb["steps"][killed]["status"] == "running", rb  # checkpointed before the effect
    assert [r.returncode for r in results] == [-signal.SIGKILL] * 5 + [0], results[-1]
    assert toys.world()["fired"] == [f"{sid}:{moment}" for sid in UNDO_ORDER]
    assert toys.facts() == END_WORLD
    assert toys.effects()[base:] == expected_effects
    state = toys.state()
    rb, ref = state["rollback"], expected_state["rollback"]
    assert {k: u["status"] for k, u in rb["steps"].items()} == {
        k: u["status"] for k, u in ref["steps"].items()
    }
    found = {k for k, u in rb["steps"].items() if u["found_applied"]}
    assert found == (set(UNDO_ORDER) if moment == "after" else set())
    assert sorted(state["steps"]) == sorted(expected_state["steps"]) == ["prep"]
    assert rb["reset_from"] == ref["reset_from"] == "maintenance-on"
    assert sorted(state["history"]) == sorted(expected_state["history"])


def test_rollback_resets_the_whole_window_when_maintenance_was_turned_off_by_hand(
    tmp_path: Path,
) -> None:
    """The operator ran `heroku maintenance:off` before `cutover rollback`: maintenance-on's
    undo finds nothing to do, yet Heroku took traffic (and writes) since. The reset must still
    start at maintenance-on, or the next `cutover run` would resume at scale-down with Heroku
    serving users and maintenance-on recorded done (engine/rollback.py _complete)."""
    toys = complete_run(tmp_path)
    toys.set_world(maintenance=False)  # by hand, outside cutover

    done = toys.run("rollback", "--yes")

    assert done.returncode == 0, done
    state = toys.state()
    assert state["rollback"]["steps"]["maintenance-on"]["status"] == "skipped"
    assert state["rollback"]["reset_from"] == "maintenance-on"
    assert "maintenance-on" not in state["steps"]
    assert "does the window again from maintenance-on" in done.output


def test_the_writes_check_runs_when_a_from_cleared_the_switch_while_traffic_is_on_convox(
    tmp_path: Path,
) -> None:
    """`cutover run --from final-sync` after the switch clears switch-dns (its outputs go to
    the history) while DNS still points at Convox: the rollback undoes the switch (from the
    history), so it must count the Convox database's writes first, as it does for a switch
    recorded done (engine/rollback.py _check_writes and _visit agree on "ran")."""
    toys = complete_run(tmp_path)
    path = tmp_path / "project" / ".cutover" / "state.json"
    state = json.loads(path.read_text())
    for sid in ["final-sync", "verify", "switch-dns", "start-workers"]:
        old = state["steps"].pop(sid, None)  # as reset_from does (the toys' outputs are empty)
        state.setdefault("history", {}).setdefault(sid, (old or {}).get("outputs") or {"ran": 1})
    path.write_text(json.dumps(state))
    assert "switch-dns" in toys.state()["history"] and toys.facts()["dns"] == "convox"

    done = toys.run("rollback", "--yes")

    assert done.returncode == 0, done
    assert toys.facts()["dns"] == "heroku"
    kinds = [e["kind"] for e in toys.events() if e["kind"].startswith("rollback")]
    assert kinds[0] == "rollback-writes-check"


def test_an_interruption_in_the_window_names_rollback_as_the_way_back(tmp_path: Path) -> None:
    """Issue 11: every failure message in the window names `cutover rollback`, an interrupted
    step's too (Heroku is in maintenance with its workers at 0 until one or the other)."""
    toys = Toys(tmp_path / "project")
    toys.set_world(verify_hangs=True)
    proc = toys.start("run", "--yes")
    deadline = time.monotonic() + 60
    while not toys.world().get("hanging"):
        assert proc.poll() is None and time.monotonic() < deadline, "verify never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode != 0
    assert "interrupted during verify" in out + err
    assert "Resume with: cutover run" in out + err
    assert "bring Heroku back with: cutover rollback" in out + err
