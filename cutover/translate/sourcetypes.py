"""What an app's source files say, as data: process types, app.json, heroku.yml, the tree.

The parsers are :mod:`~cutover.translate.procfile`, :mod:`~cutover.translate.appjson` and
:mod:`~cutover.translate.herokuyml`; :mod:`~cutover.translate.sources` reads a folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "ENV_NAME",
    "PROCFILE_LINE",
    "AddonSpec",
    "AppJson",
    "EnvSpec",
    "FormationSpec",
    "HerokuYml",
    "ProcessType",
    "ReleaseSpec",
    "SourceTree",
    "StackHint",
]

# Heroku's own Procfile grammar: a process type of letters, digits, "_" and "-", a colon, a command.
PROCFILE_LINE: Final = re.compile(r"^([A-Za-z0-9_-]+):[ \t]*(.*)$")
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ProcessType:
    """One process type: a Procfile line, a heroku.yml ``run``/``build.docker`` entry, or a
    formation entry of the live app (when the folder has neither)."""

    name: str
    command: str | None
    source: str
    line: int | None = None
    dockerfile: str | None = None  # heroku.yml: the Dockerfile the image is built from
    target: str | None = None  # heroku.yml: a multi-stage build target


@dataclass(frozen=True)
class EnvSpec:
    """An app.json ``env`` entry (or a heroku.yml ``setup.config`` entry)."""

    name: str
    value: str | None
    required: bool
    generator: str | None
    source: str


@dataclass(frozen=True)
class FormationSpec:
    type: str
    quantity: int | None
    size: str | None
    line: int | None = None


@dataclass(frozen=True)
class AddonSpec:
    """An add-on the sources ask for: ``heroku-postgresql:essential-0`` as ``DATABASE``."""

    service: str
    plan: str | None
    as_name: str | None
    source: str
    options: tuple[tuple[str, str], ...] = ()  # app.json/heroku.yml `options` ({"version": "15"})


@dataclass(frozen=True)
class AppJson:
    path: str
    name: str | None = None
    env: list[EnvSpec] = field(default_factory=list)
    formation: list[FormationSpec] = field(default_factory=list)
    addons: list[AddonSpec] = field(default_factory=list)
    buildpacks: list[str] = field(default_factory=list)
    stack: str | None = None
    postdeploy: str | None = None


@dataclass(frozen=True)
class ReleaseSpec:
    command: str
    source: str
    line: int | None = None
    image: str | None = None


@dataclass(frozen=True)
class HerokuYml:
    path: str
    processes: list[ProcessType] = field(default_factory=list)
    build_config: list[str] = field(default_factory=list)  # names of build-time variables
    release: ReleaseSpec | None = None
    addons: list[AddonSpec] = field(default_factory=list)
    config: list[EnvSpec] = field(default_factory=list)


@dataclass(frozen=True)
class StackHint:
    """A language stack Heroku would detect, and why we think so."""

    stack: str
    evidence: str


@dataclass(frozen=True)
class SourceTree:
    """Everything :func:`read_sources` found in an app folder."""

    root: Path
    procfile: list[ProcessType] | None = None
    release: ReleaseSpec | None = None  # the Procfile's ``release`` line
    app_json: AppJson | None = None
    heroku_yml: HerokuYml | None = None
    has_dockerfile: bool = False
    stacks: list[StackHint] = field(default_factory=list)
    runtime_pins: list[str] = field(default_factory=list)
    aptfile: bool = False
    rails_health_route: bool = False
    files: list[str] = field(default_factory=list)
    postgres_extensions: list[tuple[str, str]] = field(default_factory=list)  # (name, evidence)
