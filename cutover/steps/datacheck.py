"""check-data: before anything is copied, can the Convox database take Heroku's? (No writes.)

Read-only queries on both sides (Heroku through ``pg:credentials:url``, the resource through
``convox resources proxy``), then one assessment (:func:`assess`, pure, unit-tested on catalog
rows): server versions, every extension on Heroku against the target's
``pg_available_extension_versions`` and whether the target role may create it, the role and
database settings the sync carries over, size against the resource's capacity, and an estimate of
the final sync's duration. Anything that would fail in the window stops here, with the fix;
anything the sync will work around (an extension of ``skip_extensions``) is a finding.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from cutover.errors import CommandError, CutoverError, UnexpectedOutput
from cutover.steps.base import Context, Step, StepOutputs, cmd, read_outputs
from cutover.steps.data import (
    _DATA_FIELDS,
    RESOURCE_START_WAIT,
    InitialSyncOutputs,
    _skip_without_db,
    heroku_source,
    wait_for_resource,
)
from cutover.steps.manifests import load_manifest, manifest_path

if TYPE_CHECKING:
    from cutover.adapters.postgres import ConnInfo, PostgresAdapter

GIB = 1024**3
# Capacity of a resource without options.storage (GiB): the k8s postgres resource's volume claim
# (provider/k8s/template/resource/postgres.yml.tmpl: storage `coalesce .Parameters.storage "10"`)
# and RDS's AllocatedStorage default (provider/aws/provisioner/rds/metadata.go: "20"; the
# manifest's `storage` option maps to it in provider/k8s/aws_resources.go).
DEFAULT_STORAGE_GIB = {"postgres": 10, "rds-postgres": 20}
# Roles whose members may create the extensions their service allows (RDS, Azure, Cloud SQL).
ADMIN_ROLES = ("rds_superuser", "azure_pg_admin", "cloudsqlsuperuser")
# pg_settings.context values a role may not set with ALTER ROLE/DATABASE ... SET unless it is a
# superuser (src/backend/utils/misc/guc.c: set_config_option refuses them).
SUPERUSER_CONTEXTS = frozenset({"internal", "postmaster", "sighup", "superuser-backend",
                                "superuser", "backend"})  # fmt: skip
SOURCE_SQL = """
SELECT json_build_object(
  'version', current_setting('server_version_num')::int,
  'bytes', pg_catalog.pg_database_size(current_database()),
  'schemas', (SELECT json_agg(nspname ORDER BY nspname) FROM pg_catalog.pg_namespace),
  'extensions', (SELECT coalesce(json_agg(json_build_object('name', extname,
      'version', extversion, 'schema', extnamespace::regnamespace::text) ORDER BY extname), '[]')
    FROM pg_catalog.pg_extension),
  'settings', (SELECT coalesce(json_agg(json_build_object(
      'scope', CASE WHEN s.setrole = 0 THEN 'database'
                    WHEN s.setdatabase = 0 THEN 'role' ELSE 'role in database' END,
      'config', s.setconfig) ORDER BY s.setrole, s.setdatabase), '[]')
    FROM pg_catalog.pg_db_role_setting s
    WHERE (s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                             WHERE datname = current_database())
           AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles
                                  WHERE rolname = current_user)))
       OR (s.setdatabase = 0 AND s.setrole = (SELECT oid FROM pg_catalog.pg_roles
                                               WHERE rolname = current_user))));
"""
TARGET_SQL = """
SELECT json_build_object(
  'version', current_setting('server_version_num')::int,
  'superuser', (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
  'create_on_database', has_database_privilege(current_database(), 'CREATE'),
  'admin_roles', (SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]')
    FROM pg_catalog.pg_roles
    WHERE rolname IN ('rds_superuser', 'azure_pg_admin', 'cloudsqlsuperuser')
      AND pg_has_role(current_user, oid, 'MEMBER')),
  'available', (SELECT coalesce(json_object_agg(v.name, json_build_object(
      'trusted', v.trusted, 'superuser', v.superuser)), '{}')
    FROM pg_catalog.pg_available_extension_versions v
    JOIN pg_catalog.pg_available_extensions a
      ON a.name = v.name AND a.default_version = v.version),
  'settings', (SELECT json_object_agg(name, context) FROM pg_catalog.pg_settings),
  'bytes', pg_catalog.pg_database_size(current_database()),
  'used_bytes', (SELECT sum(pg_catalog.pg_database_size(oid))::bigint
    FROM pg_catalog.pg_database WHERE has_database_privilege(oid, 'CONNECT')),
  'unreadable_databases', (SELECT count(*) FROM pg_catalog.pg_database
    WHERE NOT has_database_privilege(oid, 'CONNECT')));
