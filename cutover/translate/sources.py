"""Read what an app's source folder says about how Heroku runs it.

Parsers for the Procfile, app.json and heroku.yml, plus detection of a Dockerfile and of the
buildpack stack (by the marker files Heroku's own buildpacks look for). Every parser turns bad
input into :class:`cutover.errors.InvalidInput` naming the file, the line (when known) and the
field, never into a traceback.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from cutover.errors import InvalidInput
from cutover.translate.extensions import detect_extensions
from cutover.translate.model import input_error

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
    "parse_app_json",
    "parse_heroku_yml",
    "parse_procfile",
    "read_sources",
]


# --------------------------------------------------------------------------------------------
# Data read from the sources


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


# --------------------------------------------------------------------------------------------
# Procfile

# Heroku's own Procfile grammar: a process type of letters, digits, "_" and "-", a colon, a command.
_PROCFILE_LINE: Final = re.compile(r"^([A-Za-z0-9_-]+):[ \t]*(.*)$")
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    return _LINE_BREAK.split(text)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_procfile(
    text: str, path: str = "Procfile"
) -> tuple[list[ProcessType], ReleaseSpec | None]:
    """Parse a Procfile into its process types (in file order) and its ``release`` command.

    Blank lines and ``#`` comments are skipped; CRLF and CR line ends are accepted.
    """
    processes: list[ProcessType] = []
    release: ReleaseSpec | None = None
    first_line: dict[str, int] = {}
    for number, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if match is None:
            raise input_error(
                path, f'expected "name: command", got "{_shorten(line)}"', line=number
            )
        name, command = match.group(1), match.group(2).strip()
        if name in first_line:
            raise input_error(
                path,
                f"duplicate process type (first defined on line {first_line[name]})",
                line=number,
                field=name,
            )
        first_line[name] = number
        if not command:
            raise input_error(path, "the command is empty", line=number, field=name)
        if name == "release":
            release = ReleaseSpec(command=command, source=path, line=number)
        else:
            processes.append(ProcessType(name=name, command=command, source=path, line=number))
    return processes, release


# --------------------------------------------------------------------------------------------
# app.json

_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _json_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map JSON paths to 1-based line numbers, best effort (YAML composes most JSON)."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(current: yaml.Node | None, at: tuple[str | int, ...]) -> None:
        if current is None:
            return
        lines.setdefault(at, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    child = (*at, str(key.value))
                    lines[child] = key.start_mark.line + 1
                    walk(value, child)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                walk(item, (*at, index))

    walk(node, ())
    return lines


def _dotted(at: tuple[str | int, ...]) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_JSON_KINDS: Final[tuple[tuple[type, str], ...]] = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "an object"),
)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    for kind, text in _JSON_KINDS:
        if isinstance(value, kind):
            return text
    return type(value).__name__


class _JsonChecker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = _json_lines(text)

    def fail(self, at: tuple[str | int, ...], reason: str) -> InvalidInput:
        line = None
        probe = at
        while probe:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = probe[:-1]
        return input_error(self.path, reason, line=line, field=_dotted(at) or None)

    def obj(self, value: object, at: tuple[str | int, ...]) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.fail(at, f"expected an object, got {_describe(value)}")
        return value

    def lst(self, value: object, at: tuple[str | int, ...]) -> list[object]:
        if not isinstance(value, list):
            raise self.fail(at, f"expected a list, got {_describe(value)}")
        return value

    def text(self, value: object, at: tuple[str | int, ...]) -> str:
        if not isinstance(value, str):
            raise self.fail(at, f"expected a string, got {_describe(value)}")
        return value

    def opt_text(self, value: object, at: tuple[str | int, ...]) -> str | None:
        return None if value is None else self.text(value, at)


def _split_plan(plan: str) -> tuple[str, str | None]:
    service, _, tier = plan.partition(":")
    return service.strip(), (plan.strip() if tier else None)


def _app_json_env(check: _JsonChecker, raw: object) -> list[EnvSpec]:
    env: list[EnvSpec] = []
    for name, spec in check.obj(raw, ("env",)).items():
        at: tuple[str | int, ...] = ("env", name)
        if not _ENV_NAME.match(name):
            raise check.fail(at, "not a valid environment variable name")
        if isinstance(spec, str):
            env.append(EnvSpec(name, spec, required=True, generator=None, source=check.path))
            continue
        entry = check.obj(spec, at)
        value = entry.get("value")
        if value is not None and not isinstance(value, str):
            raise check.fail((*at, "value"), f"expected a string, got {_describe(value)}")
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise check.fail(
                (*at, "required"), f"expected true or false, got {_describe(required)}"
            )
        generator = check.opt_text(entry.get("generator"), (*at, "generator"))
        if generator is not None and generator != "secret":
            raise check.fail((*at, "generator"), f'unknown generator "{generator}" (only "secret")')
        env.append(EnvSpec(name, value, required=required, generator=generator, source=check.path))
    return env


def _addon_options(
    check: _JsonChecker, raw: object, at: tuple[str | int, ...]
) -> tuple[tuple[str, str], ...]:
    """app.json ``addons[].options``: provider options such as ``{"version": "15"}`` (Dev
    Center, app.json schema: addons objects take ``plan``, ``as`` and ``options``)."""
    if raw is None:
        return ()
    out: list[tuple[str, str]] = []
    for key, value in check.obj(raw, at).items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise check.fail((*at, key), f"expected a string or a number, got {_describe(value)}")
        out.append((key, str(value)))
    return tuple(out)


def parse_app_json(text: str, path: str = "app.json") -> AppJson:
    """Parse and check app.json (the fields translation uses; others are ignored)."""
    try:
        data: object = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise input_error(
            path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno
        ) from None
    check = _JsonChecker(path, text)
    top = check.obj(data, ())

    env = _app_json_env(check, top.get("env", {}))

    at: tuple[str | int, ...]
    formation: list[FormationSpec] = []
    for ptype, spec in check.obj(top.get("formation", {}), ("formation",)).items():
        at = ("formation", ptype)
        entry = check.obj(spec, at)
        quantity = entry.get("quantity")
        if quantity is not None and (
            isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0
        ):
            raise check.fail(
                (*at, "quantity"), f"expected a whole number >= 0, got {json.dumps(quantity)}"
            )
        size = check.opt_text(entry.get("size"), (*at, "size"))
        formation.append(FormationSpec(ptype, quantity, size, line=check.lines.get(at)))

    addons: list[AddonSpec] = []
    for index, item in enumerate(check.lst(top.get("addons", []), ("addons",))):
        at = ("addons", index)
        options: tuple[tuple[str, str], ...] = ()
        if isinstance(item, str):
            plan, as_name = item, None
        else:
            entry = check.obj(item, at)
            plan = check.text(entry.get("plan"), (*at, "plan"))
            as_name = check.opt_text(entry.get("as"), (*at, "as"))
            options = _addon_options(check, entry.get("options"), (*at, "options"))
        if not plan.strip():
            raise check.fail(at, "empty add-on plan")
        service, full_plan = _split_plan(plan)
        addons.append(AddonSpec(service, full_plan, as_name, source=path, options=options))

    buildpacks: list[str] = []
    for index, item in enumerate(check.lst(top.get("buildpacks", []), ("buildpacks",))):
        at = ("buildpacks", index)
        entry = check.obj(item, at)
        buildpacks.append(check.text(entry.get("url"), (*at, "url")))

    scripts = check.obj(top.get("scripts", {}), ("scripts",))
    postdeploy = scripts.get("postdeploy")
    if postdeploy is not None and not isinstance(postdeploy, str):
        postdeploy = None  # the object form ({command, size}) is for review apps only

    return AppJson(
        path=path,
        name=check.opt_text(top.get("name"), ("name",)),
        env=env,
        formation=formation,
        addons=addons,
        buildpacks=buildpacks,
        stack=check.opt_text(top.get("stack"), ("stack",)),
        postdeploy=postdeploy,
    )


# --------------------------------------------------------------------------------------------
# heroku.yml


class _YamlChecker:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, at: str, reason: str) -> InvalidInput:
        line = node.start_mark.line + 1 if node is not None else None
        return input_error(self.path, reason, line=line, field=at or None)

    @staticmethod
    def kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        if node.tag.endswith(":null"):
            return "nothing"
        return "a scalar"

    def mapping(self, node: yaml.Node, at: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, at, f"expected a mapping, got {self.kind(node)}")
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.fail(key, at, "keys must be plain names")
            name = str(key.value)
            if name in seen:
                raise self.fail(key, f"{at}.{name}" if at else name, "duplicate key")
            seen.add(name)
            out.append((name, key, value))
        return out

    def sequence(self, node: yaml.Node, at: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, at, f"expected a list, got {self.kind(node)}")
        return list(node.value)

    def scalar(self, node: yaml.Node, at: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            raise self.fail(node, at, f"expected a value, got {self.kind(node)}")
        return str(node.value)

    def command(self, node: yaml.Node, at: str) -> str:
        """A command given as a string or as a list of words (joined for a shell)."""
        if isinstance(node, yaml.SequenceNode):
            words = [self.scalar(item, f"{at}[{i}]") for i, item in enumerate(node.value)]
            if not words:
                raise self.fail(node, at, "the command is empty")
            # heroku.yml list commands are exec-form words; with one word it is a shell string.
            return words[0] if len(words) == 1 else _shell_join(words)
        text = self.scalar(node, at).strip()
        if not text:
            raise self.fail(node, at, "the command is empty")
        return text


def _shell_join(words: list[str]) -> str:
    return shlex.join(words)


def _compose_yaml(text: str, path: str) -> yaml.Node:
    try:
        root = yaml.compose(text.removeprefix("\ufeff"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"invalid YAML: {exc.problem or exc.context or 'cannot parse'}"
        raise input_error(
            path, reason, line=mark.line + 1 if mark is not None else None
        ) from None
    except yaml.YAMLError as exc:
        raise input_error(path, f"invalid YAML: {exc}") from None
    if root is None:
        raise input_error(path, "the file is empty")
    return root


_NULL: Final = yaml.ScalarNode("tag:yaml.org,2002:null", "")


def _yml_setup(check: _YamlChecker, node: yaml.Node) -> tuple[list[AddonSpec], list[EnvSpec]]:
    addons: list[AddonSpec] = []
    config: list[EnvSpec] = []
    for name, _key, value in check.mapping(node, "setup"):
        if name == "addons":
            for index, item in enumerate(check.sequence(value, "setup.addons")):
                at = f"setup.addons[{index}]"
                entry = {k: v for k, _, v in check.mapping(item, at)}
                if "plan" not in entry:
                    raise check.fail(item, at, 'missing "plan"')
                service, plan = _split_plan(check.scalar(entry["plan"], f"{at}.plan"))
                as_name = check.scalar(entry["as"], f"{at}.as") if "as" in entry else None
                options = tuple(
                    (key, check.scalar(node, f"{at}.options.{key}"))
                    for key, _, node in check.mapping(entry.get("options", _NULL), f"{at}.options")
                )
                addons.append(
                    AddonSpec(service, plan, as_name, source=check.path, options=options)
                )
        elif name == "config":
            for var, key, value_node in check.mapping(value, "setup.config"):
                if not _ENV_NAME.match(var):
                    raise check.fail(key, f"setup.config.{var}", "not a valid variable name")
                is_null = isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(
                    ":null"
                )
                text = None if is_null else check.scalar(value_node, f"setup.config.{var}")
                config.append(EnvSpec(var, text, True, None, source=check.path))
    return addons, config


_Build = tuple[str, str | None, int]  # Dockerfile, target, line


def _yml_build(check: _YamlChecker, node: yaml.Node) -> tuple[dict[str, _Build], list[str]]:
    dockerfiles: dict[str, _Build] = {}
    build_config: list[str] = []
    for name, _key, value in check.mapping(node, "build"):
        if name == "docker":
            for ptype, key, spec in check.mapping(value, "build.docker"):
                at = f"build.docker.{ptype}"
                target = None
                if isinstance(spec, yaml.MappingNode):
                    entry = {k: v for k, _, v in check.mapping(spec, at)}
                    if "dockerfile" not in entry:
                        raise check.fail(spec, at, 'missing "dockerfile"')
                    dockerfile = check.scalar(entry["dockerfile"], f"{at}.dockerfile")
                    if "target" in entry:
                        target = check.scalar(entry["target"], f"{at}.target")
                else:
                    dockerfile = check.scalar(spec, at)
                dockerfiles[ptype] = (dockerfile, target, key.start_mark.line + 1)
        elif name == "config":
            build_config = [var for var, _, _ in check.mapping(value, "build.config")]
    return dockerfiles, build_config


def _yml_release(check: _YamlChecker, key: yaml.Node, node: yaml.Node) -> ReleaseSpec:
    entry = {k: v for k, _, v in check.mapping(node, "release")}
    if "command" not in entry:
        raise check.fail(node, "release", 'missing "command"')
    return ReleaseSpec(
        command=check.command(entry["command"], "release.command"),
        source=check.path,
        line=key.start_mark.line + 1,
        image=check.scalar(entry["image"], "release.image") if "image" in entry else None,
    )


_Run = tuple[str | None, str | None, int]  # command, image, line


def _yml_run(check: _YamlChecker, node: yaml.Node) -> dict[str, _Run]:
    runs: dict[str, _Run] = {}
    for ptype, key, spec in check.mapping(node, "run"):
        at = f"run.{ptype}"
        if not _PROCFILE_LINE.match(f"{ptype}:"):
            raise check.fail(key, at, "not a valid process type name")
        if isinstance(spec, yaml.MappingNode):
            entry = {k: v for k, _, v in check.mapping(spec, at)}
            command = (
                check.command(entry["command"], f"{at}.command") if "command" in entry else None
            )
            image = check.scalar(entry["image"], f"{at}.image") if "image" in entry else None
            runs[ptype] = (command, image, key.start_mark.line + 1)
        else:
            runs[ptype] = (check.command(spec, at), None, key.start_mark.line + 1)
    return runs


def parse_heroku_yml(text: str, path: str = "heroku.yml") -> HerokuYml:
    """Parse heroku.yml: ``setup`` (add-ons, config), ``build`` (docker, config), ``release``
    and ``run``. Process types are the union of ``build.docker`` and ``run`` keys; a ``run``
    entry without its own build or ``image`` uses the ``web`` image."""
    check = _YamlChecker(path)
    sections = {
        name: (key, value) for name, key, value in check.mapping(_compose_yaml(text, path), "")
    }
    addons, config = _yml_setup(check, sections["setup"][1]) if "setup" in sections else ([], [])
    dockerfiles, build_config = (
        _yml_build(check, sections["build"][1]) if "build" in sections else ({}, [])
    )
    release = _yml_release(check, *sections["release"]) if "release" in sections else None
    runs = _yml_run(check, sections["run"][1]) if "run" in sections else {}

    processes: list[ProcessType] = []
    for ptype in [*dockerfiles, *[p for p in runs if p not in dockerfiles]]:
        if not _PROCFILE_LINE.match(f"{ptype}:"):
            raise input_error(
                path,
                "not a valid process type name",
                line=dockerfiles[ptype][2],
                field=f"build.docker.{ptype}",
            )
        command, image, line = runs[ptype] if ptype in runs else (None, None, dockerfiles[ptype][2])
        build = dockerfiles.get(image or ptype) or (
            dockerfiles.get("web") if image is None else None
        )
        if image is not None and build is None:
            raise input_error(
                path,
                f'image "{image}" is not built in build.docker',
                line=line,
                field=f"run.{ptype}.image",
            )
        processes.append(
            ProcessType(
                name=ptype,
                command=command,
                source=path,
                line=line,
                dockerfile=build[0] if build else None,
                target=build[1] if build else None,
            )
        )
    if release is not None and release.image is not None and release.image not in dockerfiles:
        raise input_error(
            path,
            f'image "{release.image}" is not built in build.docker',
            line=release.line,
            field="release.image",
        )
    return HerokuYml(
        path=path,
        processes=processes,
        build_config=build_config,
        release=release,
        addons=addons,
        config=config,
    )


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


def _read_text(path: Path, display: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise input_error(display, f"cannot read: {exc.strerror or exc}") from None
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
        except (OSError, ValueError):
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
