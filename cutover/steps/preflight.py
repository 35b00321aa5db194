"""preflight: check tools, access and inputs before anything changes, including whether the
Convox database resource can take Heroku's data (its PostgreSQL version and extensions)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cutover.errors import CutoverError, InvalidInput
from cutover.steps.base import Context, Step, StepOutputs, cmd
from cutover.steps.manifests import load_manifest, manifest_path
from cutover.steps.mysqladdons import MysqlAddon, preflight_mysql
from cutover.steps.redischeck import preflight_redis


class Dynos(BaseModel):
    quantity: int
    size: str


class PreflightOutputs(StepOutputs):
    """What the run found before changing anything; rollback scales Heroku back to
    ``heroku_formation``. The pg_* versions are there only with a database section."""

    step_id = "preflight"
    heroku_cli: str
    heroku_formation: dict[str, Dynos]
    heroku_addons: list[str]
    # every MySQL add-on with its URL var (steps/mysqladdons.py); absent from older states
    mysql_addons: list[MysqlAddon] = Field(default_factory=list)
    scheduler: bool
    router: str
    rack: str | None
    pg_dump_major: int | None = None
    pg_restore_major: int | None = None
    heroku_pg_major: int | None = None
    convox_pg_major: int | None = None


class Preflight(Step):
    id = "preflight"
    title = "Check tools, access and inputs"
    outputs = PreflightOutputs
    fields = (
        "heroku.app",
        "convox.app",
        "convox.rack",
        "convox.manifest",
        "convox.source",
        "smoke.service",
        "window.scale_down",
        "database.heroku_attachment",
        "database.resource",
        "dns.provider",
        "dns.server",
        "dns.key_name",
    )

    def describe(self, ctx: Context) -> list[str]:
        return [
            cmd(["heroku", "--version"]),
            cmd(ctx.heroku.argv("apps:info", "--json")),
            cmd(ctx.heroku.argv("ps:scale")),
            cmd(ctx.heroku.argv("addons", "--json")),
            cmd(ctx.convox.version_argv()),
            cmd(["convox", "switch"]) if ctx.convox.rack is None else "",
            cmd(ctx.convox.argv("rack", app=False)),
            cmd(["pg_dump", "--version"]),
            cmd(ctx.heroku.argv("pg:credentials:url", ctx.model.database.heroku_attachment))
            if ctx.model.database
            else "",
            "psql -c 'SHOW server_version_num'  (against the Heroku database)"
            if ctx.model.database
            else "",
            f"compare it with resources.{ctx.model.database.resource}.options.version of "
            "the manifest (postgres default 10.5)"
            if ctx.model.database
            else "",
            "psql: the Heroku database's extensions, checked against the resource type"
            if ctx.model.database
            else "",
            "Redis add-ons (if any): each one's resource in the manifest and redis.addons "
            f"checked, its URL from {cmd(ctx.heroku.argv('config', '--json'))} (masked), PING "
            "and the server's version (TLS as Heroku documents)",
            "MySQL add-ons (if any): with several, or a mysql.config_var no add-on sets, the "
            "one copied named and the others as NOT copied (WARNING; that var's value, from "
            f"{cmd(ctx.heroku.argv('config', '--json'))}, compared with each add-on's own "
            "var's, never printed)",
        ]

    def apply(self, ctx: Context) -> PreflightOutputs:
        from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs (start-up time)

        model = ctx.model
        if model.dns and model.dns.provider == "cloudflare":
            token_env = model.dns.cloudflare.token_env if model.dns.cloudflare else None
            token_env = token_env or "CLOUDFLARE_API_TOKEN"
            if not os.environ.get(token_env):
                # Found now, not first by switch-dns inside the window.
                raise InvalidInput(
                    f"dns.provider is cloudflare but {token_env} (dns.cloudflare.token_env) "
                    "is not set in the environment",
                    resolution=f"Export {token_env} with an API token allowed Zone:Read and "
                    "DNS:Edit on the zone.",
                )
        manifest = load_manifest(manifest_path(ctx))
        services = manifest["services"]
        if model.smoke and model.smoke.service not in services:
            raise InvalidInput(
                f"{manifest_path(ctx)}: smoke.service {model.smoke.service!r} is not a service "
                f"of the manifest (services: {', '.join(services)})"
            )
        version = ctx.heroku.version()
        ctx.note(f"heroku CLI {'.'.join(map(str, version))}")
        info = ctx.heroku.app_info()["app"]
        formation = ctx.heroku.formation()
        addons = ctx.heroku.addons()
        addon_services = sorted(
            {str((a.get("addon_service") or {}).get("name", "")) for a in addons}
        )
        ctx.note(
            f"Heroku app {info.get('name')}: "
            + ", ".join(f"{f.type}={f.quantity}:{f.size}" for f in formation)
        )
        ctx.convox.version()
        if ctx.convox.rack is None:
            # Pin the rack for the whole run: a `convox switch` in another terminal must not
            # move the rest of the cutover to another rack.
            ctx.convox.rack = ctx.convox.current_rack()
            ctx.note(
                f"no convox.rack in the playbook: using the current rack "
                f"{ctx.convox.rack} for the whole run"
            )
        rack = ctx.convox.rack_info()
        router = rack.get("Router", "").split("\n")[0].split(" ")[0]
        ctx.note(f"Convox rack {rack.get('Name')} ({rack.get('Status', '?')}), router {router}")
        for process in model.window.scale_down or []:
            if process not in {f.type for f in formation}:
                raise InvalidInput(
                    f"window.scale_down names {process!r}, which the Heroku app does not run "
                    f"(formation: {', '.join(f.type for f in formation)})"
                )
        # Redis: a playbook/manifest mistake or an unreachable add-on found now, not in the
        # window by inspect-redis (steps/redischeck.py).
        preflight_redis(ctx, manifest, addons)
        mysql = preflight_mysql(ctx, addons)
        outputs = PreflightOutputs(
            heroku_cli=".".join(map(str, version)),
            heroku_formation={f.type: Dynos(quantity=f.quantity, size=f.size) for f in formation},
            heroku_addons=addon_services,
            mysql_addons=mysql,
            scheduler="scheduler" in addon_services,
            router=router,
            rack=ctx.convox.rack,
        )
        if model.database:
            client = ctx.postgres.client_major("pg_dump")
            restore = ctx.postgres.client_major("pg_restore")
            url = _heroku_postgres_url(ctx, model.database.heroku_attachment, addon_services)
            server = ctx.postgres.server_major(ConnInfo.from_url(url))
            if client < server:
                raise CutoverError(
                    f"pg_dump {client} is older than the Heroku server ({server}); "
                    "it cannot dump that database",
                    resolution=f"Install PostgreSQL {server} client tools "
                    f"(e.g. apt-get install postgresql-client-{server}).",
                )
            outputs.pg_dump_major = client
            outputs.pg_restore_major = restore
            outputs.heroku_pg_major = server
            ctx.note(f"pg_dump {client}, Heroku PostgreSQL {server}")
            outputs.convox_pg_major = check_target_version(ctx, manifest, server)
            check_target_extensions(ctx, manifest, ctx.postgres.extensions(ConnInfo.from_url(url)))
        if model.dns and model.dns.provider == "rfc2136" and ctx.dns is None:
            raise InvalidInput(
                "dns.provider is rfc2136 but no server or TSIG key is configured",
                resolution="Set dns.server and dns.key_name in the playbook and "
                "CUTOVER_DNS_TSIG_SECRET in the environment.",
            )
        if outputs.scheduler:
            ctx.note(
                "Heroku Scheduler is attached: its jobs must be disabled in the dashboard "
                "at the window (the disable-scheduler gate lists them)"
            )
        return outputs


# provider/k8s/template/resource/postgres.yml.tmpl: image postgres:{{ coalesce .Parameters.version
# "10.5" }}. rds-postgres without a version gets whatever RDS defaults to (not known here).
DEFAULT_RESOURCE_VERSIONS = {"postgres": "10.5"}


def declared_pg_major(manifest: dict[str, Any], resource: str, path: Path) -> int | None:
    """The major version of the manifest's ``resources.<resource>``: ``options.version``, else
    the provider's default for its type; None when it cannot be known (rds without a version)."""
    spec = (manifest.get("resources") or {}).get(resource)
    if not isinstance(spec, dict):
        raise InvalidInput(
            f"{path}: database.resource {resource!r} is not a resource of the manifest",
            resolution=f"Add resources.{resource} (type: postgres) "
            "or fix database.resource in the playbook.",
        )
    raw = spec.get("options")
    options: dict[str, Any] = raw if isinstance(raw, dict) else {}
    version = str(
        options.get("version") or DEFAULT_RESOURCE_VERSIONS.get(str(spec.get("type")), "")
    )
    match = re.match(r"^(\d+)", version)
    return int(match.group(1)) if match else None


