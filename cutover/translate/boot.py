"""Variables a dyno has at boot that are not config vars, so ``set-env`` never copies them.

Heroku's dyno manager sets ``PORT`` and ``DYNO`` (Dev Center, "Dynos": local environment
variables); buildpacks add more through ``.profile.d`` scripts run before the command
(heroku-buildpack-python ``vendor/WEB_CONCURRENCY.sh`` and heroku-buildpack-nodejs
``profile/WEB_CONCURRENCY.sh`` derive ``WEB_CONCURRENCY`` from the dyno's memory; the nodejs
one also sets ``MEMORY_AVAILABLE`` and ``WEB_MEMORY``; heroku-buildpack-jvm-common
``opt/jvmcommon.sh`` sets ``JAVA_OPTS``/``JAVA_TOOL_OPTIONS`` with ``-Xmx`` for the dyno size;
the ruby buildpack sets ``GEM_PATH`` and prepends ``bin`` to ``PATH``). A command that reads one
of them on Convox reads an empty string, unless the manifest declares a default.

Convox sets its own (convox provider/k8s/helpers.go: ``APP``, ``BUILD``, ``BUILD_DESCRIPTION``,
``BUILD_GIT_SHA``, ``RELEASE``, ``SERVICE``, plus the service's ``EnvironmentDefaults`` with
``PORT``; reference §17 adds ``RACK``), and the container runtime sets ``HOME``, ``HOSTNAME`` and
``PATH``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from cutover.translate.model import FindingLog

__all__ = ["CONTAINER_SET", "CONVOX_SET", "BootVariable", "boot_defaults"]

CONVOX_SET: Final = frozenset(
    {
        "APP",
        "RACK",
        "RACK_URL",
        "RELEASE",
        "BUILD",
        "BUILD_DESCRIPTION",
        "BUILD_GIT_SHA",
        "SERVICE",
        "PORT",
    }
)
CONTAINER_SET: Final = frozenset({"HOME", "HOSTNAME", "PATH", "PWD", "USER", "SHELL"})


@dataclass(frozen=True)
class BootVariable:
    name: str
    set_by: str
    default: str | None  # "{memory}" is replaced by the service's scale.memory (MB)
    advice: str


_TABLE: Final[tuple[BootVariable, ...]] = (
    BootVariable(
        "WEB_CONCURRENCY",
        "the Python/Node.js/PHP buildpacks (from the dyno's memory)",
        "{concurrency}",
        "Tune it to the container's memory (scale.memory); the copied app env wins if it sets "
        "the name.",
    ),
    BootVariable(
        "MEMORY_AVAILABLE",
        "the Node.js buildpack (the dyno's memory in MB)",
        "{memory}",
        "Keep it equal to scale.memory.",
    ),
    BootVariable("WEB_MEMORY", "the Node.js buildpack (MB per process)", "512", ""),
    BootVariable(
        "JAVA_OPTS",
        "the JVM buildpack (-Xmx for the dyno size)",
        "-XX:MaxRAMPercentage=75.0 -Dfile.encoding=UTF-8",
        "The buildpack sized the heap per dyno; this default sizes it from the container's "
        "memory limit instead.",
    ),
    BootVariable("JAVA_TOOL_OPTIONS", "the JVM buildpack", "-Dfile.encoding=UTF-8", ""),
    BootVariable(
        "JAVA_HOME",
        "the JVM buildpack ($HOME/.jdk, heroku-buildpack-jvm-common opt/jvmcommon.sh)",
        None,
        "JDK base images set it (e.g. eclipse-temurin); otherwise add `ENV JAVA_HOME=...` to "
        "the Dockerfile, or call `java` from PATH.",
    ),
    BootVariable(
        "RAILS_ENV",
        "the Ruby buildpack (a config var it sets on the first deploy)",
        "production",
        "",
    ),
    BootVariable("RACK_ENV", "the Ruby buildpack (set on the first deploy)", "production", ""),
    BootVariable("NODE_ENV", "the Node.js buildpack (set on the first deploy)", "production", ""),
    BootVariable(
        "DYNO",
        "the dyno manager (web.1, worker.2, ...)",
        None,
        "Convox has no dyno names: use $HOSTNAME (the pod name) or $SERVICE instead, or set "
        "DYNO in the app env if a constant will do.",
    ),
    BootVariable(
        "GEM_PATH",
        "the Ruby buildpack (vendor/bundle)",
        None,
        "Set it in the Dockerfile (ENV GEM_PATH=...) where the image installs the gems.",
    ),
    BootVariable(
        "STACK",
        "the platform (heroku-22, heroku-24)",
        None,
        "Remove the dependency, or set STACK in the app env.",
    ),
)
TABLE: Final[dict[str, BootVariable]] = {v.name: v for v in _TABLE}


def _concurrency(memory: int) -> str:
    # heroku-buildpack-python WEB_CONCURRENCY.sh: 512 MB -> 2, 1 GB -> 4, larger -> 2 per vCPU;
    # the nodejs one: MEMORY_AVAILABLE / WEB_MEMORY(512). Take the smaller, at least 1.
    return str(max(1, min(memory // 256, 8)))


def _home_finding(subjects: str, log: FindingLog) -> None:
    # A dyno's HOME is /app, where the slug is unpacked (Dev Center, "Dynos": the dyno runs in
    # the app's folder, /app, which is also $HOME); a container's HOME is its user's home.
    log.add(
        "boot-home",
        "warning",
        subjects,
        "$HOME (or a leading `~`) is /app on Heroku, the app's folder; in the container it is "
        "the image user's home (/root for root), which need not hold the app",
        "Set `ENV HOME=/app` in the Dockerfile when the app is copied to /app, or use paths "
        "relative to the working directory.",
    )


def boot_defaults(
    used: Mapping[str, Iterable[str]],
    known: set[str],
    memory: int,
    log: FindingLog,
) -> dict[str, str]:
    """Defaults for the boot variables commands read (``used``: name -> subjects), and a
    finding for every name that is neither known (config var, declared, injected, defaulted,
    set by Convox or the container) nor defaultable."""
    defaults: dict[str, str] = {}
    for name in sorted(used):
        subjects = ", ".join(sorted(set(used[name])))
        if name == "HOME" and name not in known:
            _home_finding(subjects, log)
            continue
        if name in known or name in CONVOX_SET or name in CONTAINER_SET:
            continue
        boot = TABLE.get(name)
        if boot is not None and boot.default is not None:
            value = boot.default.format(memory=memory, concurrency=_concurrency(memory))
            defaults[name] = value
            log.add(
                "boot-variable-default",
                "guess",
                subjects,
                f"${name} is set at boot on Heroku by {boot.set_by}, not as a config var; "
                f"the manifest declares {name}={value}",
                boot.advice,
            )
        elif boot is not None:
            log.add(
                "boot-variable-missing",
                "warning",
                subjects,
                f"${name} is set at boot on Heroku by {boot.set_by}; Convox does not set it "
                "and set-env will not copy it",
                boot.advice,
            )
        else:
            log.add(
                "command-variable-unknown",
                "warning",
                subjects,
                f"the command reads ${name}, which no source declares (not a known config "
                "var, resource variable or default)",
                f"Set it with `convox env set {name}=... -a APP` before the first deploy, or "
                "declare it in app.json's env.",
            )
    return defaults
