"""Data shaped like what apps keep in Heroku Redis, for the sandbox and the tests.

Layouts, from the libraries' sources:

* Sidekiq (sidekiq/sidekiq lib/sidekiq/client.rb ``raw_push``): an enqueued job is
  ``SADD queues <q>`` + ``LPUSH queue:<q> <json>``; a job with ``at`` is ``ZADD schedule <at>
  <json>``; a failed job waiting for a retry is in the ``retry`` zset (lib/sidekiq/job_retry.rb),
  scored by the next attempt's time. The job JSON holds ``class``, ``args``, ``queue``, ``jid``
  (12 random bytes in hex), ``retry``, ``created_at``, ``enqueued_at``.
* RQ (rq/rq rq/queue.py ``redis_queues_keys = 'rq:queues'``, ``redis_queue_namespace_prefix =
  'rq:queue:'``; rq/job.py ``rq:job:<id>`` hashes): a list of job ids per queue.
* Celery (celery/kombu kombu/transport/redis.py: the queue is a list named like the queue,
  ``_kombu.binding.<exchange>`` a set of routes ending in the queue's name, ``unacked`` a hash
  and ``unacked_index`` a zset).
* Bull (OptimalBits/bull lib/queue.js, keys ``bull:<queue>:<kind>``: ``wait`` and ``active``
  lists, ``delayed``/``failed``/``completed`` zsets, ``id`` counter, one hash per job).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis


def _sidekiq_job(cls: str, args: list[object], queue: str, now: float) -> dict[str, object]:
    return {
        "class": cls,
        "args": args,
        "queue": queue,
        "retry": True,
        "jid": secrets.token_hex(12),
        "created_at": now,
        "enqueued_at": now,
    }


def seed_sidekiq(
    conn: redis.Redis, *, queued: int = 5, scheduled: int = 3, retries: int = 2
) -> None:
    now = time.time()
    pipe = conn.pipeline(transaction=False)
    pipe.sadd("queues", "default", "mailers")
    for i in range(queued):
        job = _sidekiq_job("ReceiptMailer", [1000 + i, "receipt"], "default", now)
        pipe.lpush("queue:default", json.dumps(job))
    pipe.lpush("queue:mailers", json.dumps(_sidekiq_job("WelcomeMailer", [7], "mailers", now)))
    for i in range(scheduled):
        job = _sidekiq_job("ReminderJob", [i], "default", now)
        job.pop("enqueued_at")
        pipe.zadd("schedule", {json.dumps(job): now + 3600 * (i + 1)})
    for i in range(retries):
        job = _sidekiq_job("ChargeJob", [500 + i], "default", now - 600)
        job.update(
            error_class="Stripe::APIConnectionError",
            error_message="Could not connect to Stripe",
            failed_at=now - 300,
            retry_count=i,
        )
        pipe.zadd("retry", {json.dumps(job): now + 60 * (i + 1)})
    pipe.set("stat:processed", 18234)
    pipe.set("stat:failed", 12)
    pipe.execute()


def seed_app_keys(conn: redis.Redis, *, cache_keys: int = 20) -> None:
    """What a Rails app keeps beside its jobs: a cache (keys with a TTL), sessions (hash with a
    TTL), a feature-flag hash and a leaderboard zset without TTL, a stream of events."""
    pipe = conn.pipeline(transaction=False)
    for i in range(cache_keys):
        pipe.set(f"cache:views/products/{i}", f"<li>product {i}</li>" * 4, ex=3600 + i)
    pipe.hset("session:8f2c", mapping={"user_id": "42", "csrf": secrets.token_hex(8)})
    pipe.expire("session:8f2c", 86400)
    pipe.hset("flipper:features", mapping={"new_checkout": "true", "dark_mode": "false"})
    pipe.zadd("leaderboard:weekly", {"alice": 120, "bob": 95, "carol": 77})
    pipe.sadd("online:users", "42", "43", "44")
    pipe.rpush("recent:searches", "boots", "hats", "gloves")
    pipe.xadd("events", {"type": "signup", "user": "42"})
    pipe.xadd("events", {"type": "order", "user": "43"})
    pipe.execute()


def seed_rq(conn: redis.Redis, *, jobs: int = 3) -> None:
    pipe = conn.pipeline(transaction=False)
    pipe.sadd("rq:queues", "rq:queue:default")
    for _ in range(jobs):
        job_id = secrets.token_hex(16)
        pipe.hset(f"rq:job:{job_id}", mapping={"status": "queued", "origin": "default"})
        pipe.rpush("rq:queue:default", job_id)
    pipe.execute()


def seed_celery(conn: redis.Redis, *, tasks: int = 3) -> None:
    pipe = conn.pipeline(transaction=False)
    pipe.sadd("_kombu.binding.celery", "celery\x06\x16\x06\x16celery")
    for i in range(tasks):
        body = {"headers": {"task": "app.tasks.send", "id": secrets.token_hex(16)}, "n": i}
        pipe.lpush("celery", json.dumps(body))
    pipe.execute()


def seed_bull(conn: redis.Redis, *, waiting: int = 2, delayed: int = 1) -> None:
    pipe = conn.pipeline(transaction=False)
    now_ms = int(time.time() * 1000)
    for i in range(1, waiting + delayed + 1):
        pipe.hset(f"bull:emails:{i}", mapping={"name": "__default__", "data": json.dumps({"n": i})})
    for i in range(1, waiting + 1):
        pipe.lpush("bull:emails:wait", str(i))
    for i in range(waiting + 1, waiting + delayed + 1):
        pipe.zadd("bull:emails:delayed", {str(i): now_ms + 60000})
    pipe.set("bull:emails:id", waiting + delayed)
    pipe.execute()


def seed_sandbox(conn: redis.Redis) -> None:
    """The sandbox's "Heroku Redis": a Sidekiq app at the window (work still queued)."""
    seed_sidekiq(conn)
    seed_app_keys(conn)
