"""Redis steps (issue 14): inspect-redis and sync-redis, in the window, after the workers stopped.

* ``inspect-redis`` (after scale-down: nothing takes jobs any more) reads each Redis add-on's
  URL from its config var (``heroku config --json``, masked, never in argv) and inspects it
  (cutover/adapters/redisstore.py: SCAN, types, TTLs, the Sidekiq/RQ/Celery/Bull layouts with
  their sizes); it says what is there and what ``redis.copy`` will take, and names what is left
  behind (a queue with jobs under ``copy: none`` is a warning the operator reads in the window).
* ``sync-redis`` (after the final database sync) asks at its gate, naming what is copied and
  what is not; refuses a Convox redis holding keys the source lacks or holds with other
  contents (someone else wrote them, e.g. a Convox worker; ``--force-data`` overrides after its
  gate); copies through ``convox resources proxy``
  (cutover/adapters/rediscopy.py: DUMP/RESTORE REPLACE or by type, TTLs kept) and verifies
  (per-key checksums by type, TTLs). Copying from Heroku changes nothing there: no undo.
  Resumable: every write replaces a whole key, so a re-run after a kill converges; the guard
  accepts a target whose keys all equal the source's (what the interrupted attempt wrote: the
  source is frozen in the window).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from cutover.errors import CutoverError, InvalidInput
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.data import force_gate_question
from cutover.steps.manifests import load_manifest, manifest_path
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.redischeck import heroku_endpoint
from cutover.steps.redistargets import (
    PLAYBOOK,
    Target,
    auto_mode,
    redis_resources,
    service_of,
    targets,
    values_needed,
)

if TYPE_CHECKING:
    import redis

    from cutover.adapters.redisstore import Endpoint

_FIELDS = ("heroku.app", "convox.app", "convox.rack", "convox.source", "convox.manifest", "redis")


class RedisFound(BaseModel):
    config_var: str
    service: str
    resource: str | None = None
    version: str = ""
    tls: bool = False
    keys: int = 0
    types: dict[str, int] = Field(default_factory=dict)
    no_ttl: int = 0
    queue_keys: int = 0
    store_keys: int = 0
    queues: list[str] = Field(default_factory=list)  # "sidekiq default: 5"
    queued_jobs: int = 0
    other_dbs: dict[str, int] = Field(default_factory=dict)
    mode: str = "none"  # resolved: all, queues, none
    why: str = ""
    left_behind: str | None = None


class InspectRedisOutputs(StepOutputs):
    step_id = "inspect-redis"
    addons: list[RedisFound] = Field(default_factory=list)
    nothing: str | None = None


class RedisCopied(BaseModel):
    config_var: str
    resource: str
    mode: str
    method: str
    source_version: str
    target_version: str
    keys: int
    bytes: int
    expired: int
    checked: int
    target_keys: int
    stream_groups_skipped: list[str] = Field(default_factory=list)


class SyncRedisOutputs(StepOutputs):
    step_id = "sync-redis"
    copied: list[RedisCopied] = Field(default_factory=list)
    nothing: str | None = None


class SyncRedisProgress(Progress):
    writing: str | None = None  # the resource being written (saved before the first write)


def _left_behind(found: RedisFound) -> str | None:
    parts: list[str] = []
    if found.mode == "queues":
        rest = found.keys - found.queue_keys
        if rest:
            parts.append(f"{rest} keys outside the job layouts (cache, sessions, ...)")
    elif found.mode != "all":
        if found.queued_jobs:
            parts.append(
                f"{found.queued_jobs} jobs ({'; '.join(found.queues)}) and {found.keys} keys in all"
            )
        elif found.keys:
            parts.append(f"{found.keys} keys")
    if found.other_dbs:  # only the URL's database is copied, whatever the mode
        dbs = ", ".join(f"{db} ({n} keys)" for db, n in sorted(found.other_dbs.items()))
        parts.append(f"other database numbers on the same server: {dbs}")
    return "; ".join(parts) or None


class InspectRedis(Step):
    id = "inspect-redis"
    title = "Inspect the app's Redis (what is there, what is copied)"
    outputs = InspectRedisOutputs
    reads = (PreflightOutputs,)
    fields = _FIELDS
    in_window = True

    def describe(self, ctx: Context) -> list[str]:
        section = ctx.model.redis
        addons = cmd(ctx.heroku.argv("addons", "--json"))
        why = (
            "   (the add-on setting each redis.addons var, or holding its value: its service "
            "decides TLS verification)"
            if section.addons
            else "   (the Redis add-ons; skipped when preflight saw none)"
        )
        return [
            addons + why,
            cmd(ctx.heroku.argv("config", "--json")) + "   (each Redis add-on's URL; masked)",
            "redis-py, in-process (no argv): INFO; SCAN with TYPE+PTTL per "
            f"{section.batch} keys; the Sidekiq/RQ/Celery/Bull layouts and their sizes",
            "rediss:// URLs: TLS; the certificate not verified for Heroku Redis / Key-Value "
            "Store (self-signed: Heroku's documented setting), verified against the system's "
            "CA bundle with the host name for any other add-on",
            f"redis.copy: {section.copy_mode} (auto: all when keys outside job layouts have no "
            "TTL, else queues, else nothing); what is left behind is named",
            *(
                [
                    "redis.copy is none: NOTHING is copied, the Convox redis starts empty; "
                    "queued jobs found are named as a WARNING"
                ]
                if section.copy_mode == "none" and not section.addons
                else []
            ),
        ]

    def _targets(self, ctx: Context) -> list[Target]:
        manifest = load_manifest(manifest_path(ctx))
        if ctx.model.redis.addons:
            # the add-ons too: each named one's service decides its TLS verification; a var no
            # add-on sets is matched by value (redistargets.service_of)
            addons = ctx.heroku.addons()
            config = ctx.heroku.config() if values_needed(ctx.model.redis, addons) else None
            return targets(ctx.model.redis, addons, manifest, config)
        pre = self.read(ctx, PreflightOutputs)
        if pre is not None and not any(
            s in pre.heroku_addons for s in _redis_services()
        ):  # preflight saw no Redis add-on: no need to ask Heroku again
            return []
        return targets(ctx.model.redis, ctx.heroku.addons(), manifest)

    def apply(self, ctx: Context) -> InspectRedisOutputs:
        from cutover.adapters import redisstore  # noqa: PLC0415 - adapters load when a step runs

        found_targets = self._targets(ctx)
        if not found_targets:
            reason = "the Heroku app has no Redis add-on and the playbook lists none"
            ctx.note(f"nothing to inspect: {reason}")
            return InspectRedisOutputs(nothing=reason)
        # Outputs are saved with exclude_unset: the list is passed at construction, filled after.
        out = InspectRedisOutputs(addons=[])
        for target in [t for t in found_targets if t.resource is None]:
            # Nowhere to copy it: not inspected (no connection), but said, in the window.
            found = RedisFound(
                config_var=target.config_var,
                service=target.service,
                why="the manifest has no redis resource for it",
                left_behind="everything in it (not inspected: no Convox resource to copy to)",
            )
            ctx.note(
                f"WARNING: {target.config_var} ({target.service}): NOT copied: the manifest "
                "has no redis resource for it (add one, e.g. with `cutover translate`, or name "
                "it in redis.addons)"
            )
            out.addons.append(found)
        found_targets = [t for t in found_targets if t.resource is not None]
        config = ctx.heroku.config() if found_targets else {}
        for target in found_targets:
            endpoint = heroku_endpoint(ctx, config, target.config_var, target.service)
            if endpoint.tls:
                ctx.note(f"{target.config_var}: {redisstore.tls_note(endpoint)}")
            what = f"Heroku Redis ({target.config_var})"
            conn = redisstore.connect(endpoint, what)
            try:
                with redisstore.failures(
                    f"inspecting {what}",
                    ctx.masker,
                    "Run `cutover run` again once the Redis answers (inspecting changes nothing).",
                ):
                    inv = redisstore.inspect(conn, endpoint.db, ctx.model.redis.batch)
            finally:
                conn.close()
            found = RedisFound(
                config_var=target.config_var,
                service=target.service,
                resource=target.resource,
                version=inv.version,
                tls=endpoint.tls,
                keys=inv.keys,
                types=inv.types,
                no_ttl=inv.no_ttl,
                queue_keys=inv.queue_keys,
                store_keys=inv.store_keys,
                queues=[f"{q.library} {q.name}: {q.size}" for q in inv.queues],
                queued_jobs=inv.queued_jobs,
                other_dbs=inv.other_dbs,
            )
            if target.mode == "auto":
                found.mode, found.why = auto_mode(inv.keys, inv.queue_keys, inv.store_keys)
                found.why = f"copy: auto -> {found.mode}: {found.why}"
            else:
                found.mode, found.why = target.mode, f"copy: {target.mode} (playbook)"
            found.left_behind = _left_behind(found)
            ctx.note(f"{target.config_var} ({target.service}): {inv.summary()}")
            where = f" into the Convox resource {target.resource}" if target.resource else ""
            ctx.note(f"{target.config_var}: {found.why}; sync-redis copies {found.mode}{where}")
            if found.left_behind:
                loud = (found.queued_jobs and found.mode == "none") or found.other_dbs
                warn = "WARNING: " if loud else ""
                ctx.note(f"{warn}{target.config_var}: NOT copied: {found.left_behind}")
            out.addons.append(found)
        return out


def _redis_services() -> list[str]:
    from cutover import catalog  # noqa: PLC0415

    return [s for s, kind in catalog.addons().items() if kind.resource == "redis"]


def _copy_text(found: RedisFound) -> str:
    what = "every key" if found.mode == "all" else f"the job-library keys ({found.queue_keys})"
    jobs = f", {found.queued_jobs} jobs: {'; '.join(found.queues)}" if found.queues else ""
    text = (
        f"  - {found.config_var} (Redis {found.version}, {found.keys} keys{jobs}): {what} "
        f"with TTLs into the Convox resource {found.resource}"
    )
    if found.left_behind:
        text += f"; NOT copied: {found.left_behind}"
    return text


class SyncRedis(Step):
    id = "sync-redis"
    title = "Copy the app's Redis into the Convox redis resources"
    outputs = SyncRedisOutputs
    reads = (InspectRedisOutputs,)
    fields = _FIELDS
    gate = "Copy them now? Each Convox redis resource's keys of the same names are replaced."
    overwrites_target_data = True
    in_window = True

    def applies(self, model: Any) -> str | None:
        if model.redis.copy_mode == "none" and all(
            (a.copy_mode or "none") == "none" for a in model.redis.addons
        ):
            return "redis.copy is none (inspect-redis still names what is left behind)"
        return None

    def _found(self, ctx: Context) -> list[RedisFound]:
        inspected = self.read(ctx, InspectRedisOutputs)
        if inspected is None:
            raise CutoverError(
                "sync-redis needs inspect-redis's findings, which the state lacks",
                resolution="Run it: cutover run --from inspect-redis",
            )
        return [f for f in inspected.addons if f.mode != "none" and f.resource]

    def describe(self, ctx: Context) -> list[str]:
        try:
            names = list(redis_resources(load_manifest(manifest_path(ctx))))
        except InvalidInput:  # a plan before the manifest exists: preflight will say so
            names = []
        lines = []
        for name in names or ["<redis resource>"]:
            lines += [
                cmd(ctx.convox.argv("resources", "url", name)),
                cmd(ctx.convox.proxy_argv(name, "<free port>")),
            ]
        resolve = (
            [
                cmd(ctx.heroku.argv("addons", "--json"))
                + "   (only for an add-on whose service inspect-redis left unknown, "
                "'playbook': resolved again, as in inspect-redis)"
            ]
            if ctx.model.redis.addons
            else []
        )
        return [
            cmd(ctx.heroku.argv("config", "--json")) + "   (each Redis add-on's URL; masked)",
            *resolve,
            *lines,
            "redis-py through the proxy: PING until it answers (up to "
            f"{ctx.model.redis.timeout:g}s); refuse keys cutover did not write (absent from "
            "Heroku or with other contents there; --force-data)",
            f"per {ctx.model.redis.batch} keys: DUMP+PTTL -> RESTORE key ttl payload REPLACE when "
            "the Convox Redis is as new as Heroku's, else by type (GET/LRANGE/SMEMBERS/ZRANGE/"
            "HGETALL/XRANGE -> MULTI DEL + writes + PEXPIRE)",
            "verify: every copied key's type, content checksum and TTL (ending within a minute of "
            "Heroku's) on both sides",
        ]

    def gate_text(self, ctx: Context) -> str:
        if self.read(ctx, InspectRedisOutputs) is None:  # a plan before the window
            return (
                f"sync-redis copies what inspect-redis finds (redis.copy: "
                f"{ctx.model.redis.copy_mode}), naming what is not copied. {self.gate}"
            )
        found = self._found(ctx)
        listed = "\n".join(_copy_text(f) for f in found)
        return f"sync-redis copies, from Heroku's Redis:\n{listed}\n{self.gate}"

    def gate_question(self, ctx: Context) -> str | None:
        if self.read(ctx, InspectRedisOutputs) is not None and not self._found(ctx):
            return None  # nothing to copy: nothing to consent to
        return force_gate_question(ctx, super().gate_question(ctx))

    def apply(self, ctx: Context) -> SyncRedisOutputs:
        # Nothing to copy is done here, not in check(): it is this run's (short) work, measured
        # for the window's estimate, not an effect found already in place.
        if not self._found(ctx):
            inspected = self.read(ctx, InspectRedisOutputs)
            reason = (inspected.nothing if inspected else None) or (
                "no add-on inspect-redis found has data to copy and a resource to copy it to"
            )
            ctx.note(f"nothing to copy: {reason}")
            return SyncRedisOutputs(nothing=reason)
        earlier = self.saved(ctx, SyncRedisProgress).writing
        if earlier:
            ctx.note(
                f"resuming: an earlier attempt was writing into {earlier}; copying again "
                "(every write replaces a whole key, so the copy converges)"
            )
        config = ctx.heroku.config()
        out = SyncRedisOutputs(copied=[])
        addons: list[dict[str, Any]] | None = None
        for saved in self._found(ctx):
            found = saved
            if found.service == PLAYBOOK:
                # Unknown to inspect-redis, or a state saved before inspect-redis resolved
                # redis.addons entries (it recorded "playbook" for every one, Heroku Redis
                # included): resolved again as inspect-redis now does, so Heroku Redis's
                # self-signed certificate is not verified.
                addons = ctx.heroku.addons() if addons is None else addons
                service = service_of(addons, found.config_var, config) or PLAYBOOK
                found = found.model_copy(update={"service": service})
            out.copied.append(self._sync_one(ctx, config, found))
        return out

    def _sync_one(self, ctx: Context, config: dict[str, str], found: RedisFound) -> RedisCopied:
        from cutover.adapters import rediscopy, redisstore  # noqa: PLC0415

        assert found.resource
        section = ctx.model.redis
        source = heroku_endpoint(ctx, config, found.config_var, found.service)
        url = ctx.convox.resource_url(found.resource)
        # Reached through `convox resources proxy` on 127.0.0.1, which no certificate names: a
        # TLS resource (Convox's redis is plain TCP, redis.yml.tmpl) is not verified; the
        # tunnel goes through the convox CLI's own connection to the rack.
        target = redisstore.parse_url(url, f"convox resources url {found.resource}", verify=False)
        redisstore.register(ctx.masker, url, target)
        src = redisstore.connect(source, f"Heroku Redis ({found.config_var})")
        try:
            with ctx.convox.proxy(found.resource) as port:
                dst = self._wait_target(ctx, target.via("127.0.0.1", port), found.resource)
                try:
                    with redisstore.failures(
                        f"copying Heroku Redis ({found.config_var}) into the Convox resource "
                        f"{found.resource}",
                        ctx.masker,
                        "Run `cutover run` again: the copy starts over and converges (every "
                        "write replaces a whole key).",
                    ):
                        return self._copy(ctx, src, dst, found, rediscopy, section.batch)
                finally:
                    dst.close()
        finally:
            src.close()

    def _wait_target(self, ctx: Context, endpoint: Endpoint, resource: str) -> redis.Redis:
        from cutover.adapters import redisstore  # noqa: PLC0415

        deadline = time.monotonic() + ctx.model.redis.timeout
        while True:
            try:
                return redisstore.connect(endpoint, f"the Convox resource {resource}")
            except CutoverError:
                if time.monotonic() > deadline:
                    raise
                ctx.sleep(2.0)

    def _copy(
        self,
        ctx: Context,
        src: redis.Redis,
        dst: redis.Redis,
        found: RedisFound,
        rediscopy: Any,
        batch: int,
    ) -> RedisCopied:
        resource = found.resource
        assert resource
        state = rediscopy.target_state(src, dst)
        if state.foreign:
            listed = ", ".join(state.foreign)
            if not ctx.extras.get("force_data"):
                raise CutoverError(
                    f"the Convox resource {resource} holds keys cutover did not write "
                    f"({listed}): Heroku's {found.config_var} lacks them or holds other "
                    "contents under those names, so someone else wrote them",
                    resolution="Look at what wrote them (is the Convox app already running "
                    "workers?); after an interrupted copy, also whether Heroku's side changed "
                    "since (another app attached to the add-on?). To copy over them anyway, "
                    "replacing those keys: cutover run --force-data",
                )
            ctx.note(f"--force-data: copying into {resource} although it holds {listed}")
        ctx.save(SyncRedisProgress(writing=resource))
        ctx.note(
            f"copying {found.mode} of {found.config_var} into {resource} "
            f"({state.keys} keys there already)"
        )

        def progress(done: int, total: int, nbytes: int) -> None:
            ctx.progress(done, total, unit="keys", bytes_done=nbytes)

        total = found.keys if found.mode == "all" else found.queue_keys
        result = rediscopy.copy(
            src, dst, mode=found.mode, batch=batch, total=total, progress=progress
        )
        ctx.note(
            f"{resource}: {result.keys} keys copied ({result.method}: Heroku Redis "
            f"{result.source_version} -> Convox Redis {result.target_version}), "
            f"{result.expired} expired before they were read"
        )
        if result.stream_groups_skipped:
            ctx.note(
                f"finding: stream consumer groups not copied (by-type copy): "
                f"{', '.join(result.stream_groups_skipped)}"
            )
        forced = bool(state.foreign)  # --force-data: the keys cutover did not write stay
        check = rediscopy.verify(src, dst, mode=found.mode, batch=batch, extra_ok=forced)
        if not check.ok:
            raise CutoverError(
                f"verify: the Convox resource {resource} differs from Heroku's "
                f"{found.config_var}: " + "; ".join(check.mismatches[:5]),
                details="\n".join(check.mismatches),
                resolution="Re-run the copy: cutover run --from sync-redis",
            )
        ctx.note(f"{resource}: verified {check.checked} keys (type, checksum, TTL)")
        return RedisCopied(
            config_var=found.config_var,
            resource=resource,
            mode=found.mode,
            method=result.method,
            source_version=result.source_version,
            target_version=result.target_version,
            keys=result.keys,
            bytes=result.bytes,
            expired=result.expired,
            checked=check.checked,
            target_keys=check.target_keys,
            stream_groups_skipped=result.stream_groups_skipped,
        )
