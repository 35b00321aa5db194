"""``cutover plan`` with database.final_sync: changed-rows, as a real process against the fake
tools (tests/fakes): the new step is listed with its gate, and the plan never fails for it."""

from __future__ import annotations

from fakes.harness import Project


def test_plan_lists_capture_changes_and_the_changed_rows_work(project: Project) -> None:
    text = project.playbook.read_text()
    assert "database:\n" in text
    project.playbook.write_text(
        text.replace("database:\n", "database:\n  final_sync: changed-rows\n", 1)
    )
    result = project.run("plan")
    assert result.returncode == 0, result
    out = result.stdout
    assert "capture-changes" in out
    assert "cutover_capture" in out  # the install's statements (or their shape)
    assert "changed-rows, before the copy" in out
    assert "Traceback" not in result.output
