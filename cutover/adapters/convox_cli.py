"""What the real convox v3 CLI accepts on its command line, from ``convox_cli.json``.

``convox_cli.json`` beside this module lists every command of the convox CLI with the flags it
registers (name, short form, kind) and the number of positional arguments its validator
accepts, read from the convox source at the commit it names (``pkg/cli/*.go`` register calls,
``pkg/structs`` option tags, ``vendor/github.com/convox/stdcli``). :func:`parse` applies the
same rules the real CLI applies before it contacts a rack (stdcli's engine and pflag with
``ContinueOnError``, interspersed flags, ``--`` ending flag parsing) and raises
:class:`UsageError` with the exact ``ERROR: ...`` text the real CLI prints on stderr (exit 1).

Who uses it: the convox adapter's argv test (every argv cutover can build must parse), the
engine tests' recording fake and the sandbox's convox stand-in (both refuse what the real CLI
refuses). Unknown commands are not errors for the real CLI (it prints the global help and
exits 0, reference §2); :func:`parse` reports them as ``command is None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

FACTS_FILE = "convox_cli.json"


class UsageError(Exception):
    """The real CLI refuses this command line: ``str(exc)`` is its stderr line (exit 1)."""


class HelpRequested(Exception):
    """``-h``/``--help``: the real CLI prints the command's usage on stdout and exits 0."""


@dataclass(frozen=True)
class FlagSpec:
    name: str
    short: str
    kind: str  # bool | int | string | stringSlice | duration
    default: str | None = None


@dataclass(frozen=True)
class CommandSpec:
    words: tuple[str, ...]
    file: str
    usage: str
    flags: tuple[FlagSpec, ...]
    args_min: int
    args_max: int | None
    args_custom: bool

    @property
    def name(self) -> str:
        return " ".join(self.words)


@dataclass
class Parsed:
    command: CommandSpec | None
    args: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)


