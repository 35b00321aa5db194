"""cutover/adapters/redisstore.py and rediscopy.py on real redis-servers: "Heroku Redis" with TLS
(certificate not verified, as Heroku documents for its own add-on only) and a password, the
Convox resource in plain TCP (convox provider/k8s/template/resource/redis.yml.tmpl: no
password)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
from support.redisservers import RedisPair, start_pair

from cutover.adapters import rediscopy, redisstore
from cutover.errors import CutoverError, InvalidInput
from cutover.sandbox import redisseed


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisPair]:
    yield from start_pair(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def conns(pair: RedisPair) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    src = redisstore.connect(
        redisstore.parse_url(pair.heroku.url, "REDIS_URL", verify=False), "Heroku Redis"
    )
    dst = redisstore.connect(redisstore.parse_url(pair.convox.url, "convox"), "Convox redis")
    src.flushall()
    dst.flushall()
    yield src, dst
    src.close()
    dst.close()


def test_parse_url_heroku_shape_and_errors_never_show_the_url() -> None:
    ep = redisstore.parse_url("rediss://:p%40ss@ec2-1-2-3-4.compute.test:25070", "REDIS_URL")
    assert (ep.host, ep.port, ep.password, ep.username, ep.db, ep.tls) == (
        "ec2-1-2-3-4.compute.test",
        25070,
        "p@ss",
        None,
        0,
        True,
    )
    # convox redis.yml.tmpl: redis://resource-<name>.<ns>...:6379, no user, no password
    ep = redisstore.parse_url("redis://resource-redis.myapp.svc.cluster.local:6379", "x")
    assert (ep.tls, ep.password, ep.port) == (False, None, 6379)
    with pytest.raises(InvalidInput) as err:
        redisstore.parse_url("postgres://u:secretpw@h/db", "REDIS_URL")
    assert "REDIS_URL" in str(err.value) and "secretpw" not in str(err.value)


def test_tls_server_with_self_signed_cert_is_reached_and_plain_tcp_is_refused(
    pair: RedisPair,
) -> None:
    ep = redisstore.parse_url(pair.heroku.url, "REDIS_URL", verify=False)
    assert ep.tls
    conn = redisstore.connect(ep, "Heroku Redis")
    assert conn.ping()
    conn.close()
    # the same server without TLS: it speaks only TLS, as Heroku Redis 6+ does
    plain = redisstore.Endpoint(ep.host, ep.port, None, ep.password, 0, tls=False, verify=False)
    with pytest.raises(CutoverError):
        redisstore.connect(plain, "plain")
    wrong = redisstore.Endpoint(
        ep.host, ep.port, None, "not-the-password", 0, tls=True, verify=False
    )
    with pytest.raises(CutoverError, match="refused the password"):
        redisstore.connect(wrong, "Heroku Redis")


def test_only_heroku_redis_goes_unverified_a_third_party_addon_is_verified_fully(
    pair: RedisPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heroku documents a self-signed certificate (ssl_cert_reqs=None) for Heroku Redis only
    (devcenter.heroku.com/articles/heroku-redis#connecting-in-python). A third-party add-on's
    rediss:// URL keeps full verification: the chain against the default CA bundle (here
    SSL_CERT_FILE, which ssl.create_default_context reads) and the host name."""
    assert not redisstore.verifies("heroku-redis")
    assert not redisstore.verifies("heroku-key-value")
    assert redisstore.verifies("rediscloud") and redisstore.verifies("playbook")
    assert pair.ca is not None
    # a bundle without the server's CA: its certificate is as good as self-signed
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    third = redisstore.parse_url(pair.heroku.url, "REDISCLOUD_URL")
    assert third.tls and third.verify
    with pytest.raises(CutoverError, match="could not be verified") as err:
        redisstore.connect(third, "Redis Cloud (REDISCLOUD_URL)")
    assert pair.heroku.password not in f"{err.value} {err.value.resolution}"
    assert "SSL_CERT_FILE" in err.value.resolution
    # SSL_CERT_FILE replaces the default bundle (cutover's and the convox CLI's): append the
    # provider's CA to a copy of the system bundle; Heroku Redis under a hand-copied var: name
    # the add-on's own var in redis.addons
    resolution = err.value.resolution
    assert "REPLACES" in resolution and "convox CLI" in resolution, resolution
    assert "cat /etc/ssl/certs/ca-certificates.crt provider-ca.pem > bundle.pem" in resolution
    assert "redis.addons[].config_var" in resolution and "REDIS_URL" in resolution
    assert "certificate verified" in redisstore.tls_note(third)
    assert "not verified" not in redisstore.tls_note(third)
    # Heroku Redis, same server: Heroku's documented setting, and the note says so
    heroku = redisstore.parse_url(pair.heroku.url, "REDIS_URL", verify=False)
    assert "not verified" in redisstore.tls_note(heroku)
    assert "Heroku Redis" in redisstore.tls_note(heroku)
    conn = redisstore.connect(heroku, "Heroku Redis (REDIS_URL)")
    assert conn.ping()
    conn.close()
    # the CA in the bundle (a provider's CA-signed certificate, trustme): verified, reached
    monkeypatch.setenv("SSL_CERT_FILE", str(pair.ca))
    conn = redisstore.connect(third, "Redis Cloud (REDISCLOUD_URL)")
    assert conn.ping()
    kwargs = conn.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED and kwargs["ssl_check_hostname"] is True
    conn.close()
    # the name is checked: a certificate for 127.0.0.1 and localhost, reached as another name
    # resolving to the same server is refused
    monkeypatch.setattr(
        socket, "getaddrinfo", _resolve_to_loopback(socket.getaddrinfo, "redis.example.test")
    )
    renamed = redisstore.Endpoint(
        "redis.example.test", third.port, None, third.password, 0, tls=True
    )
    with pytest.raises(CutoverError, match="could not be verified"):
        redisstore.connect(renamed, "Redis Cloud (REDISCLOUD_URL)")


