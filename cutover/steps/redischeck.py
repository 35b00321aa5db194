"""Preflight's look at the app's Redis (issue 14): a playbook or manifest mistake about Redis, or
an add-on cutover cannot reach, is found before anything is created, not by inspect-redis in the
window.

What it checks, for each add-on :func:`cutover.steps.redistargets.targets` resolves (the same
resolution inspect-redis uses, so the two never disagree): ``redis.addons[].resource`` names a
redis resource of the manifest and no two add-ons share one (InvalidInput naming the field); the
add-on's URL config var exists on the Heroku app (``heroku config --json``: values go to the
masker, never out) and parses; the server answers PING through TLS as Heroku documents
(redisstore.connect; the certificate verified unless the add-on is Heroku's own Redis, which is
self-signed) and says its version. An add-on without a redis resource is a WARNING here
and again in the window. The Convox side does not exist yet (create-app makes it): sync-redis
checks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cutover.errors import CutoverError, InvalidInput
from cutover.steps.base import Context
from cutover.steps.redistargets import Target, targets, values_needed

if TYPE_CHECKING:
    from cutover.adapters.redisstore import Endpoint


def heroku_endpoint(ctx: Context, config: dict[str, str], var: str, service: str) -> Endpoint:
    """The add-on's endpoint from its config var (the URL registered with the masker). Its TLS
    certificate is verified unless ``service`` is Heroku's own Redis (redisstore.verifies)."""
    from cutover.adapters import redisstore  # noqa: PLC0415 - adapters load when a step runs

    url = config.get(var)
    if not url:
        raise CutoverError(
            f"the Heroku app has no config var {var} (a Redis add-on's URL)",
            resolution="Check `heroku addons` and redis.addons in the playbook.",
        )
    endpoint = redisstore.parse_url(
        url, f"Heroku config var {var}", verify=redisstore.verifies(service)
    )
    redisstore.register(ctx.masker, url, endpoint)
    return endpoint


def preflight_redis(
    ctx: Context, manifest: dict[str, Any], addons: list[dict[str, Any]]
) -> list[Target]:
    """Resolve and reach every Redis add-on (module docstring); returns the targets.

    Raises InvalidInput (a playbook field or config var named) or CutoverError (unreachable,
    password refused: the add-on named, never its URL)."""
    from cutover.adapters import redisstore  # noqa: PLC0415 - adapters load when a step runs

    # a redis.addons var no add-on sets: its add-on found by value (redistargets.service_of)
    config = ctx.heroku.config() if values_needed(ctx.model.redis, addons) else None
    found = targets(ctx.model.redis, addons, manifest, config)
    reachable = [t for t in found if t.resource is not None]
    for target in found:
        if target.resource is None:
            ctx.note(
                f"WARNING: Redis {target.config_var} ({target.service}): the manifest has no "
                "redis resource for it, so sync-redis will NOT copy it (add one, e.g. with "
                "`cutover translate`, or name it in redis.addons[].resource)"
            )
    if not reachable:
        return found
    config = config if config is not None else ctx.heroku.config()
    for target in reachable:
        if target.config_var not in config:
            field = "redis.addons[].config_var" if ctx.model.redis.addons else "the add-on"
            raise InvalidInput(
                f"{field}: the Heroku app has no config var {target.config_var} "
                f"(config vars ending in _URL: "
                f"{', '.join(sorted(v for v in config if v.endswith('_URL'))) or 'none'})"
            )
        endpoint = heroku_endpoint(ctx, config, target.config_var, target.service)
        what = f"Heroku Redis ({target.config_var})"
        if endpoint.tls:
            ctx.note(
                f"Redis {target.config_var} ({target.service}): {redisstore.tls_note(endpoint)}"
            )
        conn = redisstore.connect(endpoint, what)
        try:
            with redisstore.failures(f"preflight of {what}", ctx.masker):
                version = ".".join(map(str, redisstore.server_version(conn)))
        finally:
            conn.close()
        ctx.note(
            f"Redis {target.config_var} ({target.service}): redis {version}"
            f"{', TLS' if endpoint.tls else ''}, reached; copied to the Convox resource "
            f"{target.resource} in the window (redis.copy: {target.mode})"
        )
    return found


__all__ = ["heroku_endpoint", "preflight_redis"]
