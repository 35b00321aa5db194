"""Issue 8's six failing cases: what Heroku does that a Procfile line does not spell out.

Each case runs the translated command the way Convox does (go-shellquote split, exec without a
shell: convox provider/k8s/process.go ``shellquote.Split(s.Command)``; Python's shlex.split
splits the same way for these inputs) against real programs, where behaviour can be observed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_helpers import SERVER as _SERVER
from runtime_helpers import (
    assert_server_is_main_process_and_drains as _assert_server_is_main_process_and_drains,
)
from runtime_helpers import command_of as _command
from runtime_helpers import translate_files as _translate
from support.waiting import wait_for as _wait_for

from cutover.sandbox.procs import pid_alive as _alive
from cutover.translate import TranslateOptions, read_sources, translate
from cutover.translate.facts import AddonFact, FormationFact, LiveFacts
from cutover.translate.shell import convert_command

# -- 1. exec: the server, not the shell, gets SIGTERM --------------------------------------------


def test_case1_shell_wrapped_server_is_execd_and_drains_on_sigterm(tmp_path: Path) -> None:
    """`migrate && gunicorn` becomes `sh -c '... && exec gunicorn ...'`: SIGTERM to the
    container's main process reaches the server, which drains and exits (issue 8, case 1)."""
    manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: python manage.py migrate --noinput && gunicorn config.wsgi "
            "--bind 0.0.0.0:$PORT\n"
        },
    )
    command = _command(manifest, "web")
    assert command == (
        "sh -c 'python manage.py migrate --noinput && exec gunicorn config.wsgi "
        "--bind 0.0.0.0:3000'"
    )
    assert "command-shell" in codes and "command-no-exec" not in codes

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")  # `manage.py migrate` succeeds
    (bin_dir / "gunicorn").write_text(_SERVER.format(python=sys.executable))
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    _assert_server_is_main_process_and_drains(command, tmp_path, bin_dir)


