"""Copy the keys of one Redis database into another, with their TTLs, and verify the copy.

Two paths (:func:`choose_method`):

* ``dump``: pipelined ``DUMP`` + ``PTTL`` on the source, ``RESTORE key ttl payload REPLACE`` on
  the target (https://redis.io/docs/latest/commands/restore/: the TTL argument is relative
  milliseconds, 0 for none; REPLACE makes a re-run idempotent). A DUMP payload carries the
  source's RDB version, and RESTORE refuses a payload of a newer RDB version than the server's
  ("DUMP payload version or checksum are wrong"), so this path is taken only when the target
  runs the same Redis version as the source or a newer one. Convox's default image is redis
  4.0.10 while Heroku runs 6 or 7: then the other path.
* ``types``: read each key by its type (GET, LRANGE, SMEMBERS, ZRANGE WITHSCORES, HGETALL,
  XRANGE) and write it in one MULTI (DEL, then RPUSH / SADD / ZADD / HSET / SET / XADD with the
  source's entry ids), then PEXPIRE with the remaining TTL. Stream consumer groups are not
  copied (named in the result). Idempotent as well (DEL first).

Verification (:func:`verify`) compares, per key copied, a digest computed by type on both sides
(the same function reads both: sorted members for sets and hashes, order kept for lists,
member+score for zsets, id+fields for streams), whether a TTL is set where the source had one,
and that the two TTLs end within :data:`TTL_SLACK_MS` of each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cutover.adapters.redisstore import (
    SCAN_COUNT,
    celery_queue_names,
    is_queue_key,
    scan_keys,
    server_error,
    server_version,
    version_text,
)
from cutover.errors import CutoverError

if TYPE_CHECKING:
    import redis

MODES = ("all", "queues")
# A copied key's TTL is the source's PTTL read just before the write (RESTORE / PEXPIRE take
# relative milliseconds), so both expire within one batch's round trip of each other; verify
# allows this much difference (a minute: generous for one batch) and names anything further.
TTL_SLACK_MS = 60_000
EMPTY_STREAM_GROUP = "cutover-empty-stream"
Progress = Callable[[int, int, int], None]  # keys done, keys total, bytes done


def choose_method(source: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    """``dump`` when the target can load the source's DUMP payloads (same or newer major.minor:
    RDB versions change with minor releases, e.g. 7.0 -> 10, 7.2 -> 11), else ``types``."""
    return "dump" if target[:2] >= source[:2] else "types"


def selected_keys(conn: redis.Redis, mode: str, batch: int = SCAN_COUNT) -> Iterator[bytes]:
    if mode not in MODES:
        raise ValueError(f"unknown copy mode {mode!r}")
    celery = celery_queue_names(conn) if mode == "queues" else frozenset()
    for key in scan_keys(conn, batch):
        if mode == "all" or is_queue_key(key, celery):
            yield key


def restore_ttl(pttl: int) -> int | None:
    """The TTL to give a copied key (RESTORE's / PEXPIRE's relative milliseconds, 0 for none), or
    None when the key must not be written: -2 (gone) and 0, which PTTL returns for a key expiring
    in this very millisecond (redis src/expire.c ttlGenericCommand clamps the remainder to 0
    before the key is reaped); passed on, 0 would mean "no expiry" and make it permanent."""
    if pttl == -1:
        return 0
    if pttl <= 0:
        return None
    return pttl


def _chunks(keys: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- the target's guard -------------------------------------------------------------------------
@dataclass
class TargetState:
    keys: int
    foreign: list[str]  # target keys the source does not have (cutover did not put there)


def target_state(src: redis.Redis, dst: redis.Redis, sample: int = 10) -> TargetState:
    """What the target holds. cutover copies only source keys, and the source is frozen in the
    window (workers stopped), so a key cutover wrote has the source's type and content. A target
    key the source lacks, or whose content differs from the source's (a Convox worker or web
    process enqueued into ``queue:default`` or bumped ``stat:processed``), was written by someone
    else: a copy would replace it and lose what it holds. A target whose keys all equal the
    source's holds only what an earlier (interrupted) copy wrote: safe to overwrite."""
    keys = 0
    foreign: list[str] = []
    for chunk in _chunks(scan_keys(dst), SCAN_COUNT):
        keys += len(chunk)
        theirs, ours = _snapshot(src, chunk), _snapshot(dst, chunk)
        for key, (skind, sdig, _), (tkind, tdig, _) in zip(chunk, theirs, ours, strict=True):
            if tkind == b"none":
                continue  # expired on the target since the scan
            if (skind, sdig) != (tkind, tdig) and len(foreign) < sample:
                foreign.append(key.decode("utf-8", "replace"))
    return TargetState(keys, foreign)


# -- copy -----------------------------------------------------------------------------------------
@dataclass
class CopyResult:
    method: str
    source_version: str
    target_version: str
    keys: int = 0
    bytes: int = 0
    expired: int = 0  # selected, but gone (expired or deleted) before they were read
    stream_groups_skipped: list[str] = field(default_factory=list)


