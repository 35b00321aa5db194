"""Resources the rack creates: at the first promote that declares them, empty, and slow to start.

Facts: ``provider/k8s/release.go`` (``ReleasePromote`` applies ``template/resource/<type>.yml.tmpl``
for every manifest resource that no ``<NAME>_URL`` overlays; nothing exists before that first
promote), ``provider/k8s/template/resource/postgres.yml.tmpl`` (the official
``postgres:<options.version>`` image, default ``10.5`` from ``resourceDefaultImages``, with
``POSTGRES_USER=app`` and ``POSTGRES_DB=app``: the role is the image's superuser, so contrib
extensions can be created and PostGIS cannot, the image lacks it), ``rds-postgres.yml.tmpl``
(the RDS master user: ``rds_superuser``, not a superuser, CREATEDB and CREATEROLE, only RDS's
allow-listed extensions), ``provider/k8s/resource.go`` (``ResourceList`` lists the resources the
rack created; ``ResourceGet`` needs the ``resource-<name>`` config map, else the k8s error
``configmaps "resource-<name>" not found``).

The sandbox emulation: with a PostgreSQL backend configured with admin access
(:class:`cutover.sandbox.convox_fake.store.PostgresBackend` ``admin_user``), the promote records
the resource as ``pending`` with its credentials; the rollout job creates its role and an empty
database once the rack timing ``resource_start`` has passed since the promote, and only then
marks it ``running``. Until then the database does not exist, so connections fail, and
``resources proxy`` refuses its connections. ``postgres`` gets a SUPERUSER role; ``rds-postgres``
a NOSUPERUSER CREATEDB CREATEROLE role owning the database, which can create PostgreSQL's trusted
extensions (pg_trgm, citext, hstore, uuid-ossp, ...) but not pg_stat_statements. The sandbox runs
one PostgreSQL major version: a declared version of another major is refused at the promote
with a message saying that it is a sandbox limit. Without admin access the backend is a database
that exists already and is handed out as is, at once.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any
from urllib.parse import quote

from cutover.sandbox.convox_fake import provision_mysql, provision_redis
from cutover.sandbox.convox_fake.manifest import Manifest, ResourceDef
from cutover.sandbox.convox_fake.model import get_app, rack_by_name
from cutover.sandbox.convox_fake.output import CliError, now_iso
from cutover.sandbox.convox_fake.resources import is_overlay, resource_family
from cutover.sandbox.convox_fake.store import Json, Store, timing

# provider/k8s/release.go resourceDefaultImages
DEFAULT_VERSIONS = {
    "postgres": "10.5",
    "postgis": "10-3.2",
    "redis": "4.0.10",
    "mysql": "5.7.23",
    "mariadb": "10.6.0",
    "memcached": "1.4.34",
}
ROLE_ATTRIBUTES = {
    "postgres": "SUPERUSER",  # POSTGRES_USER of the official image
    "rds-postgres": "NOSUPERUSER CREATEDB CREATEROLE",  # the RDS master user (rds_superuser)
}


def declared_version(resource: ResourceDef) -> str:
    """``options.version``, else the rack's default for the type ('' when AWS picks it)."""
    return resource.options.get("version") or DEFAULT_VERSIONS.get(resource.type, "")


def _major(version: str) -> int | None:
    match = re.match(r"\s*(\d+)", version)
    return int(match.group(1)) if match else None


def _admin(state: Json) -> Json | None:
    backend = (state.get("resource_backends") or {}).get("postgres")
    if isinstance(backend, dict) and backend.get("admin_user"):
        return backend
    return None


def _connect(backend: Json, dbname: str = "postgres") -> Any:
    import psycopg  # noqa: PLC0415 - only a rack with an admin backend needs it

    return psycopg.connect(
        host=str(backend.get("host", "127.0.0.1")),
        port=int(backend["port"]),
        user=str(backend["admin_user"]),
        password=str(backend.get("admin_password", "")),
        dbname=dbname,
        sslmode="disable",
        connect_timeout=10,
        autocommit=True,
    )


def server_major(backend: Json) -> int:
    """The backend server's major version (asked once, then remembered in the state)."""
    if isinstance(backend.get("server_major"), int):
        return int(backend["server_major"])
    try:
        with _connect(backend) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
    except Exception as exc:
        raise CliError(f"sandbox resource backend unreachable: {type(exc).__name__}") from None
    backend["server_major"] = int(row[0]) // 10000
    return int(backend["server_major"])


def _names(backend: Json, app_name: str, resource: str) -> tuple[str, str, str]:
    """(role, database, password): the backend's own for the first resource, then derived
    names and a random password."""
    key = f"{app_name}/{resource}"
    claimed = backend.setdefault("claimed_by", key)
    if claimed == key:
        return str(backend["user"]), str(backend["dbname"]), str(backend["password"])
    derived = re.sub(r"[^a-z0-9_]", "_", f"{app_name}_{resource}".lower())[:60]
    return derived, derived, secrets.token_urlsafe(18)


