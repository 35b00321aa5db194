"""The process types a language buildpack declares when the app has no Procfile.

A buildpack's ``bin/release`` prints ``default_process_types``; Heroku runs them unless the
Procfile names the type (Dev Center, "Buildpack API": bin/release). What each official
buildpack declares, read from its ``bin/release`` / release helper:

- heroku-buildpack-ruby (lib/language_pack/rails4.rb, rack.rb): Rails 4+
  ``bin/rails server -p ${PORT:-5000} -e $RAILS_ENV``; Rack ``bundle exec rackup config.ru
  -p ${PORT:-5000}``;
- heroku-buildpack-nodejs (bin/release): ``npm start`` when package.json has a start script
  or the app has server.js (npm's own default for ``start``);
- heroku-buildpack-php (bin/release): ``heroku-php-apache2``;
- heroku-buildpack-go (bin/release): ``bin/NAME``, NAME the last element of go.mod's module;
- heroku-buildpack-gradle / heroku-buildpack-java: Spring Boot apps get
  ``java -Dserver.port=$PORT $JAVA_OPTS -jar build/libs/*.jar`` (gradle) or ``target/*.jar``;
- heroku-buildpack-elixir (hashnuo, bin/release): ``mix run --no-halt``.

heroku-buildpack-python declares none: a Python app without a Procfile runs nothing on Heroku.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cutover.errors import InvalidInput
from cutover.translate.model import FindingLog, input_error
from cutover.translate.sources import ProcessType, ReleaseSpec, SourceTree, parse_procfile

__all__ = ["default_processes", "process_manager", "procfile_elsewhere"]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _node_start(root: Path) -> bool:
    try:
        data = json.loads(_text(root / "package.json") or "{}")
    except ValueError:
        return False
    scripts = data.get("scripts") if isinstance(data, dict) else None
    has_start = isinstance(scripts, dict) and isinstance(scripts.get("start"), str)
    return has_start or (root / "server.js").is_file()


def _ruby(root: Path) -> str | None:
    gemfile = _text(root / "Gemfile")
    if not gemfile:
        return None
    rails = re.search(r"""^\s*gem\s+["']rails["']""", gemfile, re.M)
    if rails and (root / "bin" / "rails").is_file():
        return "bin/rails server -p ${PORT:-5000} -e $RAILS_ENV"
    if (root / "config.ru").is_file():
        return "bundle exec rackup config.ru -p ${PORT:-5000}"
    return None


def _node(root: Path) -> str | None:
    return "npm start" if (root / "package.json").is_file() and _node_start(root) else None


def _php(root: Path) -> str | None:
    found = (root / "composer.json").is_file() or (root / "index.php").is_file()
    return "heroku-php-apache2" if found else None


def _go(root: Path) -> str | None:
    module = re.search(r"^module\s+(\S+)", _text(root / "go.mod"), re.M)
    return f"bin/{module.group(1).rstrip('/').rsplit('/', 1)[-1]}" if module else None


def _jvm(root: Path) -> str | None:
    for build_file, jar in (
        ("build.gradle", "build/libs/*.jar"),
        ("build.gradle.kts", "build/libs/*.jar"),
        ("pom.xml", "target/*.jar"),
    ):
        if "spring-boot" in _text(root / build_file):
            return f"java -Dserver.port=$PORT $JAVA_OPTS -jar {jar}"
    return None


def _elixir(root: Path) -> str | None:
    return "mix run --no-halt" if (root / "mix.exs").is_file() else None


# In Heroku's detection order (ruby, nodejs, ..., php, go, java/gradle), elixir last.
_DETECTORS: tuple[tuple[Callable[[Path], str | None], str], ...] = (
    (_ruby, "heroku-buildpack-ruby"),
    (_node, "heroku-buildpack-nodejs"),
    (_php, "heroku-buildpack-php"),
    (_go, "heroku-buildpack-go"),
    (_jvm, "heroku-buildpack-java/gradle"),
    (_elixir, "heroku-buildpack-elixir"),
)


def _defaults(root: Path) -> tuple[str, str] | None:
    """(command, buildpack) of the web process the first matching buildpack declares."""
    for detect, buildpack in _DETECTORS:
        command = detect(root)
        if command is not None:
            return command, buildpack
    return None


def default_processes(root: Path) -> list[ProcessType] | None:
    """The web process a buildpack would run for this folder, or None."""
    found = _defaults(root)
    if found is None:
        return None
    command, buildpack = found
    return [ProcessType("web", command, source=f"{buildpack} default process type")]


_MANAGERS = re.compile(
    r"(?:^|[\s;&|])(?:bundle exec |npx |poetry run |pipenv run )?"
    r"(foreman|honcho|forego|overmind|hivemind|nf|node-foreman)\s+start\b(.*)"
)


def process_manager(command: str, root: Path, service: str, log: FindingLog) -> None:
    """A process manager as the command (``foreman start -f Procfile.web``): the nested
    Procfile's processes share one container and each binds a port of its own (foreman and
    honcho give process N the port ``$PORT + 100 * N``; only the first gets ``$PORT``)."""
    match = _MANAGERS.search(command)
    if match is None:
        return
    tool, rest = match.group(1), match.group(2)
    nested = re.search(r"(?:-f|--procfile)[ =](\S+)", rest)
    path = nested.group(1) if nested else "Procfile"
    names: list[str] = []
    if (root / path).is_file() and path != "Procfile":
        try:
            processes, _ = parse_procfile((root / path).read_text(encoding="utf-8"), path)
            names = [p.name for p in processes]
        except InvalidInput:
            names = []
    listed = f" ({', '.join(names)})" if names else ""
    log.add(
        "process-manager",
        "warning",
        service,
        f"the command runs {tool}, which starts every process of {path}{listed} in one "
        "container; each binds its own port ($PORT + 100 per process) and a crash of one "
        "does not restart the container",
        f"Make each process of {path} a Convox service of its own (its line as `command:`); "
        "only the one serving HTTP gets `port:`. Keep the process manager only if the "
        "processes must share a filesystem.",
    )


# Buildpacks that make Heroku read another Procfile: heroku-buildpack-multi-procfile copies
# the file named by the PROCFILE config var to /app/Procfile at build time; monorepo
# buildpacks (heroku-buildpack-monorepo) make the APP_BASE folder the app's root.
_POINTERS: Final = (("PROCFILE", "{value}"), ("APP_BASE", "{value}/Procfile"))


def procfile_elsewhere(
    tree: SourceTree, config_names: list[str], log: FindingLog
) -> tuple[list[ProcessType], ReleaseSpec | None] | None:
    """The Procfile Heroku really reads when PROCFILE/APP_BASE point elsewhere, if the sources
    say where (app.json ``env`` values); a finding when only the live app has the pointer."""
    declared = {e.name: e.value for e in (tree.app_json.env if tree.app_json else [])}
    buildpacks = " ".join(tree.app_json.buildpacks if tree.app_json else [])
    for name, pattern in _POINTERS:
        value = declared.get(name)
        if value:
            path = pattern.format(value=value.strip("/"))
            if not (tree.root / path).is_file():
                raise input_error(
                    tree.app_json.path if tree.app_json else "app.json",
                    f"{name} points at {path}, which is not in the folder",
                    field=f"env.{name}",
                )
            text = (tree.root / path).read_text(encoding="utf-8")
            log.add(
                "procfile-elsewhere",
                "change",
                "Procfile",
                f"{name}={value} (app.json): Heroku runs {path}, not the root Procfile; so does "
                "this translation",
                "Build the image so the commands of that Procfile work from its WORKDIR.",
            )
            return parse_procfile(text, path)
        if name in config_names or (name == "PROCFILE" and "multi-procfile" in buildpacks):
            log.add(
                "procfile-pointer",
                "warning",
                "Procfile",
                f"the app sets {name}: Heroku may run another Procfile than the root one",
                f"Read it (`heroku config:get {name} -a APP`); if it names another file, "
                "translate again with that file's processes (copy it to the root as Procfile).",
            )
    return None