def copy(
    src: redis.Redis,
    dst: redis.Redis,
    *,
    mode: str,
    batch: int,
    total: int,
    progress: Progress | None = None,
    method: str | None = None,
) -> CopyResult:
    """Copy the keys ``mode`` selects, ``batch`` keys per pipelined round trip. ``total`` is
    the expected count (from the inspection) for progress. ``method`` forces a path."""
    sv, tv = server_version(src), server_version(dst)
    chosen = method or choose_method(sv, tv)
    result = CopyResult(chosen, version_text(sv), version_text(tv))
    for chunk in _chunks(selected_keys(src, mode), batch):
        if chosen == "dump":
            _copy_dump(src, dst, chunk, result)
        else:
            _copy_types(src, dst, chunk, result, streams=tv >= (5, 0, 0))
        if progress:
            progress(
                result.keys + result.expired, max(total, result.keys + result.expired), result.bytes
            )
    return result


def _copy_dump(src: redis.Redis, dst: redis.Redis, keys: list[bytes], result: CopyResult) -> None:
    import redis as redislib  # noqa: PLC0415

    pipe = src.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    replies = pipe.execute()
    out = dst.pipeline(transaction=False)
    restored: list[bytes] = []
    for i, key in enumerate(keys):
        payload, ttl = replies[2 * i], restore_ttl(int(replies[2 * i + 1]))
        if payload is None or ttl is None:
            result.expired += 1
            continue
        out.restore(key, ttl, payload, replace=True)
        restored.append(key)
        result.bytes += len(payload)
    try:
        out.execute()
    except redislib.ResponseError as exc:
        raise CutoverError(
            f"RESTORE refused by the target Redis {result.target_version}: {server_error(exc)}",
            resolution="Copy by type instead (the target may be older than the source): "
            "this happens when both report the same version but differ; report it.",
        ) from None
    result.keys += len(restored)


def _read(pipe: Any, key: bytes, kind: bytes) -> None:
    if kind == b"string":
        pipe.get(key)
    elif kind == b"list":
        pipe.lrange(key, 0, -1)
    elif kind == b"set":
        pipe.smembers(key)
    elif kind == b"zset":
        pipe.zrange(key, 0, -1, withscores=True)
    elif kind == b"hash":
        pipe.hgetall(key)
    elif kind == b"stream":
        pipe.xrange(key, "-", "+")
    else:
        raise CutoverError(f"Redis key {key!r} has type {kind.decode()}, which cutover cannot copy")


def _write(pipe: Any, key: bytes, kind: bytes, value: Any) -> int:
    """Queue the writes that rebuild ``key``; returns the bytes written (roughly)."""
    pipe.delete(key)
    size = 0
    if kind == b"string":
        pipe.set(key, value)
        size = len(value)
    elif kind == b"list":
        for start in range(0, len(value), 1000):
            pipe.rpush(key, *value[start : start + 1000])
        size = sum(len(v) for v in value)
    elif kind == b"set":
        members = list(value)
        for start in range(0, len(members), 1000):
            pipe.sadd(key, *members[start : start + 1000])
        size = sum(len(v) for v in members)
    elif kind == b"zset":
        for start in range(0, len(value), 1000):
            pipe.zadd(key, dict(value[start : start + 1000]))
        size = sum(len(m) + 8 for m, _ in value)
    elif kind == b"hash":
        items = list(value.items())
        for start in range(0, len(items), 1000):
            pipe.hset(key, mapping=dict(items[start : start + 1000]))
        size = sum(len(k) + len(v) for k, v in items)
    elif kind == b"stream":
        for entry_id, fields in value:
            pipe.xadd(key, fields, id=entry_id)
            size += len(entry_id) + sum(len(k) + len(v) for k, v in fields.items())
        if not value:  # an empty stream still exists (XDEL/XTRIM keep the key): make one
            # XGROUP CREATE ... MKSTREAM creates it empty (https://redis.io/docs/latest/commands/
            # xgroup-create/); the group, cutover's own, is destroyed in the same MULTI.
            pipe.xgroup_create(key, EMPTY_STREAM_GROUP, id="$", mkstream=True)
            pipe.xgroup_destroy(key, EMPTY_STREAM_GROUP)
    return size


def _copy_types(
    src: redis.Redis, dst: redis.Redis, keys: list[bytes], result: CopyResult, *, streams: bool
) -> None:
    """``streams``: the target has them (Redis 5.0+, https://redis.io/docs/latest/commands/xadd/
    "Available since 5.0.0"; Convox's default image is 4.0.10)."""
    pipe = src.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = pipe.execute()
    if not streams and b"stream" in kinds:
        name = keys[kinds.index(b"stream")].decode("utf-8", "replace")
        raise CutoverError(
            f"{name} is a stream, which the target Redis {result.target_version} cannot hold "
            "(streams need Redis 5.0 or newer)",
            resolution="Give the Convox redis resource Heroku's version (options.version in "
            f"convox.yml, e.g. {result.source_version.rsplit('.', 1)[0]!r}).",
        )
    pipe = src.pipeline(transaction=False)
    live = [(k, t) for k, t in zip(keys, kinds, strict=True) if t != b"none"]
    result.expired += len(keys) - len(live)
    for key, kind in live:
        _read(pipe, key, kind)
        pipe.pttl(key)
        if kind == b"stream":
            pipe.xinfo_groups(key)
    replies = iter(pipe.execute())
    out = dst.pipeline(transaction=True)
    for key, kind in live:
        value, ttl = next(replies), restore_ttl(int(next(replies)))
        if kind == b"stream" and next(replies):
            result.stream_groups_skipped.append(key.decode("utf-8", "replace"))
        if ttl is None or (value is None and kind == b"string"):
            result.expired += 1
            continue
        result.bytes += _write(out, key, kind, value)
        if ttl:
            out.pexpire(key, ttl)
        result.keys += 1
    out.execute()


