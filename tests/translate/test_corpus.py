"""The corpus of public app shapes (tests/translate/corpus.py): each shape's own expectations,
then properties that must hold for every shape:

- the manifest passes convox's validation rules (pkg/manifest/validate.go, as
  cutover.translate.manifest.validate implements them);
- no command passes a shell comment to a program as arguments;
- every shell-wrapped command ends by exec'ing its server (or a finding says it cannot);
- every ``$VAR`` a command reads is a config var, injected by a resource, declared in the
  manifest's environment (with or without a default), set by Convox or the container, or named
  in a finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from convox_argv import split
from translate_corpus import CORPUS, Shape

from cutover.errors import InvalidInput
from cutover.translate import TranslateOptions, read_sources, translate
from cutover.translate.bashsyntax import ends_with_exec, has_tilde, scan, variables_used
from cutover.translate.boot import CONTAINER_SET, CONVOX_SET
from cutover.translate.facts import AddonFact, FormationFact, LiveFacts
from cutover.translate.manifest import validate
from cutover.translate.model import Translation

_SHELLS = ("sh", "bash")


def _facts(shape: Shape) -> LiveFacts | None:
    if shape.facts is None:
        return None
    data = dict(shape.facts)
    data["addons"] = [
        AddonFact(service, plan, f"{service}-1", tuple(names))
        for service, plan, names in data.get("addons", [])
    ]
    data["formation"] = [FormationFact(*row) for row in data.get("formation", [])]
    return LiveFacts(**data)


def _build(tmp_path: Path, shape: Shape) -> Path:
    for name, text in shape.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _translate(tmp_path: Path, shape: Shape) -> Translation:
    folder = _build(tmp_path, shape)
    return translate(read_sources(folder), _facts(shape), TranslateOptions(**shape.options))


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        assert isinstance(data, dict) and part in data, f"{dotted}: no {part!r} in {data!r}"
        data = data[part]
    return data


def _commands(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(subject, command) for every command in the manifest."""
    out: list[tuple[str, str]] = []
    for name, service in manifest.get("services", {}).items():
        if "command" in service:
            out.append((name, service["command"]))
        if "initContainer" in service:
            out.append((f"release ({name})", service["initContainer"]["command"]))
    for name, timer in manifest.get("timers", {}).items():
        out.append((f"timer {name}", timer["command"]))
    return out


def _shell_script(command: str) -> str | None:
    argv = split(command)  # go-shellquote, as the rack splits it
    if len(argv) == 3 and argv[0] in _SHELLS and argv[1] == "-c":
        return argv[2]
    return None


def test_corpus_has_thirty_shapes_across_languages() -> None:
    assert len(CORPUS) >= 30
    assert len({s.name for s in CORPUS}) == len(CORPUS)
    files = " ".join(" ".join(s.files) for s in CORPUS)
    for marker in (
        "Gemfile",
        "requirements.txt",
        "package.json",
        "composer.json",
        "go.mod",
        "mix.exs",
        "pom.xml",
        "app.json",
        "heroku.yml",
    ):
        assert marker in files, marker


@pytest.mark.parametrize("shape", CORPUS, ids=lambda s: s.name)
def test_shape_translates_as_expected(tmp_path: Path, shape: Shape) -> None:
    if "error" in shape.expect:
        with pytest.raises(InvalidInput) as info:
            _translate(tmp_path, shape)
        assert shape.expect["error"] in info.value.brief
        return
    result = _translate(tmp_path, shape)
    for dotted, value in shape.expect.items():
        assert _get(result.manifest, dotted) == value, dotted
    codes = {f.code for f in result.findings}
    missing = set(shape.codes) - codes
    assert not missing, f"missing findings {missing}; got {sorted(codes)}"
    assert not set(shape.not_codes) & codes


_TRANSLATABLE = [s for s in CORPUS if "error" not in s.expect]


@pytest.mark.parametrize("shape", _TRANSLATABLE, ids=lambda s: s.name)
def test_property_manifest_passes_convox_validation(tmp_path: Path, shape: Shape) -> None:
    assert validate(_translate(tmp_path, shape).manifest) == []