"""


class SourceFacts(BaseModel):
    version: int
    bytes: int
    schemas: list[str]
    extensions: list[dict[str, str]]
    settings: list[dict[str, Any]]


class TargetFacts(BaseModel):
    version: int
    superuser: bool
    create_on_database: bool
    admin_roles: list[str]
    available: dict[str, dict[str, bool]]
    settings: dict[str, str]
    bytes: int
    used_bytes: int | None = None
    unreadable_databases: int = 0


FactsT = TypeVar("FactsT", SourceFacts, TargetFacts)


@dataclass
class Assessment:
    findings: list[str] = field(default_factory=list)
    stops: list[tuple[str, str]] = field(default_factory=list)  # (problem, fix)
    skipped_extensions: list[str] = field(default_factory=list)
    capacity_bytes: int | None = None
    free_bytes: int | None = None


@dataclass(frozen=True)
class Resource:
    name: str
    type: str
    image: str | None
    storage_gib: int | None
    manifest: str


class CheckDataOutputs(StepOutputs):
    step_id = "check-data"
    heroku_pg_major: int
    convox_pg_major: int
    heroku_bytes: int
    capacity_bytes: int | None = None
    free_bytes: int | None = None
    extensions: list[str]
    skipped_extensions: list[str]
    findings: list[str]
    estimate_seconds: float | None = None


def _mb(n: int) -> str:
    return f"{n / 1024**2:,.0f} MB"


def assess(
    source: SourceFacts, target: TargetFacts, skip: list[str], resource: Resource
) -> Assessment:
    """Every check of the module docstring, on the catalogs' rows; no I/O."""
    out = Assessment()
    smaj, tmaj = source.version // 10000, target.version // 10000
    if tmaj < smaj:
        out.stops.append(
            (
                f"the Convox {resource.name} resource runs PostgreSQL {tmaj}, older than "
                f"Heroku's {smaj}: a dump of {smaj} cannot be restored into it",
                f'Set resources.{resource.name}.options.version to "{smaj}" in '
                f"{resource.manifest} (a new resource: the data is copied afterwards).",
            )
        )
    admin = target.superuser or bool(target.admin_roles)
    for ext in source.extensions:
        name = ext["name"]
        if name == "plpgsql":
            continue
        avail = target.available.get(name)
        if avail is None:
            problem = (
                f"extension {name} (on Heroku, schema {ext['schema']}) is not available on the "
                f"Convox {resource.name} resource (not in pg_available_extensions)"
            )
            if name in skip:
                out.skipped_extensions.append(name)
                out.findings.append(problem + ": left out of the copy (skip_extensions)")
                continue
            image = f"image {resource.image}" if resource.image else "the official postgres image"
            example = (
                f" (e.g. postgis/postgis:{smaj}-3.4)"
                if name.startswith(("postgis", "address_standardizer"))
                else ""
            )
            out.stops.append(
                (
                    problem + f"; type {resource.type} runs {image}",
                    f"Declare resources.{resource.name}.image in {resource.manifest} with an "
                    f"image that has {name}{example}, or use a managed type such as "
                    "rds-postgres (RDS offers postgis and most contrib extensions); or drop it "
                    "on Heroku if the app does not use it.",
                )
            )
            continue
        trusted = avail.get("trusted", False) and target.create_on_database
        if admin or trusted or not avail.get("superuser", True):
            continue
        problem = (
            f"extension {name} needs a superuser to create and the Convox role is not one "
            "(not trusted, no rds_superuser-like membership)"
        )
        if name in skip:
            out.skipped_extensions.append(name)
            out.findings.append(problem + ": left out of the copy (skip_extensions)")
        else:
            out.stops.append(
                (
                    problem,
                    # Not "create it by hand on the Convox database": every full sync
                    # restores into a fresh staging database (<db>__cutover_next).
                    f"Give the Convox role the right to create {name}: a superuser, or on a "
                    "managed service membership in its admin role (rds_superuser, "
                    "azure_pg_admin, cloudsqlsuperuser); or add it to "
                    "database.skip_extensions if the app does not need it (it is then left "
                    "out of the copy).",
                )
            )
    _settings(source, target, out)
    _space(source, target, resource, out)
    return out


