"""Heroku's release phase -> the web service's ``initContainer`` (or a one-off per release).

Heroku runs the ``release`` command once per release, before the new dynos start (Dev
Center, "Release Phase"); Convox runs an initContainer before every container of the service
starts, so the command must be idempotent (the finding says so), or ``--release-as one-off``
records it in the playbook to run once before promote.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from cutover.translate.model import FindingLog, ReleaseAs
from cutover.translate.sources import ProcessType, ReleaseSpec

__all__ = ["plan_release"]

Convert = Callable[[str, str, str, "int | None"], str]


def plan_release(
    release: ReleaseSpec,
    web: ProcessType | None,
    services: dict[str, dict[str, Any]],
    names: dict[str, str],
    release_as: ReleaseAs,
    log: FindingLog,
    convert: Convert,
) -> tuple[str, str] | None:
    """Apply the release command; returns (command, service) when it runs as a one-off."""
    target = names[web.name] if web is not None else next(iter(services))
    converted = convert(release.command, f"release ({target})", release.source, release.line)
    if release.image is not None and web is not None and release.image != web.name:
        log.add(
            "release-image",
            "warning",
            "release",
            f'heroku.yml runs release in the "{release.image}" image; on Convox it runs '
            f"in {target}'s image",
            f"Make sure {target}'s image contains what the release command needs.",
        )
    if web is None:
        log.add(
            "release-target",
            "guess",
            "release",
            f"no web process: the release command runs with {target}",
        )
    if release_as == "one-off":
        log.add(
            "release-one-off",
            "change",
            "release",
            "the release command runs once per release, before promote (playbook "
            "`release:`), not in convox.yml",
            "By hand: `convox build --id -a APP` (prints the release id R), then "
            f"`convox run {target} --release R -a APP -- {shlex.quote(converted)}`, then "
            "`convox releases promote R -a APP`.",
        )
        return converted, target
    services[target]["initContainer"] = {"command": converted}
    replicas = services[target]["scale"].get("count", 1)
    at_once = f", {replicas} at a time" if isinstance(replicas, int) and replicas > 1 else ""
    log.add(
        "release-init-container",
        "change",
        "release",
        f"the release command became {target}'s initContainer: it runs before every "
        f"{target} container starts (each deploy, restart and scale-up{at_once}), not once "
        "per release",
        "It must be idempotent and safe to run concurrently (Rails and Django migrations "
        "lock; custom scripts may not). To run it once per release before promote instead, "
        "use --release-as one-off.",
    )
    return None