def check_target_version(ctx: Context, manifest: dict[str, Any], server: int) -> int | None:
    """Stop before anything is copied when the dump would come from a newer server than the
    Convox resource runs: pg_restore into an older server fails on the dump's newer syntax."""
    db = ctx.model.database
    assert db
    path = manifest_path(ctx)
    target = declared_pg_major(manifest, db.resource, path)
    if target is None:
        ctx.note(
            f"resources.{db.resource} declares no version: cannot compare it with "
            f"Heroku's PostgreSQL {server}"
        )
    elif target < server:
        declared = (manifest["resources"][db.resource].get("options") or {}).get("version")
        raise CutoverError(
            f"the Convox {db.resource} resource would run PostgreSQL {target} "
            + (f"(options.version {declared})" if declared else "(the default: no options.version)")
            + f", older than Heroku's PostgreSQL {server}: the dump could not be restored",
            resolution=f'Set resources.{db.resource}.options.version to "{server}" in {path} '
            "before the first deploy creates the resource.",
        )
    return target


# The contrib extensions of the official postgres image that the `postgres` resource type runs
# (provider/k8s/template/resource/postgres.yml.tmpl: image postgres:<version>, POSTGRES_USER, so
# its role is a superuser and can create any of them). Anything else (postgis, timescaledb,
# vector, ...) is not in that image. rds-postgres has RDS's own allow-list: not checked here.
POSTGRES_IMAGE_EXTENSIONS = frozenset(
    {
        "adminpack",
        "amcheck",
        "autoinc",
        "bloom",
        "btree_gin",
        "btree_gist",
        "citext",
        "cube",
        "dblink",
        "dict_int",
        "dict_xsyn",
        "earthdistance",
        "file_fdw",
        "fuzzystrmatch",
        "hstore",
        "insert_username",
        "intagg",
        "intarray",
        "isn",
        "lo",
        "ltree",
        "moddatetime",
        "old_snapshot",
        "pageinspect",
        "pg_buffercache",
        "pg_freespacemap",
        "pg_prewarm",
        "pg_stat_statements",
        "pg_surgery",
        "pg_trgm",
        "pg_visibility",
        "pg_walinspect",
        "pgcrypto",
        "pgrowlocks",
        "pgstattuple",
        "plpgsql",
        "postgres_fdw",
        "refint",
        "seg",
        "sslinfo",
        "tablefunc",
        "tcn",
        "tsm_system_rows",
        "tsm_system_time",
        "unaccent",
        "uuid-ossp",
        "xml2",
    }
)


