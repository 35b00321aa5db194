"""Redis, in-process through redis-py (no CLI: the password never reaches an argv or an
environment). Connect, and inspect what an app keeps there. Copy and verify:
cutover/adapters/rediscopy.py.

Facts relied on:

* Heroku Redis (service ``heroku-redis``, now Heroku Key-Value Store, ``heroku-key-value``) 6+
  takes only TLS (``rediss://``) with a self-signed certificate the client cannot verify; Heroku
  documents turning verification off, in redis-py ``ssl_cert_reqs=None``
  (https://devcenter.heroku.com/articles/heroku-redis#connecting-in-python). cutover does that
  for those services only (:data:`SELF_SIGNED_SERVICES`, ``parse_url(..., verify=False)``) and
  says so (:func:`tls_note`): encrypted, the server not authenticated. Any other ``rediss://``
  URL (a third-party add-on: Redis Cloud, ...) is verified fully: the certificate chain against
  the system's CA bundle (``ssl.create_default_context``, which honours ``SSL_CERT_FILE``) and
  the host name. ``SSL_CERT_FILE`` replaces that bundle (OpenSSL's default verify paths; Go's
  crypto/x509 reads it too, so the convox CLI as well): a provider's own CA goes appended to a
  copy of the system bundle, never alone.
* Convox's ``redis`` resource: ``redis://<host>:6379``, no password, no database number
  (convox provider/k8s/template/resource/redis.yml.tmpl), image ``redis:4.0.10`` unless
  ``options.version`` (provider/k8s/release.go ``resourceDefaultImages``).
* Key iteration uses SCAN (https://redis.io/docs/latest/commands/scan/: a full iteration returns
  every key present for the whole iteration, some maybe twice), never KEYS, which blocks the
  server. Queue layouts: cutover/sandbox/redisseed.py names the libraries' sources.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from cutover.errors import CutoverError, InvalidInput

if TYPE_CHECKING:
    import redis

    from cutover.secrets import SecretMasker

# Heroku's own Redis add-on services, whose certificate is self-signed (module docstring).
SELF_SIGNED_SERVICES = ("heroku-redis", "heroku-key-value")
TLS_NOTE_UNVERIFIED = (
    "rediss:// (TLS): certificate not verified, as Heroku documents for Heroku Redis / Key-Value "
    "Store (self-signed; redis-py ssl_cert_reqs=None): encrypted, server not authenticated"
)
TLS_NOTE_VERIFIED = (
    "rediss:// (TLS): certificate verified against the system's CA bundle, host name checked "
    "(not Heroku Redis: only Heroku's own add-on has the self-signed certificate Heroku "
    "documents)"
)
SCAN_COUNT = 1000
SOCKET_TIMEOUT = 60.0


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    username: str | None
    password: str | None
    db: int
    tls: bool
    verify: bool = True  # TLS only: verify the certificate and host name (module docstring)

    def via(self, host: str, port: int) -> Endpoint:
        """The same server reached through a local tunnel (``convox resources proxy``)."""
        return Endpoint(host, port, self.username, self.password, self.db, self.tls, self.verify)


def verifies(service: str) -> bool:
    """Whether a ``rediss://`` URL of this Heroku add-on service gets its certificate verified:
    every service but Heroku's own (:data:`SELF_SIGNED_SERVICES`)."""
    return service not in SELF_SIGNED_SERVICES


def tls_note(endpoint: Endpoint) -> str:
    """What cutover does with the endpoint's TLS, to say before connecting (TLS endpoints)."""
    return TLS_NOTE_VERIFIED if endpoint.verify else TLS_NOTE_UNVERIFIED


