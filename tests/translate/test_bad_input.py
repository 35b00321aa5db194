"""Invalid input exits 2 with the file, the line, what is wrong, and no traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import cutover.translate.commands as commands
from cutover.errors import InvalidInput
from cutover.translate import (
    TimerSpec,
    TranslateOptions,
    parse_timer_option,
    run_translate,
)
from cutover.translate.sources import parse_procfile

# (files, options, exact first line of the error on stderr)
BAD: dict[str, tuple[dict[str, str | bytes], TranslateOptions, str]] = {
    "procfile-no-colon": (
        {"Procfile": "web: bin/web\n# a comment\noops\n"},
        TranslateOptions(),
        'cutover: invalid input: Procfile:3: expected "name: command", got "oops"',
    ),
    "procfile-duplicate": (
        {"Procfile": "web: bin/web\nworker: bin/worker\n\nweb: bin/other\n"},
        TranslateOptions(),
        "cutover: invalid input: Procfile:4: web: duplicate process type (first defined on line 1)",
    ),
    "procfile-empty-command": (
        {"Procfile": "web: bin/web\r\nworker:\r\n"},
        TranslateOptions(),
        "cutover: invalid input: Procfile:2: worker: the command is empty",
    ),
    "procfile-bad-name": (
        {"Procfile": "web: bin/web\nweb.1: bin/web\n"},
        TranslateOptions(),
        'cutover: invalid input: Procfile:2: expected "name: command", got "web.1: bin/web"',
    ),
    "procfile-only-release": (
        {"Procfile": "release: bin/migrate\n"},
        TranslateOptions(),
        "cutover: invalid input: Procfile: no process types (only release, comments or blank "
        "lines)",
    ),
    "procfile-unbalanced-quote": (
        {"Procfile": "web: bin/web\nworker: echo 'unterminated\n"},
        TranslateOptions(),
        "cutover: invalid input: Procfile:2: worker: cannot split the command: No closing "
        "quotation",
    ),
    "procfile-names-collide": (
        {"Procfile": "worker_high: bin/a\nworker-high: bin/b\n"},
        TranslateOptions(),
        'cutover: invalid input: Procfile:2: worker-high: process types "worker_high" and '
        '"worker-high" would both become the Convox service "worker-high"',
    ),
    "procfile-not-utf8": (
        {"Procfile": b"web: caf\xe9\n"},
        TranslateOptions(),
        "cutover: invalid input: Procfile: not UTF-8 text (byte 8)",
    ),
    "app-json-syntax": (
        {
            "Procfile": "web: bin/web\n",
            "app.json": '{\n  "name": "x",\n  "env": {\n    "A": "b",\n  }\n}\n',
        },
        TranslateOptions(),
        "cutover: invalid input: app.json:5: invalid JSON: Expecting property name enclosed in "
        "double quotes (column 3)",
    ),
    "app-json-unknown-formation-type": (
        {
            "Procfile": "web: bin/web\nworker: bin/worker\n",
            "app.json": (
                '{\n  "formation": {\n    "web": {"quantity": 1},\n'
                '    "clock": {"quantity": 1, "size": "basic"}\n  }\n}\n'
            ),
        },
        TranslateOptions(),
        'cutover: invalid input: app.json:4: formation.clock: process type "clock" is not in '
        "the Procfile",
    ),
    "app-json-bad-quantity": (
        {
            "Procfile": "web: bin/web\n",
            "app.json": '{"formation": {"web": {"quantity": "two"}}}',
        },
        TranslateOptions(),
        "cutover: invalid input: app.json:1: formation.web.quantity: expected a whole number >= 0, "
        'got "two"',
    ),
    "app-json-env-not-object": (
        {"Procfile": "web: bin/web\n", "app.json": '{\n  "env": ["SECRET_KEY_BASE"]\n}\n'},
        TranslateOptions(),
        "cutover: invalid input: app.json:2: env: expected an object, got a list",
    ),
    "heroku-yml-syntax": (
        {"heroku.yml": "build:\n  docker:\n    web: Dockerfile\n  run: [a\n"},
        TranslateOptions(),
        "cutover: invalid input: heroku.yml:5: invalid YAML: expected ',' or ']', but got "
        "'<stream end>'",
    ),
    "heroku-yml-run-not-command": (
        {"heroku.yml": "build:\n  docker:\n    web: Dockerfile\nrun:\n  web:\n    - {a: b}\n"},
        TranslateOptions(),
        "cutover: invalid input: heroku.yml:6: run.web[0]: expected a value, got a mapping",
    ),
    "heroku-yml-release-without-command": (
        {"heroku.yml": "build:\n  docker:\n    web: Dockerfile\nrelease:\n  image: web\n"},
        TranslateOptions(),
        'cutover: invalid input: heroku.yml:5: release: missing "command"',
    ),
    "heroku-yml-unknown-image": (
        {
            "heroku.yml": (
                "build:\n  docker:\n    web: Dockerfile\nrun:\n  worker:\n"
                "    command: bin/worker\n    image: jobs\n"
            )
        },
        TranslateOptions(),
        'cutover: invalid input: heroku.yml:5: run.worker.image: image "jobs" is not built in '
        "build.docker",
    ),
    "no-procfile": (
        {"README.md": "hello\n"},
        TranslateOptions(),
        "cutover: invalid input: Procfile: not found in ",
    ),
    "timer-bad-schedule": (
        {"Procfile": "web: bin/web\n"},
        TranslateOptions(timers=(TimerSpec("report", "at dawn", "bin/report"),)),
        "cutover: invalid input: --timer: timers.report.schedule: expected 5-field cron (UTC) like "
        '"0 6 * * *" or "daily at 06:00", got "at dawn"',
    ),
    "timer-unknown-service": (
        {"Procfile": "web: bin/web\n"},
        TranslateOptions(timers=(TimerSpec("report", "0 6 * * *", "bin/report", "worker"),)),
        'cutover: invalid input: --timer: timers.report.service: no service "worker" '
        "(services: web)",
    ),
}


def _write(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode())


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_exits_2_with_file_line_and_reason(tmp_path: Path, name: str) -> None:
    files, options, message = BAD[name]
    _write(tmp_path, files)
    out, err = io.StringIO(), io.StringIO()
    code = run_translate(
        tmp_path, facts=None, options=options, output=None, as_json=False, stdout=out, stderr=err
    )
    assert code == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith(message), err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_bad_input_as_json(tmp_path: Path) -> None:
    _write(tmp_path, {"Procfile": "web: bin/web\nnope\n"})
    out, err = io.StringIO(), io.StringIO()
    code = run_translate(
        tmp_path,
        facts=None,
        options=TranslateOptions(),
        output=None,
        as_json=True,
        stdout=out,
        stderr=err,
    )
    assert code == 2
    report = json.loads(err.getvalue())
    assert report["ok"] is False
    # The message for people, and the place as data for programs (restored after the switch to
    # the project's InvalidInput had reduced the payload to the message alone).
    assert report["error"] == {
        "message": 'Procfile:2: expected "name: command", got "nope"',
        "path": "Procfile",
        "line": 2,
        "field": None,
        "reason": 'expected "name: command", got "nope"',
    }


def test_error_is_the_projects_invalid_input_with_file_and_line() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_procfile("web: a\n\n# c\noops\n")
    error = info.value
    assert error.exit_code == 2
    assert error.brief == 'Procfile:4: expected "name: command", got "oops"'
    assert str(error) == 'Procfile:4: expected "name: command", got "oops"'


def test_crlf_comments_and_blank_lines_are_fine(tmp_path: Path) -> None:
    procfile = (
        "\ufeff# processes\r\n\r\nweb:   bin/web  \r\n  # indented comment\r\n"
        "worker: bin/worker\r\n"
    )
    _write(tmp_path, {"Procfile": procfile})
    out, err = io.StringIO(), io.StringIO()
    code = run_translate(
        tmp_path,
        facts=None,
        options=TranslateOptions(),
        output=None,
        as_json=False,
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    services = yaml.safe_load(out.getvalue())["services"]
    assert services["web"]["command"] == "bin/web"
    assert services["worker"]["command"] == "bin/worker"
    assert "\r" not in out.getvalue()


@pytest.mark.parametrize(
    ("assignment", "command"),
    [
        ("report", "bin/report"),
        ("=0 6 * * *", "bin/report"),
        ("report=", "x"),
        ("r=0 6 * * *", " "),
    ],
)
def test_bad_timer_option(assignment: str, command: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_timer_option(assignment, command)
    assert info.value.brief.startswith("--timer")


def test_timer_option_parses() -> None:
    spec = parse_timer_option("daily-report=0 6 * * *", "bin/rake reports:daily")
    assert (spec.name, spec.schedule, spec.command, spec.service) == (
        "daily-report",
        "0 6 * * *",
        "bin/rake reports:daily",
        None,
    )


@pytest.mark.parametrize(
    ("files", "place"),
    [
        ({"Procfile": "web: a\nweb: b\n"}, ("Procfile", 2, "web")),
        ({"Procfile": 'web: gunicorn "app:app\n'}, ("Procfile", 1, "web")),
        (
            {"Procfile": "web: a\n", "app.json": '{"addons": [{"plan": 5}]}'},
            ("app.json", 1, "addons[0].plan"),
        ),
    ],
)
def test_json_error_names_file_line_and_field_as_data(
    tmp_path: Path, files: dict[str, str | bytes], place: tuple[str, int, str]
) -> None:
    _write(tmp_path, files)
    proc = subprocess.run(
        [sys.executable, "-m", "cutover", "translate", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    error = json.loads(proc.stderr)["error"]
    assert (error["path"], error["line"], error["field"]) == place
    assert error["message"].startswith(f"{place[0]}:{place[1]}: {place[2]}: ")
    assert error["message"].endswith(error["reason"])


def test_json_error_lists_convox_validation_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest convox would refuse (a translation bug, if it ever happens) is reported with
    convox's messages as a list, as the JSON error did before the switch to InvalidInput."""
    messages = ["service web port 0 invalid", "timer t invalid, schedule must be 5-field cron"]
    monkeypatch.setattr(commands, "validate", lambda manifest: messages)
    _write(tmp_path, {"Procfile": "web: bin/web\n"})
    out, err = io.StringIO(), io.StringIO()
    code = run_translate(
        tmp_path,
        facts=None,
        options=TranslateOptions(),
        output=None,
        as_json=True,
        stdout=out,
        stderr=err,
    )
    assert code == 2 and out.getvalue() == ""
    error = json.loads(err.getvalue())["error"]
    assert error["details"] == messages
    assert error["message"] == "validation errors:\n" + "\n".join(messages)
