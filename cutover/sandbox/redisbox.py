"""Real redis-server daemons for the sandbox and the tests: "Heroku Redis" and the Convox
``redis`` resource.

* Heroku's side (:func:`start` with ``tls``): Heroku Redis 6+ takes TLS connections only
  (``rediss://`` URLs) and presents a certificate that is self-signed from the client's point of
  view (https://devcenter.heroku.com/articles/heroku-redis#connecting-in-python: clients set
  ``ssl_cert_reqs=None``, i.e. do not verify it). The sandbox's is issued by the sandbox CA, which
  cutover does not trust for Redis, so the same documented client setting is exercised. It has a
  password (``requirepass``), written to the 0600 config file, never into argv; its URL has the
  shape Heroku hands out in ``REDIS_URL``: ``rediss://:<password>@<host>:<port>``.
* The Convox ``redis`` resource (no ``tls``, no password): the URL shape of
  provider/k8s/template/resource/redis.yml.tmpl (convox 9e02452):
  ``redis://resource-<name>.<ns>...:6379`` with ``USER`` and ``PASS`` empty and no database.

Both bind 127.0.0.1, keep nothing on disk (``save ""``, no AOF) and are stopped by pid
(cutover/sandbox/procs.py).
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cutover.errors import CutoverError
from cutover.sandbox import procs

if TYPE_CHECKING:
    import redis

REDIS_SERVER = "redis-server"


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class RedisServer:
    pid: int
    port: int
    password: str
    tls: bool

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://:{quote(self.password, safe='')}@127.0.0.1:{self.port}"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"


def config_text(folder: Path, port: int, password: str, tls: Tls | None) -> str:
    """redis.conf (Redis 7.0's directives, redis.conf of the Debian package)."""
    lines = [
        "bind 127.0.0.1",
        "daemonize no",
        f"dir {folder}",
        'save ""',
        "appendonly no",
        "protected-mode yes",
        "databases 16",
    ]
    if tls is None:
        lines.append(f"port {port}")
    else:
        lines += [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {tls.cert}",
            f"tls-key-file {tls.key}",
            f"tls-ca-cert-file {tls.ca}",
            "tls-auth-clients no",
        ]
    if password:
        lines.append(f"requirepass {password}")
    return "\n".join(lines) + "\n"


def start(
    folder: Path, port: int, *, password: str = "", tls: Tls | None = None, log: Path
) -> RedisServer:
    """Start redis-server with its config (0600) in ``folder`` (0700); wait until it answers."""
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        raise CutoverError(
            "sandbox up: redis-server is not installed (the sandbox's Heroku Redis and the "
            "Convox redis resource are real redis-servers)",
            resolution="Install it (Debian: apt-get install redis-server; "
            "scripts/system-deps.sh does it), then run `cutover sandbox up` again.",
        )
    procs.ensure_private_dir(folder)
    conf = folder / "redis.conf"
    procs.write_private(conf, config_text(folder, port, password, tls))
    pid = procs.spawn_daemon([binary, str(conf)], log_path=log)
    server = RedisServer(pid, port, password, tls is not None)
    wait_ready(server, 30.0, log)
    return server


def client(server: RedisServer) -> redis.Redis:
    """A redis-py client for ``server`` (TLS not verified, as Heroku documents)."""
    import redis  # noqa: PLC0415 - the sandbox extra

    return redis.Redis(
        host="127.0.0.1",
        port=server.port,
        password=server.password or None,
        ssl=server.tls,
        ssl_cert_reqs=ssl.CERT_NONE,  # Heroku's documented ssl_cert_reqs=None
        socket_timeout=5,
    )


def wait_ready(server: RedisServer, timeout: float, log: Path) -> None:
    import redis  # noqa: PLC0415 - the sandbox extra

    procs.wait_for_port("127.0.0.1", server.port, timeout, pid=server.pid, log_path=log)
    deadline = time.monotonic() + timeout
    conn = client(server)
    try:
        while True:
            try:
                if conn.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
    finally:
        conn.close()


def stop(pid: int) -> None:
    procs.stop_pid(pid)


def start_sandbox(
    folder: Path, data: dict[str, Any], cert: Path, key: Path, ca: Path, say: Any
) -> str:
    """``sandbox up``: both servers, pids and ports recorded in ``data`` (sandbox.json; ``down``
    stops every recorded pid); "Heroku Redis" seeded (cutover/sandbox/redisseed.py). Returns
    the Heroku Redis URL, which the emulator hands out as the app's REDIS_URL."""
    from cutover.sandbox import redisseed  # noqa: PLC0415

    ports, logs = data["ports"], folder / "logs"
    procs.ensure_private_dir(folder / "redis")  # 0700 too, not only the servers' folders in it
    say(f"Redis for Heroku (TLS, seeded like a Sidekiq app) on 127.0.0.1:{ports['redis_heroku']}")
    heroku = start(
        folder / "redis" / "heroku",
        ports["redis_heroku"],
        password=secrets.token_urlsafe(18),
        tls=Tls(cert, key, ca),
        log=logs / "redis-heroku.log",
    )
    data["pids"]["redis_heroku"] = heroku.pid
    conn = client(heroku)
    try:
        redisseed.seed_sandbox(conn)
    finally:
        conn.close()
    say(f"Redis for the Convox resource on 127.0.0.1:{ports['redis_convox']}")
    convox = start(
        folder / "redis" / "convox", ports["redis_convox"], log=logs / "redis-convox.log"
    )
    data["pids"]["redis_convox"] = convox.pid
    return heroku.url
