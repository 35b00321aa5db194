"""app.json (Dev Center, "app.json Schema"): env, formation, addons, buildpacks, scripts."""

from __future__ import annotations

import json
from typing import Final

import yaml

from cutover.errors import InvalidInput
from cutover.translate.model import input_error
from cutover.translate.sourcetypes import ENV_NAME as _ENV_NAME
from cutover.translate.sourcetypes import AddonSpec, AppJson, EnvSpec, FormationSpec

__all__ = ["parse_app_json", "split_plan"]


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


def split_plan(plan: str) -> tuple[str, str | None]:
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
    except RecursionError:  # json's decoder recurses once per nested [ or {
        raise input_error(path, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # not a JSONDecodeError: a number over Python's int digit limit
        raise input_error(path, f"invalid JSON: {str(exc).split(':')[0]}") from None
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
        service, full_plan = split_plan(plan)
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
