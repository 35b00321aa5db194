"""The window's ETA, end to end with the recording fakes (issue 11, "Tests that must exist": the
ETA shown by plan after a rehearsal is within 20% of the measured window on a re-run).

The fakes take real time (``FAKE_DELAY``, tests/fakes/world.py): every heroku call as long as a
real CLI start-up (1.2-2 s in issue 11's demo; less here, to keep the test short) and the
restore like a small copy. A rehearsal runs in one project; a second project (a fresh world:
the same app and database, its state folder new) names the rehearsal's .cutover folder in
``window.rehearsal``; ``cutover plan`` there prints ``window estimate: N s``; its run measures
the downtime (maintenance on to site verified). The re-run also posts its notifications to a
webhook on 127.0.0.1, whose URL must appear nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import seed
from fakes.harness import PLAYBOOK, Certificates, Project, open_project
from support.webhook import Received, webhook_receiver

pytestmark = pytest.mark.slow

# Set times long enough to dominate the window: under a loaded machine (CI runs four test
# files at once) the rest of a step's time varies by a few seconds between the two runs.
DELAYS = {"FAKE_DELAY": "heroku=0.8;pg_restore=3.0;pg_dump=0.6"}
TOKEN = "T0KEN-4a1e9c2b7d3f5e60"


@pytest.fixture
def webhook() -> Iterator[tuple[str, Received]]:
    with webhook_receiver(TOKEN, status=204) as served:
        yield served


@pytest.fixture
def rerun(tmp_path: Path, fake_bin: Path, certs: Certificates) -> Iterator[Project]:
    with open_project(tmp_path / "rerun", fake_bin, certs) as proj:
        yield proj


def test_plan_eta_after_a_rehearsal_is_within_20_percent_of_the_rerun_window(
    project: Project, rerun: Project, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    rehearsal = project.run("run", "--yes", env=DELAYS, timeout=300)
    assert rehearsal.returncode == 0, rehearsal

    url, received = webhook
    rerun.playbook.write_text(
        PLAYBOOK.replace(
            "  ttl_wait_max: 60\n",
            f"  ttl_wait_max: 60\n  rehearsal: {project.state_dir}\n",
        )
        + "notify:\n  webhook_env: CUTOVER_TEST_WEBHOOK\n",
        encoding="utf-8",
    )
    plan = rerun.run("plan")
    assert plan.returncode == 0, plan
    found = re.search(
        r"^window estimate: ([\d.]+) s \(maintenance-on to verify-site\)$", plan.stdout, re.M
    )
    assert found, plan
    eta = float(found.group(1))
    assert "estimate: " in plan.stdout and "(rehearsal)" in plan.stdout
    assert "not in the total" not in plan.stdout  # every window step was measured

    run = rerun.run("run", "--yes", env={**DELAYS, "CUTOVER_TEST_WEBHOOK": url}, timeout=300)
    assert run.returncode == 0, run

    state = rerun.state()
    measured = state["steps"]["verify-site"]["outputs"]["downtime_seconds"]
    assert abs(measured - eta) <= 0.2 * measured, (eta, measured)
    predicted = state["steps"]["confirm-window"]["outputs"]["predicted_downtime_seconds"]
    assert abs(predicted - eta) <= 0.05 * eta  # the same rehearsal, the same estimate
    assert f"measured downtime {measured}s" in run.stdout
    assert f"predicted {predicted}s at confirm-window" in run.stdout
    assert "checklist for the window" in run.stdout
    status = rerun.run("status")
    assert f"downtime {measured:.1f}s measured" in status.stdout, status

    # Notifications: the window's start and the end, in order; the URL is nowhere.
    messages = [r["body"] for r in received]
    events = [(m["event"], m["step"]) for m in messages]
    assert events == [("step-start", "maintenance-on"), ("run-complete", None)], received
    assert {m["app"] for m in messages} == {seed.HEROKU_APP}
    assert "downtime" in messages[-1]["text"] and "predicted" in messages[-1]["text"]
    places = {
        "state": rerun.state_path.read_text(),
        "events": rerun.events_path.read_text(),
        "terminal": run.output + plan.output + status.output,
    }
    assert [where for where, text in places.items() if TOKEN in text] == []
