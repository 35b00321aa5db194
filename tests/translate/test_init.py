"""`cutover init`: writes convox.yml and a pre-filled cutover.yml, never overwrites the playbook
without force, and says what to review."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover.playbook import load_playbook
from cutover.translate import TimerSpec, TranslateOptions, load_facts_file, run_init
from cutover.translate.facts import LiveFacts

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "storefront"
    shutil.copytree(FIXTURES / "rails-sidekiq", folder)
    for generated in folder.glob("expected*"):
        generated.unlink()
    return folder


def _init(
    folder: Path,
    *,
    facts: LiveFacts | None = None,
    rack: str | None = "acme/production",
    options: TranslateOptions | None = None,
    force: bool = False,
    playbook: Path | None = None,
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_init(
        folder,
        facts=facts or load_facts_file(folder / "facts.json"),
        convox_rack=rack,
        convox_app="storefront",
        options=options or TranslateOptions(),
        playbook_path=playbook or folder / "cutover.yml",
        force=force,
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_init_writes_manifest_and_prefilled_playbook(app: Path) -> None:
    code, out, err = _init(app)
    assert code == 0, err
    assert out.splitlines() == [f"wrote {app / 'convox.yml'}", f"wrote {app / 'cutover.yml'}"]

    playbook = _load(app / "cutover.yml")
    assert playbook == {
        "version": 1,
        "heroku": {"app": "storefront-prod"},
        "convox": {
            "rack": "acme/production",
            "app": "storefront",
            "manifest": "convox.yml",
            "source": ".",
        },
        "env": {
            "exclude": [
                "DATABASE_URL",
                "HEROKU_POSTGRESQL_CRIMSON_URL",
                "REDIS_URL",
                "REDIS_TLS_URL",
                "HEROKU_APP_NAME",
            ],
            "override": {},
        },
        "database": {"resource": "database", "heroku_attachment": "DATABASE"},
        "smoke": {"service": "web", "checks": [{"path": "/up", "status": 200}]},
        "dns": {
            "provider": "manual",
            "zone": "example.com",
            "record": "shop.example.com",
            "ttl": 60,
        },
        "window": {"drain_seconds": 30, "scale_down": ["worker"]},
    }
    text = (app / "cutover.yml").read_text()
    assert text.startswith(
        "# cutover playbook: Heroku app storefront-prod -> Convox app storefront."
    )
    assert "REVIEW" in text

    manifest = _load(app / "convox.yml")
    assert manifest["services"]["web"]["initContainer"] == {"command": "bin/rails db:migrate"}
    # findings and the review list go to stderr
    assert "[release-init-container]" in err
    assert f"cutover: review {app / 'cutover.yml'} before `cutover plan`:" in err
    assert "  - dns.zone: guessed as example.com; dns.provider: manual." in err


def test_init_refuses_to_overwrite_without_force(app: Path) -> None:
    (app / "cutover.yml").write_text("version: 1\n# mine\n")
    code, out, err = _init(app)
    assert code == 1
    assert out == ""
    assert "already exists" in err and "--force" in err
    assert (app / "cutover.yml").read_text() == "version: 1\n# mine\n"
    assert not (app / "convox.yml").exists()  # nothing is written when refused


def test_init_force_overwrites(app: Path) -> None:
    (app / "cutover.yml").write_text("version: 1\n# mine\n")
    (app / "convox.yml").write_text("services: {}\n")
    code, _out, err = _init(app, force=True)
    assert code == 0, err
    assert _load(app / "cutover.yml")["heroku"] == {"app": "storefront-prod"}
    assert "web" in _load(app / "convox.yml")["services"]


def test_init_keeps_an_existing_convox_yml_without_force(app: Path) -> None:
    (app / "convox.yml").write_text("services:\n  web:\n    build: .\n")
    code, out, err = _init(app)
    assert code == 0, err
    assert (app / "convox.yml").read_text() == "services:\n  web:\n    build: .\n"
    assert out.splitlines() == [f"wrote {app / 'cutover.yml'}"]
    assert "already existed and was kept" in err


def test_init_one_off_release_timers_and_no_rack(app: Path) -> None:
    options = TranslateOptions(
        release_as="one-off",
        timers=(TimerSpec("daily_report", "daily at 06:00", "bin/rake reports:daily"),),
    )
    code, _out, err = _init(app, rack=None, options=options)
    assert code == 0, err
    playbook = _load(app / "cutover.yml")
    assert "rack" not in playbook["convox"]
    assert "convox.rack: no current rack was found" in err
    assert playbook["release"] == {"command": "bin/rails db:migrate", "service": "web"}
    assert playbook["timers"] == [
        {
            "name": "daily-report",
            "schedule": "0 6 * * *",
            "command": "bin/rake reports:daily",
            "service": "worker",
        }
    ]
    assert "initContainer" not in _load(app / "convox.yml")["services"]["web"]


def test_init_without_custom_domain_or_postgres(tmp_path: Path) -> None:
    folder = tmp_path / "worker-only"
    folder.mkdir()
    (folder / "Procfile").write_text("worker: bin/worker\n")
    (folder / "Dockerfile").write_text("FROM busybox\n")
    facts = LiveFacts(app="jobs-prod", config_var_names=["TOKEN"])
    code, _out, err = _init(folder, facts=facts)
    assert code == 0, err
    playbook = _load(folder / "cutover.yml")
    # Written as null: left out, cutover's defaults would bring the data and smoke steps back.
    assert "dns" not in playbook
    assert playbook["database"] is None and playbook["smoke"] is None
    assert playbook["window"] == {"drain_seconds": 30, "scale_down": []}
    loaded = load_playbook(folder / "cutover.yml")
    assert loaded.model.database is None and loaded.model.smoke is None
    assert playbook["env"] == {"exclude": [], "override": {}}


def test_init_playbook_elsewhere_gets_relative_paths(app: Path, tmp_path: Path) -> None:
    ops = tmp_path / "ops"
    ops.mkdir()
    code, _out, err = _init(app, playbook=ops / "cutover.yml")
    assert code == 0, err
    convox = _load(ops / "cutover.yml")["convox"]
    assert convox["source"] == "../storefront"
    # convox deploy -m names the manifest inside the deployed folder
    assert convox["manifest"] == "convox.yml"
    # and the playbook that init wrote is one cutover accepts
    loaded = load_playbook(ops / "cutover.yml")
    assert (
        loaded.resolve(loaded.model.convox.source) / loaded.model.convox.manifest
        == (app / "convox.yml").resolve()
    )


def test_init_invalid_input_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "Procfile").write_text("web bin/web\n")
    code, out, err = _init(folder, facts=LiveFacts(app="x"))
    assert code == 2
    assert out == ""
    assert 'Procfile:1: expected "name: command"' in err
    assert not (folder / "cutover.yml").exists() and not (folder / "convox.yml").exists()


def test_init_rejects_an_invalid_convox_app_name(app: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_init(
        app,
        facts=load_facts_file(app / "facts.json"),
        convox_rack=None,
        convox_app="Store_Front",
        options=TranslateOptions(),
        playbook_path=app / "cutover.yml",
        force=False,
        stdout=out,
        stderr=err,
    )
    assert code == 2
    assert "not a valid Convox app name" in err.getvalue()


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
@pytest.mark.parametrize("release_as", ["init-container", "one-off"])
def test_every_init_playbook_is_accepted_by_cutover(
    name: str, release_as: str, tmp_path: Path
) -> None:
    source = tmp_path / name
    shutil.copytree(FIXTURES / name, source)
    for stale in source.glob("expected*"):
        stale.unlink()
    (source / "convox.yml").unlink(missing_ok=True)
    facts_file = source / "facts.json"
    facts = load_facts_file(facts_file) if facts_file.exists() else LiveFacts(app=name)
    out, err = io.StringIO(), io.StringIO()
    code = run_init(
        source,
        facts=facts,
        convox_rack="acme/prod",
        convox_app="myapp",
        options=TranslateOptions(release_as=release_as),  # type: ignore[arg-type]
        playbook_path=tmp_path / "cutover.yml",
        force=False,
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    loaded = load_playbook(tmp_path / "cutover.yml")
    assert loaded.model.convox.app == "myapp"
    manifest = loaded.resolve(loaded.model.convox.source) / loaded.model.convox.manifest
    assert manifest.exists()
