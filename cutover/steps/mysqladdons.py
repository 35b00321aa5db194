"""Which MySQL add-on the *-mysql steps copy, and which they do not (issue 14).

The steps copy ONE MySQL add-on (the playbook has one ``mysql:`` section and the manifest one
MySQL resource to copy into). An app may have two: ClearDB and JawsDB during a move between
them, or a second ClearDB attached under another name. The one copied is the add-on whose config
var is ``mysql.config_var``, else the first in the order ``heroku addons`` lists them; every
other one is named, with its config var, as NOT copied, in preflight and again by check-mysql,
as Redis add-ons without a resource are (steps/redischeck.py, steps/redis.py: "WARNING: ... NOT
copied"). The run carries on after that WARNING.

``mysql.config_var`` may name a var no add-on sets: ClearDB's Heroku guide has users copy
CLEARDB_DATABASE_URL's value into DATABASE_URL. Its VALUE (``heroku config``) is then compared
with each add-on's own var's value: the add-on it equals is the one copied; when none equals it,
the database copied belongs to no listed add-on (``unknown``) and every add-on is NOT copied.
Values are compared, never printed (they hold passwords).

The add-ons come from ``heroku addons --json``: each with ``addon_service.name`` and the
``config_vars`` it sets; cutover's catalog (cutover/catalog/addons.json) says which services are
MySQL (resource ``mysql`` or ``mariadb``) and the var they set by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from cutover.steps.base import Context

MYSQL_KINDS = ("mysql", "mariadb")
UNKNOWN = "unknown"  # the service of a database mysql.config_var holds that no add-on's var does


class MysqlAddon(BaseModel):
    service: str  # cleardb, jawsdb, jawsdb-maria
    config_var: str  # the var holding its URL

    def label(self) -> str:
        if self.service == UNKNOWN:
            return f"the database in {self.config_var} (no listed add-on's var holds it: unknown)"
        return f"{self.service} ({self.config_var})"


def _url_var(names: list[str], default: str) -> str:
    urls = [n for n in names if n.endswith("_URL")]
    return default if default in names or not urls else urls[0]


def mysql_addons(addons: list[dict[str, Any]]) -> list[MysqlAddon]:
    """Every MySQL add-on of ``heroku addons --json``, in its order."""
    from cutover.catalog import addons as catalog  # noqa: PLC0415

    out = []
    for addon in addons:
        service = str((addon.get("addon_service") or {}).get("name", ""))
        kind = catalog().get(service)
        if kind is None or kind.resource not in MYSQL_KINDS or not kind.default_vars:
            continue
        names = [str(v) for v in addon.get("config_vars") or []]
        out.append(MysqlAddon(service=service, config_var=_url_var(names, kind.default_vars[0])))
    return out


def first_by_service(services: list[str]) -> MysqlAddon | None:
    """The first MySQL service of a list of service names, with its catalog var: what a state
    saved before preflight kept the add-ons themselves (``heroku_addons`` only) tells."""
    from cutover.catalog import addons as catalog  # noqa: PLC0415

    for service in services:
        kind = catalog().get(service)
        if kind is not None and kind.resource in MYSQL_KINDS and kind.default_vars:
            return MysqlAddon(service=service, config_var=kind.default_vars[0])
    return None


def needs_values(found: list[MysqlAddon], config_var: str | None) -> bool:
    """Whether :func:`choose` needs the config vars' values: mysql.config_var set, and no
    add-on's own var."""
    return bool(found and config_var and all(a.config_var != config_var for a in found))


def choose(
    found: list[MysqlAddon], config_var: str | None, config: dict[str, str] | None = None
) -> tuple[MysqlAddon, list[MysqlAddon]]:
    """(the add-on copied, the others). ``config_var`` (mysql.config_var) picks the add-on that
    sets it; a var no add-on sets is matched by value in ``config`` (``heroku config``) against
    each add-on's own var: the add-on it equals, read from ``config_var``; none equal, or no
    ``config`` to compare with: an ``unknown`` one, every add-on left out. No var: the first."""
    assert found
    if not config_var:
        return found[0], found[1:]
    copied = next((a for a in found if a.config_var == config_var), None)
    if copied is None:
        value = (config or {}).get(config_var)
        copied = next(
            (a for a in found if value and (config or {}).get(a.config_var) == value), None
        )
    if copied is None:
        return MysqlAddon(service=UNKNOWN, config_var=config_var), list(found)
    others = [a for a in found if a is not copied]
    return MysqlAddon(service=copied.service, config_var=config_var), others


def which(
    found: list[MysqlAddon],
    services: list[str],
    config_var: str | None,
    config: dict[str, str] | None = None,
) -> tuple[MysqlAddon, list[MysqlAddon]] | None:
    """check-mysql's choice from preflight's outputs: ``found`` (every MySQL add-on), or, in a
    state saved before preflight kept them, the first MySQL one of ``services``."""
    if not found:
        first = first_by_service(services)
        found = [first] if first else []
    return choose(found, config_var, config) if found else None


def not_copied_warning(copied: MysqlAddon, others: list[MysqlAddon], resource: str) -> str:
    """The WARNING for the add-ons left behind: which one is copied, which are NOT, what to do."""
    names = ", ".join(a.label() for a in others)
    first = others[0].config_var
    count = len(others) + (copied.service != UNKNOWN)
    return (
        f"WARNING: the Heroku app has {count} MySQL add-on{'s' * (count != 1)}; the *-mysql "
        f"steps copy only {copied.label()} into the Convox {resource} resource. NOT copied: "
        f"{names}: its data does not reach Convox and is lost when the Heroku app goes (the "
        "run carries on). To copy another one instead, set mysql.config_var (e.g. "
        f"mysql.config_var: {first}); to keep it as well, copy it yourself into a second "
        "MySQL resource (mysqldump from its URL into `convox resources proxy`) before the "
        "window; if the app no longer uses it, nothing is lost, but look before the Heroku "
        "app is deleted"
    )


def preflight_mysql(ctx: Context, addons: list[dict[str, Any]]) -> list[MysqlAddon]:
    """Preflight's part: every MySQL add-on (kept in its outputs for check-mysql) and, with one
    NOT copied (several add-ons, or mysql.config_var holding none of theirs), the WARNING."""
    found = mysql_addons(addons)
    var = ctx.model.mysql.config_var
    if ctx.model.mysql.copy_data and (len(found) > 1 or needs_values(found, var)):
        from cutover.steps.mysql import planned_resource  # noqa: PLC0415 - it imports preflight

        config = ctx.heroku.config() if needs_values(found, var) else None
        copied, others = choose(found, var, config)
        if others:
            ctx.note(not_copied_warning(copied, others, planned_resource(ctx)))
    return found


__all__ = [
    "MysqlAddon",
    "choose",
    "first_by_service",
    "mysql_addons",
    "needs_values",
    "not_copied_warning",
    "preflight_mysql",
    "which",
]
