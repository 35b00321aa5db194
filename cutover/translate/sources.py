"""Read what an app's source folder says about how Heroku runs it.

Parsers for the Procfile (:mod:`~cutover.translate.procfile`), app.json
(:mod:`~cutover.translate.appjson`) and heroku.yml (:mod:`~cutover.translate.herokuyml`), plus
detection of a Dockerfile and of the buildpack stack (by the marker files Heroku's own
buildpacks look for). Every parser turns bad input into :class:`cutover.errors.InvalidInput`
naming the file, the line (when known) and the field, never into a traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Final

from cutover.translate.appjson import parse_app_json
from cutover.translate.extensions import detect_extensions
from cutover.translate.herokuyml import parse_heroku_yml
from cutover.translate.model import input_error
from cutover.translate.procfile import parse_procfile
from cutover.translate.sourcetypes import (
    AddonSpec,
    AppJson,
    EnvSpec,
    FormationSpec,
    HerokuYml,
    ProcessType,
    ReleaseSpec,
    SourceTree,
    StackHint,
)

__all__ = [
    "AddonSpec",
    "AppJson",
    "EnvSpec",
    "FormationSpec",
    "HerokuYml",
    "ProcessType",
    "ReleaseSpec",
    "SourceTree",
    "StackHint",
    "buildpack_stack",
    "detect_stacks",
    "parse_app_json",
    "parse_heroku_yml",
    "parse_procfile",
    "read_sources",
]

# --------------------------------------------------------------------------------------------
# Stack detection and the whole folder

# Marker files of Heroku's official buildpacks, in Heroku's detection order.
STACK_MARKERS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("ruby", ("Gemfile",)),
    ("node", ("package.json",)),
    ("clojure", ("project.clj",)),
    ("python", ("requirements.txt", "Pipfile", "pyproject.toml", "setup.py", "poetry.lock")),
    ("java", ("pom.xml",)),
    ("gradle", ("build.gradle", "build.gradle.kts", "gradlew")),
    ("scala", ("build.sbt",)),
    ("php", ("composer.json", "index.php")),
    ("go", ("go.mod", "Godeps/Godeps.json")),
)

_BUILDPACK_STACKS: Final[dict[str, str]] = {
    "ruby": "ruby",
    "nodejs": "node",
    "node": "node",
    "python": "python",
    "php": "php",
    "go": "go",
    "java": "java",
    "gradle": "gradle",
    "scala": "scala",
    "clojure": "clojure",
    "dotnet": "dotnet",
}

_RUNTIME_FILES: Final[tuple[tuple[str, str], ...]] = (
    (".python-version", "python"),
    ("runtime.txt", "python"),
    (".ruby-version", "ruby"),
    (".nvmrc", "node"),
    (".node-version", "node"),
    (".go-version", "go"),
)


def buildpack_stack(url: str) -> str:
    """``heroku/nodejs`` or ``https://github.com/heroku/heroku-buildpack-nodejs`` -> ``node``;
    a third-party buildpack keeps its last path part (``heroku-buildpack-apt``)."""
    tail = url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]
    if url.startswith("heroku/") or url.startswith("heroku-community/"):
        key = tail
    elif tail.startswith("heroku-buildpack-"):
        key = tail.removeprefix("heroku-buildpack-")
    else:
        key = tail
    return _BUILDPACK_STACKS.get(key, key)


# Procfile, app.json and heroku.yml are small hand-written files; at most this much is read
# (limit + 1 bytes, to notice a bigger one), so a huge file is refused at once.
MAX_SOURCE_BYTES: Final = 1024 * 1024


def _read_text(path: Path, display: str) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise input_error(display, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise input_error(
            display, f"larger than the limit of {MAX_SOURCE_BYTES} bytes (1 MiB) for this file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise input_error(display, f"not UTF-8 text (byte {exc.start})") from None


def _first_line(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    return None


def _runtime_pins(root: Path) -> list[str]:
    pins: list[str] = []
    for name, _stack in _RUNTIME_FILES:
        value = _first_line(root / name)
        if value:
            pins.append(f"{value} ({name})")
    gemfile = root / "Gemfile"
    if gemfile.is_file():
        match = re.search(
            r"""^\s*ruby\s+["']([^"']+)["']""",
            gemfile.read_text(encoding="utf-8", errors="replace"),
            re.MULTILINE,
        )
        if match:
            pins.append(f"ruby {match.group(1)} (Gemfile)")
    for name, pointer in (
        ("package.json", ("engines", "node")),
        ("composer.json", ("require", "php")),
    ):
        try:
            data: object = json.loads((root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        for part in pointer:
            data = data.get(part) if isinstance(data, dict) else None
        if isinstance(data, str):
            pins.append(f"{pointer[-1]} {data} ({name} {'.'.join(pointer)})")
    return pins


def detect_stacks(root: Path, buildpack_urls: list[str]) -> list[StackHint]:
    """The stacks Heroku builds: app.json buildpacks (or the legacy .buildpacks file), else
    the marker files of the official buildpacks, in Heroku's detection order."""
    legacy = root / ".buildpacks"
    if not buildpack_urls and legacy.is_file():
        buildpack_urls = [
            line.strip()
            for line in legacy.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    stacks: list[StackHint] = []
    seen: set[str] = set()
    for url in buildpack_urls:
        stack = buildpack_stack(url)
        if stack not in seen:
            seen.add(stack)
            stacks.append(StackHint(stack, f"buildpack {url}"))
    if buildpack_urls:
        return stacks
    for stack, markers in STACK_MARKERS:
        found = next((m for m in markers if (root / m).is_file()), None)
        if found is not None and stack not in seen:
            seen.add(stack)
            stacks.append(StackHint(stack, found))
    if any(root.glob("*.csproj")) or any(root.glob("*.sln")):
        stacks.append(StackHint("dotnet", "*.csproj"))
    return stacks


def read_sources(root: Path) -> SourceTree:
    """Read an app folder: Procfile, app.json, heroku.yml, Dockerfile presence, stack markers."""
    if not root.is_dir():
        raise input_error(str(root), "not a folder")
    procfile: list[ProcessType] | None = None
    release: ReleaseSpec | None = None
    app_json: AppJson | None = None
    heroku_yml: HerokuYml | None = None
    files: list[str] = []
    if (root / "Procfile").is_file():
        procfile, release = parse_procfile(_read_text(root / "Procfile", "Procfile"))
        files.append("Procfile")
    if (root / "app.json").is_file():
        app_json = parse_app_json(_read_text(root / "app.json", "app.json"))
        files.append("app.json")
    for name in ("heroku.yml", "heroku.yaml"):
        if (root / name).is_file():
            heroku_yml = parse_heroku_yml(_read_text(root / name, name), name)
            files.append(name)
            break

    stacks = detect_stacks(root, list(app_json.buildpacks) if app_json else [])
    routes = root / "config" / "routes.rb"
    rails_health = routes.is_file() and "rails_health_check" in routes.read_text(
        encoding="utf-8", errors="replace"
    )
    return SourceTree(
        root=root,
        procfile=procfile,
        release=release,
        app_json=app_json,
        heroku_yml=heroku_yml,
        has_dockerfile=(root / "Dockerfile").is_file(),
        stacks=stacks,
        runtime_pins=_runtime_pins(root),
        aptfile=(root / "Aptfile").is_file(),
        rails_health_route=rails_health,
        files=files,
        postgres_extensions=detect_extensions(root),
    )
