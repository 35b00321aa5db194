"""The playbook's redis: section and which add-on goes to which resource (no server needed).

Facts: `cutover translate` names a resource after the add-on's URL var (REDISCLOUD_URL ->
`rediscloud`) or links it under an alias `name:VAR` (cutover/translate/resources.py); the
catalog (cutover/catalog/addons.json) says which add-on services become a redis resource."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cutover.engine.plan_command import plan
from cutover.engine.run import RunOptions
from cutover.errors import InvalidInput
from cutover.playbook import load_playbook
from cutover.playbook_redis import RedisSection
from cutover.secrets import SecretMasker
from cutover.steps.redis import RedisFound, _copy_text, _left_behind
from cutover.steps.redistargets import (
    auto_mode,
    redis_addons,
    resource_for,
    targets,
    url_var,
    values_needed,
)
from cutover.ui import Ui

BASE = "heroku: {app: myapp}\nconvox: {app: myapp}\n"


def load(tmp_path: Path, extra: str) -> Any:
    path = tmp_path / "cutover.yml"
    path.write_text(BASE + extra, encoding="utf-8")
    return load_playbook(path)


def test_defaults_and_every_field(tmp_path: Path) -> None:
    section = load(tmp_path, "").model.redis
    assert (section.copy_mode, section.batch, section.timeout, section.addons) == (
        "auto",
        500,
        600,
        [],
    )
    section = load(
        tmp_path,
        "redis:\n  copy: queues\n  batch: 50\n  addons:\n"
        "    - {config_var: REDISCLOUD_URL, resource: cache, copy: all}\n",
    ).model.redis
    assert section.copy_mode == "queues" and section.batch == 50
    assert (section.addons[0].config_var, section.addons[0].copy_mode) == ("REDISCLOUD_URL", "all")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("redis:\n  copy: everything\n", "redis.copy"),
        ("redis:\n  batch: 0\n", "redis.batch"),
        ("redis:\n  flush: true\n", "redis.flush: unknown field"),
        ("redis:\n  addons: [{resource: cache}]\n", "redis.addons.0.config_var"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, extra: str, named: str) -> None:
    with pytest.raises(InvalidInput) as err:
        load(tmp_path, extra)
    assert named in err.value.details


def test_every_field_has_a_description() -> None:
    for model in (RedisSection, RedisSection.model_fields["addons"].annotation):
        fields = getattr(model, "model_fields", None)
        if fields is None:  # list[RedisAddon]
            fields = model.__args__[0].model_fields  # type: ignore[union-attr]
        assert all(f.description for f in fields.values())


MANIFEST: dict[str, Any] = {
    "resources": {
        "database": {"type": "postgres"},
        "redis": {"type": "redis"},
        "cache": {"type": "elasticache-redis"},
    },
    "services": {"web": {"resources": ["database", "redis", "cache:REDISCLOUD_URL"]}},
}


def test_resource_by_alias_then_by_name_then_the_only_one() -> None:
    assert resource_for(MANIFEST, "REDISCLOUD_URL") == "cache"  # the link alias
    assert resource_for(MANIFEST, "REDIS_URL") == "redis"  # <NAME>_URL
    assert resource_for(MANIFEST, "OPENREDIS_URL") is None  # two candidates: not guessed
    only = {"resources": {"kv": {"type": "redis"}}, "services": {}}
    assert resource_for(only, "REDISTOGO_URL") == "kv"
    assert resource_for({"resources": {}, "services": {}}, "REDIS_URL") is None


def test_redis_addons_from_heroku_addons_json() -> None:
    addons = [
        {"addon_service": {"name": "heroku-redis"}, "config_vars": ["REDIS_TLS_URL", "REDIS_URL"]},
        {"addon_service": {"name": "heroku-postgresql"}, "config_vars": ["DATABASE_URL"]},
        {"addon_service": {"name": "rediscloud"}, "config_vars": []},  # the catalog's default
        {"addon_service": {"name": "papertrail"}, "config_vars": ["PAPERTRAIL_API_TOKEN"]},
    ]
    assert redis_addons(addons) == [("heroku-redis", "REDIS_URL"), ("rediscloud", "REDISCLOUD_URL")]
    assert url_var(["REDIS_TLS_URL"]) == "REDIS_TLS_URL"
    found = targets(RedisSection(), addons, MANIFEST)
    assert [(t.config_var, t.resource, t.service, t.mode) for t in found] == [
        ("REDIS_URL", "redis", "heroku-redis", "auto"),
        ("REDISCLOUD_URL", "cache", "rediscloud", "auto"),
    ]


def test_playbook_addons_replace_the_lookup_and_a_wrong_resource_is_named() -> None:
    section = RedisSection.model_validate(
        {"copy": "none", "addons": [{"config_var": "REDIS_URL", "copy": "queues"}]}
    )
    assert [(t.resource, t.mode) for t in targets(section, None, MANIFEST)] == [("redis", "queues")]
    bad = RedisSection.model_validate({"addons": [{"config_var": "X_URL", "resource": "database"}]})
    with pytest.raises(InvalidInput, match=r"'database' .* is not a redis resource"):
        targets(bad, None, MANIFEST)


def test_a_playbook_named_addon_gets_its_service_for_the_tls_decision() -> None:
    """Only Heroku's own Redis goes unverified (adapters/redisstore.py): an add-on named in
    redis.addons gets the service that sets its var, else "playbook" (verified)."""
    from cutover.adapters.redisstore import verifies  # noqa: PLC0415

    addons = [
        {"addon_service": {"name": "heroku-redis"}, "config_vars": ["REDIS_TLS_URL", "REDIS_URL"]},
        {"addon_service": {"name": "rediscloud"}, "config_vars": ["REDISCLOUD_URL"]},
    ]
    section = RedisSection.model_validate(
        {
            "addons": [
                {"config_var": "REDIS_URL", "resource": "redis"},
                {"config_var": "REDISCLOUD_URL", "resource": "cache"},
                {"config_var": "OWN_REDIS_URL", "resource": "kv", "copy": "none"},
            ]
        }
    )
    manifest = {**MANIFEST, "resources": {**MANIFEST["resources"], "kv": {"type": "redis"}}}
    found = targets(section, addons, manifest)
    assert [(t.config_var, t.service) for t in found] == [
        ("REDIS_URL", "heroku-redis"),
        ("REDISCLOUD_URL", "rediscloud"),
        ("OWN_REDIS_URL", "playbook"),
    ]
    assert [verifies(t.service) for t in found] == [False, True, True]
    assert [t.service for t in targets(section, None, manifest)] == ["playbook"] * 3


@pytest.mark.parametrize(
    ("counts", "mode"),
    [
        ((100, 10, 3), "all"),  # lasting keys outside the job layouts: Redis as a store
        ((100, 10, 0), "queues"),  # only jobs last; the rest is cache
        ((100, 0, 0), "none"),  # cache only
        ((0, 0, 0), "none"),
    ],
)
def test_auto_mode(counts: tuple[int, int, int], mode: str) -> None:
    assert auto_mode(*counts)[0] == mode


def test_plan_describes_both_steps_and_says_when_nothing_is_copied(tmp_path: Path) -> None:
    (tmp_path / "convox.yml").write_text(
        "resources:\n  cache:\n    type: redis\nservices:\n  web:\n    port: 3000\n",
        encoding="utf-8",
    )
    book = tmp_path / "cutover.yml"
    book.write_text(BASE + "redis:\n  copy: none\n  batch: 77\n", encoding="utf-8")
    out = io.StringIO()
    code = plan(
        book, RunOptions(), Ui(Console(file=out, width=400), SecretMasker(), Console(file=out))
    )
    text = out.getvalue()
    assert code == 0, text
    assert "inspect-redis" in text and "SCAN with TYPE+PTTL per 77 keys" in text
    assert "redis.copy is none: NOTHING is copied" in text
    assert "sync-redis" in text and "redis.copy is none (inspect-redis still names" in text
    book.write_text(BASE + "redis:\n  copy: queues\n", encoding="utf-8")
    out.truncate(0)
    plan(book, RunOptions(), Ui(Console(file=out, width=400), SecretMasker(), Console(file=out)))
    text = out.getvalue()
    assert "convox resources proxy cache" in text
    assert "RESTORE key ttl payload REPLACE" in text


def test_two_addons_never_share_the_only_redis_resource() -> None:
    """Two add-ons copied into one resource would merge their keys (and the second copy would
    meet the first's keys as 'written by someone else'): the only-resource fallback is for a
    lone add-on; another one gets no resource and is named as not copied."""
    only = {"resources": {"redis": {"type": "redis"}}, "services": {}}
    addons = [
        {"addon_service": {"name": "heroku-redis"}, "config_vars": ["REDIS_URL"]},
        {"addon_service": {"name": "rediscloud"}, "config_vars": ["REDISCLOUD_URL"]},
    ]
    found = targets(RedisSection(), addons, only)
    assert [(t.config_var, t.resource) for t in found] == [
        ("REDIS_URL", "redis"),
        ("REDISCLOUD_URL", None),
    ]
    kv = {"resources": {"kv": {"type": "redis"}}, "services": {}}
    assert [t.resource for t in targets(RedisSection(), addons, kv)] == [None, None]
    assert [t.resource for t in targets(RedisSection(), addons[1:], kv)] == ["kv"]
    both = RedisSection.model_validate(
        {
            "addons": [
                {"config_var": "REDIS_URL"},
                {"config_var": "REDISCLOUD_URL", "resource": "redis"},
            ]
        }
    )
    with pytest.raises(InvalidInput, match=r"REDIS_URL and REDISCLOUD_URL .* resource 'redis'"):
        targets(both, None, only)


@pytest.mark.parametrize("mode", ["all", "queues", "none"])
def test_keys_in_other_database_numbers_are_left_behind_loudly(mode: str) -> None:
    """An app selecting db 1 on the same URL (Sidekiq's own db, a cache db): only the URL's
    database is copied, so the rest must be in what is NOT copied (the gate reads it), not
    only in the middle of the inspection's summary line."""
    found = RedisFound(
        config_var="REDIS_URL",
        service="heroku-redis",
        resource="redis",
        version="7.0.15",
        keys=10,
        queue_keys=4,
        mode=mode,
        other_dbs={"db1": 40, "db3": 2},
    )
    text = _left_behind(found) or ""
    assert "db1 (40 keys), db3 (2 keys)" in text and "other database numbers" in text
    found.left_behind = text
    assert "NOT copied:" in _copy_text(found) and "db1 (40 keys)" in _copy_text(found)


HEROKU_REDIS = [
    {"addon_service": {"name": "heroku-redis"}, "config_vars": ["REDIS_TLS_URL", "REDIS_URL"]},
    {"addon_service": {"name": "rediscloud"}, "config_vars": ["REDISCLOUD_URL"]},
]
CONFIG = {
    "REDIS_URL": "rediss://:secret-one@ec2-1.compute.amazonaws.com:6380",
    "REDIS_TLS_URL": "rediss://:secret-one@ec2-1.compute.amazonaws.com:6380",
    "REDISCLOUD_URL": "redis://default:secret-two@redis-1.redislabs.com:1234",
}


def test_a_var_copied_by_hand_takes_the_service_of_the_addon_whose_value_it_holds() -> None:
    """SIDEKIQ_REDIS_URL = REDIS_URL's value (copied by hand): Heroku Redis, found by value,
    so its self-signed certificate is handled as Heroku documents; a value no add-on's var
    holds stays "playbook" (verified)."""
    from cutover.adapters.redisstore import verifies  # noqa: PLC0415

    section = RedisSection.model_validate(
        {
            "addons": [
                {"config_var": "SIDEKIQ_REDIS_URL", "resource": "redis"},
                {"config_var": "OWN_REDIS_URL", "resource": "cache"},
            ]
        }
    )
    config = {
        **CONFIG,
        "SIDEKIQ_REDIS_URL": CONFIG["REDIS_URL"],
        "OWN_REDIS_URL": "redis://:x@elsewhere:6379",
    }
    assert values_needed(section, HEROKU_REDIS)
    found = targets(section, HEROKU_REDIS, MANIFEST, config)
    assert [(t.config_var, t.service) for t in found] == [
        ("SIDEKIQ_REDIS_URL", "heroku-redis"),
        ("OWN_REDIS_URL", "playbook"),
    ]
    assert [verifies(t.service) for t in found] == [False, True]
    # without the values (or with the var unset), unknown as before
    assert [t.service for t in targets(section, HEROKU_REDIS, MANIFEST)] == ["playbook"] * 2
    # an add-on's own var: no values needed
    own = RedisSection.model_validate({"addons": [{"config_var": "REDIS_URL"}]})
    assert not values_needed(own, HEROKU_REDIS)


def test_the_plan_shows_heroku_addons_when_redis_addons_is_set(tmp_path: Path) -> None:
    """inspect-redis runs `heroku addons --json` with redis.addons set too (each entry's
    service); sync-redis may run it (an old state's "playbook") and runs `heroku config`."""
    (tmp_path / "convox.yml").write_text(
        "resources:\n  cache:\n    type: redis\nservices:\n  web:\n    port: 3000\n",
        encoding="utf-8",
    )
    book = tmp_path / "cutover.yml"
    book.write_text(
        BASE + "redis:\n  addons:\n    - {config_var: REDIS_URL, resource: cache}\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    code = plan(
        book, RunOptions(), Ui(Console(file=out, width=400), SecretMasker(), Console(file=out))
    )
    text = out.getvalue()
    assert code == 0, text
    inspect = text[text.index("inspect-redis") :]
    sync = inspect[inspect.index("sync-redis") :]
    inspect = inspect[: inspect.index("sync-redis")]
    assert "heroku addons --json" in inspect, inspect
    assert "heroku addons --json" in sync and "heroku config --json" in sync, sync


class _Heroku:
    def __init__(self, config: dict[str, str]) -> None:
        self.values, self.asked = config, 0

    def config(self) -> dict[str, str]:
        return dict(self.values)

    def addons(self) -> list[dict[str, Any]]:
        self.asked += 1
        return HEROKU_REDIS


@pytest.mark.parametrize(
    ("var", "service"),
    [
        ("REDIS_URL", "heroku-redis"),  # Heroku Redis's own var
        ("SIDEKIQ_REDIS_URL", "heroku-redis"),  # a copy of its value
        ("REDISCLOUD_URL", "rediscloud"),
        ("OWN_REDIS_URL", "playbook"),  # unknown: stays verified
    ],
)
def test_sync_redis_resolves_a_state_saved_with_playbook_as_inspect_redis_now_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, service: str
) -> None:
    """States saved before inspect-redis resolved redis.addons entries recorded "playbook" for
    every one: sync-redis resolves it again, so Heroku Redis's self-signed certificate is not
    verified in the window (adapters/redisstore.py verifies)."""
    from cutover.adapters.redisstore import verifies  # noqa: PLC0415
    from cutover.engine.plan import new_state  # noqa: PLC0415
    from cutover.state import Status  # noqa: PLC0415
    from cutover.steps.base import Context  # noqa: PLC0415
    from cutover.steps.redis import RedisCopied, SyncRedis  # noqa: PLC0415

    book = load(tmp_path, f"redis:\n  addons:\n    - {{config_var: {var}, resource: redis}}\n")
    state = new_state(book)
    step = state.step("inspect-redis")
    step.status = Status.DONE
    step.outputs = {
        "addons": [{"config_var": var, "service": "playbook", "resource": "redis", "mode": "all"}]
    }
    config = {**CONFIG, "SIDEKIQ_REDIS_URL": CONFIG["REDIS_URL"], "OWN_REDIS_URL": "redis://o"}
    heroku = _Heroku(config)
    seen: list[tuple[str, bool]] = []

    def sync_one(self: SyncRedis, ctx: Context, cfg: dict[str, str], found: Any) -> RedisCopied:
        seen.append((found.service, verifies(found.service)))
        return RedisCopied.model_construct(config_var=found.config_var)

    monkeypatch.setattr(SyncRedis, "_sync_one", sync_one)
    ctx = Context(
        playbook=book,
        state=state,
        runner=None,  # type: ignore[arg-type]
        masker=SecretMasker(),
        heroku=heroku,  # type: ignore[arg-type]
        convox=None,  # type: ignore[arg-type]
        postgres=None,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        dns=None,
        reporter=None,  # type: ignore[arg-type]
        work_dir=tmp_path,
    )
    SyncRedis().apply(ctx)
    assert seen == [(service, service != "heroku-redis")]
    assert heroku.asked == 1
    # a state whose inspect-redis resolved the service: no question to Heroku
    step.outputs["addons"][0]["service"] = "heroku-redis"
    seen.clear()
    SyncRedis().apply(ctx)
    assert seen == [("heroku-redis", False)] and heroku.asked == 1