@cache
def facts() -> dict[str, Any]:
    """The facts document (``source``, ``messages``, ``engine_flags``, ``commands``)."""
    text = resources.files("cutover.adapters").joinpath(FACTS_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def commands() -> dict[str, CommandSpec]:
    data = facts()
    engine = data["engine_flags"]
    out: dict[str, CommandSpec] = {}
    for name, spec in data["commands"].items():
        flags = {**engine, **spec["flags"]}
        out[name] = CommandSpec(
            words=tuple(name.split()),
            file=spec["file"],
            usage=spec.get("usage", ""),
            flags=tuple(
                FlagSpec(n, f.get("short", ""), f["kind"], f.get("default"))
                for n, f in sorted(flags.items())
            ),
            args_min=int(spec["args"]["min"]),
            args_max=spec["args"]["max"],
            args_custom=bool(spec["args"].get("custom")),
        )
    return out


def source_commit() -> str:
    return str(facts()["source"]["commit"])


def match(argv: Sequence[str]) -> tuple[CommandSpec | None, list[str]]:
    """The registered command whose words are the longest exact prefix of ``argv``."""
    best: CommandSpec | None = None
    for spec in commands().values():
        n = len(spec.words)
        if tuple(argv[:n]) == spec.words and (best is None or n > len(best.words)):
            best = spec
    if best is None:
        return None, list(argv)
    return best, list(argv[len(best.words) :])


_GO_BOOLS = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


def _label(flag: FlagSpec) -> str:
    return f"-{flag.short}, --{flag.name}" if flag.short else f"--{flag.name}"


def _set(flag: FlagSpec, raw: str, values: dict[str, Any]) -> None:
    if flag.kind == "bool":
        if raw not in _GO_BOOLS:
            raise UsageError(
                f'ERROR: invalid argument "{raw}" for "{_label(flag)}" flag: '
                f'strconv.ParseBool: parsing "{raw}": invalid syntax'
            )
        values[flag.name] = _GO_BOOLS[raw]
    elif flag.kind == "int":
        try:
            values[flag.name] = int(raw, 10)
        except ValueError:
            raise UsageError(
                f'ERROR: invalid argument "{raw}" for "{_label(flag)}" flag: '
                f'strconv.Atoi: parsing "{raw}": invalid syntax'
            ) from None
    elif flag.kind == "stringSlice":
        values.setdefault(flag.name, []).append(raw)
    else:
        values[flag.name] = raw


def _long(
    arg: str, rest: Sequence[str], i: int, by_long: Mapping[str, FlagSpec], values: dict[str, Any]
) -> int:
    name, eq, raw = arg[2:].partition("=")
    flag = by_long.get(name)
    if flag is None:
        raise UsageError(f"ERROR: unknown flag: --{name}")
    if flag.name == "help":
        raise HelpRequested
    if flag.kind == "bool" and not eq:
        values[name] = True
        return i
    if not eq:
        if i >= len(rest):
            raise UsageError(f"ERROR: flag needs an argument: --{name}")
        raw = rest[i]
        i += 1
    _set(flag, raw, values)
    return i


def _shorts(
    arg: str, rest: Sequence[str], i: int, by_short: Mapping[str, FlagSpec], values: dict[str, Any]
) -> int:
    shorts = arg[1:]
    for j, char in enumerate(shorts):
        flag = by_short.get(char)
        if flag is None:
            # pflag: "unknown shorthand flag: 'x' in -x"; stdcli keeps its last word.
            raise UsageError(f"ERROR: unknown flag: {arg}")
        if flag.name == "help":
            raise HelpRequested
        tail = shorts[j + 1 :]
        if tail.startswith("="):
            _set(flag, tail[1:], values)
            return i
        if flag.kind == "bool":
            values[flag.name] = True
            continue
        if tail:
            _set(flag, tail, values)
        elif i < len(rest):
            _set(flag, rest[i], values)
            i += 1
        else:
            raise UsageError(f"ERROR: flag needs an argument: '{char}' in {arg}")
        return i
    return i


def _plural(n: int) -> str:
    return "arg" if n == 1 else "args"


def check_args(spec: CommandSpec, args: Sequence[str]) -> None:
    """stdcli's ``Args``/``ArgsMin``/``ArgsMax`` validators (``validate.go``)."""
    if spec.args_custom:
        return
    n = len(args)
    if spec.args_max is not None and spec.args_min == spec.args_max:
        if n != spec.args_min:
            raise UsageError(f"ERROR: {spec.args_min} {_plural(spec.args_min)} required")
    elif n < spec.args_min:
        raise UsageError(f"ERROR: at least {spec.args_min} {_plural(spec.args_min)} required")
    elif spec.args_max is not None and n > spec.args_max:
        raise UsageError(f"ERROR: no more than {spec.args_max} {_plural(spec.args_max)} expected")


def parse(argv: Sequence[str]) -> Parsed:
    """Parse ``argv`` (without the leading ``convox``) as the real CLI does.

    Returns the matched command, its positional arguments and flag values (defaults applied).
    Raises :class:`UsageError` (unknown flag, missing flag value, bad int or bool, wrong
    argument count) or :class:`HelpRequested`. An unknown command gives ``command=None``.
    """
    if argv[:1] in (["-v"], ["--version"]):
        return Parsed(None, list(argv))
    spec, rest = match(argv)
    if spec is None:
        return Parsed(None, list(argv))
    by_long = {f.name: f for f in spec.flags}
    by_short = {f.short: f for f in spec.flags if f.short}
    values: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--":
            positional.extend(rest[i:])
            break
        if arg.startswith("--"):
            i = _long(arg, rest, i, by_long, values)
        elif arg.startswith("-") and arg != "-":
            i = _shorts(arg, rest, i, by_short, values)
        else:
            positional.append(arg)
    for flag in spec.flags:
        if flag.default is not None and flag.name not in values:
            values[flag.name] = _GO_BOOLS.get(flag.default, flag.default)
    check_args(spec, positional)
    return Parsed(spec, positional, values)


def refusal(argv: Sequence[str]) -> str | None:
    """The ``ERROR: ...`` line the real CLI would print for ``argv`` (with or without the
    leading ``convox``), or None when it accepts the command line."""
    words = list(argv[1:]) if argv[:1] == ["convox"] else list(argv)
    try:
        parse(words)
    except UsageError as exc:
        return str(exc)
    except HelpRequested:
        return None
    return None
