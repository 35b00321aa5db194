"""Whole fake runs through the window (issue 11): when verify-data fails, the resume its failure
suggests syncs again; each Heroku fact is read once per window step."""

from __future__ import annotations

from fakes import seed
from fakes.harness import Project
from fakes.world import update_world


def test_a_plain_resume_after_a_failed_verify_data_syncs_again(project: Project) -> None:
    first = project.run("run", "--yes", "--until", "final-sync")
    assert first.returncode == 0, first
    # A write lands on Heroku after the final sync (a client the window did not stop).
    with update_world(project.world_path) as world:
        world["heroku"]["database"]["data"]["tables"]["public.orders"] = seed.table(
            5322, name="public.orders"
        )

    failed = project.run("run", "--yes", "--until", "verify-data")
    assert failed.returncode != 0, failed
    assert "differs from Heroku's" in failed.output
    assert "cutover run" in failed.output and "--from" not in failed.output
    steps = project.state()["steps"]
    assert steps["verify-data"]["status"] == "failed"
    assert "final-sync" not in steps or steps["final-sync"]["status"] == "pending"
    first_backup = project.state()["history"]["final-sync"]["backup"]

    resumed = project.run("run", "--yes", "--until", "verify-data")
    assert resumed.returncode == 0, resumed
    steps = project.state()["steps"]
    assert steps["final-sync"]["status"] == "done"
    assert steps["final-sync"]["outputs"]["backup"] != first_backup  # a new capture
    assert steps["verify-data"]["status"] == "done"
    world = project.world()
    assert (
        world["convox"]["apps"][seed.CONVOX_APP]["resources"]["database"]["data"]["tables"]
        == world["heroku"]["database"]["data"]["tables"]
    )


def test_a_run_that_stops_before_the_window_stops_the_proxy_it_held(project: Project) -> None:
    """steps/freeze.py prefetch holds the Convox database's proxy from disable-scheduler on;
    a run that ends there (--until) stops it, and the next run, which has no prefetch (the step
    is done), starts its own in final-sync."""
    first = project.run("run", "--yes", "--until", "disable-scheduler")
    assert first.returncode == 0, first
    events = project.events()
    (held,) = [
        e["pid"]
        for e in events
        if e["kind"] == "command-start"
        and e["argv"][:3] == ["convox", "resources", "proxy"]
        and e.get("step") == "disable-scheduler"
    ]
    (stop,) = [e for e in events if e["kind"] == "command-stop" and e.get("pid") == held]
    assert stop["started_in"] == "disable-scheduler"
    second = project.run("run", "--yes", "--until", "final-sync")
    assert second.returncode == 0, second
    starts = [
        e.get("step")
        for e in project.events()[len(events) :]
        if e["kind"] == "command-start" and e["argv"][:3] == ["convox", "resources", "proxy"]
    ]
    assert "final-sync" in starts


def test_the_window_reads_each_heroku_fact_once_per_step(project: Project) -> None:
    """From maintenance-on to scale-down's end (issue 11: "scale-down reads the formation three
    times"): maintenance is read by check and read back once; the formation once; ps --json
    polls until the dynos are gone."""
    before = project.run("run", "--yes", "--until", "disable-scheduler")
    assert before.returncode == 0, before
    seen = len(project.argvs())
    window = project.run("run", "--yes", "--until", "scale-down")
    assert window.returncode == 0, window
    heroku = [a[1:] for a in project.argvs()[seen:] if a[0] == "heroku"]
    calls = [[x for x in a if x not in ("-a", seed.HEROKU_APP)] for a in heroku]
    assert calls[:3] == [["maintenance"], ["maintenance:on"], ["maintenance"]]
    assert sorted(map(tuple, calls[3:5])) == [("ps", "--json"), ("ps:scale",)]
    assert calls[5] == ["ps:scale", "worker=0"]
    assert set(map(tuple, calls[6:])) == {("ps", "--json")}
