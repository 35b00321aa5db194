"""The guide's Rails example must come out of `translate` equivalent to the guide's convox.yml.

Inputs (tests/translate/fixtures/guide-example): the guide's Procfile, a Gemfile, and live facts in
the heroku CLI's JSON shapes: formation ``web=2:standard-1X worker=1:standard-1X`` (standard-1X
is 250 millicores / 512 MB in the size table, the guide's web scale), Heroku Postgres 16.4 as
DATABASE, Heroku Redis as REDIS, config vars DATABASE_URL, RAILS_ENV, REDIS_URL, SECRET_KEY_BASE;
plus the Scheduler job ``daily-report`` at ``0 6 * * *`` running ``bin/rake reports:daily`` on
the worker. guide.convox.yml is the guide's "After: convox.yml", verbatim.

"Equivalent" means equal as data once Convox's own defaults are applied to both sides (the
guide's worker says only ``count: 1``; Convox fills ``cpu: 250`` and ``memory: 512``, which is
what standard-1X maps to), with ONE deliberate difference where the guide is wrong:

    The guide names the Redis resource ``cache``. Linking a resource injects ``<NAME>_URL``, so
    ``cache`` injects CACHE_URL, while the app (Sidekiq, Rails' redis cache store) reads
    REDIS_URL, which the guide itself says "arrives as the REDIS_URL config var" and says not
    to copy. Following the guide, the app would get no REDIS_URL at all. The translation names
    the resource ``redis`` (injecting REDIS_URL); ``cache:REDIS_URL`` would be the alias form.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import yaml

from cutover.translate import (
    TimerSpec,
    TranslateOptions,
    load_facts_file,
    read_sources,
    run_translate,
    translate,
)

FOLDER = Path(__file__).parent / "fixtures" / "guide-example"
OPTIONS = TranslateOptions(
    timers=(TimerSpec("daily-report", "0 6 * * *", "bin/rake reports:daily", service="worker"),)
)

# Convox's ApplyDefaults for the keys the guide leaves out (convox-cli.md §17).
CONVOX_SCALE_DEFAULTS = {"count": 1, "cpu": 250, "memory": 512}


def _with_convox_defaults(manifest: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(manifest)
    for service in data.get("services", {}).values():
        service["scale"] = {**CONVOX_SCALE_DEFAULTS, **service.get("scale", {})}
    return data


def _injected_url(resource_name: str) -> str:
    return resource_name.upper().replace("-", "_") + "_URL"


def _translated() -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = run_translate(
        FOLDER,
        facts=load_facts_file(FOLDER / "facts.json"),
        options=OPTIONS,
        output=None,
        as_json=False,
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    data: dict[str, Any] = yaml.safe_load(out.getvalue())
    return data


def _guide() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FOLDER / "guide.convox.yml").read_text())
    return data


def _guide_with_redis_fix(guide: dict[str, Any]) -> dict[str, Any]:
    """The guide's manifest with its one mistake corrected: resource `cache` -> `redis`."""
    fixed = copy.deepcopy(guide)
    fixed["resources"]["redis"] = fixed["resources"].pop("cache")
    for service in fixed["services"].values():
        service["resources"] = ["redis" if r == "cache" else r for r in service["resources"]]
    return fixed


def test_guide_example_translates_to_the_guides_manifest_except_redis() -> None:
    translated = _translated()
    guide = _guide()

    # The deliberate difference: the guide's `cache` would inject CACHE_URL, the app reads
    # REDIS_URL, so the translation names the resource `redis`.
    assert _injected_url("cache") == "CACHE_URL"
    assert "cache" not in translated["resources"]
    assert translated["resources"]["redis"] == {"type": "redis"}
    assert _injected_url("redis") == "REDIS_URL"

    # Everything else is the guide's manifest, as data (with Convox's defaults filled in).
    assert _with_convox_defaults(translated) == _with_convox_defaults(_guide_with_redis_fix(guide))


def test_guide_example_specifics() -> None:
    translated = _translated()
    web = translated["services"]["web"]
    # $PORT became the fixed port, declared as `port`
    assert web["command"] == "bundle exec rails server -b 0.0.0.0 -p 3000"
    assert web["port"] == 3000
    # release became the web service's initContainer, as the guide says
    assert web["initContainer"] == {"command": "bundle exec rails db:migrate"}
    # count 2 of standard-1X -> the guide's scale
    assert web["scale"] == {"count": 2, "cpu": 250, "memory": 512}
    assert translated["resources"]["database"]["options"] == {"version": "16"}
    assert translated["environment"] == ["SECRET_KEY_BASE", "RAILS_ENV=production"]
    assert translated["timers"]["daily-report"] == {
        "schedule": "0 6 * * *",
        "command": "bin/rake reports:daily",
        "service": "worker",
    }


def test_guide_example_findings_explain_the_changes() -> None:
    tree = read_sources(FOLDER)
    result = translate(tree, load_facts_file(FOLDER / "facts.json"), OPTIONS)
    codes = [f.code for f in result.findings]
    for code in ("port-fixed", "release-init-container", "addon-mapped", "dockerfile-needed"):
        assert code in codes
    release = next(f for f in result.findings if f.code == "release-init-container")
    assert "every" in release.message and "--release-as one-off" in release.advice
    redis = next(f for f in result.findings if f.code == "addon-mapped" and "redis" in f.subject)
    assert "REDIS_URL" in redis.message
