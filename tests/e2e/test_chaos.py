"""`make chaos` in CI, reduced to one chain (issue 15).

`make chaos` gives each kill point a fresh sandbox and compares with a reference run's world;
that costs a whole cutover per point. Here the CI budget holds one cutover, so the kill points
are a *chain* on one sandbox: ``cutover run`` is killed with SIGKILL inside deploy, the next
``cutover run`` after check-data (a step boundary), the next inside final-sync (a data step);
the last one runs to the end. Then ``cutover rollback`` is killed inside an undo step and
resumed. The world is compared once after the run and once after the rollback, not with a
reference run (a second whole cutover) but with what the sandbox's own side says it must be:
every Convox table equal to Heroku's (rows and checksum, the query verify-data runs), Heroku's
secrets in the Convox env and the promoted release, the record on both name servers, Heroku's
maintenance, formation and write freeze, no process left by any killed run, no stale lock.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO

from cutover.sandbox import pgcluster
from cutover.sandbox.chaos import drive, procs, world
from cutover.sandbox.chaos.points import ROLLBACK, RUN, Point
from cutover.sandbox.names import HEROKU_DNS_TARGET, ORIGINAL_TTL, ROUTER, SOURCE_DB
from cutover.steps import STEP_IDS

pytestmark = pytest.mark.slow

RUN_CHAIN = [
    Point(RUN, "deploy", 0.4, 4.0),  # inside deploy: a build or promote on the rack
    Point(RUN, "check-data"),  # a step boundary (its proxy just stopped)
    Point(RUN, "final-sync", 0.4, 5.0),  # inside a data step: restore through the proxy
]
ROLLBACK_POINT = Point(ROLLBACK, "scale-down", 0.5, 1.0)  # inside an undo


def heroku_tables(sandbox: Path) -> world.World:
    return world.tables(pgcluster.load(sandbox / "pg-heroku.json"), SOURCE_DB)


def cnames(found: world.World) -> dict[str, Any]:
    return {server: found["dns"][server] for server in ("dns", "dns2")}


@pytest.fixture(scope="module")
def chain(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("chaos")
    template = REPO / "playbooks" / "sandbox.yml"
    trial = drive.Trial(
        sandbox, work, secrets.token_hex(8), drive.write_playbook(work, sandbox, template)
    )
    before = world.snapshot(sandbox, trial.state_folder)
    try:
        kills = [drive.kill_at(trial, point) for point in RUN_CHAIN]
        resumed = drive.resume(trial, RUN)
        after_run = world.snapshot(sandbox, trial.state_folder)
        after_run["leftover_processes"] = procs.leftovers(trial.token)
        after_run["heroku_tables"] = heroku_tables(sandbox)
        kills.append(drive.kill_at(trial, ROLLBACK_POINT))
        rolled_back = drive.resume(trial, ROLLBACK)
        after_rollback = world.snapshot(sandbox, trial.state_folder)
        after_rollback["leftover_processes"] = procs.leftovers(trial.token)
    finally:
        procs.kill_all(trial.token)
    return {
        "before": before,
        "kills": kills,
        "resumed": resumed,
        "run": after_run,
        "rolled_back": rolled_back,
        "rollback": after_rollback,
        "trial": trial,
    }


def test_every_kill_of_the_chain_came_at_its_point(chain: dict[str, Any]) -> None:
    assert [k.split(" at ")[0] for k in chain["kills"]] == ["killed"] * 4, chain["kills"]


def test_the_run_resumes_to_done_with_nothing_left_running(chain: dict[str, Any]) -> None:
    assert chain["resumed"][-1] == 0, (chain["resumed"], chain["trial"].last_log(5))
    found = chain["run"]
    expected = ["skipped" if s == "capture-changes" else "done" for s in STEP_IDS]
    assert list(found["steps"].values()) == expected
    assert found["leftover_processes"] == {}
    assert found["lock"] == "free"
    # No staging or previous copy left on the Convox server, no dump or list left on disk.
    assert [d for d in found["convox_databases"] if "cutover" in d] == []
    assert [f for f in found["state_folder_files"] if f.endswith((".dump", ".list"))] == []


def test_the_convox_database_equals_herokus_table_by_table(chain: dict[str, Any]) -> None:
    found = chain["run"]
    assert found["convox_db"] == found["heroku_tables"]
    assert len(found["convox_db"]) >= 5
    assert sum(rows for rows, _ in found["convox_db"].values()) > 1000  # the seeded rows


def test_the_convox_env_and_promoted_release_hold_herokus_values(chain: dict[str, Any]) -> None:
    convox = chain["run"]["convox"]
    assert convox["promoted"]["env"] == convox["env"]
    for key in ("SECRET_KEY_BASE", "STRIPE_API_KEY"):
        assert convox["env"][key] == f"<heroku:{key}>"
    assert "www.example.test" in convox["promoted"]["manifest"]  # add-domain's redeploy


def test_the_window_left_heroku_and_dns_as_a_whole_run_does(chain: dict[str, Any]) -> None:
    before, found = chain["before"], chain["run"]
    for answer in cnames(found).values():
        assert answer == {"type": "CNAME", "ttl": ORIGINAL_TTL, "values": [ROUTER + "."]}
    assert found["heroku"]["maintenance"] is True
    assert found["heroku"]["formation"] == {**before["heroku"]["formation"], "worker": 0}
    assert "default_transaction_read_only=on" in found["heroku_write_freeze"]


def test_the_killed_rollback_resumes_to_heroku_as_before(chain: dict[str, Any]) -> None:
    assert chain["rolled_back"][-1] == 0, (chain["rolled_back"], chain["trial"].last_log(5))
    before, found = chain["before"], chain["rollback"]
    for answer in cnames(found).values():
        assert answer["values"] == [HEROKU_DNS_TARGET + "."]
    assert found["heroku"] == before["heroku"]
    assert found["heroku_write_freeze"] == before["heroku_write_freeze"] == ""
    assert found["leftover_processes"] == {}
    assert found["lock"] == "free"