# -- verify ---------------------------------------------------------------------------------------
def digest(kind: bytes, value: Any) -> str:
    """A content checksum by type, equal for equal contents whatever the server's encoding."""
    h = hashlib.sha256(kind + b"\0")
    if kind == b"string":
        h.update(value or b"")
    elif kind == b"list":
        for item in value:
            h.update(len(item).to_bytes(8, "big") + item)
    elif kind == b"set":
        for item in sorted(value):
            h.update(len(item).to_bytes(8, "big") + item)
    elif kind == b"zset":
        for member, score in sorted(value):
            h.update(len(member).to_bytes(8, "big") + member + repr(float(score)).encode())
    elif kind == b"hash":
        for k, v in sorted(value.items()):
            h.update(len(k).to_bytes(8, "big") + k + len(v).to_bytes(8, "big") + v)
    elif kind == b"stream":
        for entry_id, fields in value:
            h.update(entry_id + b"\0")
            for k, v in fields.items():
                h.update(len(k).to_bytes(8, "big") + k + len(v).to_bytes(8, "big") + v)
    return h.hexdigest()


@dataclass
class VerifyResult:
    checked: int = 0
    expired: int = 0  # gone from the source since the copy (a TTL ran out): not compared
    target_keys: int = 0
    mismatches: list[str] = field(default_factory=list)  # "<key>: <what differs>"

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _snapshot(conn: redis.Redis, keys: list[bytes]) -> list[tuple[bytes, str, int]]:
    """(type, digest, pttl) per key; type b'none' when it does not exist."""
    pipe = conn.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = pipe.execute()
    pipe = conn.pipeline(transaction=False)
    for key, kind in zip(keys, kinds, strict=True):
        if kind != b"none":
            _read(pipe, key, kind)
            pipe.pttl(key)
    replies = iter(pipe.execute())
    out = []
    for kind in kinds:
        if kind == b"none":
            out.append((kind, "", -2))
        else:
            value, ttl = next(replies), next(replies)
            out.append((kind, digest(kind, value), int(ttl)))
    return out


def verify(
    src: redis.Redis,
    dst: redis.Redis,
    *,
    mode: str,
    batch: int,
    limit: int = 20,
    extra_ok: bool = False,
) -> VerifyResult:
    """Every selected source key is on the target with the same type and content, a TTL where
    the source has one and none where it has none; the target holds no other lasting key
    (unless ``extra_ok``: the operator forced the copy over them). Mismatches are named (the
    first ``limit``)."""
    result = VerifyResult()

    def miss(text: str) -> None:
        if len(result.mismatches) < limit:
            result.mismatches.append(text)
        elif len(result.mismatches) == limit:
            result.mismatches.append("... (more)")

    copied: set[bytes] = set()
    for chunk in _chunks(selected_keys(src, mode), batch):
        theirs, ours = _snapshot(src, chunk), _snapshot(dst, chunk)
        for key, (skind, sdig, sttl), (tkind, tdig, tttl) in zip(chunk, theirs, ours, strict=True):
            name = key.decode("utf-8", "replace")
            # gone from the source; or its TTL ran out on both sides between the two reads
            if skind == b"none" or (tkind == b"none" and sttl >= 0 and src.exists(key) == 0):
                result.expired += 1
                continue
            copied.add(key)
            result.checked += 1
            if tkind == b"none":
                miss(f"{name}: missing on the target")
            elif tkind != skind:
                miss(f"{name}: {skind.decode()} on the source, {tkind.decode()} on the target")
            elif tdig != sdig:
                miss(f"{name}: {skind.decode()} content differs (checksum)")
            elif sttl >= 0 and tttl < 0:
                miss(f"{name}: has a TTL on the source, none on the target")
            elif sttl == -1 and tttl >= 0:
                miss(f"{name}: has no TTL on the source, one on the target")
            elif sttl >= 0 and abs(tttl - sttl) > TTL_SLACK_MS:
                miss(f"{name}: TTL {tttl} ms on the target, {sttl} ms on the source")
    for key in scan_keys(dst):
        result.target_keys += 1
        if extra_ok:
            continue
        # a key with a TTL may be one the source just let expire: only lasting keys count
        if key not in copied and src.exists(key) == 0 and dst.pttl(key) == -1:
            miss(f"{key.decode('utf-8', 'replace')}: on the target only (not from the source)")
    return result