def check_target_extensions(ctx: Context, manifest: dict[str, Any], used: list[str]) -> None:
    """Stop before anything is copied when the Heroku database uses an extension the Convox
    resource type cannot create: the restore would fail at that extension."""
    db = ctx.model.database
    assert db
    rtype = str(((manifest.get("resources") or {}).get(db.resource) or {}).get("type", ""))
    if rtype != "postgres":
        ctx.note(
            f"extensions on Heroku: {', '.join(used) or 'none'} (not checked against "
            f"{rtype or 'the resource type'})"
        )
        return
    missing = sorted(set(used) - POSTGRES_IMAGE_EXTENSIONS)
    if missing:
        raise CutoverError(
            f"the Heroku database uses {', '.join(missing)}, which the Convox {db.resource} "
            "resource (type postgres: the official postgres image) cannot provide",
            resolution=f"Use type rds-postgres for resources.{db.resource} in "
            f"{manifest_path(ctx)} (RDS offers e.g. postgis), or drop the extension on Heroku.",
        )


def _heroku_postgres_url(ctx: Context, attachment: str, addon_services: list[str]) -> str:
    """The attachment's URL; on an app without Heroku Postgres (one on ClearDB or JawsDB only,
    issue 14) the refusal names the playbook's field instead of the CLI's "has no databases"."""
    try:
        return ctx.heroku.credentials_url(attachment)
    except CutoverError as exc:
        if "heroku-postgresql" in addon_services:
            raise
        raise InvalidInput(
            f"database.heroku_attachment {attachment}: the Heroku app has no Heroku Postgres "
            f"add-on (its add-ons: {', '.join(addon_services) or 'none'})",
            details=str(exc),
            resolution="Set `database: null` in the playbook to skip the Postgres steps (a "
            "ClearDB or JawsDB add-on is copied by the *-mysql steps, mysql: section)",
        ) from None
