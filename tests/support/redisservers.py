"""Real redis-server daemons on loopback for the Redis tests (cutover/sandbox/redisbox.py):
"Heroku Redis" with TLS and a password, the Convox resource in plain TCP without one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from cutover.sandbox import procs, redisbox
from support.tls import write_tls_files


@dataclass
class RedisPair:
    heroku: redisbox.RedisServer
    convox: redisbox.RedisServer
    ca: Path | None = None  # the CA that issued the TLS server's certificate (trustme)

    def clients(self) -> tuple[redis.Redis, redis.Redis]:
        return redisbox.client(self.heroku), redisbox.client(self.convox)


def start_pair(folder: Path) -> Iterator[RedisPair]:
    """Start both servers under ``folder``; yield them; stop both."""
    tls_dir = procs.ensure_private_dir(folder / "tls")
    files = write_tls_files(tls_dir)
    heroku = redisbox.start(
        folder / "heroku",
        procs.free_port(),
        password=secrets.token_urlsafe(12),
        tls=redisbox.Tls(files.cert_file, files.key_file, files.ca_file),
        log=folder / "heroku.log",
    )
    try:
        convox = redisbox.start(folder / "convox", procs.free_port(), log=folder / "convox.log")
        try:
            yield RedisPair(heroku, convox, files.ca_file)
        finally:
            redisbox.stop(convox.pid)
    finally:
        redisbox.stop(heroku.pid)
