"""A state file cutover cannot use is refused with a clear error (exit 2, no traceback, the file
named) and stays byte-for-byte as it was; nothing is executed."""

from __future__ import annotations

import json

import pytest
from fakes.harness import Project

from cutover.state import PlaybookRef, RunState, Status

pytestmark = pytest.mark.slow


def valid_state_text(project: Project) -> str:
    state = RunState(
        playbook=PlaybookRef(
            path=str(project.playbook), fingerprint="0" * 64, fields={"heroku.app": '"acme-shop"'}
        )
    )
    state.step("preflight").status = Status.DONE
    state.step("create-app").status = Status.RUNNING
    return state.model_dump_json(indent=2) + "\n"


def bad_state(project: Project, kind: str) -> bytes:
    text = valid_state_text(project)
    if kind == "truncated":
        return text[: len(text) // 2].encode()
    if kind == "garbage-bytes":
        return b"\x00\xff\xfe\x9c\x8f garbage \x80\x81" * 8
    if kind == "not-json":
        return b"}{ this is not JSON at all ]["
    if kind == "empty":
        return b""
    if kind == "newer-schema":
        data = json.loads(text)
        data.update(schema_version=7, written_by="cutover 9.4.0")
        return json.dumps(data, indent=2).encode()
    raise AssertionError(kind)


EXPECTED = {
    "truncated": "corrupt",
    "garbage-bytes": "cannot read state",
    "not-json": "corrupt",
    "empty": "empty",
    "newer-schema": "schema version 7 was written by cutover 9.4.0",
}


def write_state(project: Project, content: bytes) -> None:
    project.state_dir.mkdir(mode=0o700)
    project.state_path.write_bytes(content)
    project.state_path.chmod(0o600)


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_run_refuses_an_unusable_state_file_and_leaves_it_untouched(
    project: Project, kind: str
) -> None:
    content = bad_state(project, kind)
    write_state(project, content)

    result = project.run("run", "--yes")

    assert result.returncode == 2, result
    assert "Traceback" not in result.output
    assert str(project.state_path) in result.output
    assert EXPECTED[kind] in result.output
    assert project.state_path.read_bytes() == content
    assert project.calls() == []


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        ("truncated", ("status",)),
        ("newer-schema", ("status", "--json")),
        ("garbage-bytes", ("plan",)),
    ],
)
def test_other_commands_refuse_it_too(
    project: Project, kind: str, command: tuple[str, ...]
) -> None:
    content = bad_state(project, kind)
    write_state(project, content)

    result = project.run(*command)

    assert result.returncode == 2, result
    assert "Traceback" not in result.output
    assert str(project.state_path) in result.output
    assert project.state_path.read_bytes() == content
    assert project.calls() == []


def test_a_state_file_of_another_shape_is_refused(project: Project) -> None:
    content = json.dumps({"schema_version": 1, "playbook": "nope", "steps": []}).encode()
    write_state(project, content)

    result = project.run("run", "--yes")

    assert result.returncode == 2, result
    assert "does not match schema" in result.output
    assert str(project.state_path) in result.output
    assert project.state_path.read_bytes() == content