def _settings(source: SourceFacts, target: TargetFacts, out: Assessment) -> None:
    """Role and database settings (carried over with ALTER ... SET): unknown parameters and
    superuser-only ones stop; search_path schemas that exist nowhere are findings."""
    for entry in source.settings:
        for item in entry.get("config") or []:
            key, _, value = str(item).partition("=")
            where = f"{entry['scope']} setting {key}={value}"
            context = target.settings.get(key)
            if context is None and "." not in key:
                out.stops.append(
                    (
                        f"the {where} names a parameter the Convox server does not know",
                        "Remove it on Heroku (ALTER ROLE/DATABASE ... RESET) or use a server "
                        "that has it.",
                    )
                )
            elif context in SUPERUSER_CONTEXTS and not target.superuser:
                out.stops.append(
                    (
                        f"the {where} may be set by a superuser only ({context}) and the "
                        "Convox role is not one",
                        "Set it in the resource's server configuration (e.g. an RDS parameter "
                        "group) and RESET it on Heroku.",
                    )
                )
            if key == "search_path":
                schemas = [s.strip().strip('"') for s in value.split(",") if s.strip()]
                missing = [s for s in schemas if s not in source.schemas and not s.startswith("$")]
                if missing:
                    out.findings.append(
                        f"the {where} names schema(s) that do not exist on Heroku "
                        f"({', '.join(missing)}): carried as is, harmless until created"
                    )


def _space(source: SourceFacts, target: TargetFacts, resource: Resource, out: Assessment) -> None:
    """At least twice Heroku's size must fit: a full sync restores into a staging database next
    to the current copy before swapping (decision 1)."""
    need = 2 * source.bytes
    gib = resource.storage_gib or DEFAULT_STORAGE_GIB.get(resource.type)
    if gib is None or target.used_bytes is None:
        out.findings.append(
            f"free space on {resource.name} cannot be known (type {resource.type}): it needs "
            f"at least {_mb(need)} (twice Heroku's {_mb(source.bytes)})"
        )
        return
    out.capacity_bytes = gib * GIB
    # The current copy is replaced by the sync: what it holds now is not needed afterwards.
    others = target.used_bytes - target.bytes
    out.free_bytes = out.capacity_bytes - target.used_bytes
    note = (
        f" ({target.unreadable_databases} other database(s) could not be measured)"
        if target.unreadable_databases
        else ""
    )
    if out.capacity_bytes - others < need:
        out.stops.append(
            (
                f"the {resource.name} resource holds {gib} GiB, {_mb(others)} used by other "
                f"databases{note}: a sync needs {_mb(need)} (twice Heroku's "
                f"{_mb(source.bytes)}, for the staging database swap)",
                f"Set resources.{resource.name}.options.storage (GiB) in {resource.manifest} "
                f"to at least {-(-(need + others) // GIB) + 1}.",
            )
        )
    else:
        out.findings.append(
            f"space: {resource.name} has {gib} GiB, about {_mb(out.free_bytes)} free{note}; a "
            f"sync needs {_mb(need)} (twice Heroku's {_mb(source.bytes)})"
        )