def parse_url(url: str, what: str, *, verify: bool = True) -> Endpoint:
    """``redis://`` or ``rediss://[user][:password]@host[:port][/db]``; ``what`` names the URL's
    origin in errors (never the URL: it holds the password). ``verify=False`` only for Heroku's
    own Redis (:func:`verifies`)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        raise InvalidInput(f"{what} is not a valid Redis URL") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise InvalidInput(
            f"{what} is not a Redis URL (redis:// or rediss://, got {parts.scheme or 'none'}://)"
        )
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise InvalidInput(f"{what}: the database number in the URL's path is not a number")
    return Endpoint(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        verify=verify,
    )


def register(masker: SecretMasker, url: str, endpoint: Endpoint) -> None:
    masker.add(url)
    if endpoint.password:
        masker.add(endpoint.password)


def connect(endpoint: Endpoint, what: str) -> redis.Redis:
    """A client (raw bytes, no decoding), checked with PING; errors name ``what``."""
    import redis  # noqa: PLC0415 - loaded when a Redis step runs

    conn = redis.Redis(
        host=endpoint.host,
        port=endpoint.port,
        db=endpoint.db,
        username=endpoint.username,
        password=endpoint.password,
        ssl=endpoint.tls,
        # Heroku Redis: Heroku's documented ssl_cert_reqs=None (module docstring; redis-py maps
        # None to ssl.CERT_NONE, which its type hints ask for). Others: the chain against the
        # default CA bundle (no ssl_ca_certs: redis-py's ssl.create_default_context) and the name.
        ssl_cert_reqs=ssl.CERT_REQUIRED if endpoint.verify else ssl.CERT_NONE,
        ssl_check_hostname=endpoint.verify,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=15,
    )
    try:
        conn.ping()
    except redis.AuthenticationError:
        conn.close()
        raise CutoverError(f"{what}: the Redis server refused the password") from None
    except redis.RedisError as exc:
        conn.close()
        if endpoint.tls and endpoint.verify and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise CutoverError(
                f"{what}: the Redis server's TLS certificate could not be verified against the "
                "system's CA bundle (or does not name the host); cutover skips verification "
                "for Heroku Redis / Key-Value Store only, as Heroku documents",
                resolution="If this is Heroku Redis / Key-Value Store named in redis.addons "
                "under a var its add-on does not set and whose value no add-on's own var holds "
                "(cutover then cannot tell it is Heroku's), name the add-on's own var (REDIS_URL; "
                "`heroku addons` lists each add-on's vars) in redis.addons[].config_var instead. "
                "If the add-on's provider uses its own CA: SSL_CERT_FILE REPLACES the default CA "
                "bundle (for cutover and for the convox CLI, which reads it too), so append the "
                "provider's CA to a copy of the system bundle (cat "
                "/etc/ssl/certs/ca-certificates.crt provider-ca.pem > bundle.pem) and point "
                "SSL_CERT_FILE at that bundle.pem. Then `cutover run` again.",
            ) from None
        raise CutoverError(f"{what}: cannot reach the Redis server: {type(exc).__name__}") from None
    return conn


def server_error(exc: Exception) -> str:
    """The server's error text, without the command redis-py prefixes to a pipeline's error
    (redis/client.py ``annotate_exception``: "Command # N (<command and its arguments, values
    included>) of pipeline caused error: <text>"): the app's data stays out of the output."""
    text = str(exc)
    marker = " of pipeline caused error: "
    if text.startswith("Command # ") and marker in text:
        return text.split(marker, 1)[1]
    return text


@contextmanager
def failures(what: str, masker: SecretMasker | None = None, resolution: str = "") -> Iterator[None]:
    """A Redis error inside becomes a CutoverError naming ``what`` (the add-on or resource and
    the stage), with the error's class and text masked: no traceback, no URL or password."""
    import redis  # noqa: PLC0415

    try:
        yield
    except redis.RedisError as exc:
        text = server_error(exc)
        text = masker.mask(text) if masker else text
        raise CutoverError(
            f"{what}: the Redis server failed: {type(exc).__name__}: {text}",
            resolution=resolution,
        ) from None


