"""Live facts about a Heroku app, and the parser for the real `heroku` CLI's JSON output.

The heroku adapter runs the CLI (``apps:info --json``, ``addons --json``, ``config --json``,
``domains --json``, ``ps --json`` or ``ps:scale``) and hands the decoded output to
:func:`facts_from_heroku_json`. Only config var NAMES are kept, never values.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cutover.errors import InvalidInput
from cutover.translate.model import input_error

__all__ = [
    "AddonFact",
    "DomainFact",
    "FormationFact",
    "LiveFacts",
    "facts_from_heroku_json",
    "load_facts_file",
    "postgres_major",
]


class FormationFact(NamedTuple):
    """One process type of the running app: ``("web", 2, "standard-1X")``."""

    type: str
    quantity: int
    size: str | None
    command: str | None = None


class AddonFact(NamedTuple):
    """An attached add-on: service slug, full plan name, add-on name, config var names."""

    service: str  # "heroku-postgresql"
    plan: str | None  # "heroku-postgresql:essential-0"
    name: str  # "postgresql-curly-12345"
    config_vars: tuple[str, ...]  # ("DATABASE_URL",)
    attachments: tuple[str, ...] = ()  # ("DATABASE",), from `addons --json` only


class DomainFact(NamedTuple):
    hostname: str
    kind: str  # "heroku" or "custom"
    cname: str | None


@dataclass
class LiveFacts:
    """What the running Heroku app says about itself (names only, never secret values)."""

    app: str | None = None
    formation: list[FormationFact] = field(default_factory=list)
    addons: list[AddonFact] = field(default_factory=list)
    config_var_names: list[str] = field(default_factory=list)
    domains: list[DomainFact] = field(default_factory=list)
    postgres_version: str | None = None
    postgres_extensions: list[str] = field(default_factory=list)  # pg_extension of DATABASE
    stack: str | None = None
    region: str | None = None

    @property
    def custom_domains(self) -> list[DomainFact]:
        return [d for d in self.domains if d.kind == "custom"]


def postgres_major(version: str | None) -> str | None:
    """``"16.4"`` -> ``"16"``, ``"9.6.24"`` -> ``"9.6"``, ``"PostgreSQL 15.7"`` -> ``"15"``."""
    if not version:
        return None
    match = re.search(r"(\d+)(?:\.(\d+))?", version)
    if match is None:
        return None
    major = int(match.group(1))
    if major < 10 and match.group(2) is not None:
        return f"{major}.{match.group(2)}"
    return str(major)


# --------------------------------------------------------------------------------------------


class _Shape:
    """Checks one command's JSON, failing with the command and the JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, at: str, reason: str) -> InvalidInput:
        return input_error(self.source, reason, field=at or None)

    def obj(self, value: object, at: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(at, f"expected an object, got {type(value).__name__}")
        return value

    def text(self, value: object, at: str) -> str:
        if not isinstance(value, str):
            raise self.fail(at, f"expected a string, got {type(value).__name__}")
        return value

    def opt_text(self, value: object, at: str) -> str | None:
        return None if value is None else self.text(value, at)

    def names(self, value: object, at: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(at, f"expected a list, got {type(value).__name__}")
        return tuple(self.text(item, f"{at}[{i}]") for i, item in enumerate(value))


def _addons(items: Sequence[Any], source: str) -> list[AddonFact]:
    shape = _Shape(source)
    out: list[AddonFact] = []
    for index, raw in enumerate(items):
        at = f"[{index}]"
        item = shape.obj(raw, at)
        service_obj = item.get("addon_service")
        plan_obj = item.get("plan")
        plan = (
            shape.opt_text(shape.obj(plan_obj, f"{at}.plan").get("name"), f"{at}.plan.name")
            if plan_obj is not None
            else None
        )
        if service_obj is not None:
            service = shape.text(
                shape.obj(service_obj, f"{at}.addon_service").get("name"),
                f"{at}.addon_service.name",
            )
        elif plan:
            service = plan.partition(":")[0]
        else:
            raise shape.fail(at, "neither addon_service.name nor plan.name")
        attachments: list[str] = []
        raw_attachments = item.get("attachments")
        if isinstance(raw_attachments, list):
            for i, attachment in enumerate(raw_attachments):
                name = shape.obj(attachment, f"{at}.attachments[{i}]").get("name")
                if isinstance(name, str):
                    attachments.append(name)
        out.append(
            AddonFact(
                service=service,
                plan=plan,
                name=shape.opt_text(item.get("name"), f"{at}.name") or service,
                config_vars=shape.names(item.get("config_vars"), f"{at}.config_vars"),
                attachments=tuple(attachments),
            )
        )
    return out


_SCALE_TOKEN = re.compile(r"^([A-Za-z0-9_-]+)=(\d+)(?::([A-Za-z0-9-]+))?$")
# Dynos that are not part of the formation: one-off (`heroku run`), Scheduler and release phase.
_NOT_FORMATION = frozenset({"run", "scheduler", "release"})


def _formation(items: Sequence[Any] | str, source: str) -> list[FormationFact]:
    shape = _Shape(source)
    if isinstance(items, str):
        items = items.split()
    formation: list[FormationFact] = []
    dyno_counts: Counter[str] = Counter()
    dyno_meta: dict[str, tuple[str | None, str | None]] = {}
    for index, raw in enumerate(items):
        at = f"[{index}]"
        if isinstance(raw, str):  # a `ps:scale` token: web=2:standard-1X
            match = _SCALE_TOKEN.match(raw.strip())
            if match is None:
                raise shape.fail(at, f'expected "type=quantity:size", got "{raw}"')
            formation.append(FormationFact(match.group(1), int(match.group(2)), match.group(3)))
            continue
        item = shape.obj(raw, at)
        ptype = shape.text(item.get("type"), f"{at}.type")
        size = shape.opt_text(item.get("size"), f"{at}.size")
        command = shape.opt_text(item.get("command"), f"{at}.command")
        if "quantity" in item:  # a formation object (Platform API /formation)
            quantity = item["quantity"]
            if isinstance(quantity, str) and quantity.isdigit():
                quantity = int(quantity)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
                raise shape.fail(f"{at}.quantity", f"expected a whole number, got {quantity!r}")
            formation.append(FormationFact(ptype, quantity, size, command))
        else:  # a dyno (`ps --json` or apps:info "dynos"): count them per type
            if ptype in _NOT_FORMATION:
                continue
            dyno_counts[ptype] += 1
            dyno_meta.setdefault(ptype, (size, command))
    for ptype, count in dyno_counts.items():
        size, command = dyno_meta[ptype]
        formation.append(FormationFact(ptype, count, size, command))
    return formation


def facts_from_heroku_json(
    apps_info: Mapping[str, Any],
    addons: Sequence[Any],
    config_names: Iterable[str],
    domains: Sequence[Any],
    formation: Sequence[Any] | str,
    *,
    postgres_version: str | None = None,
    postgres_extensions: Iterable[str] = (),
) -> LiveFacts:
    """Build :class:`LiveFacts` from the heroku CLI's JSON output (heroku-cli.md §5).

    - ``apps_info``: ``heroku apps:info -a APP --json`` (the composite ``{addons, app, dynos,
      ...}``; a bare app object is accepted too).
    - ``addons``: ``heroku addons -a APP --json`` (may be empty: the composite's ``addons``
      are used then, without attachment names).
    - ``config_names``: the NAMES of the config vars; the object of ``heroku config --json``
      can be passed as is, only its keys are read.
    - ``domains``: ``heroku domains -a APP --json``.
    - ``formation``: the Platform API formation objects (``type``, ``quantity``, ``size``),
      or the dynos of ``heroku ps -a APP --json`` (counted per type; one-off, scheduler and
      release dynos are skipped), or the ``ps:scale`` output ``"web=2:standard-1X ..."`` as a
      string or as its tokens. When empty, the composite's ``dynos`` are counted.
    - ``postgres_version``: the ``PG Version`` of ``heroku pg:info`` when the adapter has it.
    - ``postgres_extensions``: ``SELECT extname FROM pg_extension`` on the app's database.

    Malformed input raises :class:`cutover.errors.InvalidInput` naming the command and the JSON
    path.
    """
    info = _Shape("heroku apps:info --json").obj(apps_info, "")
    app_obj: Mapping[str, Any] = info
    if isinstance(info.get("app"), Mapping):
        app_obj = info["app"]

    def nested_name(key: str) -> str | None:
        value = app_obj.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("name"), str):
            return str(value["name"])
        return None

    name = app_obj.get("name")
    addon_facts = _addons(list(addons), "heroku addons --json")
    if not addon_facts and isinstance(info.get("addons"), list):
        addon_facts = _addons(info["addons"], "heroku apps:info --json addons")

    formation_facts = _formation(formation, "heroku formation")
    if not formation_facts and isinstance(info.get("dynos"), list):
        formation_facts = _formation(info["dynos"], "heroku apps:info --json dynos")

    shape = _Shape("heroku domains --json")
    domain_facts: list[DomainFact] = []
    for index, raw in enumerate(domains):
        item = shape.obj(raw, f"[{index}]")
        hostname = shape.text(item.get("hostname"), f"[{index}].hostname")
        kind = shape.opt_text(item.get("kind"), f"[{index}].kind")
        if kind is None:
            kind = "heroku" if hostname.endswith((".herokuapp.com", ".herokudns.com")) else "custom"
        domain_facts.append(
            DomainFact(hostname, kind, shape.opt_text(item.get("cname"), f"[{index}].cname"))
        )

    names: list[str] = []
    for config_name in config_names:
        if not isinstance(config_name, str):
            raise input_error(
                "heroku config --json", f"expected names, got {type(config_name).__name__}"
            )
        if config_name not in names:
            names.append(config_name)

    return LiveFacts(
        app=name if isinstance(name, str) else None,
        formation=formation_facts,
        addons=addon_facts,
        config_var_names=names,
        domains=domain_facts,
        postgres_version=postgres_major(postgres_version),
        postgres_extensions=sorted({str(e) for e in postgres_extensions} - {"plpgsql"}),
        stack=nested_name("stack"),
        region=nested_name("region"),
    )


def load_facts_file(path: Path) -> LiveFacts:
    """Read live facts saved as one JSON object holding the CLI outputs (tests, offline runs)::

    {"apps_info": {...}, "addons": [...], "config": ["NAME", ...] or {"NAME": "..."},
     "domains": [...], "formation": [...] or "web=2:standard-1X", "postgres_version": "16.4",
     "postgres_extensions": ["postgis", ...]}
    """
    display = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise input_error(display, f"cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise input_error(display, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(data, dict):
        raise input_error(display, "expected a JSON object")
    version = data.get("postgres_version")
    extensions = data.get("postgres_extensions") or []
    if not isinstance(extensions, list) or not all(isinstance(e, str) for e in extensions):
        raise input_error(display, "expected a list of names", field="postgres_extensions")
    return facts_from_heroku_json(
        data.get("apps_info") or {},
        data.get("addons") or [],
        data.get("config") or [],
        data.get("domains") or [],
        data.get("formation") or [],
        postgres_version=version if isinstance(version, str) else None,
        postgres_extensions=extensions,
    )
