"""`cutover translate` and `cutover init` as a user runs them: real processes, and live facts
read through the real heroku CLI from the sandbox's API emulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover.playbook import load_playbook

FIXTURES = Path(__file__).resolve().parents[1] / "translate" / "fixtures"


def cutover(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args],
        cwd=cwd,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def app_copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    for stale in [*target.glob("expected*"), target / "convox.yml"]:
        stale.unlink(missing_ok=True)
    return target


def test_translate_prints_the_manifest_and_findings(tmp_path: Path) -> None:
    app = app_copy(tmp_path, "rails-sidekiq")
    proc = cutover(
        "translate",
        str(app),
        "--timer",
        "daily-report=0 6 * * *",
        "bin/rake reports:daily",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = yaml.safe_load(proc.stdout)
    assert set(manifest["services"]) >= {"web", "worker"}
    assert manifest["timers"]["daily-report"]["schedule"] == "0 6 * * *"
    assert "[dockerfile-needed]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_translate_json_findings_and_output_file(tmp_path: Path) -> None:
    app = app_copy(tmp_path, "node-underscored")
    out = tmp_path / "convox.yml"
    proc = cutover("translate", str(app), "-o", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    report = json.loads(proc.stderr)
    assert report["ok"] is True
    assert "process-renamed" in {f["code"] for f in report["findings"]}
    assert all(
        name == name.lower() and "_" not in name
        for name in yaml.safe_load(out.read_text())["services"]
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("web: bin/web\noops\n", 'Procfile:2: expected "name: command"'),
        ("web: a\nweb: b\n", "Procfile:2"),
    ],
)
def test_translate_bad_input_exits_2_without_traceback(
    tmp_path: Path, content: str, expected: str
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "Procfile").write_text(content)
    proc = cutover("translate", str(app), cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_translate_bad_timer_option(tmp_path: Path) -> None:
    app = app_copy(tmp_path, "rails-sidekiq")
    proc = cutover("translate", str(app), "--timer", "only-one-value", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--timer" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_translate_with_live_facts_from_the_sandbox(sandbox: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "rails-sidekiq")
    proc = cutover(
        "translate",
        str(app),
        "--heroku-app",
        "myapp-sandbox",
        "--sandbox",
        str(sandbox),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = yaml.safe_load(proc.stdout)
    # Live formation: web=2 standard-1X, worker=1 standard-2X (reference dyno table).
    assert manifest["services"]["web"]["scale"]["count"] == 2
    assert manifest["services"]["worker"]["scale"]["memory"] == 1024
    assert manifest["resources"]["database"]["options"]["version"] == "15"
    assert "redis" in manifest["resources"]
    env = json.loads((sandbox / "env.json").read_text())
    assert env["env"]["HEROKU_API_KEY"] not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_init_writes_a_playbook_cutover_accepts(sandbox: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "rails-sidekiq")
    args = [
        "init",
        str(app),
        "--heroku-app",
        "myapp-sandbox",
        "--convox-app",
        "storefront",
        "--sandbox",
        str(sandbox),
    ]
    proc = cutover(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    playbook = load_playbook(tmp_path / "cutover.yml")
    assert playbook.model.heroku.app == "myapp-sandbox"
    assert playbook.model.convox.app == "storefront"
    assert playbook.model.convox.rack == "sandbox"  # from `convox switch`
    assert playbook.model.dns is not None and playbook.model.dns.record == "www.example.test"
    assert (app / "convox.yml").exists()
    before = (tmp_path / "cutover.yml").read_text()
    again = cutover(*args, cwd=tmp_path)
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert (tmp_path / "cutover.yml").read_text() == before
    forced = cutover(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr


def test_translate_reads_scheduler_jobs_from_the_playbook(tmp_path: Path) -> None:
    app = app_copy(tmp_path, "rails-sidekiq")
    (tmp_path / "cutover.yml").write_text(
        "timers:\n  - {name: nightly-cleanup, schedule: '30 2 * * *', command: bin/rake cleanup}\n"
    )
    proc = cutover(
        "translate", str(app), "--timer", "hourly=0 * * * *", "bin/rake hourly", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    timers = yaml.safe_load(proc.stdout)["timers"]
    assert timers["nightly-cleanup"]["schedule"] == "30 2 * * *"
    assert timers["hourly"]["command"] == "bin/rake hourly"


def test_translate_names_a_bad_playbook_timer(tmp_path: Path) -> None:
    app = app_copy(tmp_path, "rails-sidekiq")
    (tmp_path / "cutover.yml").write_text("timers:\n  - {name: x, command: y}\n")
    proc = cutover("translate", str(app), cwd=tmp_path)
    assert proc.returncode == 2
    assert "cutover.yml" in proc.stderr and "schedule" in proc.stderr
    assert "Traceback" not in proc.stderr


def _translate_procfile(tmp_path: Path, procfile: str) -> tuple[dict[str, Any], set[str], str]:
    """Run `cutover translate DIR --json` on a folder holding only this Procfile: the services,
    the finding codes and the manifest text."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "Procfile").write_text(procfile)
    proc = cutover("translate", str(app), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    codes = {f["code"] for f in json.loads(proc.stderr)["findings"]}
    return yaml.safe_load(proc.stdout)["services"], codes, proc.stdout


def test_translate_runs_procfile_lines_the_way_heroku_does(tmp_path: Path) -> None:
    """Issue 8 cases 1-3 through the real CLI: exec, comments dropped, bash where needed."""
    services, codes, _text = _translate_procfile(
        tmp_path,
        "web: python manage.py migrate --noinput && gunicorn config.wsgi --bind 0.0.0.0:$PORT\n"
        "docs: python -m http.server $PORT # static files\n"
        "worker: source bin/setenv.sh && exec rq worker\n",
    )
    assert services["web"]["command"].startswith("sh -c 'python manage.py migrate")
    assert "&& exec gunicorn" in services["web"]["command"]
    assert services["docs"]["command"] == "python -m http.server 3000"
    assert services["worker"]["command"] == "bash -c 'source bin/setenv.sh && exec rq worker'"
    assert {"command-comment", "command-needs-bash", "command-shell"} <= codes


def test_translate_invalid_input_as_json_is_the_projects_message(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.json").write_text('{"addons": [{"plan": "heroku-postgresql", "options": [1]}]}')
    (app / "Procfile").write_text("web: bin/web\n")
    proc = cutover("translate", str(app), "--json", cwd=tmp_path)
    assert proc.returncode == 2
    report = json.loads(proc.stderr)
    assert report == {
        "ok": False,
        "error": {
            "message": "app.json:1: addons[0].options: expected an object, got a list",
            "path": "app.json",
            "line": 1,
            "field": "addons[0].options",
            "reason": "expected an object, got a list",
        },
    }


def test_translate_review_shapes_through_the_real_cli(tmp_path: Path) -> None:
    """Shapes the review found breaking at run time, through the installed CLI: a leading exec
    (no such program without a shell), `~` (no tilde expansion without one), a literal '${x}'
    (convox.yml would interpolate it) and a then-branch server left un-exec'd."""
    services, codes, text = _translate_procfile(
        tmp_path,
        "web: exec uvicorn app.main:app --host 0.0.0.0 --port $PORT\n"
        "worker: ~/bin/worker --log-format '${level} ${msg}'\n"
        'clock: test -n "$X" && bin/clock || bin/clock --default\n',
    )
    assert services["web"]["command"] == "uvicorn app.main:app --host 0.0.0.0 --port 3000"
    assert services["worker"]["command"].startswith("sh -c 'exec ~/bin/worker")
    assert "${" not in text
    assert services["clock"]["command"] == (
        "sh -c 'test -n \"$X\" && exec bin/clock || exec bin/clock --default'"
    )
    assert {"command-exec-dropped", "boot-home"} <= codes