def _resolve_to_loopback(real: Any, name: str) -> Any:
    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == name else host, *args, **kwargs)

    return resolve


def test_inspect_counts_types_ttls_and_every_known_queue_layout(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    src, _ = conns
    redisseed.seed_sidekiq(src, queued=4, scheduled=2, retries=3)
    redisseed.seed_app_keys(src, cache_keys=5)
    redisseed.seed_rq(src, jobs=2)
    redisseed.seed_celery(src, tasks=3)
    redisseed.seed_bull(src, waiting=2, delayed=1)
    inv = redisstore.inspect(src)
    assert inv.keys == src.dbsize()
    assert inv.types["stream"] == 1 and inv.types["zset"] >= 3 and inv.types["hash"] >= 2
    assert inv.no_ttl == inv.keys - 5 - 1  # 5 cache keys and the session expire
    found = {(q.library, q.name): q.size for q in inv.queues}
    assert found[("sidekiq", "default")] == 4
    assert found[("sidekiq", "mailers")] == 1
    assert found[("sidekiq", "schedule")] == 2
    assert found[("sidekiq", "retry")] == 3
    assert found[("rq", "default")] == 2
    assert found[("celery", "celery")] == 3
    assert found[("bull", "emails:wait")] == 2
    assert found[("bull", "emails:delayed")] == 1
    assert "sidekiq default: 4" in inv.summary()


def test_inspect_names_other_databases_it_does_not_copy(
    pair: RedisPair, conns: tuple[redis.Redis, redis.Redis]
) -> None:
    src, _ = conns
    ep = redisstore.parse_url(pair.heroku.url, "REDIS_URL", verify=False)
    db3 = redisstore.connect(
        redisstore.Endpoint(ep.host, ep.port, None, ep.password, 3, True, verify=False), "db3"
    )
    db3.set("elsewhere", "1")
    inv = redisstore.inspect(src)
    assert inv.other_dbs == {"db3": 1}
    assert "db3 (1 keys)" in inv.summary()
    db3.flushdb()
    db3.close()


def _every_type(src: redis.Redis) -> None:
    redisseed.seed_sidekiq(src)
    redisseed.seed_app_keys(src, cache_keys=30)
    src.set(b"bin\x00ary", bytes(range(256)))
    src.rpush("big:list", *[f"item{i}" for i in range(2500)])


@pytest.mark.parametrize("method", ["dump", "types"])
def test_copy_all_keeps_every_type_and_ttl_and_verifies(
    method: str, conns: tuple[redis.Redis, redis.Redis]
) -> None:
    src, dst = conns
    _every_type(src)
    total = src.dbsize()
    seen: list[tuple[int, int]] = []
    result = rediscopy.copy(
        src,
        dst,
        mode="all",
        batch=7,
        total=total,
        progress=lambda d, t, b: seen.append((d, t)),
        method=method,
    )
    assert result.method == method
    assert result.keys == total == dst.dbsize()
    assert seen[-1] == (total, total)
    for key in src.scan_iter():
        assert src.type(key) == dst.type(key)
        sttl = src.pttl(key)
        if sttl > 0:
            assert 0 < dst.pttl(key) <= sttl + 1000
        else:
            assert dst.pttl(key) == -1
    assert dst.lrange("big:list", 0, -1) == src.lrange("big:list", 0, -1)
    assert dst.xrange("events") == src.xrange("events")
    assert dst.zrange("schedule", 0, -1, withscores=True) == src.zrange(
        "schedule", 0, -1, withscores=True
    )
    check = rediscopy.verify(src, dst, mode="all", batch=50)
    assert check.ok, check.mismatches
    assert check.checked == total


def test_copy_is_idempotent_a_second_run_converges(conns: tuple[redis.Redis, redis.Redis]) -> None:
    src, dst = conns
    _every_type(src)
    rediscopy.copy(src, dst, mode="all", batch=10, total=0, method="dump")
    dst.rpush("big:list", "extra")  # a half-written state on the target
    rediscopy.copy(src, dst, mode="all", batch=10, total=0, method="types")
    assert rediscopy.verify(src, dst, mode="all", batch=10).ok


def test_queues_mode_copies_only_the_queue_layouts(conns: tuple[redis.Redis, redis.Redis]) -> None:
    src, dst = conns
    redisseed.seed_sidekiq(src)
    redisseed.seed_app_keys(src)
    redisseed.seed_rq(src)
    redisseed.seed_celery(src)
    redisseed.seed_bull(src)
    inv = redisstore.inspect(src)
    result = rediscopy.copy(src, dst, mode="queues", batch=100, total=inv.queue_keys)
    assert result.keys == inv.queue_keys == dst.dbsize()
    copied = {k.decode() for k in dst.scan_iter()}
    assert {
        "queues",
        "queue:default",
        "schedule",
        "retry",
        "rq:queues",
        "celery",
        "bull:emails:wait",
    } <= copied
    assert not any(k.startswith(("cache:", "session:", "flipper:")) for k in copied)
    assert rediscopy.verify(src, dst, mode="queues", batch=100).ok


def test_verify_names_each_kind_of_mismatch(conns: tuple[redis.Redis, redis.Redis]) -> None:
    src, dst = conns
    redisseed.seed_sidekiq(src)
    redisseed.seed_app_keys(src, cache_keys=3)
    rediscopy.copy(src, dst, mode="all", batch=100, total=0)
    dst.lset("queue:default", 0, "tampered")
    dst.delete("retry")
    dst.persist("cache:views/products/1")
    dst.delete("online:users")
    dst.set("online:users", "now a string")
    dst.set("stranger", "1")
    check = rediscopy.verify(src, dst, mode="all", batch=100)
    assert not check.ok
    text = "\n".join(check.mismatches)
    assert "queue:default: list content differs" in text
    assert "retry: missing on the target" in text
    assert "cache:views/products/1: has a TTL on the source, none on the target" in text
    assert "online:users: set on the source, string on the target" in text
    assert "stranger: on the target only" in text


def test_choose_method_follows_the_rdb_version_rule() -> None:
    # Convox's default redis:4.0.10 (provider/k8s/release.go) cannot load a Redis 7 DUMP payload
    assert rediscopy.choose_method((7, 2, 4), (4, 0, 10)) == "types"
    assert rediscopy.choose_method((7, 2, 4), (7, 0, 15)) == "types"
    assert rediscopy.choose_method((7, 0, 15), (7, 0, 11)) == "dump"
    assert rediscopy.choose_method((6, 2, 0), (7, 0, 0)) == "dump"


def test_dump_payload_of_a_newer_rdb_version_is_refused_by_name(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    src, dst = conns
    src.set("k", "v")
    payload = bytearray(src.dump("k") or b"")
    payload[-10] = 250  # the RDB version bytes (2, little endian) sit before the 8-byte CRC
    with pytest.raises(redis.ResponseError, match="payload version or checksum"):
        dst.restore("k", 0, bytes(payload), replace=True)


def test_target_state_finds_keys_cutover_did_not_write(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    src, dst = conns
    redisseed.seed_sidekiq(src)
    assert rediscopy.target_state(src, dst).keys == 0
    rediscopy.copy(src, dst, mode="all", batch=100, total=0)
    state = rediscopy.target_state(src, dst)
    assert state.keys == src.dbsize() and state.foreign == []
    dst.set("sidekiq:convox:heartbeat", "1")
    assert rediscopy.target_state(src, dst).foreign == ["sidekiq:convox:heartbeat"]


def test_a_key_expiring_during_the_copy_is_counted_not_failed(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    src, dst = conns
    src.set("short", "1", px=50)
    src.set("long", "1")
    time.sleep(0.2)  # not a timing assertion: only makes sure the key is gone before the copy
    result = rediscopy.copy(src, dst, mode="all", batch=10, total=2)
    assert result.keys == 1 and dst.exists("long") and not dst.exists("short")


def test_no_password_in_any_process_argv(pair: RedisPair) -> None:
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            argv = (pid / "cmdline").read_bytes()
        except OSError:
            continue
        assert pair.heroku.password.encode() not in argv


def test_target_state_counts_a_source_key_with_other_content_as_foreign(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    """A Convox worker/web enqueuing into queue:default (a name Heroku's Redis has too) wrote
    it, not cutover: RESTORE REPLACE / DEL over it would lose that job silently. The source is
    frozen in the window, so a key cutover wrote has the source's content."""
    src, dst = conns
    redisseed.seed_sidekiq(src)
    dst.lpush("queue:default", "job enqueued on Convox before the copy")
    assert rediscopy.target_state(src, dst).foreign == ["queue:default"]
    dst.delete("queue:default")
    rediscopy.copy(src, dst, mode="all", batch=100, total=0)
    assert rediscopy.target_state(src, dst).foreign == []
    dst.incr("stat:processed")  # a Convox Sidekiq after a resume
    assert rediscopy.target_state(src, dst).foreign == ["stat:processed"]


def test_verify_fails_when_a_ttl_is_far_from_the_sources(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    src, dst = conns
    src.set("session:abc", "x", ex=3600)
    src.set("lasting", "y")
    rediscopy.copy(src, dst, mode="all", batch=10, total=0)
    assert rediscopy.verify(src, dst, mode="all", batch=10).ok
    dst.pexpire("session:abc", 5000)  # would vanish in 5 s instead of an hour
    check = rediscopy.verify(src, dst, mode="all", batch=10)
    assert not check.ok
    assert check.mismatches[0].startswith("session:abc: TTL ")


@pytest.mark.parametrize(
    ("pttl", "expected"), [(-1, 0), (-2, None), (0, None), (1, 1), (90_000, 90_000)]
)
def test_restore_ttl_treats_pttl_zero_as_expired_not_as_no_ttl(
    pttl: int, expected: int | None
) -> None:
    """PTTL is 0 when the key expires in this very millisecond (redis src/expire.c
    ttlGenericCommand clamps a negative remainder to 0 for a key not yet reaped); RESTORE's
    ttl 0 means "no expiry", so passing it on would make the key permanent on the target."""
    assert rediscopy.restore_ttl(pttl) == expected


@pytest.mark.parametrize("method", ["dump", "types"])
def test_copy_binary_fields_inf_scores_and_streams(
    method: str, conns: tuple[redis.Redis, redis.Redis]
) -> None:
    src, dst = conns
    src.zadd(b"z\xff", {b"\x00lo": float("-inf"), b"hi\xfe": float("inf"), b"mid": 1.5})
    src.hset(b"h\x00", mapping={b"\xff\x00": b"\x00\x01", b"plain": b""})
    src.xadd(b"s", {b"f\x00": b"v\xff"}, id=b"5-1")
    src.xadd(b"s", {b"g": b"w"}, id=b"7-0")
    rediscopy.copy(src, dst, mode="all", batch=2, total=0, method=method)
    assert dst.zrange(b"z\xff", 0, -1, withscores=True) == src.zrange(
        b"z\xff", 0, -1, withscores=True
    )
    assert dst.hgetall(b"h\x00") == src.hgetall(b"h\x00")
    assert dst.xrange(b"s") == src.xrange(b"s")
    assert rediscopy.verify(src, dst, mode="all", batch=2).ok


def test_celery_queues_are_read_from_the_binding_members_not_the_exchange_name(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    """kombu kombu/transport/redis.py ``_queue_bind``: SADD ``_kombu.binding.<exchange>``
    ``routing_key + sep + pattern + sep + queue`` (sep ``\\x06\\x16``). A queue bound to another
    exchange (``Queue('high', Exchange('tasks'))``) was missed, so ``copy: queues`` left its
    jobs behind without a word."""
    src, dst = conns
    src.sadd("_kombu.binding.tasks", "high\x06\x16\x06\x16high", "low\x06\x16\x06\x16low")
    src.lpush("high", "job-1", "job-2")
    src.lpush("low", "job-3")
    src.set("cache:x", "1", ex=600)
    assert redisstore.celery_queue_names(src) == frozenset({b"high", b"low"})
    assert {(q.library, q.name, q.size) for q in redisstore.find_queues(src)} == {
        ("celery", "high", 2),
        ("celery", "low", 1),
    }
    rediscopy.copy(src, dst, mode="queues", batch=10, total=0)
    assert dst.lrange("high", 0, -1) == [b"job-2", b"job-1"] and dst.llen("low") == 1
    assert not dst.exists("cache:x")


def test_a_redis_error_mid_inspection_names_the_addon_without_the_password(
    pair: RedisPair, conns: tuple[redis.Redis, redis.Redis]
) -> None:
    """A hosted Redis refusing a command (here an ACL without SCAN, as providers restrict
    commands) surfaced as "unexpected error: NoPermissionError" naming no add-on."""
    src, _ = conns
    src.set("k", "1")
    src.acl_setuser(
        "limited", enabled=True, passwords=["+limited-pw"], keys=["*"], commands=["+@all", "-scan"]
    )
    try:
        ep = redisstore.parse_url(pair.heroku.url, "REDIS_URL", verify=False)
        limited = redisstore.Endpoint(
            ep.host, ep.port, "limited", "limited-pw", 0, True, verify=False
        )
        conn = redisstore.connect(limited, "Heroku Redis (REDIS_URL)")
        with (
            pytest.raises(CutoverError) as err,
            redisstore.failures("inspecting Heroku Redis (REDIS_URL)"),
        ):
            redisstore.inspect(conn)
        conn.close()
    finally:
        src.acl_deluser("limited")
    text = str(err.value)
    assert text.startswith("inspecting Heroku Redis (REDIS_URL): the Redis server failed: ")
    assert "NoPermissionError" in text and "limited-pw" not in text
    assert ep.password and ep.password not in text


def test_an_empty_stream_is_copied_by_type_too(conns: tuple[redis.Redis, redis.Redis]) -> None:
    """XDEL (or XTRIM MAXLEN 0) leaves an empty stream that still exists (TYPE stream); the
    by-type copy wrote no entry, so no key, and verify failed on every re-run."""
    src, dst = conns
    entry = src.xadd("events", {"a": "1"})
    src.xdel("events", entry)
    assert src.type("events") == b"stream" and src.xlen("events") == 0
    result = rediscopy.copy(src, dst, mode="all", batch=10, total=1, method="types")
    assert result.keys == 1
    assert dst.type("events") == b"stream" and dst.xlen("events") == 0
    assert rediscopy.verify(src, dst, mode="all", batch=10).ok


def test_a_stream_for_a_redis_older_than_5_is_refused_by_name(
    conns: tuple[redis.Redis, redis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams came with Redis 5.0 (https://redis.io/docs/latest/commands/xadd/: "Available
    since 5.0.0"); Convox's default image is redis 4.0.10 (provider/k8s/release.go). The by-type
    MULTI failed as "ExecAbortError ... unknown command" naming neither the key nor the fix.
    The target's version is reported as 4.0.10 here (one redis-server version is installed)."""
    src, dst = conns
    src.xadd("bull:emails:events", {"event": "added"})
    src.set("plain", "1")
    real = redisstore.server_version
    monkeypatch.setattr(rediscopy, "server_version", lambda c: (4, 0, 10) if c is dst else real(c))
    with pytest.raises(CutoverError) as err:
        rediscopy.copy(src, dst, mode="all", batch=10, total=2)
    assert "bull:emails:events is a stream" in err.value.brief
    assert "4.0.10" in err.value.brief and "options.version" in err.value.resolution


def test_a_pipeline_error_does_not_carry_the_values_it_was_writing(
    conns: tuple[redis.Redis, redis.Redis],
) -> None:
    """redis-py annotates a pipeline error with the command and its arguments (redis/client.py
    ``annotate_exception``: "Command # N (HSET k f <value>) of pipeline caused error"): the
    application's data (a token in a hash) would land in the terminal and the audit log."""
    _, dst = conns
    dst.set("k", "1")
    with pytest.raises(CutoverError) as err, redisstore.failures("copying X into Y"):
        pipe = dst.pipeline(transaction=False)
        pipe.hset("k", "token", "oauth-TOKEN-VALUE")
        pipe.execute()
    text = str(err.value)
    assert "oauth-TOKEN-VALUE" not in text
    assert text.startswith("copying X into Y: the Redis server failed: ResponseError: WRONGTYPE")
