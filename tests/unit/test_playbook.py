from __future__ import annotations

from pathlib import Path

import pytest

from cutover.engine.context import split_server
from cutover.errors import InvalidInput
from cutover.playbook import changed_fields, load_playbook

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
heroku: {app: myapp}
convox: {app: myapp}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cutover.yml"
    path.write_text(text)
    return path


def test_example_playbooks_are_valid() -> None:
    for name in ("example.yml", "sandbox.yml"):
        loaded = load_playbook(REPO / "playbooks" / name)
        assert loaded.model.heroku.app
        assert loaded.model.dns is not None


def test_defaults(tmp_path: Path) -> None:
    loaded = load_playbook(write(tmp_path, MINIMAL))
    assert loaded.model.convox.manifest == "convox.yml"
    assert loaded.model.database is not None and loaded.model.database.resource == "database"
    assert loaded.model.dns is None
    assert loaded.state_dir == tmp_path / ".cutover"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "bogus: 1\n", "bogus: unknown field"),
        (
            MINIMAL + "smoke: {checks: [{path: healthz}]}\n",
            "smoke.checks.0.path: Value error, must start with /",
        ),
        ("heroku: {app: myapp}\n", "convox: required field is missing"),
        ("heroku: {app: myapp}\nconvox: {app: My_App}\n", "convox.app: Value error, must match"),
        (MINIMAL + "dns: {zone: example.com}\n", "dns.record: required field is missing"),
        (MINIMAL + "database: {restore_jobs: 0}\n", "database.restore_jobs:"),
        (MINIMAL + "dns: {zone: example.com, record: example.com}\n", "is the zone apex"),
        (
            MINIMAL + "dns: {zone: example.com, record: www.other.org}\n",
            "is not inside zone example.com",
        ),
        (
            MINIMAL + "dns: {zone: a.com, record: w.a.com, server: '127.0.0.1:abc'}\n",
            "dns.server: Value error, must be host, host:port or [ipv6]:port",
        ),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as info:
        load_playbook(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "heroku: {app: myapp\nconvox: [\n")
    with pytest.raises(InvalidInput) as info:
        load_playbook(path)
    assert f"{path}:" in str(info.value)
    assert "invalid YAML" in str(info.value)


def test_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="must be a YAML mapping"):
        load_playbook(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="playbook not found"):
        load_playbook(tmp_path / "nope.yml")


def test_changed_fields_lists_dotted_paths(tmp_path: Path) -> None:
    a = load_playbook(write(tmp_path, MINIMAL))
    b = load_playbook(write(tmp_path, MINIMAL + "smoke: {timeout: 5}\nenv: {exclude: [X]}\n"))
    assert a.fingerprint() != b.fingerprint()
    assert changed_fields(a.flat(), b.flat()) == ["env.exclude", "smoke.timeout"]


def test_dns_server_forms(tmp_path: Path) -> None:
    for server, expected in [
        ("ns1.example.com", ("ns1.example.com", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
    ]:
        loaded = load_playbook(
            write(
                tmp_path, MINIMAL + f"dns: {{zone: a.com, record: w.a.com, server: '{server}'}}\n"
            )
        )
        assert loaded.model.dns is not None and loaded.model.dns.server is not None
        assert split_server(loaded.model.dns.server) == expected


def test_smoke_and_database_can_be_switched_off(tmp_path: Path) -> None:
    loaded = load_playbook(write(tmp_path, MINIMAL + "smoke: null\ndatabase: null\n"))
    assert loaded.model.smoke is None and loaded.model.database is None
