"""heroku.yml (Dev Center, "Building Docker Images with heroku.yml"): setup, build, release,
run."""

from __future__ import annotations

import shlex
from typing import Final

import yaml

from cutover.errors import InvalidInput
from cutover.translate.appjson import split_plan as _split_plan
from cutover.translate.model import input_error
from cutover.translate.sourcetypes import ENV_NAME as _ENV_NAME
from cutover.translate.sourcetypes import PROCFILE_LINE as _PROCFILE_LINE
from cutover.translate.sourcetypes import AddonSpec, EnvSpec, HerokuYml, ProcessType, ReleaseSpec

__all__ = ["parse_heroku_yml"]


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
        _flatten_merge_keys(node, self.path)
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


def _flatten_merge_keys(node: yaml.MappingNode, path: str) -> None:
    """Resolve ``<<: *anchor`` merge keys the way PyYAML's constructor does (YAML 1.1 merge
    type), since the checker reads composed nodes, not constructed values."""
    if any(isinstance(k, yaml.ScalarNode) and k.tag.endswith(":merge") for k, _ in node.value):
        try:
            yaml.SafeLoader("").flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = mark.line + 1 if mark is not None else None
            raise input_error(path, f"invalid merge key: {exc.problem}", line=line) from None


def _shell_join(words: list[str]) -> str:
    return shlex.join(words)


def _compose_yaml(text: str, path: str) -> yaml.Node:
    try:
        root = yaml.compose(text.removeprefix("\ufeff"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"invalid YAML: {exc.problem or exc.context or 'cannot parse'}"
        raise input_error(path, reason, line=mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as exc:
        raise input_error(path, f"invalid YAML: {exc}") from None
    except RecursionError:  # the composer recurses once per nested [ or {
        raise input_error(path, "invalid YAML: nested too deeply") from None
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
                addons.append(AddonSpec(service, plan, as_name, source=check.path, options=options))
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
