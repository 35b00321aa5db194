"""mysql, mariadb and rds-mysql resources of the stand-in rack (issue 14), on the sandbox's
"Convox" MariaDB server, with provision.py's facts and timing: recorded ``pending`` at the first
promote that declares them, created empty once the rack timing ``resource_start`` has passed,
then ``running``; ``resources proxy`` refuses connections until then (cmd_resources._ready).

Facts: ``provider/k8s/template/resource/mysql.yml.tmpl`` and ``mariadb.yml.tmpl`` (URL
``mysql://root:<password>@resource-<name>.<ns>.<suffix>:3306/app``: the image's root user and a
database ``app``; images ``mysql:5.7.23`` / ``mariadb:10.6.0`` by default,
provider/k8s/release.go resourceDefaultImages). The sandbox runs one MariaDB 10.11 for every
resource: the first one gets database ``app``, the next ``<app>_<resource>``; all log in as
``root`` (the server's admin, as the image's root is its superuser). rds-mysql (provider/aws,
an RDS instance) logs in as a master user, not root: the sandbox gives it the privileges AWS
lists for the RDS for MySQL master user ("Master user account privileges", Amazon RDS user
guide): everything on every database except SUPER, so it may create databases but not name
another DEFINER.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from cutover.sandbox.convox_fake.output import CliError
from cutover.sandbox.convox_fake.store import Json, Store, timing

# Amazon RDS user guide, "Master user account privileges" (RDS for MySQL), without GRANT OPTION's
# global SUPER: the privileges the master user holds on *.*
RDS_MASTER_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, "
    "SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, "
    "REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, "
    "EVENT, TRIGGER"
)


def configure(config_dir: Path, host: str, port: int, admin_user: str, admin_password: str) -> None:
    """Give the rack a MySQL backend with admin access (the sandbox's "Convox" MariaDB)."""
    with Store(config_dir).locked() as state:
        state.setdefault("resource_backends", {})["mysql"] = {
            "host": host,
            "port": port,
            "admin_user": admin_user,
            "admin_password": admin_password,
        }


def backend(state: Json) -> Json | None:
    found = (state.get("resource_backends") or {}).get("mysql")
    return found if isinstance(found, dict) and found.get("admin_user") else None


def plan_record(state: Json, app_name: str, name: str, resource_type: str) -> Json:
    """The pending record of a new mysql-family resource (its credentials and URL)."""
    admin = backend(state)
    assert admin is not None
    key = f"{app_name}/{name}"
    claimed = admin.setdefault("claimed_by", key)
    dbname = "app" if claimed == key else re.sub(r"[^a-z0-9_]", "_", key.lower())[:60]
    if resource_type.startswith("rds-"):
        user, password = f"master_{secrets.token_hex(3)}", secrets.token_urlsafe(18)
    else:
        user, password = str(admin["admin_user"]), str(admin["admin_password"])
    host, port = str(admin.get("host", "127.0.0.1")), int(admin["port"])
    return {
        "status": "pending",
        "ready_at": time.time() + timing(state, "resource_start"),
        "user": user,
        "password": password,
        "dbname": dbname,
        "host": host,
        "port": port,
        "url": f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{dbname}",
    }


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create(admin: Json, record: Json) -> None:
    """The empty database (dropped first: a fresh resource is empty), and for rds-mysql its
    master user."""
    db = "`" + str(record["dbname"]).replace("`", "``") + "`"
    sql = f"DROP DATABASE IF EXISTS {db};\nCREATE DATABASE {db};\n"
    if str(record["user"]) != str(admin["admin_user"]):
        user = _sql_string(str(record["user"]))
        password = _sql_string(str(record["password"]))
        sql += (
            f"CREATE USER IF NOT EXISTS {user}@'%' IDENTIFIED BY {password};\n"
            f"GRANT {RDS_MASTER_PRIVILEGES} ON *.* TO {user}@'%' WITH GRANT OPTION;\n"
        )
    argv = ["mariadb", "--no-defaults", "--protocol=tcp", "-h", str(admin.get("host"))]
    argv += ["-P", str(admin["port"]), "-u", str(admin["admin_user"]), "--batch"]
    done = subprocess.run(
        argv,
        input=sql,
        capture_output=True,
        text=True,
        env={**os.environ, "MYSQL_PWD": str(admin.get("admin_password", ""))},
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise CliError(f"sandbox mysql resource backend: {done.stderr.strip()[-300:]}")
