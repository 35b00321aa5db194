"""The manifest's ``environment``: which names to require, which get defaults, which are
dropped (resources inject them, Heroku sets them), and the findings that say so."""

from __future__ import annotations

import re
from typing import Final

from cutover.translate.facts import LiveFacts
from cutover.translate.model import FindingLog, Severity
from cutover.translate.sources import EnvSpec, SourceTree

__all__ = ["BUILDPACK_DEFAULTS", "environment", "usable_default"]

# Values Heroku's buildpacks set as config vars; as manifest defaults they are harmless (the
# copied app env overrides them) and keep the manifest deployable before the copy.
BUILDPACK_DEFAULTS: Final[dict[str, str]] = {
    "RAILS_ENV": "production",
    "RACK_ENV": "production",
    "NODE_ENV": "production",
    "LANG": "en_US.UTF-8",
    "RAILS_LOG_TO_STDOUT": "enabled",
    "RAILS_SERVE_STATIC_FILES": "enabled",
}
_SECRET_NAME: Final = re.compile(
    r"(^|_)(KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASS|PWD|CREDENTIALS?|PRIVATE|AUTH|SALT|"
    r"SIGNATURE|CERT|DSN|LICENSE|URL|URI)(_|$)"
)


class _EnvPlan:
    """Sorts the names the app needs into the manifest's environment and the findings."""

    def __init__(self) -> None:
        self.defaults: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {
            key: []
            for key in (
                "constants",
                "guessed",
                "secret",
                "generated",
                "omitted",
                "dropped",
                "required",
            )
        }

    def classify(self, name: str, spec: EnvSpec | None, *, in_live: bool) -> None:
        value = spec.value if spec is not None else None
        if value is not None and usable_default(name, value):
            self.defaults[name] = value
            self.lists["constants"].append(name)
            return
        if value:
            self.lists["secret"].append(name)
        if spec is not None and not spec.required and value is None and not in_live:
            self.lists["omitted"].append(name)
        elif name in BUILDPACK_DEFAULTS:
            self.defaults[name] = BUILDPACK_DEFAULTS[name]
            self.lists["guessed"].append(name)
        else:
            if spec is not None and spec.generator == "secret" and not in_live:
                self.lists["generated"].append(name)
            self.lists["required"].append(name)


_ENV_FINDINGS: Final[tuple[tuple[str, Severity, str, str, str], ...]] = (
    (
        "env-default",
        "change",
        "constants",
        "non-secret values from the sources became defaults: ",
        "Defaults apply only when the app env lacks the name; copied values override.",
    ),
    (
        "env-default-guessed",
        "guess",
        "guessed",
        "defaults assumed from what Heroku's buildpacks set: ",
        "The values copied from Heroku override them; change them if the app differs.",
    ),
    (
        "env-secret-value",
        "info",
        "secret",
        "values in the sources were not used as defaults (secret-looking names, or values "
        "convox.yml cannot hold): ",
        "Set them with `convox env set` (cutover copies them from Heroku).",
    ),
    (
        "env-generate-secret",
        "info",
        "generated",
        "app.json generates these secrets: ",
        "Generate a value (e.g. `openssl rand -hex 64`) and set it with "
        "`convox env set NAME=... -a APP` before the first deploy.",
    ),
    (
        "env-optional-omitted",
        "info",
        "omitted",
        "optional variables without a value are not declared: ",
        "Convox v3 passes the whole app env to every service; declare a name only to require "
        "it or give it a default.",
    ),
    (
        "env-dropped",
        "change",
        "dropped",
        "not declared, and not to be copied: ",
        "Resources inject their own connection variables; HEROKU_* describe the Heroku dyno "
        "and add-ons; PORT comes from `port:`.",
    ),
    (
        "env-required",
        "info",
        "required",
        "{count} to set before the first deploy: ",
        "cutover copies the values from Heroku (the playbook's env section); by hand: "
        "`heroku config -s -a HEROKU_APP` then `convox env set ... -a APP`.",
    ),
)


def environment(
    tree: SourceTree,
    facts: LiveFacts | None,
    log: FindingLog,
    injected: set[str],
    addon_vars: set[str],
    extra_vars: list[str],
    command_defaults: dict[str, str],
) -> tuple[list[str], list[str]]:
    """The manifest's environment list and the config var names not to copy."""
    specs: dict[str, EnvSpec] = {}
    declared = [
        *(tree.app_json.env if tree.app_json else []),
        *(tree.heroku_yml.config if tree.heroku_yml else []),
    ]
    for declared_spec in declared:
        specs.setdefault(declared_spec.name, declared_spec)
    live = set(facts.config_var_names) if facts else set()
    names: list[str] = []
    for name in [
        *specs,
        *(facts.config_var_names if facts else []),
        *extra_vars,
        *command_defaults,
    ]:
        if name not in names:
            names.append(name)

    plan = _EnvPlan()
    not_copied = injected | addon_vars
    for name in names:
        spec = specs.get(name)
        if name in not_copied or (name.startswith("HEROKU_") and name not in extra_vars):
            plan.lists["dropped"].append(name)
        elif name == "PORT":
            log.add(
                "env-port",
                "warning",
                "PORT",
                "PORT is set as a config var on Heroku; it is left out",
                "The app env overrides the PORT Convox derives from `port:`; do not copy it.",
            )
            plan.lists["dropped"].append(name)
        elif name in command_defaults:
            plan.defaults[name] = command_defaults[name]
        else:
            plan.classify(name, spec, in_live=name in live)
    _env_findings(plan, log)
    entries = sorted(plan.lists["required"]) + [
        f"{n}={plan.defaults[n]}" for n in sorted(plan.defaults)
    ]
    return entries, plan.lists["dropped"]


def _env_findings(plan: _EnvPlan, log: FindingLog) -> None:
    lists = plan.lists
    for code, severity, key, message, advice in _ENV_FINDINGS:
        names = lists[key]
        if not names:
            continue
        if key == "guessed":
            shown = ", ".join(f"{n}={plan.defaults[n]}" for n in names)
        else:
            shown = ", ".join(sorted(names) if key == "required" else names)
        count = f"{len(names)} variable{'s' if len(names) != 1 else ''}"
        log.add(code, severity, "environment", message.format(count=count) + shown, advice)


def usable_default(name: str, value: str) -> bool:
    """A constant from the sources that may be written into convox.yml as a default."""
    if _SECRET_NAME.search(name.upper()):
        return False
    return bool(value) and "\n" not in value and "${" not in value and len(value) <= 200
