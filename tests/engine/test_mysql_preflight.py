"""Preflight with two MySQL add-ons on the Heroku app (issue 14, cutover/steps/mysqladdons.py):
before anything is created, it says which one the *-mysql steps copy and that the other is NOT
copied, naming its config var, as it does for a Redis add-on it cannot copy."""

from __future__ import annotations

from fakes.harness import Project
from fakes.world import update_world


def test_preflight_names_the_mysql_addon_that_is_not_copied(project: Project) -> None:
    with update_world(project.world_path) as world:
        addons = world["heroku"]["addons"]
        for n, (service, var) in enumerate(
            (("cleardb", "CLEARDB_DATABASE_URL"), ("jawsdb", "JAWSDB_URL"))
        ):
            addons.append(
                {
                    **addons[-1],
                    "addon_service": {"id": f"s-my{n}", "name": service},
                    "config_vars": [var],
                    "id": f"dddddddd-bbbb-cccc-dddd-eeeeeeeeeee{n}",
                    "name": f"{service}-shaped-2222{n}",
                    "plan": {"id": f"p-my{n}", "name": f"{service}:small"},
                }
            )

    result = project.run("run", "--yes", "--until", "preflight")

    assert result.returncode == 0, result
    text = " ".join(result.output.split())
    assert "WARNING: the Heroku app has 2 MySQL add-ons" in text, text
    assert "copy only cleardb (CLEARDB_DATABASE_URL)" in text, text
    assert "NOT copied: jawsdb (JAWSDB_URL)" in text, text
    outputs = project.state()["steps"]["preflight"]["outputs"]
    assert outputs["mysql_addons"] == [
        {"service": "cleardb", "config_var": "CLEARDB_DATABASE_URL"},
        {"service": "jawsdb", "config_var": "JAWSDB_URL"},
    ]
    assert project.effects() == []
