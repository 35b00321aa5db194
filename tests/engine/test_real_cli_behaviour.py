"""Whole runs against the recording fakes where they behave as the real CLIs' source says and the
old belief did not (issue 7). Each test names the source it relies on."""

from __future__ import annotations

from fakes import seed
from fakes.harness import Project
from fakes.world import update_world


def test_sync_restores_its_own_backup_of_the_named_attachment(project: Project) -> None:
    """pg/backups/capture.js backs up the ``[database]`` argument (default DATABASE_URL's);
    pg/backups/url.js without an id returns the newest successful backup of the app. A scheduled
    backup (``a002``, older data) finishing right after ours must not be what is restored."""
    project.playbook.write_text(project.playbook.read_text().replace(
        "heroku_attachment: DATABASE", f"heroku_attachment: {seed.DB_ADDON}"))
    with update_world(project.world_path) as world:
        world["heroku"]["scheduled_backup"] = {"tables": {}, "sequences": {}}

    result = project.run("run", "--yes", "--until", "verify-data")

    assert result.returncode == 0, result
    captures = [a for a in project.argvs() if a[:2] == ["heroku", "pg:backups:capture"]]
    assert captures and all(a[2] == seed.DB_ADDON for a in captures)
    urls = [a[1:] for a in project.argvs() if a[:2] == ["heroku", "pg:backups:url"]]
    state = project.state()["steps"]
    assert [u[1] for u in urls] == [state["initial-sync"]["outputs"]["backup"],
                                    state["final-sync"]["outputs"]["backup"]]
    world = project.world()
    assert world["convox"]["apps"]["shop"]["resources"]["database"]["data"] == (
        world["heroku"]["database"]["data"])


def test_force_color_in_the_operators_environment(project: Project) -> None:
    """FORCE_COLOR=1 in the operator's shell makes the heroku CLI colour what cutover parses
    (ansis, node_modules/ansis/index.cjs; the fake colours the same way): the child gets no
    FORCE_COLOR and NO_COLOR=1, so the run still parses every output."""
    result = project.run("run", "--yes", "--until", "initial-sync",
                         env={"FORCE_COLOR": "1", "CI": "true"})

    assert result.returncode == 0, result
    assert project.state()["steps"]["initial-sync"]["outputs"]["backup"] == "b001"
