"""Without convox.rack in the playbook, preflight pins the current rack for the whole run."""

from __future__ import annotations

import json

import pytest
from fakes import seed
from fakes.harness import Project

pytestmark = pytest.mark.slow


def test_the_current_rack_is_pinned_for_the_whole_run(project: Project) -> None:
    text = project.playbook.read_text()
    project.playbook.write_text(text.replace(f"  rack: {seed.RACK}\n", ""))
    first = project.run("run", "--until", "create-app", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    state = json.loads(project.state_path.read_text())
    assert state["steps"]["preflight"]["outputs"]["rack"] == seed.RACK
    # A resumed run takes the rack from the state, not from whatever is current by then
    # (someone may have run `convox switch` in another terminal).
    second = project.run("run", "--until", "set-env", "--yes")
    assert second.returncode == 0, second.stdout + second.stderr
    convox_calls = [argv[1:] for argv in project.argvs() if argv[0].endswith("convox")]
    assert convox_calls.count(["switch"]) == 1
    after_switch = convox_calls[convox_calls.index(["switch"]) + 1 :]
    assert len(after_switch) >= 4
    for argv in after_switch:
        if argv != ["version"]:
            assert argv[argv.index("-r") + 1] == seed.RACK, argv
