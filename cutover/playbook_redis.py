"""The playbook's ``redis:`` section (issue 14): what cutover copies from the app's Redis add-ons
into the Convox ``redis`` resources, in the window (steps inspect-redis and sync-redis,
cutover/steps/redis.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CopyMode = Literal["auto", "all", "queues", "none"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisAddon(_Model):
    config_var: str = Field(
        description="The Heroku config var holding the add-on's URL (e.g. REDIS_URL, "
        "REDISCLOUD_URL); read through `heroku config`, never shown."
    )
    resource: str | None = Field(
        default=None,
        description="The Convox resource it goes to; default: the manifest's resource whose "
        "<NAME>_URL (or alias) is this config var, as `cutover translate` names them, else "
        "(for a lone add-on) the manifest's only redis resource. Two add-ons never share one "
        "resource.",
    )
    copy_mode: CopyMode | None = Field(
        default=None,
        alias="copy",
        description="This add-on's copy mode (default: redis.copy).",
    )


class RedisSection(_Model):
    copy_mode: CopyMode = Field(
        default="auto",
        alias="copy",
        description="What sync-redis copies, in the window after the workers stopped: 'all' "
        "keys with their TTLs; 'queues' only the keys of the job libraries inspect-redis "
        "recognises (Sidekiq queues and schedule/retry/dead sets, RQ, Celery, Bull); 'none' "
        "nothing (inspect-redis still says what is left behind); 'auto' decides from what "
        "inspect-redis finds: 'all' when any key outside the job layouts has no TTL (Redis "
        "used as a store), else 'queues' when the job layouts hold anything, else nothing "
        "(only expiring cache keys).",
    )
    batch: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Keys per pipelined round trip (DUMP/RESTORE or the by-type copy).",
    )
    timeout: float = Field(
        default=600,
        gt=0,
        description="Seconds to wait for each Convox redis resource to answer through "
        "`convox resources proxy` before sync-redis fails.",
    )
    addons: list[RedisAddon] = Field(
        default_factory=list,
        description="Which Redis add-ons to copy and where; empty: every Redis add-on of the "
        "Heroku app (`heroku addons --json`, add-ons cutover's catalog maps to a redis "
        "resource), each to its resource in the manifest.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
