"""Which MySQL add-on the *-mysql steps copy, and which they do not (issue 14).

The steps copy ONE MySQL add-on (the playbook has one ``mysql:`` section and the manifest one
MySQL resource to copy into). An app may have two: ClearDB and JawsDB during a move between
them, or a second ClearDB attached under another name. The one copied is the add-on whose config
var is ``mysql.config_var``, else the first found; every other one is named, with its config
var, as NOT copied, in preflight and again by check-mysql, as Redis add-ons without a resource
are (steps/redischeck.py, steps/redis.py: "WARNING: ... NOT copied").

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


class MysqlAddon(BaseModel):
    service: str  # cleardb, jawsdb, jawsdb-maria
    config_var: str  # the var holding its URL

    def label(self) -> str:
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


def choose(found: list[MysqlAddon], config_var: str | None) -> tuple[MysqlAddon, list[MysqlAddon]]:
    """(the add-on copied, the others). ``config_var`` (mysql.config_var) picks the add-on that
    sets it; a var no add-on sets is the first add-on's URL under another name."""
    assert found
    copied = next((a for a in found if config_var and a.config_var == config_var), found[0])
    others = [a for a in found if a is not copied]
    if config_var and copied.config_var != config_var:
        copied = MysqlAddon(service=copied.service, config_var=config_var)
    return copied, others


def which(
    found: list[MysqlAddon], services: list[str], config_var: str | None
) -> tuple[MysqlAddon, list[MysqlAddon]] | None:
    """check-mysql's choice from preflight's outputs: ``found`` (every MySQL add-on), or, in a
    state saved before preflight kept them, the first MySQL one of ``services``."""
    if not found:
        first = first_by_service(services)
        found = [first] if first else []
    return choose(found, config_var) if found else None


def not_copied_warning(copied: MysqlAddon, others: list[MysqlAddon], resource: str) -> str:
    """The WARNING for the add-ons left behind: which one is copied, which are NOT, what to do."""
    names = ", ".join(a.label() for a in others)
    first = others[0].config_var
    return (
        f"WARNING: the Heroku app has {len(others) + 1} MySQL add-ons; the *-mysql steps copy "
        f"only {copied.label()} into the Convox {resource} resource. NOT copied: {names}: "
        "its data does not reach Convox and is lost when the Heroku app goes. To copy another "
        f"one instead, set mysql.config_var (e.g. mysql.config_var: {first}); to keep it as "
        "well, copy it yourself into a second MySQL resource (mysqldump from its URL into "
        "`convox resources proxy`) before the window; if the app no longer uses it, nothing "
        "is lost, but look before the Heroku app is deleted"
    )


def preflight_mysql(ctx: Context, addons: list[dict[str, Any]]) -> list[MysqlAddon]:
    """Preflight's part: every MySQL add-on (kept in its outputs for check-mysql) and, with more
    than one to copy from, the WARNING naming those NOT copied."""
    found = mysql_addons(addons)
    if len(found) > 1 and ctx.model.mysql.copy_data:
        from cutover.steps.mysql import planned_resource  # noqa: PLC0415 - it imports preflight

        copied, others = choose(found, ctx.model.mysql.config_var)
        ctx.note(not_copied_warning(copied, others, planned_resource(ctx)))
    return found


__all__ = [
    "MysqlAddon",
    "choose",
    "first_by_service",
    "mysql_addons",
    "not_copied_warning",
    "preflight_mysql",
    "which",
]