def server_version(conn: redis.Redis) -> tuple[int, int, int]:
    info = conn.info("server")
    text = str(info.get("redis_version", "0.0.0"))
    nums = [int(n) for n in re.findall(r"\d+", text)[:3]]
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def version_text(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def scan_keys(conn: redis.Redis, count: int = SCAN_COUNT) -> Iterator[bytes]:
    """Every key of the connection's database, by SCAN, each once."""
    seen: set[bytes] = set()
    for key in conn.scan_iter(count=count):
        if key not in seen:
            seen.add(key)
            yield key


# -- queue layouts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Queue:
    library: str
    name: str  # what the library calls it ("default", "schedule", "celery", "emails:wait")
    key: str
    size: int


SIDEKIQ_SETS = ("schedule", "retry", "dead")
BULL_KINDS = ("wait", "active", "delayed", "failed", "paused", "prioritized", "waiting-children")
KOMBU_SEP = b"\x06\x16"
_BULL = re.compile(rb"^bull:([^:]+):(.+)$")


def is_queue_key(key: bytes, celery_queues: frozenset[bytes]) -> bool:
    """Whether ``key`` belongs to a recognised job library's layout (copied by ``queues``)."""
    if key in (b"queues", b"schedule", b"retry", b"dead", b"unacked", b"unacked_index"):
        return True
    if key.startswith((b"queue:", b"rq:", b"_kombu.binding.", b"bull:")):
        return True
    return key in celery_queues


def celery_queue_names(conn: redis.Redis) -> frozenset[bytes]:
    """Celery's queues: the lists named by the members of the ``_kombu.binding.<exchange>`` sets
    (kombu kombu/transport/redis.py ``_queue_bind``: SADD ``keyprefix_queue % exchange`` of
    ``routing_key + sep + pattern + sep + queue``, ``sep = '\\x06\\x16'``). The set is named
    after the exchange, not the queue: they differ for ``Queue('high', Exchange('tasks'))``."""
    names = set()
    for key in conn.scan_iter(match=b"_kombu.binding.*", count=SCAN_COUNT):
        if conn.type(key) != b"set":
            continue
        for member in _members(conn, key):
            queue = member.split(KOMBU_SEP)[-1]
            if queue:
                names.add(queue)
    return frozenset(names)


def _members(conn: redis.Redis, key: bytes) -> list[bytes]:
    """SMEMBERS as bytes (the client decodes nothing)."""
    return [m if isinstance(m, bytes) else str(m).encode() for m in conn.smembers(key)]


def find_queues(conn: redis.Redis) -> list[Queue]:
    """The job queues found, per library, with their sizes (empty ones left out)."""
    out: list[Queue] = []

    def add(library: str, name: str, key: bytes, size: int) -> None:
        if size:
            out.append(Queue(library, name, key.decode("utf-8", "replace"), size))

    kinds = {k: conn.type(k) for k in (b"queues", b"rq:queues")}
    if kinds[b"queues"] == b"set":
        for q in sorted(_members(conn, b"queues")):
            add("sidekiq", q.decode("utf-8", "replace"), b"queue:" + q, conn.llen(b"queue:" + q))
    for name in SIDEKIQ_SETS:
        key = name.encode()
        if conn.type(key) == b"zset":
            add("sidekiq", name, key, conn.zcard(key))
    if kinds[b"rq:queues"] == b"set":
        for rq_key in sorted(_members(conn, b"rq:queues")):
            name = rq_key.decode("utf-8", "replace").removeprefix("rq:queue:")
            add("rq", name, rq_key, conn.llen(rq_key) if conn.type(rq_key) == b"list" else 0)
    for q in sorted(celery_queue_names(conn)):
        add(
            "celery",
            q.decode("utf-8", "replace"),
            q,
            conn.llen(q) if conn.type(q) == b"list" else 0,
        )
    if conn.type(b"unacked") == b"hash":
        add("celery", "unacked", b"unacked", conn.hlen(b"unacked"))
    for key in sorted(conn.scan_iter(match=b"bull:*", count=SCAN_COUNT)):
        match = _BULL.match(key)
        if not match or match.group(2).decode("utf-8", "replace") not in BULL_KINDS:
            continue
        kind = conn.type(key)
        size = conn.llen(key) if kind == b"list" else conn.zcard(key) if kind == b"zset" else 0
        add("bull", match.group(1).decode() + ":" + match.group(2).decode(), key, size)
    return out


# -- inspection ---------------------------------------------------------------------------------
@dataclass
class Inventory:
    version: str
    keys: int = 0
    types: dict[str, int] = field(default_factory=dict)
    no_ttl: int = 0
    queue_keys: int = 0  # keys of the recognised layouts (what ``copy: queues`` takes)
    store_keys: int = 0  # keys outside those layouts without a TTL (Redis used as a store)
    queues: list[Queue] = field(default_factory=list)
    other_dbs: dict[str, int] = field(default_factory=dict)  # db<n> -> keys, not copied
    used_memory: int = 0

    @property
    def queued_jobs(self) -> int:
        return sum(q.size for q in self.queues)

    def summary(self) -> str:
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.types.items())) or "none"
        text = f"Redis {self.version}: {self.keys} keys ({types}), {self.no_ttl} without TTL"
        if self.queues:
            jobs = "; ".join(f"{q.library} {q.name}: {q.size}" for q in self.queues)
            text += f"; job queues holding {self.queued_jobs}: {jobs}"
        else:
            text += "; no job queue layout (Sidekiq, RQ, Celery, Bull) holds anything"
        if self.other_dbs:
            text += "; other databases NOT copied: " + ", ".join(
                f"{db} ({n} keys)" for db, n in sorted(self.other_dbs.items())
            )
        return text


def inspect(conn: redis.Redis, db: int = 0, batch: int = SCAN_COUNT) -> Inventory:
    """Key count, counts per type, keys without TTL (TYPE and PTTL pipelined per batch)."""
    inv = Inventory(version_text(server_version(conn)))
    celery = celery_queue_names(conn)
    pending: list[bytes] = []

    def flush() -> None:
        pipe = conn.pipeline(transaction=False)
        for key in pending:
            pipe.type(key)
            pipe.pttl(key)
        replies = pipe.execute()
        for i, key in enumerate(pending):
            kind, ttl = replies[2 * i], replies[2 * i + 1]
            if ttl == -2:
                continue  # expired since the scan
            name = kind.decode() if isinstance(kind, bytes) else str(kind)
            inv.keys += 1
            inv.types[name] = inv.types.get(name, 0) + 1
            inv.no_ttl += ttl == -1
            queue = is_queue_key(key, celery)
            inv.queue_keys += queue
            inv.store_keys += not queue and ttl == -1
        pending.clear()

    for key in scan_keys(conn, batch):
        pending.append(key)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    inv.queues = find_queues(conn)
    keyspace = conn.info("keyspace")
    for name, stats in keyspace.items():
        if name != f"db{db}" and isinstance(stats, dict) and stats.get("keys"):
            inv.other_dbs[str(name)] = int(stats["keys"])
    inv.used_memory = int(conn.info("memory").get("used_memory", 0))
    return inv
