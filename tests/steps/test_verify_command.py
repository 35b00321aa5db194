"""``cutover verify --data`` (cutover/engine/verify_command.py) as a real cutover process against
the fake tools (tests/fakes): exit codes, output, the lock, no traceback."""

from __future__ import annotations

from fakes.harness import Project
from fakes.world import update_world

from cutover.engine.lock import RunLock


def _migrated(project: Project) -> None:
    result = project.run("run", "--yes", "--until", "verify-data")
    assert result.returncode == 0, result


def test_verify_data_on_demand_passes_then_names_each_mismatch(project: Project) -> None:
    _migrated(project)
    before = project.state_path.read_text()

    same = project.run("verify", "--data")

    assert same.returncode == 0, same
    assert "verify-data on demand" in same.stdout
    assert "4 tables (checksums), 6640 rows, 2 sequences" in same.stdout
    assert ": identical" in same.stdout
    assert project.state_path.read_text() == before  # no step entry changes

    with update_world(project.world_path) as world:
        data = world["convox"]["apps"]["shop"]["resources"]["database"]["data"]
        data["tables"]["public.orders"]["md5"] = "0" * 32
        data["tables"]["public.users"]["rows"] = 1199
        data["sequences"]["public.users_id_seq"] = "1199"
    differs = project.run("verify", "--data")

    assert differs.returncode == 1, differs
    assert "the Convox database differs from Heroku's in 3 place(s)" in differs.stderr
    assert "table public.orders: content differs (5321 rows)" in differs.stderr
    assert "table public.users: 1200 rows on Heroku vs 1199 on Convox" in differs.stderr
    assert "sequence public.users_id_seq: last_value=1200 is_called=t on Heroku" in differs.stderr
    assert "cutover run --from final-sync" in differs.stderr
    assert "Traceback" not in differs.output
    events = [e for e in project.events() if e.get("kind") == "verify-data"]
    assert [e["identical"] for e in events] == [True, False]
    assert len(events[-1]["mismatches"]) == 3


def test_verify_needs_a_flag(project: Project) -> None:
    bare = project.run("verify")
    assert bare.returncode == 2 and "nothing to verify" in bare.stderr
    assert "cutover verify --data" in bare.stderr
    assert "Traceback" not in bare.output


def test_verify_takes_the_run_lock(project: Project) -> None:
    with RunLock(project.state_dir, "cutover run"):
        locked = project.run("verify", "--data")
    assert locked.returncode == 4, locked
    assert "another cutover holds the lock" in locked.stderr
    assert "Traceback" not in locked.output


def test_a_long_mismatch_list_says_where_all_of_it_is() -> None:
    """verify-data keeps every mismatch in the state; ``cutover verify --data`` writes no state,
    only the audit event: the cut-off list must point there, not at the state file."""
    from cutover.adapters.pgverify import Outcome  # noqa: PLC0415
    from cutover.steps.verify import SHOWN, mismatch_error  # noqa: PLC0415

    outcome = Outcome(
        "checksums", problems=[f"table public.t{i}: missing on Convox" for i in range(SHOWN + 3)]
    )
    step = mismatch_error(outcome, "fix it")
    assert "... and 3 more (all in the state file)" in step.details
    on_demand = mismatch_error(outcome, "fix it", kept="the audit log: cutover log")
    assert "... and 3 more (all in the audit log: cutover log)" in on_demand.details
    assert on_demand.details.count("missing on Convox") == SHOWN