def estimate(ctx: Context, heroku_bytes: int) -> tuple[float | None, str]:
    """The final sync's duration from the initial sync's measured time, when it ran."""
    # Not declared in ``reads``: check-data runs BEFORE initial-sync, whose outputs exist only
    # when check-data runs again later (--from); declaring them would mark a finished check-data
    # stale each time initial-sync finishes. The estimate is advice, not an input.
    initial = read_outputs(ctx.state, InitialSyncOutputs)
    seconds = getattr(initial, "seconds", None) if initial is not None else None
    if not isinstance(seconds, int | float) or seconds <= 0:
        return None, (
            "final sync duration: unknown until initial-sync has run and measured it "
            "(run `cutover run --from check-data` after it for an estimate)"
        )
    mode = ctx.model.database.final_sync if ctx.model.database else "full"
    text = f"final sync: about {seconds:.0f}s (the initial sync of {_mb(heroku_bytes)} took that)"
    if mode == "changed-tables":
        text += "; changed-tables copies only the changed tables: less, by their share of the data"
    elif mode == "changed-rows":
        text += (
            "; changed-rows applies only the rows changed since the last `cutover catch-up` "
            "(an upper bound; a schema change on Heroku makes it a full copy)"
        )
    return float(seconds), text


class CheckData(Step):
    id = "check-data"
    title = "Check that the Convox database can take Heroku's (no writes)"
    outputs = CheckDataOutputs
    fields = (*_DATA_FIELDS, "convox.manifest", "convox.source")

    def applies(self, model: Any) -> str | None:
        return _skip_without_db(model)

    def describe(self, ctx: Context) -> list[str]:
        db = ctx.model.database
        assert db
        return [
            cmd(ctx.heroku.argv("pg:credentials:url", db.heroku_attachment)),
            "psql (Heroku, read-only): server version, database size, extensions and their "
            "schemas, the database's and role's settings (pg_db_role_setting)",
            cmd(ctx.convox.argv("resources", "url", db.resource)),
            cmd(ctx.convox.proxy_argv(db.resource, "<free port>")),
            f"psql 'SHOW server_version_num' through the proxy until {db.resource} accepts "
            f"connections (up to {RESOURCE_START_WAIT:g}s)",
            "psql (Convox, read-only): server version, the role's rights (superuser, CREATE on "
            "the database, rds_superuser-like roles), pg_available_extension_versions, "
            "pg_settings, database sizes",
            "stop if the target is older, lacks an extension, may not create one that is not "
            f"in skip_extensions {db.skip_extensions}, cannot take a setting, or has less "
            "than twice Heroku's size (staging database swap); report the rest as findings",
            "estimate the final sync's duration from initial-sync's measured time (if it ran)",
        ]

    def _local_tools(self, ctx: Context, target_major: int) -> list[tuple[str, str]]:
        """verify-data dumps the Convox database's schema with this machine's pg_dump, which
        refuses a server of a newer major ("aborting because of server version mismatch",
        src/bin/pg_dump/pg_dump.c): say so now, not in the window."""
        local = ctx.postgres.client_major("pg_dump")
        if local >= target_major:
            return []
        return [
            (
                f"this machine's pg_dump is PostgreSQL {local}; the Convox database runs "
                f"{target_major}: verify-data could not read its schema in the window",
                f"Install the PostgreSQL {target_major} client tools (e.g. `apt-get install "
                f"postgresql-client-{target_major}`) and put them first on PATH.",
            )
        ]

    def _in_rack_client(self, ctx: Context, heroku_major: int) -> list[tuple[str, str]]:
        """database.method in-rack: the local convox.yml declares the client service with a
        PostgreSQL image new enough for Heroku's server (cutover/steps/inrack.py)."""
        from cutover.steps import inrack  # noqa: PLC0415 - loads the convox adapter's types

        path = manifest_path(ctx)
        try:
            text = path.read_text(encoding="utf-8")
            inrack.check_client(ctx, heroku_major, inrack.parse_client(ctx, text, str(path)))
        except OSError as exc:
            return [(f"cannot read {path}: {exc.strerror}", "Check convox.manifest and source.")]
        except CutoverError as exc:
            return [(exc.brief, exc.resolution or "See the message above.")]
        db = ctx.model.database
        assert db
        ctx.note(f"in-rack: service {db.in_rack_service} can dump PostgreSQL {heroku_major}")
        return []

    def apply(self, ctx: Context) -> CheckDataOutputs:
        from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs (start-up time)

        db = ctx.model.database
        assert db
        resource = manifest_resource(ctx)
        heroku = heroku_source(ctx)  # over TLS unless the URL says otherwise
        source = source_facts(ctx.postgres, heroku)
        target_conn = ConnInfo.from_url(ctx.convox.resource_url(db.resource))
        with ctx.convox.proxy(db.resource, speaks="postgres") as port:
            conn = target_conn.via("127.0.0.1", port)
            wait_for_resource(ctx, conn)
            target = target_facts(ctx.postgres, conn)
        result = assess(source, target, list(db.skip_extensions), resource)
        ctx.note(
            f"Heroku PostgreSQL {source.version // 10000}, {_mb(source.bytes)}; Convox "
            f"{resource.name} PostgreSQL {target.version // 10000}, role "
            + ("superuser" if target.superuser else "not superuser")
            + (f" (member of {', '.join(target.admin_roles)})" if target.admin_roles else "")
        )
        names = [e["name"] for e in source.extensions]
        ctx.note("extensions on Heroku: " + (", ".join(names) or "none"))
        for finding in result.findings:
            ctx.note(finding)
        seconds, text = estimate(ctx, source.bytes)
        ctx.note(text)
        stops = list(result.stops)
        stops += self._local_tools(ctx, target.version // 10000)
        if db.method == "in-rack":
            stops += self._in_rack_client(ctx, source.version // 10000)
        if stops:
            raise CutoverError(
                f"the Convox {resource.name} resource cannot take Heroku's database "
                f"({len(stops)} problem(s)); nothing was copied",
                details="\n".join(f"  - {p}\n    fix: {f}" for p, f in stops),
                resolution="Fix them, then run `cutover run` again (check-data runs first).",
            )
        return CheckDataOutputs(
            heroku_pg_major=source.version // 10000,
            convox_pg_major=target.version // 10000,
            heroku_bytes=source.bytes,
            capacity_bytes=result.capacity_bytes,
            free_bytes=result.free_bytes,
            extensions=names,
            skipped_extensions=result.skipped_extensions,
            findings=result.findings,
            estimate_seconds=seconds,
        )


def manifest_resource(ctx: Context) -> Resource:
    db = ctx.model.database
    assert db
    path = manifest_path(ctx)
    spec = ((load_manifest(path).get("resources") or {}).get(db.resource)) or {}
    options = spec.get("options") if isinstance(spec.get("options"), dict) else {}
    raw = str((options or {}).get("storage") or "")
    return Resource(
        name=db.resource,
        type=str(spec.get("type") or "?"),
        image=str(spec["image"]) if spec.get("image") else None,
        storage_gib=int(raw) if re.fullmatch(r"\d+", raw) else None,
        manifest=str(path),
    )


def source_facts(postgres: PostgresAdapter, conn: ConnInfo) -> SourceFacts:
    """What check-data reads on Heroku (SOURCE_SQL: read-only)."""
    fix = (
        "Check that the Heroku database is up (heroku pg:info) and that the credentials from "
        "heroku pg:credentials:url connect from this machine, then run cutover again."
    )
    return _facts(SourceFacts, postgres, conn, SOURCE_SQL, ("Heroku's database", fix))


def target_facts(postgres: PostgresAdapter, conn: ConnInfo) -> TargetFacts:
    """What check-data reads on the Convox database (TARGET_SQL: read-only)."""
    fix = (
        "Check the resource (convox resources; convox resources url <name>) and that convox "
        "resources proxy reaches it from this machine, then run cutover again."
    )
    return _facts(TargetFacts, postgres, conn, TARGET_SQL, ("the Convox database", fix))


def _facts(
    model: type[FactsT],
    postgres: PostgresAdapter,
    conn: ConnInfo,
    sql: str,
    side: tuple[str, str],
) -> FactsT:
    what, fix = side
    try:
        rows = postgres.psql(conn, sql)
    except CommandError as exc:
        raise CutoverError(
            f"check-data cannot read {what} ({conn.describe()}); nothing was copied",
            details=exc.details,
            resolution=fix,
        ) from None
    try:
        return model.model_validate(json.loads(rows[0][0]))
    except (IndexError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise UnexpectedOutput(
            f"psql returned no readable catalog document from {conn.describe()}: "
            f"{str(exc).splitlines()[0][:200]}"
        ) from None