def plan(state: Json, app: Json, manifest: Manifest | None, env: dict[str, str]) -> list[str]:
    """At ``ReleasePromote`` (under the lock): record the resources this promote creates.

    Returns the names of the ones the rollout job must still make. Raises CliError for what the
    sandbox cannot run (another PostgreSQL major, PostGIS).
    """
    made: Json = app.setdefault("resources", {})
    backend = _admin(state)
    pending = []
    for resource in manifest.resources if manifest else []:
        if is_overlay(resource, env) or resource.name in made:
            continue
        version = declared_version(resource)
        record: Json = {
            "type": resource.type,
            "version": version,
            "created": now_iso(),
            "status": "running",
        }
        if backend is not None and resource_family(resource.type) == "postgres":
            _check_supported(backend, resource, version)
            user, dbname, password = _names(backend, str(app["name"]), resource.name)
            host, port = str(backend.get("host", "127.0.0.1")), int(backend["port"])
            record.update(
                status="pending",
                ready_at=time.time() + timing(state, "resource_start"),
                user=user,
                password=password,
                dbname=dbname,
                host=host,
                port=port,
                url=f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
                f"{quote(dbname, safe='')}?sslmode=disable",
            )
            pending.append(resource.name)
        elif provision_redis.backend(state) and resource_family(resource.type) == "redis":
            record.update(provision_redis.plan_record(state, app, resource, version))
            pending.append(resource.name)
        elif resource_family(resource.type) == "mysql" and provision_mysql.backend(state):
            record.update(
                provision_mysql.plan_record(state, app["name"], resource.name, resource.type)
            )
            pending.append(resource.name)
        made[resource.name] = record
    return pending


def _check_supported(backend: Json, resource: ResourceDef, version: str) -> None:
    installed = server_major(backend)
    if resource.type == "postgis":
        raise CliError(
            f"sandbox limit (not a Convox one): resource {resource.name} is of type postgis, "
            "and the sandbox's PostgreSQL has no PostGIS"
        )
    wanted = _major(version) if version else installed
    if wanted != installed:
        default = "" if resource.options.get("version") else " (the default, no options.version)"
        raise CliError(
            f"sandbox limit (not a Convox one): resource {resource.name} declares PostgreSQL "
            f"version {version}{default}, and the sandbox runs only PostgreSQL {installed}; "
            f'set options.version: "{installed}" in convox.yml'
        )


def materialize(store: Store, rack_name: str, app_name: str, job: str) -> None:
    """The rollout job's last part: make each pending resource when its start-up time is over.

    ``job`` names the rollout; a resource is made by one rollout only (the first to claim it).
    """
    with store.locked() as state:
        made = get_app(rack_by_name(state, rack_name), app_name).get("resources") or {}
        names = []
        for name, record in made.items():
            if record.get("status") == "pending" and not record.get("claimed"):
                record["claimed"] = job
                names.append(name)
    for name in names:
        with store.locked() as state:
            record = get_app(rack_by_name(state, rack_name), app_name)["resources"][name]
            wait = float(record.get("ready_at", 0)) - time.time()
        if wait > 0:
            time.sleep(wait)
        with store.locked() as state:
            backend = _admin(state)
            record = dict(get_app(rack_by_name(state, rack_name), app_name)["resources"][name])
        if resource_family(str(record.get("type"))) == "redis":
            provision_redis.create(record)
        elif resource_family(str(record.get("type"))) == "mysql":
            with store.locked() as state:
                mysql_backend = provision_mysql.backend(state)
            if mysql_backend is not None:
                provision_mysql.create(mysql_backend, record)
        elif backend is not None:
            _create(backend, record)
        with store.locked() as state:
            stored = get_app(rack_by_name(state, rack_name), app_name)["resources"][name]
            stored["status"] = "running"
            stored.pop("claimed", None)


def _create(backend: Json, record: Json) -> None:
    from psycopg import sql  # noqa: PLC0415 - only a rack with an admin backend needs it

    user, dbname = str(record["user"]), str(record["dbname"])
    attributes = ROLE_ATTRIBUTES.get(str(record["type"]), ROLE_ATTRIBUTES["rds-postgres"])
    with _connect(backend) as conn:
        verifier = conn.pgconn.encrypt_password(
            str(record["password"]).encode(), user.encode(), b"scram-sha-256"
        ).decode("ascii")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        conn.execute(
            sql.SQL("{} {} LOGIN " + attributes + " PASSWORD {}").format(
                sql.SQL("ALTER ROLE" if exists else "CREATE ROLE"),
                sql.Identifier(user),
                sql.Literal(verifier),
            )
        )
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(dbname)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                sql.Identifier(dbname), sql.Identifier(user)
            )
        )
