"""`cutover rollback` with switch-dns's real undo: the record back on the real Knot server (through
the DNS tap), read back, and the Convox database's marker back from ``cutover:live`` to the
final sync's ``cutover:synced`` (adapters/pglive.py); the refusal when the Convox database took
writes since the final sync; kill -9 inside the undo. The fakes record heroku/convox/psql calls
(tests/fakes); the other window undos are other helpers' (only switch-dns is undone here).
"""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest
from fakes.harness import HEROKU_TARGET, LOWERED_TTL, Project
from fakes.seed import CONVOX_APP, ROUTER
from fakes.world import update_world

pytestmark = pytest.mark.slow

WINDOW_AGAIN = ["switch-dns", "verify-dns", "verify-site"]


def database(project: Project) -> dict[str, Any]:
    return dict(project.world()["convox"]["apps"][CONVOX_APP]["resources"]["database"])


def write_on_convox(project: Project, rows: int) -> None:
    """The app on Convox wrote rows (the fake psql counts data["writes"] in n_tup_ins...)."""
    with update_world(project.world_path) as world:
        data = world["convox"]["apps"][CONVOX_APP]["resources"]["database"]["data"]
        data["writes"] = int(data.get("writes", 0)) + rows


def finished(project: Project) -> str:
    """A whole run; returns the synced marker the final sync left (before switch-dns)."""
    synced = project.run("run", "--yes", "--until", "verify-data")
    assert synced.returncode == 0, synced
    marker = database(project)["comment"]
    assert marker.startswith("cutover:synced "), marker
    done = project.run("run", "--yes")
    assert done.returncode == 0, done
    return str(marker)


def assert_back_on_heroku(project: Project, marker: str) -> None:
    record = project.dns_record()
    assert record is not None
    assert (record.values, record.ttl) == ([HEROKU_TARGET + "."], LOWERED_TTL)
    assert database(project)["comment"] == marker  # the final sync's marker, count included


def test_rollback_points_dns_back_and_unmarks_the_live_database(project: Project) -> None:
    marker = finished(project)
    live = database(project)["comment"]
    count = re.search(r"writes=(\d+)", marker)
    assert count and f"writes={count[1]} synced=" in live  # the live marker carries the count
    record = project.dns_record()
    assert record is not None and record.values == [ROUTER + "."]
    updates = len(project.tap.updates)

    plan = project.run("rollback", "--plan")
    assert plan.returncode == 0, plan
    assert f"will undo: www.example.test answers CNAME {ROUTER}." in plan.stdout
    assert f"DNS update: www.example.test CNAME {HEROKU_TARGET}. TTL {LOWERED_TTL}" in plan.stdout
    assert "count the Convox database's writes since the final sync" in plan.stdout
    assert len(project.tap.updates) == updates

    done = project.run("rollback", "--yes")

    assert done.returncode == 0, done
    assert_back_on_heroku(project, marker)
    assert len(project.tap.updates) == updates + 1
    assert "has taken 0 row write(s) since the final sync" in done.output
    state = project.state()
    assert state["rollback"]["steps"]["switch-dns"]["status"] == "done"
    assert state["rollback"]["reset_from"] == "maintenance-on"  # every window undo is real now
    assert not set(WINDOW_AGAIN) & set(state["steps"])
    assert state["history"]["switch-dns"]["previous"]["values"] == [HEROKU_TARGET + "."]
    events = [e["kind"] for e in project.events()]
    assert events[-1] == "rollback-complete"

    again = project.run("run", "--yes")  # the window again: the switch, from the same record

    assert again.returncode == 0, again
    record = project.dns_record()
    assert record is not None and record.values == [ROUTER + "."]
    assert database(project)["comment"].startswith("cutover:live ")
    assert project.state()["steps"]["switch-dns"]["outputs"]["previous"]["values"] == [
        HEROKU_TARGET + "."
    ]


def test_rollback_refuses_after_a_write_on_convox_unless_forced(project: Project) -> None:
    marker = finished(project)
    write_on_convox(project, 3)
    updates = len(project.tap.updates)

    refused = project.run("rollback", "--yes")

    assert refused.returncode == 1, refused
    assert "refusing to roll back: the Convox database app has taken 3 row write(s)" in (
        refused.output
    )
    assert "would be lost" in refused.output
    assert "cutover rollback --force" in refused.output
    assert "Traceback" not in refused.output
    assert len(project.tap.updates) == updates
    assert project.state()["rollback"] is None
    assert "rollback-refused" in [e["kind"] for e in project.events()]

    forced = project.run("rollback", "--yes", "--force")

    assert forced.returncode == 0, forced
    assert_back_on_heroku(project, marker)
    assert "--force-data" in forced.output  # the next final sync will refuse to replace them
    assert project.state()["rollback"]["forced"] is True


def test_a_refused_dns_update_names_rollback_and_rollback_unmarks(project: Project) -> None:
    """The issue's case: the DNS update refused after maintenance-on (a wrong TSIG key)."""
    marker = finished_until_switch(project)

    failed = project.run("run", "--yes", env={"CUTOVER_DNS_TSIG_SECRET": "d3Jvbmcta2V5"})

    assert failed.returncode == 1, failed
    assert "step switch-dns failed" in failed.output
    assert "resume with: cutover run" in failed.output
    assert "Or bring Heroku back with: cutover rollback" in failed.output
    assert "until `cutover rollback` brings Heroku back" in failed.output
    assert database(project)["comment"].startswith("cutover:live ")
    updates = len(project.tap.updates)

    done = project.run("rollback", "--yes")

    assert done.returncode == 0, done
    assert len(project.tap.updates) == updates  # the record never moved: not touched
    assert_back_on_heroku(project, marker)
    reason = project.state()["rollback"]["steps"]["switch-dns"]["reason"]
    assert reason.startswith("the Convox database is marked live")


def finished_until_switch(project: Project) -> str:
    synced = project.run("run", "--yes", "--until", "verify-data")
    assert synced.returncode == 0, synced
    return str(database(project)["comment"])


def test_kill_9_inside_the_dns_undo_resumes_to_the_same_end(project: Project) -> None:
    """Killed right after Knot applied the update (cutover never saw the answer), then at the
    resumed run's first convox command (its writes check, before the database's marker is
    rewritten and before that run counts as an attempt): each `cutover rollback --yes`
    resumes; one DNS update in all."""
    marker = finished(project)
    updates = len(project.tap.updates)
    running: list[Any] = []

    def kill_after_update(number: int) -> None:
        running[-1].send_signal(signal.SIGKILL)

    project.tap.on_update = kill_after_update
    env = {"FAKE_KILL_PARENT": "step:switch-dns:before"}
    results = []
    for _ in range(4):
        proc = project.start("rollback", "--yes", env=env)
        running.append(proc)
        results.append(project.finish(proc))
        if results[-1].returncode != -signal.SIGKILL:
            break
        assert project.state()["rollback"]["steps"]["switch-dns"]["status"] == "running"
    project.tap.on_update = None

    assert [r.returncode for r in results] == [-signal.SIGKILL, -signal.SIGKILL, 0], results[-1]
    assert len(project.tap.updates) == updates + 1
    assert_back_on_heroku(project, marker)
    rb = project.state()["rollback"]
    assert rb["status"] == "done" and rb["attempts"] == 2
    assert rb["steps"]["switch-dns"]["attempts"] == 2
    kills = [k["step"] for k in project.world()["kills"]]
    assert kills == ["switch-dns"]