def test_case1_without_exec_the_shell_would_keep_the_server_as_a_child(tmp_path: Path) -> None:
    """The control: the same line without `exec` leaves the server a child of the shell, so a
    SIGTERM to the main process never reaches it (why the translation adds `exec`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gunicorn").write_text(_SERVER.format(python=sys.executable))
    (bin_dir / "gunicorn").chmod(0o755)
    pidfile = tmp_path / "server.pid"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PIDFILE": str(pidfile)}
    main = subprocess.Popen(["sh", "-c", "true && gunicorn app"], env=env, cwd=tmp_path)
    try:
        assert _wait_for(pidfile.exists)
        server = int(pidfile.read_text())
        assert server != main.pid
        main.send_signal(signal.SIGTERM)
        main.wait(timeout=20)
        assert _alive(server)
        assert not (tmp_path / "server.pid.drained").exists()
    finally:
        if main.poll() is None:
            main.kill()
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


# -- 2. trailing comments ------------------------------------------------------------------------


def test_case2_trailing_comment_is_dropped_not_passed_as_arguments(tmp_path: Path) -> None:
    """`python -m http.server $PORT # static files`: bash drops the comment (bash(1) COMMENTS);
    Convox would pass `#`, `static`, `files` to http.server (issue 8, case 2)."""
    manifest, codes = _translate(
        tmp_path, {"Procfile": "web: python -m http.server $PORT # static files\n"}
    )
    command = _command(manifest, "web")
    assert command == "python -m http.server 3000"
    assert shlex.split(command) == ["python", "-m", "http.server", "3000"]
    assert "command-comment" in codes


@pytest.mark.parametrize(
    ("line", "expected", "dropped"),
    [
        ('echo "a # b" # note', 'echo "a # b"', True),  # inside quotes: not a comment
        ("echo a#b", "echo a#b", False),  # not at the start of a word
        ("bin/run --tag=\\#x", "bin/run --tag=\\#x", False),  # escaped
        ("bin/run; # trailing", "sh -c 'exec bin/run'", True),
    ],
)
def test_case2_bash_comment_rules(line: str, expected: str, dropped: bool) -> None:
    """bash(1), COMMENTS: `#` starts a comment only at the start of a word, unquoted."""
    result = convert_command(line, port=3000, subject="web", where="Procfile", line=1)
    assert result.command == expected
    assert ("command-comment" in [f.code for f in result.findings]) is dropped


# -- 3. bash, not sh ------------------------------------------------------------------------------


def test_case3_source_runs_under_bash_with_a_finding(tmp_path: Path) -> None:
    """`source x && exec gunicorn`: dash has no `source` (exit 127); Heroku uses bash, and so
    does the translation, with a finding that the image needs bash (issue 8, case 3)."""
    manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: source bin/setenv.sh && exec gunicorn app:app --bind 0.0.0.0:$PORT\n"
            'worker: [[ -n "$QUEUES" ]] && exec rq worker $QUEUES || exec rq worker default\n'
        },
    )
    web = shlex.split(_command(manifest, "web"))
    worker = shlex.split(_command(manifest, "worker"))
    assert web[:2] == ["bash", "-c"] and worker[:2] == ["bash", "-c"]
    assert web[2] == "source bin/setenv.sh && exec gunicorn app:app --bind 0.0.0.0:3000"
    assert codes.count("command-needs-bash") == 2

    # run them: bash sources the file; dash would not find `source`
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "bin" / "setenv.sh").write_text("export GREETING=hello\n")
    script = web[2].replace("exec gunicorn app:app --bind 0.0.0.0:3000", 'echo "$GREETING"')
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.strip() == "hello"
    dash = subprocess.run(["dash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert dash.returncode == 127  # the failure the issue describes
    branch = worker[2].replace("exec rq worker", "echo")
    picked = subprocess.run(
        ["bash", "-c", branch],
        env={"QUEUES": "high low", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert picked.stdout.strip() == "high low"


# -- 4. add-on options ----------------------------------------------------------------------------


def test_case4_app_json_addon_version_becomes_resource_version(tmp_path: Path) -> None:
    """app.json `addons: [{"plan": "heroku-postgresql", "options": {"version": "15"}}]` (Dev
    Center app.json schema: addons objects take plan, as, options) -> options.version "15"."""
    manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: bin/web\n",
            "app.json": '{"addons": [{"plan": "heroku-postgresql", "options": {"version": "15"}},'
            ' {"plan": "heroku-redis:mini", "options": {"version": "7"}}]}',
        },
    )
    resources = manifest["resources"]
    assert isinstance(resources, dict)
    assert resources["database"]["options"]["version"] == "15"
    assert resources["redis"]["options"]["version"] == "7"
    assert "postgres-version-unknown" not in codes
    assert "redis-version" not in codes
    assert "postgres-version-from-options" in codes


# -- 5. container stack ---------------------------------------------------------------------------


def test_case5_container_stack_reuses_the_released_image(tmp_path: Path) -> None:
    """An app on the container stack (`heroku container:push`/`container:release`, no
    heroku.yml): each service gets `image: registry.heroku.com/APP/TYPE` (heroku CLI
    src/commands/container/push.ts), a finding on `convox registries add`, no credentials."""
    facts = LiveFacts(
        app="pics-prod",
        stack="container",
        formation=[FormationFact("web", 2, "standard-1X"), FormationFact("worker", 1, "basic")],
        config_var_names=["SECRET_KEY_BASE"],
    )
    manifest, codes = _translate(
        tmp_path, {"Procfile": "web: bin/web\n", "Dockerfile": "FROM ruby\n"}, facts
    )
    services = manifest["services"]
    assert isinstance(services, dict)
    assert services["web"]["image"] == "registry.heroku.com/pics-prod/web:latest"
    assert services["worker"]["image"] == "registry.heroku.com/pics-prod/worker:latest"
    assert "build" not in services["web"] and "command" not in services["web"]
    assert "container-image" in codes and "procfile-ignored" in codes
    assert "dockerfile-unverified" not in codes
    result = translate(read_sources(tmp_path), facts, TranslateOptions())
    advice = next(f.advice for f in result.findings if f.code == "container-image")
    assert "convox registries add registry.heroku.com _ TOKEN" in advice


# -- 6. PostGIS and pgvector ----------------------------------------------------------------------


def test_case6_postgis_rails_app_gets_the_postgis_resource(tmp_path: Path) -> None:
    """Gemfile activerecord-postgis-adapter + `adapter: postgis` -> `type: postgis` (convox
    pkg/manifest/resource.go IsContainerizedResource; image postgis/postgis:VERSION)."""
    facts = LiveFacts(
        app="maps",
        addons=[
            AddonFact(
                "heroku-postgresql", "heroku-postgresql:standard-0", "pg-1", ("DATABASE_URL",)
            )
        ],
        postgres_version="16",
    )
    manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: bundle exec puma -p $PORT\n",
            "Gemfile": "source 'https://rubygems.org'\ngem 'activerecord-postgis-adapter'\n",
            "config/database.yml": "production:\n  adapter: postgis\n",
        },
        facts,
    )
    resources = manifest["resources"]
    assert isinstance(resources, dict)
    assert resources["database"]["type"] == "postgis"
    assert resources["database"]["options"]["version"] == "16-3.4"
    assert "postgres-postgis" in codes


def test_case6_pgvector_python_app_gets_a_pgvector_image(tmp_path: Path) -> None:
    manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: gunicorn app:app\n",
            "requirements.txt": "flask\npgvector==0.3.2\n",
            "app.json": '{"addons": [{"plan": "heroku-postgresql:essential-0", '
            '"options": {"version": "16"}}]}',
        },
    )
    resources = manifest["resources"]
    assert isinstance(resources, dict)
    assert resources["database"] == {
        "type": "postgres",
        "image": "pgvector/pgvector:pg16",
        "options": {"version": "16"},
    }
    assert "postgres-pgvector" in codes


def test_case6_live_extensions_count_too(tmp_path: Path) -> None:
    facts = LiveFacts(
        app="geo",
        addons=[AddonFact("heroku-postgresql", None, "pg-1", ("DATABASE_URL",))],
        postgres_version="15",
        postgres_extensions=["postgis", "vector"],
    )
    manifest, codes = _translate(tmp_path, {"Procfile": "web: bin/web\n"}, facts)
    resources = manifest["resources"]
    assert isinstance(resources, dict)
    assert resources["database"]["type"] == "postgis"
    assert "postgres-extension-image" in codes  # no stock image has both


# -- the whole kind: variables a dyno has at boot ------------------------------------------------


def test_boot_variables_get_defaults_or_findings(tmp_path: Path) -> None:
    """PORT and DYNO come from the dyno manager, WEB_CONCURRENCY/MEMORY_AVAILABLE/JAVA_OPTS from
    buildpacks' .profile.d scripts (heroku-buildpack-nodejs profile/WEB_CONCURRENCY.sh,
    heroku-buildpack-jvm-common opt/jvmcommon.sh): not config vars, so set-env never copies
    them. Each gets a manifest default or a finding naming it."""
    manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: node --max-old-space-size=$MEMORY_AVAILABLE server.js --id $DYNO\n"
            "worker: java $JAVA_OPTS -jar app.jar --key $API_KEY\n",
            "app.json": '{"formation": {"web": {"quantity": 1, "size": "standard-2X"}}}',
        },
    )
    assert manifest["environment"] == [
        "JAVA_OPTS=-XX:MaxRAMPercentage=75.0 -Dfile.encoding=UTF-8",
        "MEMORY_AVAILABLE=1024",  # standard-2X: 1 GB
    ]
    assert "boot-variable-missing" in codes  # $DYNO
    assert "command-variable-unknown" in codes  # $API_KEY


def test_known_config_vars_need_no_finding(tmp_path: Path) -> None:
    facts = LiveFacts(app="x", config_var_names=["API_KEY", "WEB_CONCURRENCY"])
    _manifest, codes = _translate(
        tmp_path,
        {"Procfile": "web: gunicorn app -w $WEB_CONCURRENCY --key $API_KEY\n"},
        facts,
    )
    assert "command-variable-unknown" not in codes
    assert "boot-variable-default" not in codes


def test_heroku_yml_anchors_and_merge_keys(tmp_path: Path) -> None:
    """heroku.yml is YAML: anchors and `<<:` merge keys work on Heroku, and here."""
    manifest, _codes = _translate(
        tmp_path,
        {
            "heroku.yml": "x-worker: &worker\n  image: web\nbuild:\n  docker:\n"
            "    web: Dockerfile\nrun:\n  web: bundle exec puma -p $PORT\n  worker:\n"
            "    <<: *worker\n    command: bundle exec sidekiq\n",
            "Dockerfile": "FROM ruby\n",
        },
    )
    services = manifest["services"]
    assert isinstance(services, dict)
    assert services["worker"] == {
        "build": ".",
        "command": "bundle exec sidekiq",
        "scale": {"count": 1},
    }


def test_heroku_yml_commands_keep_sh_as_on_herokus_container_runtime(tmp_path: Path) -> None:
    """heroku.yml apps run commands with the image's /bin/sh (Dev Center, Container Registry &
    Runtime: "The default shell for Docker images is /bin/sh"), not bash: no bash wrapping."""
    manifest, codes = _translate(
        tmp_path,
        {
            "heroku.yml": "build:\n  docker:\n    web: Dockerfile\nrun:\n"
            "  web: source ./env.sh && puma -p $PORT\n",
            "Dockerfile": "FROM ruby:3.3-alpine\n",
        },
    )
    assert _command(manifest, "web") == "sh -c 'source ./env.sh && exec puma -p 3000'"
    assert "command-needs-bash" not in codes
