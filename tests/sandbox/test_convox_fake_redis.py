"""The convox stand-in's ``redis`` resources (cutover/sandbox/convox_fake/provision_redis.py) on a
real redis-server: the URL shape of provider/k8s/template/resource/redis.yml.tmpl (no password,
no database), pending until ``resource_start``, created empty, the sandbox's limits named."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.sandbox import procs, redisbox
from cutover.sandbox.convox_fake import provision, provision_redis
from cutover.sandbox.convox_fake.manifest import ResourceDef
from cutover.sandbox.convox_fake.output import CliError


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redisbox.RedisServer]:
    folder = tmp_path_factory.mktemp("redis")
    running = redisbox.start(folder / "r", procs.free_port(), log=folder / "redis.log")
    yield running
    redisbox.stop(running.pid)


def rack_state(server: redisbox.RedisServer) -> dict[str, Any]:
    return {
        "resource_backends": {"redis": {"host": "127.0.0.1", "port": server.port}},
        "timings": {"resource_start": 30.0},
    }


def test_a_redis_resource_is_pending_with_the_templates_url_shape(
    server: redisbox.RedisServer,
) -> None:
    state = rack_state(server)
    installed = provision_redis.server_version(state["resource_backends"]["redis"])
    major_minor = ".".join(installed.split(".")[:2])
    resource = ResourceDef("cache", "redis", {"version": major_minor})
    record = provision_redis.plan_record(state, {"resources": {}}, resource, major_minor)
    assert record["status"] == "pending"
    assert record["url"] == f"redis://127.0.0.1:{server.port}"  # USER/PASS/NAME empty
    assert record["ready_at"] > time.time() + 20  # resource_start from the rack's timings


def test_the_default_version_is_refused_as_a_sandbox_limit(server: redisbox.RedisServer) -> None:
    state = rack_state(server)
    resource = ResourceDef("cache", "redis")
    with pytest.raises(CliError) as err:
        provision_redis.plan_record(
            state, {"resources": {}}, resource, provision.declared_version(resource)
        )
    text = str(err.value)
    assert "sandbox limit (not a Convox one)" in text
    assert "4.0.10 (the default, no options.version)" in text  # release.go's default image


def test_a_second_redis_resource_is_refused(server: redisbox.RedisServer) -> None:
    state = rack_state(server)
    version = provision_redis.server_version(state["resource_backends"]["redis"])
    app = {"resources": {"cache": {"type": "redis"}}}
    with pytest.raises(CliError, match="second redis resource"):
        provision_redis.plan_record(state, app, ResourceDef("queue", "redis"), version)


def test_the_new_resource_starts_empty(server: redisbox.RedisServer) -> None:
    conn = redisbox.client(server)
    conn.set("left-from-an-earlier-sandbox-run", "1")
    provision_redis.create({"host": "127.0.0.1", "port": server.port})
    assert conn.dbsize() == 0
    conn.close()