@pytest.mark.parametrize("shape", _TRANSLATABLE, ids=lambda s: s.name)
def test_property_no_command_passes_a_comment_as_arguments(tmp_path: Path, shape: Shape) -> None:
    for subject, command in _commands(_translate(tmp_path, shape).manifest):
        script = _shell_script(command)
        if script is None:
            assert not any(word.startswith("#") for word in split(command)), subject
        else:
            assert scan(script).comment is None, subject


@pytest.mark.parametrize("shape", _TRANSLATABLE, ids=lambda s: s.name)
def test_property_shell_wrapped_commands_exec_their_server(tmp_path: Path, shape: Shape) -> None:
    result = _translate(tmp_path, shape)
    excused = {f.subject for f in result.findings if f.code == "command-no-exec"}
    for subject, command in _commands(result.manifest):
        script = _shell_script(command)
        if script is not None and subject not in excused:
            assert ends_with_exec(script), f"{subject}: {command}"
            assert not _unexeced_then_branch(script), f"{subject}: {command}"


def _unexeced_then_branch(script: str) -> bool:
    """`T && SERVER || F` at the end: SERVER is the last command whenever T succeeds."""
    segments = scan(script).segments()
    for index in range(len(segments) - 1, 0, -1):
        before, text = segments[index - 1][0], segments[index - 1][1]
        after = segments[index][0]
        if before in (";", "&", "|", "|&", ";;"):
            break
        if before == "&&" and after == "||" and text.split(None, 1)[0] != "exec":
            return True
    return False


def _injected(manifest: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for service in manifest.get("services", {}).values():
        for link in service.get("resources", []):
            resource, _, alias = link.partition(":")
            if alias:
                names.add(alias)
            else:
                prefix = resource.upper().replace("-", "_")
                names |= {f"{prefix}_{s}" for s in ("URL", "USER", "PASS", "HOST", "PORT", "NAME")}
    return names


@pytest.mark.parametrize("shape", _TRANSLATABLE, ids=lambda s: s.name)
def test_property_every_variable_is_accounted_for(tmp_path: Path, shape: Shape) -> None:
    result = _translate(tmp_path, shape)
    manifest = result.manifest
    facts = _facts(shape)
    # HOME is set in a container, but to the image user's home, not /app as on a dyno: a command
    # reading it (or a leading `~`) needs a finding like any other name.
    allowed = set(CONVOX_SET | CONTAINER_SET - {"HOME"}) | _injected(manifest)
    allowed |= {entry.split("=", 1)[0] for entry in manifest.get("environment", [])}
    if facts is not None:
        allowed |= set(facts.config_var_names)
    named = " ".join(f.message for f in result.findings)
    for subject, command in _commands(manifest):
        script = _shell_script(command)
        if script is None:
            assert "$" not in command, f"{subject}: Convox would not expand {command}"
            assert not has_tilde(command), f"{subject}: Convox would not expand ~ in {command}"
            continue
        for name in variables_used(script):
            assert name in allowed or f"${name}" in named, f"{subject}: ${name}"


# Special and regular builtins with no program of the same name in an image (bash(1), SHELL
# BUILTIN COMMANDS): Convox execs argv[0] without a shell, so none may start a bare command.
_BUILTINS = frozenset(
    {"exec", "source", ".", "cd", "export", "set", "trap", "ulimit", "umask", "eval", "unset"}
)


@pytest.mark.parametrize("shape", _TRANSLATABLE, ids=lambda s: s.name)
def test_property_unwrapped_commands_start_with_a_program(tmp_path: Path, shape: Shape) -> None:
    for subject, command in _commands(_translate(tmp_path, shape).manifest):
        if _shell_script(command) is None:
            assert split(command)[0] not in _BUILTINS, f"{subject}: {command}"


@pytest.mark.parametrize("shape", _TRANSLATABLE, ids=lambda s: s.name)
def test_property_convox_interpolation_leaves_commands_alone(tmp_path: Path, shape: Shape) -> None:
    """convox.yml interpolates every ${...} of the raw text from the app env before anything
    else (convox pkg/manifest/helpers.go): a command may hold one only with a finding."""
    result = _translate(tmp_path, shape)
    flagged = {f.subject for f in result.findings if f.code == "command-unsupported-expansion"}
    for subject, command in _commands(result.manifest):
        assert "${" not in command or subject in flagged, f"{subject}: {command}"
        split(command)  # and go-shellquote can split it (a deploy would fail otherwise)
