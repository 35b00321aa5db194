"""Table-driven translation tests over realistic app folders in tests/translate/fixtures.

Each case translates one fixture folder (with its facts.json, live facts in the real heroku CLI's
JSON shapes) and compares the manifest as parsed YAML data with ``<stem>.convox.yml`` and the
finding codes with ``<stem>.findings.json``. Each case also states, independently of those files,
the few facts that make the case worth having.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover.errors import InvalidInput
from cutover.translate import (
    DYNO_SIZES,
    TimerSpec,
    TranslateOptions,
    facts_from_heroku_json,
    load_facts_file,
    read_sources,
    run_translate,
    translate,
)
from cutover.translate.facts import LiveFacts
from cutover.translate.manifest import render, scalar, validate
from cutover.translate.mapping import convert_command, dyno_size, parse_schedule
from cutover.translate.sources import SourceTree, parse_procfile

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Case:
    fixture: str
    options: TranslateOptions = field(default_factory=TranslateOptions)
    stem: str = "expected"
    # dotted path -> expected value, checked on the manifest data
    facts: dict[str, Any] = field(default_factory=dict)
    # paths that must be absent
    absent: tuple[str, ...] = ()


CASES = [
    Case(
        "rails-sidekiq",
        facts={
            "services.web.initContainer.command": "bin/rails db:migrate",
            "services.web.health": "/up",  # config/routes.rb routes rails_health_check
            "services.web.scale": {"count": 2, "cpu": 500, "memory": 1024},  # 2 x standard-2X
            "services.worker.scale": {"count": 1, "cpu": 2000, "memory": 2560},  # performance-M
            "resources.database": {
                "type": "postgres",
                "options": {"version": "16", "storage": "64"},
            },
            "resources.redis.type": "redis",
        },
    ),
    Case(
        "rails-sidekiq",
        TranslateOptions(managed=True, release_as="one-off"),
        stem="expected.managed",
        facts={
            "resources.database.type": "rds-postgres",
            "resources.database.options.class": "db.t4g.medium",
            "resources.redis.type": "elasticache-redis",
        },
        absent=("services.web.initContainer",),
    ),
    Case(
        "django-celery",
        TranslateOptions(
            jobs_service=True,
            timers=(
                TimerSpec("clear_sessions", "daily at 03:30", "python manage.py clearsessions"),
                TimerSpec(
                    "send-mail",
                    "every 10 minutes",
                    "python manage.py send_queued_mail --limit ${MAIL_BATCH:-50}",
                ),
            ),
        ),
        facts={
            "services.web.port": 8000,  # ${PORT:-8000}
            "services.web.command": (
                "sh -c 'exec gunicorn shop.wsgi --bind 0.0.0.0:8000 --workers $WEB_CONCURRENCY "
                "--log-file -'"
            ),
            "services.beat.singleton": True,
            "services.jobs.scale": {"count": 0},
            "timers.clear-sessions": {
                "schedule": "30 3 * * *",
                "command": "python manage.py clearsessions",
                "service": "jobs",
            },
            "timers.send-mail.schedule": "*/10 * * * *",
        },
    ),
    Case(
        "node-underscored",
        facts={
            "services.worker-high.scale": {"count": 2, "cpu": 500, "memory": 1024},
            "services.worker-low.command": "node workers/index.js --queue low",
            "services.clock.command": "env NODE_OPTIONS=--max-old-space-size=400 node clock.js",
            "services.clock.singleton": True,
        },
        absent=("services.worker_high", "services.Clock"),
    ),
    Case(
        "container-app",
        facts={
            "services.web.build": ".",
            "services.worker.build": "worker",
            "services.reports.build": {"path": "reports", "manifest": "Dockerfile.reports"},
            "services.reports.command": "python -m reports.daemon",
            "services.reports.scale.count": 0,
            "services.web.command": "bundle exec puma -C config/puma.rb -p 3000",
            "services.web.initContainer.command": "./bin/release-tasks.sh",
            "resources.database.options.version": "15",
        },
    ),
    Case(
        "multi-buildpack",
        TranslateOptions(
            timers=(
                TimerSpec(
                    "nightly_digest",
                    "0 7 * * *",
                    'bin/rails runner "DigestJob.perform_now"',
                    service="worker",
                ),
            )
        ),
        facts={
            "services.web.scale": {"count": 3, "cpu": 8000, "memory": 14336},  # performance-L
            "services.worker.command": "env MALLOC_ARENA_MAX=2 bundle exec good_job start",
            "timers.nightly-digest.service": "worker",
        },
    ),
    Case(
        "php-mysql-memcachier",
        facts={
            "resources.jawsdb.type": "mysql",  # injects JAWSDB_URL, as the app reads
            "resources.memcachier.type": "memcached",
            "services.web.initContainer.command": "php artisan migrate --force",
        },
    ),
    Case(
        "php-mysql-memcachier",
        TranslateOptions(managed=True),
        stem="expected.managed",
        facts={
            "resources.jawsdb.type": "rds-mysql",
            "resources.memcachier.type": "elasticache-memcached",
        },
    ),
]


def _get(data: Any, dotted: str) -> Any:
    current = data
    for part in dotted.split("."):
        if not isinstance(current, dict) or part not in current:
            raise KeyError(dotted)
        current = current[part]
    return current


def _has(data: Any, dotted: str) -> bool:
    try:
        _get(data, dotted)
    except KeyError:
        return False
    return True


def _facts_for(folder: Path) -> LiveFacts | None:
    path = folder / "facts.json"
    return load_facts_file(path) if path.exists() else None


def _run(
    folder: Path, options: TranslateOptions, facts: LiveFacts | None
) -> tuple[int, str, dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    code = run_translate(
        folder, facts=facts, options=options, output=None, as_json=True, stdout=out, stderr=err
    )
    return code, out.getvalue(), json.loads(err.getvalue())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.fixture}:{c.stem}")
def test_fixture_translates_to_expected_manifest(case: Case) -> None:
    folder = FIXTURES / case.fixture
    code, text, report = _run(folder, case.options, _facts_for(folder))

    assert code == 0
    manifest = yaml.safe_load(text)
    expected = yaml.safe_load((folder / f"{case.stem}.convox.yml").read_text())
    assert manifest == expected
    assert list(manifest) == [
        k for k in ("environment", "resources", "services", "timers") if k in manifest
    ]

    codes = [f["code"] for f in report["findings"]]
    expected_codes = json.loads((folder / f"{case.stem}.findings.json").read_text())
    assert Counter(codes) == Counter(expected_codes)

    for path, value in case.facts.items():
        assert _get(manifest, path) == value, path
    for path in case.absent:
        assert not _has(manifest, path), path
    assert validate(manifest) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.fixture}:{c.stem}")
def test_rendering_is_deterministic_and_round_trips(case: Case) -> None:
    folder = FIXTURES / case.fixture
    tree = read_sources(folder)
    first = translate(tree, _facts_for(folder), case.options)
    second = translate(read_sources(folder), _facts_for(folder), case.options)
    text = render(first.manifest)
    assert text == render(second.manifest)
    assert yaml.safe_load(text) == first.manifest


def test_every_fixture_has_a_case() -> None:
    covered = {c.fixture for c in CASES} | {"guide-example"}
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} == covered


# --------------------------------------------------------------------------------------------
# The environment and resource rules, stated directly


def test_environment_is_a_list_without_injected_or_heroku_names() -> None:
    folder = FIXTURES / "rails-sidekiq"
    result = translate(read_sources(folder), _facts_for(folder), TranslateOptions())
    env = result.manifest["environment"]
    names = [entry.split("=", 1)[0] for entry in env]
    assert isinstance(env, list)
    assert "DATABASE_URL" not in names and "REDIS_URL" not in names
    assert not [n for n in names if n.startswith("HEROKU_")]
    # secrets stay bare (required); app.json's non-secret constants become defaults
    assert "SECRET_KEY_BASE" in env and "STRIPE_SECRET_KEY" in env
    assert "RAILS_MAX_THREADS=5" in env
    # the playbook must not copy the add-on URLs (a copied DATABASE_URL disables the resource)
    assert {"DATABASE_URL", "REDIS_URL", "HEROKU_APP_NAME"} <= set(result.excluded_env)


def test_unmapped_addon_vars_stay_in_environment() -> None:
    folder = FIXTURES / "django-celery"
    result = translate(read_sources(folder), _facts_for(folder), TranslateOptions())
    env = result.manifest["environment"]
    for name in ("PAPERTRAIL_API_TOKEN", "SENDGRID_API_KEY", "KAFKA_URL", "IMAGEKIT_PRIVATE_KEY"):
        assert name in env
    unmapped = {f.subject.split(" ")[0] for f in result.findings if f.severity == "unmapped"}
    assert {"papertrail", "sendgrid", "newrelic", "heroku-kafka", "imagekit"} <= unmapped
    # no timers were given, so the Scheduler add-on is reported
    assert "scheduler-jobs" in [f.code for f in result.findings]
    assert all(f.advice for f in result.findings if f.severity in ("unmapped", "warning"))


def test_resource_names_match_the_variables_the_app_reads() -> None:
    folder = FIXTURES / "php-mysql-memcachier"
    result = translate(read_sources(folder), _facts_for(folder), TranslateOptions())
    for name in result.manifest["resources"]:
        injected = name.upper().replace("-", "_") + "_URL"
        assert injected in ("JAWSDB_URL", "MEMCACHIER_URL")
    assert "addon-vars-differ" in [f.code for f in result.findings]  # MEMCACHIER_SERVERS


def test_alias_when_the_variable_cannot_be_a_resource_name() -> None:
    facts = facts_from_heroku_json(
        {"app": {"name": "x"}},
        [
            {
                "addon_service": {"name": "heroku-postgresql"},
                "plan": {"name": "heroku-postgresql:standard-0"},
                "name": "postgresql-a-1",
                "config_vars": ["HEROKU_POSTGRESQL_CRIMSON_ANALYTICS_URL"],
            }
        ],
        ["HEROKU_POSTGRESQL_CRIMSON_ANALYTICS_URL"],
        [],
        "web=1:basic",
        postgres_version="16",
    )
    tree = _tree_with_procfile("web: bin/serve\n")
    result = translate(tree, facts, TranslateOptions(managed=True))
    assert result.manifest["resources"]["database"]["type"] == "rds-postgres"
    assert result.manifest["services"]["web"]["resources"] == [
        "database:HEROKU_POSTGRESQL_CRIMSON_ANALYTICS_URL"
    ]
    assert validate(result.manifest) == []


# --------------------------------------------------------------------------------------------
# Commands


@pytest.mark.parametrize(
    ("command", "expected", "codes", "defaults"),
    [
        ("rails s -p $PORT", "rails s -p 3000", ["port-fixed"], {}),
        ("rails s -p ${PORT}", "rails s -p 3000", ["port-fixed"], {}),
        ("node app.js --port=${PORT:-5000}", "node app.js --port=3000", ["port-fixed"], {}),
        ("puma -p $PORTAL", "sh -c 'exec puma -p $PORTAL'", ["command-shell"], {}),
        ("bundle exec sidekiq", "bundle exec sidekiq", [], {}),
        ("FOO=1 node x.js", "env FOO=1 node x.js", ["command-env-prefix"], {}),
        (
            "bin/setup && bin/run",
            "sh -c 'bin/setup && exec bin/run'",
            ["command-shell"],
            {},
        ),
        (
            "gunicorn app --workers ${WEB_CONCURRENCY:-2}",
            "sh -c 'exec gunicorn app --workers $WEB_CONCURRENCY'",
            ["command-env-default", "command-shell"],
            {"WEB_CONCURRENCY": "2"},
        ),
        (
            "run --prefix ${APP}_x",
            "sh -c 'exec run --prefix $APP\"\"_x'",
            ["command-shell"],
            {},
        ),
        (
            "bash -c 'echo ${NAME:=x}'",
            "bash -c 'exec echo ${NAME:=x}'",
            ["command-unsupported-expansion"],
            {},
        ),
        ("bash -c 'bin/a && bin/b'", "bash -c 'bin/a && exec bin/b'", [], {}),
        (
            "echo it's > /tmp/x",
            None,  # unbalanced quote: invalid input
            [],
            {},
        ),
    ],
)
def test_convert_command(
    command: str, expected: str | None, codes: list[str], defaults: dict[str, str]
) -> None:
    if expected is None:
        with pytest.raises(InvalidInput):
            convert_command(command, port=3000, subject="web", where="Procfile", line=1)
        return
    result = convert_command(command, port=3000, subject="web", where="Procfile", line=1)
    assert result.command == expected
    assert [f.code for f in result.findings] == codes
    assert result.defaults == defaults


def test_convox_never_sees_shell_brace_forms() -> None:
    folder = FIXTURES / "django-celery"
    text = render(translate(read_sources(folder), _facts_for(folder)).manifest)
    assert "${" not in text


def test_port_flag_wins_and_is_used_in_commands() -> None:
    tree = _tree_with_procfile("web: rails s -p $PORT\n")
    result = translate(tree, None, TranslateOptions(port=8080))
    web = result.manifest["services"]["web"]
    assert web["port"] == 8080 and web["command"] == "rails s -p 8080"


# --------------------------------------------------------------------------------------------
# Schedules, sizes, facts


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("0 6 * * *", "0 6 * * *"),
        ("every 10 minutes", "*/10 * * * *"),
        ("hourly at :30", "30 * * * *"),
        ("every hour at :05", "5 * * * *"),
        ("daily at 06:00", "0 6 * * *"),
        ("every day at 11:30 PM UTC", "30 23 * * *"),
        ("0 0 ? * MON", "0 0 * * MON"),
    ],
)
def test_parse_schedule(text: str, cron: str) -> None:
    assert parse_schedule(text, where="--timer", field_name="t")[0] == cron


def test_dyno_size_table_basis() -> None:
    assert dyno_size("standard-1X") == DYNO_SIZES["standard-1x"]
    assert (DYNO_SIZES["standard-1x"].cpu, DYNO_SIZES["standard-1x"].memory) == (250, 512)
    assert (DYNO_SIZES["standard-2x"].cpu, DYNO_SIZES["standard-2x"].memory) == (500, 1024)
    assert (DYNO_SIZES["performance-m"].cpu, DYNO_SIZES["performance-m"].memory) == (2000, 2560)
    assert (DYNO_SIZES["performance-l"].cpu, DYNO_SIZES["performance-l"].memory) == (8000, 14336)
    assert dyno_size("BASIC") is not None and dyno_size("mega-9000") is None


def test_unknown_dyno_size_is_a_warning_not_an_error() -> None:
    facts = facts_from_heroku_json({}, [], [], [], "web=1:Fir-XL")
    result = translate(_tree_with_procfile("web: bin/serve\n"), facts)
    assert result.manifest["services"]["web"]["scale"] == {"count": 1}
    assert "dyno-size-unknown" in [f.code for f in result.findings]


def test_facts_from_the_cli_json_shapes() -> None:
    facts = facts_from_heroku_json(
        {"addons": [], "app": {"name": "myapp", "stack": {"name": "heroku-24"}}, "dynos": []},
        [
            {
                "addon_service": {"id": "s", "name": "heroku-postgresql"},
                "config_vars": ["DATABASE_URL"],
                "name": "postgresql-curly-12345",
                "plan": {"name": "heroku-postgresql:standard-0"},
                "attachments": [{"name": "DATABASE"}],
            }
        ],
        {"DATABASE_URL": "postgres://u:secret@h/d", "RAILS_ENV": "production"},
        [
            {"hostname": "myapp.herokuapp.com", "kind": "heroku", "cname": None},
            {"hostname": "www.example.com", "kind": "custom", "cname": "x.herokudns.com"},
        ],
        [
            {"name": "web.1", "type": "web", "size": "standard-1X", "command": "bin/web"},
            {"name": "web.2", "type": "web", "size": "standard-1X", "command": "bin/web"},
            {"name": "run.1234", "type": "run", "size": "standard-1X", "command": "bash"},
        ],
        postgres_version="16.4",
    )
    assert facts.app == "myapp" and facts.stack == "heroku-24"
    assert [(f.type, f.quantity, f.size) for f in facts.formation] == [("web", 2, "standard-1X")]
    assert facts.addons[0].attachments == ("DATABASE",)
    assert facts.config_var_names == ["DATABASE_URL", "RAILS_ENV"]
    assert "secret" not in repr(facts)  # config values are never kept
    assert [d.hostname for d in facts.custom_domains] == ["www.example.com"]
    assert facts.postgres_version == "16"

    objects = facts_from_heroku_json(
        {}, [], [], [], [{"type": "worker", "quantity": "3", "size": "basic"}]
    )
    assert objects.formation[0].quantity == 3
    scale = facts_from_heroku_json({}, [], [], [], "web=2:standard-1X worker=1:standard-2X")
    assert [(f.type, f.quantity) for f in scale.formation] == [("web", 2), ("worker", 1)]
    composite = facts_from_heroku_json(
        {
            "addons": [
                {
                    "addon_service": {"name": "heroku-redis"},
                    "config_vars": ["REDIS_URL"],
                    "name": "r",
                    "plan": {"name": "heroku-redis:mini"},
                }
            ],
            "app": {"name": "a"},
            "dynos": [{"name": "web.1", "type": "web", "size": "basic"}],
        },
        [],
        [],
        [],
        [],
    )
    assert composite.addons[0].service == "heroku-redis"
    assert composite.formation[0].type == "web"


def test_malformed_cli_json_names_the_command_and_path() -> None:
    with pytest.raises(InvalidInput) as info:
        facts_from_heroku_json({}, [{"addon_service": {"name": 3}}], [], [], [])
    assert (
        str(info.value)
        == "heroku addons --json: [0].addon_service.name: expected a string, got int"
    )


# --------------------------------------------------------------------------------------------
# Output channels


def test_manifest_to_file_and_text_findings_on_stderr(tmp_path: Path) -> None:
    folder = FIXTURES / "guide-example"
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "convox.yml"
    code = run_translate(
        folder,
        facts=_facts_for(folder),
        options=TranslateOptions(),
        output=target,
        as_json=False,
        stdout=out,
        stderr=err,
    )
    assert code == 0
    assert out.getvalue() == ""
    assert "services" in yaml.safe_load(target.read_text())
    lines = err.getvalue().splitlines()
    first = next(line for line in lines if line.endswith("[port-fixed]"))
    assert first.startswith("change")
    assert lines[lines.index(first) + 1].lstrip().startswith("advice: ")
    assert lines[-1].startswith("cutover: ")


def test_json_findings_shape() -> None:
    folder = FIXTURES / "guide-example"
    code, _text, report = _run(folder, TranslateOptions(), _facts_for(folder))
    assert code == 0 and report["ok"] is True and report["manifest"] == "stdout"
    for finding in report["findings"]:
        assert set(finding) == {"code", "severity", "subject", "message", "advice"}
        assert finding["severity"] in ("info", "change", "guess", "unmapped", "warning")


def test_validate_reports_convox_messages() -> None:
    manifest = {
        "environment": {"A": "b"},
        "resources": {"db": {"type": ""}, "Big_Name": {"type": "redis"}},
        "services": {
            "web_1": {"resources": ["nope"], "port": 3000},
            "worker": {"resources": ["db:DATABASE_URL"]},
        },
        "timers": {"t": {"schedule": "0 0 ? * *", "command": "x", "service": "ghost"}},
    }
    errors = validate(manifest)
    assert "unknown type for environment: map[A:b]" in errors
    assert 'resource "db" has blank type' in errors
    assert (
        "resource name Big_Name invalid, must contain only lowercase alphanumeric and dashes"
        in errors
    )
    assert (
        "service name web_1 invalid, must contain only lowercase alphanumeric and dashes" in errors
    )
    assert "service web_1 references a resource that does not exist: nope" in errors
    assert "timer t references a service that does not exist: ghost" in errors
    assert "timer t invalid, schedule cannot contain ?" in errors
    assert not [e for e in errors if e.startswith("service worker")]  # alias resolves to db


def _tree_with_procfile(procfile: str) -> SourceTree:
    processes, release = parse_procfile(procfile)
    return SourceTree(root=Path("."), procfile=processes, release=release, has_dockerfile=True)


@pytest.mark.parametrize(
    "value",
    [
        "16",
        "0 6 * * *",
        "*/10 * * * *",
        "yes",
        "No",
        "on",
        "null",
        "~",
        "1e3",
        "0x1F",
        "3.0",
        "-",
        "- item",
        "key: value",
        "a #comment",
        " padded",
        "trailing:",
        "@handle",
        "%percent",
        "sh -c 'exec a && b'",
        'say "hi"',
        "line\nbreak",
        "tab\there",
        "café",
        "bundle exec rails server -b 0.0.0.0 -p 3000",
        "RAILS_ENV=production",
        "",
    ],
)
def test_scalar_round_trips_as_a_string(value: str) -> None:
    assert yaml.safe_load(f"key: {scalar(value)}") == {"key": value}
    assert yaml.safe_load(render({"environment": [value]})) == {"environment": [value]}


def test_plain_where_the_guide_is_plain_and_quoted_where_it_quotes() -> None:
    assert scalar("bundle exec sidekiq") == "bundle exec sidekiq"
    assert scalar("/healthz") == "/healthz"
    assert scalar("16") == '"16"'
    text = render({"timers": {"t": {"schedule": "0 6 * * *", "command": "x", "service": "w"}}})
    assert 'schedule: "0 6 * * *"' in text
    text = render({"resources": {"d": {"type": "postgres", "options": {"version": "16"}}}})
    assert 'version: "16"' in text


def test_bad_health_path_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        translate(_tree_with_procfile("web: bin/web\n"), None, TranslateOptions(health="healthz"))
    assert info.value.brief.startswith("--health:")


def test_managed_without_live_facts_still_produces_a_manifest() -> None:
    folder = FIXTURES / "node-underscored"
    code, text, report = _run(folder, TranslateOptions(managed=True), None)
    assert code == 0
    database = yaml.safe_load(text)["resources"]["database"]
    assert database == {"type": "rds-postgres", "options": {"class": "db.t4g.micro"}}
    assert "postgres-version-unknown" in [f["code"] for f in report["findings"]]
