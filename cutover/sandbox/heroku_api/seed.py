"""The standard sandbox app, built from the seed data file ``sandbox/data/heroku_seed.json``.

:func:`default_state` builds the state of one app; :func:`add_postgres_attachment` adds a
second ``heroku-postgresql`` add-on attached as ``HEROKU_POSTGRESQL_<COLOR>`` with its own real
database; :func:`add_scheduled_backups` adds the older scheduled backups Heroku's daily schedule
leaves behind (named ``a<num>`` by the CLI).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from cutover.sandbox.heroku_api.common import (
    JSONDict,
    data_time,
    database_url,
    iso,
    normalize_db,
    stable_id,
)
from cutover.sandbox.heroku_api.records import add_release, new_transfer
from cutover.sandbox.heroku_api.state import STATE_VERSION

SEED_FILE = "heroku_seed.json"


@cache
def _seed_text() -> str:
    return resources.files("cutover.sandbox").joinpath("data", SEED_FILE).read_text("utf-8")


def seed_data() -> JSONDict:
    """A fresh copy of the seed data file."""
    data = json.loads(_seed_text())
    if not isinstance(data, dict):
        raise ValueError(f"{SEED_FILE}: the seed must be a JSON object")
    return data


def _fill(value: Any, facts: dict[str, str]) -> Any:
    """Substitute ``{app}``-style placeholders in every string of ``value``."""
    if isinstance(value, str):
        return value.format(**facts)
    if isinstance(value, list):
        return [_fill(v, facts) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, facts) for k, v in value.items() if not k.startswith("_")}
    return value


def _facts(app: str, **extra: str) -> dict[str, str]:
    suffix = hashlib.sha256(app.encode()).hexdigest()[:12]
    digits = int(suffix[:6], 16) % 90000 + 10000
    return {
        "app": app,
        "app_id": stable_id("app", app),
        "digits": str(digits),
        "herokuapp_host": f"{app}-{suffix}.herokuapp.com",
        **extra,
    }


def _addon(
    app: str, spec: JSONDict, facts: dict[str, str], stamp: str, attachment: str, cvars: list[str]
) -> JSONDict:
    """A Platform API add-on object plus its attachments, from a seed ``addons`` entry."""
    app_ref = {"id": facts["app_id"], "name": app}
    service, plan, cents = str(spec["service"]), str(spec["plan"]), int(spec["cents"])
    name = str(_fill(spec["name"], facts))
    addon_id = stable_id("addon", app, name)
    plan_name = f"{service}:{plan}"
    return {
        "actions": [],
        "addon_service": {"id": stable_id("service", service), "name": service},
        "app": app_ref,
        "billed_price": {"cents": cents, "contract": False, "unit": "month"},
        "config_vars": list(cvars),
        "created_at": stamp,
        "id": addon_id,
        "name": name,
        "plan": {
            "id": stable_id("plan", plan_name),
            "name": plan_name,
            "price": {"cents": cents, "contract": False, "unit": "month"},
        },
        "provider_id": f"resource{facts['digits']}@heroku.com",
        "state": "provisioned",
        "updated_at": stamp,
        "web_url": f"https://addons-sso.heroku.com/apps/{facts['app_id']}/addons/{addon_id}",
        "attachments": [
            {
                "id": stable_id("attachment", app, name, attachment),
                "name": attachment,
                "config_vars": list(cvars),
                "namespace": None,
                "created_at": stamp,
                "updated_at": stamp,
            }
        ],
    }


def default_state(
    app: str,
    *,
    db: dict[str, str | int],
    domain: str,
    heroku_dns_target: str,
    api_key: str,
    scheduled_backups: bool = False,
    redis_url: str | None = None,
) -> JSONDict:
    """Build the state of the standard sandbox app ``app``.

    ``db`` holds the facts of the real PostgreSQL database behind the ``heroku-postgresql``
    add-on: ``host``, ``port``, ``user``, ``password`` and the name as ``database`` (or
    ``dbname``/``db``). ``domain`` is the app's custom domain, served with CNAME
    ``heroku_dns_target``. Ids are derived from the app name; secrets are random.
    ``scheduled_backups`` adds the older scheduled backups (see :func:`add_scheduled_backups`);
    the daily backup schedule itself is always there. ``redis_url``: the heroku-redis add-on's
    REDIS_URL (the sandbox's real TLS redis-server, cutover/sandbox/redisbox.py), else a dead one.
    """
    database = normalize_db(db)
    seed = seed_data()
    facts = _facts(app, domain=domain, dns_target=heroku_dns_target)
    created = datetime.fromisoformat(str(seed["created_at"]).replace("Z", "+00:00"))
    stamp = iso(created)
    app_id = facts["app_id"]
    app_ref = {"id": app_id, "name": app}
    account: JSONDict = {
        "id": stable_id("account", "owner"),
        "email": seed["account"]["email"],
        "name": seed["account"]["name"],
        "allow_tracking": False,
        "beta": False,
        "created_at": stamp,
        "default_organization": None,
        "default_team": None,
        "delinquent_at": None,
        "federated": False,
        "last_login": stamp,
        "sms_number": None,
        "suspended_at": None,
        "two_factor_authentication": False,
        "updated_at": stamp,
        "verified": True,
    }
    owner = {"email": account["email"], "id": account["id"]}
    spec = seed["app"]
    stack = {"id": stable_id("stack", spec["stack"]), "name": spec["stack"]}
    app_obj: JSONDict = {
        "acm": True,
        "archived_at": None,
        "build_stack": dict(stack),
        "buildpack_provided_description": spec["buildpack_provided_description"],
        "create_status": "complete",
        "created_at": stamp,
        "database_size": None,
        "generation": spec["generation"],
        "git_url": f"https://git.heroku.com/{app}.git",
        "id": app_id,
        "internal_routing": None,
        "maintenance": False,
        "name": app,
        "organization": None,
        "owner": owner,
        "process_tier": spec["process_tier"],
        "region": {"id": stable_id("region", spec["region"]), "name": spec["region"]},
        "released_at": stamp,
        "repo_size": int(spec["repo_size"]),
        "slug_size": int(spec["slug_size"]),
        "space": None,
        "stack": stack,
        "team": None,
        "updated_at": stamp,
        "web_url": f"https://{facts['herokuapp_host']}/",
    }
    formation = [
        {
            "app": app_ref,
            "command": proc["command"],
            "created_at": stamp,
            "id": stable_id("formation", app, proc["type"]),
            "quantity": int(proc["quantity"]),
            "size": proc["size"],
            "type": proc["type"],
            "updated_at": stamp,
        }
        for proc in seed["formation"]
    ]
    addons = []
    for addon_spec in seed["addons"]:
        addon = _addon(
            app, addon_spec, facts, stamp, addon_spec["attachment"], addon_spec["config_vars"]
        )
        if addon_spec.get("database"):
            addon["database"] = database
        addons.append(addon)
    config_vars = {
        "DATABASE_URL": database_url(database),
        **seed["config_vars"],
        "REDIS_URL": redis_url or f"redis://h:{secrets.token_hex(16)}@127.0.0.1:1/0",
        "SECRET_KEY_BASE": secrets.token_hex(64),
        "STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24),
    }
    config_vars = dict(sorted(config_vars.items()))
    herokuapp_host = facts["herokuapp_host"]
    sni_name = f"{domain.split('.', maxsplit=1)[0] or 'sni'}-{facts['digits']}"
    domains = [
        {
            "acm_status": None,
            "acm_status_reason": None,
            "app": app_ref,
            "cname": None,
            "created_at": stamp,
            "hostname": herokuapp_host,
            "id": stable_id("domain", app, herokuapp_host),
            "kind": "heroku",
            "sni_endpoint": None,
            "status": "none",
            "updated_at": stamp,
        },
        {
            "acm_status": "cert issued",
            "acm_status_reason": None,
            "app": app_ref,
            "cname": heroku_dns_target,
            "created_at": stamp,
            "hostname": domain,
            "id": stable_id("domain", app, domain),
            "kind": "custom",
            "sni_endpoint": {"id": stable_id("sni", app, sni_name), "name": sni_name},
            "status": "succeeded",
            "updated_at": stamp,
        },
    ]
    user = {"email": account["email"], "id": account["id"]}
    plan_names = [a["plan"]["name"] for a in addons]
    releases = []
    versions = [int(r["version"]) for r in seed["releases"]]
    for item in seed["releases"]:
        version = int(item["version"])
        moment = iso(created + timedelta(minutes=version))
        releases.append(
            {
                "addon_plan_names": plan_names,
                "app": app_ref,
                "created_at": moment,
                "current": version == max(versions),
                "description": _fill(item["description"], facts),
                "id": stable_id("release", app, str(version)),
                "output_stream_url": None,
                "slug": {"id": stable_id("slug", app, str(version))},
                "status": "succeeded",
                "updated_at": moment,
                "user": user,
                "version": version,
            }
        )
    collaborators = [
        {
            "app": app_ref,
            "created_at": stamp,
            "id": stable_id("collaborator", app, account["id"]),
            "permissions": [],
            "role": "owner",
            "updated_at": stamp,
            "user": {"email": account["email"], "federated": False, "id": account["id"]},
        }
    ]
    schedule = _fill(seed["backup_schedule"], facts)
    schedule.update(uuid=stable_id("schedule", app, str(addons[0]["id"])), addon_id=addons[0]["id"])
    state: JSONDict = {
        "version": STATE_VERSION,
        "api_key": api_key,
        "account": account,
        "next_backup_num": 1,
        "faults": [],
        "timings": _fill(seed["timings"], facts),
        "apps": {
            app: {
                "app": app_obj,
                "formation": formation,
                "config_vars": config_vars,
                "addons": addons,
                "domains": domains,
                "releases": releases,
                "collaborators": collaborators,
                "transfers": [],
                "backup_schedules": [schedule],
            }
        },
    }
    if scheduled_backups:
        add_scheduled_backups(state, app)
    return state


def add_scheduled_backups(state: JSONDict, app: str, *, today: datetime | None = None) -> None:
    """Add the finished daily backups of the app's schedule (seed ``scheduled_backups_days_ago``).

    Each is a successful ``pg_dump`` -> ``gof3r`` transfer with a ``schedule`` reference, made at
    the schedule's hour ``N`` days before ``today`` (so the CLI names them ``a001``...). Their dump
    file is made from the database the first time their URL is asked for (see
    ``backups.materialize``, also run by a starting emulator): it holds the data of that
    moment, not of the day it claims.
    """
    seed = seed_data()
    entry = state["apps"][app]
    schedule = (entry.get("backup_schedules") or [None])[0]
    if schedule is None:
        raise ValueError(f"app {app} has no backup schedule")
    addon = next(a for a in entry["addons"] if a.get("id") == schedule["addon_id"])
    base = (today or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    base = base.replace(hour=int(schedule["hour"]))
    for days_ago in sorted(seed["scheduled_backups_days_ago"], reverse=True):
        started = base - timedelta(days=int(days_ago))
        transfer = new_transfer(state, addon, started, schedule=schedule)
        finished = data_time(started + timedelta(minutes=2))
        transfer.update(
            succeeded=True,
            finished_at=finished,
            updated_at=finished,
            materialize=True,
            logs=[{"created_at": finished, "level": "info", "message": "backup done"}],
        )
        entry.setdefault("transfers", []).append(transfer)


def add_postgres_attachment(
    state: JSONDict, app: str, *, db: dict[str, str | int], color: str | None = None
) -> str:
    """Attach a second ``heroku-postgresql`` add-on backed by the real database ``db``.

    It is attached as ``HEROKU_POSTGRESQL_<COLOR>`` with config var
    ``HEROKU_POSTGRESQL_<COLOR>_URL`` (how Heroku names a non-primary database), and the
    attachment makes a release, as on Heroku. Returns the attachment name.
    """
    seed = seed_data()
    spec = dict(seed["second_postgres"])
    attachment = f"HEROKU_POSTGRESQL_{(color or spec['color']).upper()}"
    entry = state["apps"][app]
    if any(
        att.get("name") == attachment
        for addon in entry.get("addons") or []
        for att in addon.get("attachments") or []
    ):
        raise ValueError(f"app {app} already has an attachment named {attachment}")
    database = normalize_db(db)
    facts = _facts(app)
    spec["name"] = f"{spec['name']}-{attachment.rsplit('_', 1)[-1].lower()}"
    stamp = iso(datetime.now(UTC).replace(microsecond=0))
    addon = _addon(app, spec, facts, stamp, attachment, [f"{attachment}_URL"])
    addon["database"] = database
    entry["addons"].append(addon)
    entry["config_vars"][f"{attachment}_URL"] = database_url(database)
    add_release(state, entry, f"Attach {attachment} (@ref:{addon['name']})")
    return attachment
