"""``pg_client``: the PostgreSQL client service the in-rack data method runs (translate)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from cutover.translate import TranslateOptions, facts_from_heroku_json, translate
from cutover.translate.facts import LiveFacts
from cutover.translate.manifest import render, validate
from cutover.translate.sources import SourceTree, parse_procfile


def _facts(version: str | None) -> LiveFacts:
    return facts_from_heroku_json(
        {"app": {"name": "x"}},
        [
            {
                "addon_service": {"name": "heroku-postgresql"},
                "plan": {"name": "heroku-postgresql:standard-0"},
                "name": "postgresql-a-1",
                "config_vars": ["DATABASE_URL"],
            }
        ],
        ["DATABASE_URL"],
        [],
        "web=1:basic",
        postgres_version=version,
    )


def _tree(procfile: str = "web: bin/serve\n") -> SourceTree:
    processes, release = parse_procfile(procfile)
    return SourceTree(root=Path("."), procfile=processes, release=release, has_dockerfile=True)


def _codes(result: Any) -> list[str]:
    return [f.code for f in result.findings]


def test_pg_client_service_has_herokus_major_the_database_and_no_containers() -> None:
    result = translate(_tree(), _facts("16.4"), TranslateOptions(pg_client=True))
    service = result.manifest["services"]["pgclient"]
    assert service == {"image": "postgres:16", "scale": {"count": 0}, "resources": ["database"]}
    assert "port" not in service
    assert "pg-client-service" in _codes(result)
    assert validate(result.manifest) == []
    rendered = yaml.safe_load(render(result.manifest))
    assert rendered["services"]["pgclient"]["image"] == "postgres:16"


def test_no_pg_client_without_the_option_or_without_a_known_version() -> None:
    plain = translate(_tree(), _facts("16"), TranslateOptions())
    assert "pgclient" not in plain.manifest["services"]
    unknown = translate(_tree(), _facts(None), TranslateOptions(pg_client=True))
    assert "pgclient" not in unknown.manifest["services"]
    assert "pg-client-version-unknown" in _codes(unknown)


def test_pg_client_takes_another_name_when_a_process_type_is_called_pgclient() -> None:
    result = translate(
        _tree("web: bin/serve\npgclient: bin/other\n"),
        _facts("15"),
        TranslateOptions(pg_client=True),
    )
    assert result.manifest["services"]["pgclient-2"]["image"] == "postgres:15"
    assert result.manifest["services"]["pgclient"].get("image") is None


def test_translate_cli_takes_pg_client(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "rails-sidekiq"
    app = tmp_path / "app"
    shutil.copytree(fixture, app)
    out = tmp_path / "convox.yml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cutover",
            "translate",
            str(app),
            "--pg-client",
            "--json",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    codes = {f["code"] for f in json.loads(proc.stderr)["findings"]}
    services = yaml.safe_load(out.read_text())["services"]
    # Without --heroku-app the version comes from app.json, and this one names none: the flag
    # reaches translate (its finding says so) and no service with a guessed image is written.
    assert "pg-client-version-unknown" in codes and "pg-client-service" not in codes
    assert "pgclient" not in services and "web" in services
