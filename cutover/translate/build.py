"""How the services are built: ``build:`` from heroku.yml's Dockerfiles or the folder's root,
findings for buildpack apps (a Dockerfile to write), buildpack-only launchers in commands, and
custom domains to move at the DNS step."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Final

from cutover.translate.facts import LiveFacts
from cutover.translate.model import FindingLog, convox_name
from cutover.translate.sources import ProcessType, SourceTree

__all__ = [
    "BUILDPACK_SCRIPTS",
    "HEROKU_REGISTRY",
    "build_findings",
    "build_for",
    "buildpack_scripts",
    "domain_findings",
    "profile_findings",
    "registry_app",
    "registry_findings",
    "registry_image",
]

# `heroku container:push TYPE` tags `registry.heroku.com/APP/TYPE` (heroku CLI
# src/commands/container/push.ts: registry = `registry.${vars.host}`, getJobs(`${registry}/${app}`)
# -> `${resourceRoot}/${proc}` in src/lib/container/docker-helper.ts); `container:release` points
# the formation's docker_image at that image (src/commands/container/release.ts).
HEROKU_REGISTRY: Final = "registry.heroku.com"

# Commands that exist only inside a Heroku buildpack's slug.
BUILDPACK_SCRIPTS: Final[dict[str, str]] = {
    "heroku-php-apache2": (
        "the PHP buildpack's Apache launcher: in a Dockerfile use an Apache+PHP image "
        "(e.g. php:8.3-apache, `apache2-foreground`) listening on the service port with the "
        "document root the command names"
    ),
    "heroku-php-nginx": (
        "the PHP buildpack's Nginx+FPM launcher: in a Dockerfile run php-fpm behind nginx "
        "listening on the service port"
    ),
    "bin/start-nginx": "the nginx buildpack's launcher: install nginx in the image and start it",
    "bin/start-pgbouncer": "the pgbouncer buildpack's launcher: install pgbouncer in the image",
    "bin/start-stunnel": "the stunnel buildpack's launcher: install stunnel in the image",
}


def buildpack_scripts(log: FindingLog, service: str, command: str) -> None:
    for script, advice in BUILDPACK_SCRIPTS.items():
        if script in command:
            log.add(
                "command-buildpack-script",
                "warning",
                service,
                f"{script} exists only in a Heroku buildpack's slug",
                f"It is {advice}; change the command to match the Dockerfile.",
            )


def build_for(process: ProcessType) -> str | dict[str, str]:
    if process.dockerfile is None:
        return "."
    path = PurePosixPath(process.dockerfile.replace("\\", "/"))
    folder = str(path.parent) if str(path.parent) not in ("", ".") else "."
    if path.name == "Dockerfile":
        return folder
    return {"path": folder, "manifest": path.name}


def build_findings(tree: SourceTree, processes: list[ProcessType], log: FindingLog) -> None:
    if tree.heroku_yml is not None and tree.heroku_yml.processes:
        for dockerfile in sorted({p.dockerfile for p in processes if p.dockerfile}):
            if not (tree.root / dockerfile).is_file():
                log.add(
                    "dockerfile-missing",
                    "warning",
                    dockerfile,
                    f"{tree.heroku_yml.path} builds from {dockerfile}, which is not in the folder",
                    "Add it (or fix the path) before `convox build`.",
                )
        for process in processes:
            if process.target:
                log.add(
                    "build-target",
                    "unmapped",
                    convox_name(process.name),
                    f'heroku.yml builds the "{process.target}" stage of {process.dockerfile}; '
                    "convox.yml has no build target",
                    "Make that stage the last one of the Dockerfile, or give it a Dockerfile "
                    "of its own.",
                )
        if tree.heroku_yml.build_config:
            log.add(
                "build-config",
                "warning",
                "build",
                "heroku.yml build.config sets build-time variables: "
                + ", ".join(tree.heroku_yml.build_config),
                "Declare them as ARG in the Dockerfile and pass them with `convox build "
                "--build-args NAME=value` (or `convox deploy --build-args`).",
            )
        return
    stacks = tree.stacks
    detected = (
        ", ".join(f"{s.stack} ({s.evidence})" for s in stacks) if stacks else "no known stack"
    )
    notes: list[str] = []
    if tree.runtime_pins:
        notes.append("pin the runtime the app uses: " + ", ".join(tree.runtime_pins))
    if tree.aptfile:
        notes.append("apt-get install the packages listed in Aptfile")
    if len(stacks) > 1:
        notes.append(
            "install every runtime in one image (a multi-stage build can copy the "
            "build-only ones' output, e.g. compiled assets)"
        )
    extra = ("; " + "; ".join(notes)) if notes else ""
    profile_findings(tree, log)
    if not tree.has_dockerfile:
        log.add(
            "dockerfile-needed",
            "warning",
            "build",
            f"the app builds with Heroku buildpacks (detected: {detected}); Convox builds "
            "from a Dockerfile and there is none",
            "Write a Dockerfile at the folder's root: install dependencies, copy the app, run "
            f"the asset build, set CMD{extra}. Every service builds from it (`build: .`).",
        )
    else:
        log.add(
            "dockerfile-unverified",
            "warning",
            "build",
            f"Heroku builds this app with buildpacks (detected: {detected}), not with the "
            "folder's Dockerfile, which Convox will use",
            "Check that the Dockerfile produces what the buildpacks produce (runtime "
            f"version, assets, system packages){extra}.",
        )


_EXPORT: Final = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


def profile_findings(tree: SourceTree, log: FindingLog) -> None:
    """The app's own ``.profile`` and ``.profile.d/*.sh``: a dyno sources them with bash before
    every command (Dev Center, "Dyno Startup Behavior": "the container starts a bash shell to
    run any code found in $HOME/.profile before executing the dyno's command"; Buildpack API:
    ``.profile.d`` scripts are sourced at startup). Convox execs the command directly, so what
    they export is unset and what they run never happens."""
    scripts = [tree.root / ".profile"] if (tree.root / ".profile").is_file() else []
    if (tree.root / ".profile.d").is_dir():
        scripts += sorted(p for p in (tree.root / ".profile.d").glob("*.sh") if p.is_file())
    if not scripts:
        return
    names: list[str] = []
    for script in scripts:
        try:
            text = script.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names += [n for n in _EXPORT.findall(text) if n not in names]
    shown = ", ".join(str(p.relative_to(tree.root)) for p in scripts)
    log.add(
        "profile-script",
        "warning",
        shown,
        f"Heroku sources {shown} with bash before every dyno's command; Convox runs the "
        "command without sourcing anything"
        + (f", so what it sets is missing: {', '.join(names)}" if names else ""),
        "Move constant exports to the Dockerfile (ENV) or the app env (`convox env set`); "
        "for what must be computed at start, make each command `bash -c '. ./.profile && "
        'exec COMMAND\'` (or an entrypoint script that sources it and ends with exec "$@").',
    )


def domain_findings(facts: LiveFacts | None, log: FindingLog) -> None:
    if facts is None:
        return
    for domain in facts.custom_domains:
        if domain.hostname.startswith("*."):
            log.add(
                "custom-domain-wildcard",
                "warning",
                domain.hostname,
                "wildcard custom domain on Heroku; convox.yml leaves it out",
                "Check that the rack can route and certify a wildcard name before the "
                "cutover; cutover moves one record, so move this one yourself.",
            )
            continue
        log.add(
            "custom-domain",
            "info",
            domain.hostname,
            "custom domain on Heroku"
            + (f" (CNAME {domain.cname})" if domain.cname else "")
            + "; convox.yml leaves it out until the DNS step",
            f"At cutover add `domain: {domain.hostname}` to the web service and point the "
            "record at the rack router (cutover init writes it as the playbook's dns.record).",
        )


def registry_app(tree: SourceTree, facts: LiveFacts | None) -> str | None:
    """The Heroku app whose released images the services reuse: an app on the ``container``
    stack that does not build from heroku.yml (it pushes prebuilt images), else None."""
    if facts is None or facts.stack != "container" or not facts.app:
        return None
    if tree.heroku_yml is not None and tree.heroku_yml.processes:
        return None
    return facts.app


def registry_image(app: str, process_type: str) -> str:
    return f"{HEROKU_REGISTRY}/{app}/{process_type}:latest"


def registry_findings(app: str, log: FindingLog) -> None:
    log.add(
        "container-image",
        "change",
        "build",
        f"the app pushes prebuilt images to Heroku (container stack): every service reuses its "
        f"released image ({HEROKU_REGISTRY}/{app}/TYPE) with `image:` instead of `build:`",
        "The rack needs pull access; no credentials go in convox.yml. Better: copy the images "
        "to a registry you own (`heroku container:login`, `docker pull`, `docker tag`, "
        "`docker push`) and change `image:`, because Heroku's registry goes with the Heroku "
        f"app. Otherwise `convox registries add {HEROKU_REGISTRY} _ TOKEN` with a long-lived "
        "token from `heroku authorizations:create` (the token is the password; keep it out of "
        "shell history). Pin the digest you released (`docker inspect`) instead of :latest.",
    )
