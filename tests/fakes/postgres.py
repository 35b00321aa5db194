"""Fake ``pg_dump``, ``pg_restore`` and ``psql`` (PostgreSQL 15 client tools).

A database is a fingerprint in the world: ``{"tables": {name: {"rows", "md5"}}, "sequences":
{name: last_value}}``. The connection comes from the libpq environment, as cutover passes it:
``PGHOST``/``PGPORT`` equal to the Heroku database's host and port select the Heroku database;
``127.0.0.1`` and the port of a running fake ``convox resources proxy`` select that Convox
resource (the fake really connects to the proxy's port first). The user, database name and
``PGPASSWORD`` must match, as a real server would insist.

A dump (what the backup URL serves) is ``PGDMP`` + a JSON document of the fingerprint;
``pg_restore --clean`` copies it into the target, so ``psql`` fingerprint queries then return
identical rows for both databases.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from fakes.world import note_effect, read_world, update_world

SERVER_VERSION_NUM = "150004"
CLIENT_VERSION = "15.14 (Debian 15.14-0+deb12u1)"
DUMP_MAGIC = b"PGDMP"
_TABLE_PART = re.compile(r"^SELECT '((?:[^']|'')*)', count\(\*\), (.+) FROM (.+) t$", re.S)


class ConnectionFailed(Exception):
    pass


def reads_stdin(tool: str, args: list[str]) -> bool:
    return tool == "psql" and "-f" in args and args[args.index("-f") + 1 :][:1] == ["-"]


def dump_bytes(dbname: str, data: dict[str, Any]) -> bytes:
    return (
        DUMP_MAGIC + b"\n" + json.dumps({"dbname": dbname, "data": data}, sort_keys=True).encode()
    )


def parse_dump(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    if not raw.startswith(DUMP_MAGIC + b"\n"):
        return None
    try:
        return dict(json.loads(raw[len(DUMP_MAGIC) + 1 :]))
    except ValueError:
        return None


# -- connections -------------------------------------------------------------------------------
def _describe(host: str, port: str) -> str:
    return f'connection to server at "{host}", port {port} failed'


def connect(world: dict[str, Any], dbname: str | None = None) -> tuple[str, str, str]:
    """Which database the libpq environment reaches: ("heroku", "", "") or ("convox", app, res)."""
    host = os.environ.get("PGHOST", "/var/run/postgresql")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "root")
    password = os.environ.get("PGPASSWORD")
    dbname = dbname or os.environ.get("PGDATABASE") or user
    heroku = world["heroku"]["database"]
    if host == heroku["host"] and port == str(heroku["port"]):
        target, expected = (
            ("heroku", "", ""),
            (heroku["user"], heroku["password"], heroku["dbname"]),
        )
    else:
        import socket  # noqa: PLC0415 - only connections through a proxy need it

        proxy = world["convox"]["proxies"].get(port) if host in ("127.0.0.1", "localhost") else None
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=2):
                pass
        except (OSError, ValueError):
            proxy = None
        if proxy is None:
            raise ConnectionFailed(
                f"{_describe(host, port)}: Connection refused\n\tIs the server running on that "
                "host and accepting TCP/IP connections?"
            )
        resource = world["convox"]["apps"][proxy["app"]]["resources"][proxy["resource"]]
        if time.time() < resource.get("ready_at", 0):
            # The proxy accepts, its upstream (the resource's pod, still starting) does not.
            raise ConnectionFailed(
                f"{_describe(host, port)}: server closed the connection "
                "unexpectedly\n\tThis probably means the server terminated "
                "abnormally\n\tbefore or while processing the request."
            )
        target = ("convox", proxy["app"], proxy["resource"])
        expected = ("app", resource["password"], "app")
    if password is None:
        raise ConnectionFailed(f"{_describe(host, port)}: fe_sendauth: no password supplied")
    if (user, password) != expected[:2]:
        raise ConnectionFailed(
            f'{_describe(host, port)}: FATAL:  password authentication failed for user "{user}"'
        )
    if target[0] == "convox" and dbname in _server_databases(world, target):
        return target
    if dbname != expected[2]:
        raise ConnectionFailed(
            f'{_describe(host, port)}: FATAL:  database "{dbname}" does not exist'
        )
    return target


def _data(world: dict[str, Any], target: tuple[str, str, str]) -> dict[str, Any]:
    kind, app, resource = target
    if kind == "heroku":
        return dict(world["heroku"]["database"]["data"])
    res = world["convox"]["apps"][app]["resources"][resource]
    if os.environ.get("PGDATABASE", "").endswith(STAGING_SUFFIX):
        return dict(res.get("staging") or {"tables": {}, "sequences": {}})
    return dict(res["data"])


# -- the Convox server's databases (cutover/adapters/pgstaging.py: staging, swap, marker) -------
# The app's database is "app" (its comment and write counter kept beside its data); "postgres" is
# the maintenance database; "app__cutover_next" exists while a sync fills it.
STAGING_SUFFIX = "__cutover_next"


def _resource(world: dict[str, Any], target: tuple[str, str, str]) -> dict[str, Any]:
    return dict(world["convox"]["apps"][target[1]]["resources"][target[2]])


def _server_databases(world: dict[str, Any], target: tuple[str, str, str]) -> list[str]:
    names = ["postgres", "app"]
    if "staging" in _resource(world, target):
        names.append("app" + STAGING_SUFFIX)
    return names


def _writes(data: dict[str, Any]) -> int:
    """n_tup_ins + n_tup_upd + n_tup_del: the rows a restore inserted, plus later writes."""
    return sum(int(t["rows"]) for t in data["tables"].values()) + int(data.get("writes", 0))


def _server_sql(world: dict[str, Any], target: tuple[str, str, str], sql: str) -> list[list[str]]:
    """The catalog queries and commands cutover runs on the Convox server (pgstaging.py)."""
    res = world["convox"]["apps"][target[1]]["resources"][target[2]]
    staging = "app" + STAGING_SUFFIX
    if "SELECT 'version', current_setting('server_version_num')" in sql:
        # cutover/adapters/pglook.py: tagged rows; the comment hex-encoded.
        db = re.search(r"WHERE datname = '([^']*)'", sql)
        assert db, "the look names its database"
        mine = {db.group(1), *(db.group(1) + s for s in ("__cutover_next", "__cutover_prev"))}
        have = [n for n in _server_databases(world, target) if n in mine]
        comment = str(res.get("comment", "")).encode().hex()
        return [
            ["version", SERVER_VERSION_NUM],
            *(["database", name, "t"] for name in have),
            ["comment", comment],
        ]
    if "SELECT 'writes', (" in sql:  # pglook.py's counts, on <db>
        return [
            ["writes", str(_writes(_data(world, target)))],
            ["tables", str(len(_data(world, target)["tables"]))],
        ]
    if "pg_catalog.pg_database" in sql and "datallowconn" in sql:
        return [[name, "t"] for name in _server_databases(world, target) if name != "postgres"]
    if "shobj_description" in sql:
        return [["comment:" + str(res.get("comment", ""))]]
    if "pg_encoding_to_char" in sql and "cutover_create" not in sql:
        return [["UTF8", "C.UTF-8", "C.UTF-8"]]
    if "cutover_marker" in sql:
        return _synced_marker(world, target, sql)
    if "n_tup_ins" in sql:
        return [[str(_writes(_data(world, target)))]]
    if "relkind IN" in sql:
        return [[str(len(_data(world, target)["tables"]))]]
    with update_world() as changed:
        res = changed["convox"]["apps"][target[1]]["resources"][target[2]]
        if "CREATE DATABASE" in sql:
            res["staging"] = {"tables": {}, "sequences": {}}
        elif "RENAME TO" in sql:
            res["data"], res["comment"] = res.pop("staging"), res.pop("staging_comment", "")
            note_effect(changed, "swap")
        elif "DROP DATABASE" in sql:
            res.pop("staging", None)
        elif "COMMENT ON DATABASE" in sql:
            match = re.search(r'COMMENT ON DATABASE "([^"]+)" IS \'(.*)\';', sql)
            if not match:
                raise LookupError(sql[:60])
            res["staging_comment" if match[1] == staging else "comment"] = match[2]
        else:
            raise LookupError(sql[:60])
    return []


def _synced_marker(
    world: dict[str, Any], target: tuple[str, str, str], sql: str
) -> list[list[str]]:
    """pgstaging.mark_synced's one psql script (pgapply_target.finish_script with no statements):
    the write count read once (nothing else is connected here), the marker written and printed."""
    head = re.search(r"SELECT '([^']*)' \|\| :'cutover_w' \|\| '([^']*)' AS cutover_marker", sql)
    db = re.search(r'COMMENT ON DATABASE "([^"]+)" IS :\'cutover_marker\';', sql)
    if not head or not db:
        raise LookupError(sql[:60])
    text = f"{head[1]}{_writes(_data(world, target))}{head[2]}"
    with update_world() as changed:
        res = changed["convox"]["apps"][target[1]]["resources"][target[2]]
        res["staging_comment" if db[1] == "app" + STAGING_SUFFIX else "comment"] = text
    return [["marker", text]]


# -- pg_dump -----------------------------------------------------------------------------------
def pg_dump(args: list[str]) -> int:
    if "--version" in args or "-V" in args:
        sys.stdout.write(f"pg_dump (PostgreSQL) {CLIENT_VERSION}\n")
        return 0
    if "--schema-only" in args:
        return _schema_dump()
    sys.stderr.write("pg_dump: error: the fake pg_dump only prints its version and schemas\n")
    return 1


def _schema_dump() -> int:
    """``pg_dump --schema-only``: one object per table, each after the header pg_dump's plain
    format prints (``_printTocEntry`` in src/bin/pg_dump/pg_backup_archiver.c, PostgreSQL 15:
    ``-- Name: %s; Type: %s; Schema: %s; Owner: %s``; ``-`` as owner under --no-owner)."""
    world = read_world()
    try:
        data = _data(world, connect(world))
    except ConnectionFailed as exc:
        sys.stderr.write(f"pg_dump: error: {exc}\n")
        return 1
    out = ["--", "-- PostgreSQL database dump", "--", "", "SET statement_timeout = 0;", ""]
    for name in sorted(data["tables"]):
        schema, _, table = name.rpartition(".")
        out += ["--", f"-- Name: {table}; Type: TABLE; Schema: {schema or 'public'}; Owner: -"]
        out += ["--", "", f"CREATE TABLE {name} (", "    id bigint NOT NULL", ");", ""]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


# -- pg_restore --------------------------------------------------------------------------------
def pg_restore(args: list[str]) -> int:
    if "--version" in args or "-V" in args:
        sys.stdout.write(f"pg_restore (PostgreSQL) {CLIENT_VERSION}\n")
        return 0
    opts: dict[str, str] = {}
    flags: set[str] = set()
    files: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--jobs", "-j", "--dbname", "-d", "--file", "-f", "--use-list", "-L"):
            opts[arg.lstrip("-")[:1] if len(arg) == 2 else arg.lstrip("-")] = args[i + 1]
            i += 2
            continue
        if arg.startswith("-"):
            flags.add(arg)
        else:
            files.append(arg)
        i += 1
    if len(files) != 1:
        sys.stderr.write("pg_restore: error: one input file is required\n")
        return 1
    dump = parse_dump(files[0])
    if dump is None:
        sys.stderr.write("pg_restore: error: input file does not appear to be a valid archive\n")
        return 1
    if "--list" in flags or "-l" in flags:
        sys.stdout.write(_toc(dump))
        return 0
    dbname = opts.get("dbname") or opts.get("d")
    if not dbname:
        sys.stderr.write("pg_restore: error: one of -d/--dbname and -f/--file must be specified\n")
        return 1
    with update_world() as world:
        try:
            target = connect(world, dbname)
        except ConnectionFailed as exc:
            sys.stderr.write(f"pg_restore: error: {exc}\n")
            return 1
        if target[0] == "heroku":
            sys.stderr.write(
                "pg_restore: error: the fake refuses to restore into the Heroku database\n"
            )
            return 1
        resource = world["convox"]["apps"][target[1]]["resources"][target[2]]
        key = "staging" if dbname.endswith(STAGING_SUFFIX) else "data"
        existing = set(resource[key]["tables"]) & set(dump["data"]["tables"])
        if existing and "--clean" not in flags:
            name = sorted(existing)[0].split(".", 1)[1]
            sys.stderr.write(
                f"pg_restore: error: could not execute query: ERROR:  relation "
                f'"{name}" already exists\n'
            )
            return 1
        resource[key] = json.loads(json.dumps(dump["data"]))
        note_effect(world, "pg_restore")
    return 0


def _toc(dump: dict[str, Any]) -> str:
    data = dump["data"]
    lines = [
        ";",
        "; Archive created at 2024-05-01 12:00:00 UTC",
        f";     dbname: {dump['dbname']}",
        f";     TOC Entries: {2 * len(data['tables']) + len(data['sequences'])}",
        ";     Compression: gzip",
        ";     Dump Version: 1.15-0",
        ";     Format: CUSTOM",
        ";     Dumped from database version: 15.4",
        ";     Dumped by pg_dump version: 15.4",
        ";",
        ";",
        "; Selected TOC Entries:",
        ";",
    ]
    oid = 16386
    for name in sorted(data["tables"]):
        schema, table = name.split(".", 1)
        lines.append(f"{oid - 16170}; 1259 {oid} TABLE {schema} {table} owner")
        oid += 1
    for name in sorted(data["sequences"]):
        schema, seq = name.split(".", 1)
        lines.append(f"{oid - 16170}; 1259 {oid} SEQUENCE {schema} {seq} owner")
        oid += 1
    for name in sorted(data["tables"]):
        schema, table = name.split(".", 1)
        lines.append(f"{oid - 16170}; 0 {oid} TABLE DATA {schema} {table} owner")
        oid += 1
    return "\n".join(lines) + "\n"


# -- psql --------------------------------------------------------------------------------------
def psql(args: list[str], sql: str | None) -> int:
    if "--version" in args or "-V" in args:
        sys.stdout.write(f"psql (PostgreSQL) {CLIENT_VERSION}\n")
        return 0
    world = read_world()
    try:
        target = connect(world)
    except ConnectionFailed as exc:
        sys.stderr.write(f"psql: error: {exc}\n")
        return 2
    sql = sql or ""
    data = _data(world, target)
    if "json_build_object" in sql and (
        "pg_available_extension_versions" in sql or "pg_db_role_setting" in sql
    ):
        rows = [[json.dumps(_checkdata_catalog(target, data, sql))]]  # check-data's documents
    elif "pg_largeobject_metadata" in sql:  # verify-data's catalog script (adapters/pgverify.py)
        rows = _catalog(data)
    elif target[0] == "convox" and (
        "pg_catalog.pg_database" in sql
        or " DATABASE " in sql
        or "n_tup_ins" in sql
        or "relkind IN" in sql
    ):
        try:
            rows = _server_sql(world, target, sql)
        except LookupError:
            sys.stderr.write("psql:<stdin>:1: ERROR:  the fake psql does not know this query\n")
            return 3
    elif "pg_db_role_setting" in sql:
        rows = []  # no database or role settings on the fake Heroku database
    elif "server_version_num" in sql:
        rows = [[SERVER_VERSION_NUM]]
    elif sql.rstrip().endswith(" t;"):  # verify-data's per-table checksums, one query a line
        try:
            rows = [_fingerprints(line[:-1], data)[0] for line in sql.splitlines() if line]
        except LookupError as exc:
            sys.stderr.write(f'psql:<stdin>:1: ERROR:  relation "{exc.args[0]}" does not exist\n')
            return 3
    elif "UNION ALL" in sql or "count(*)" in sql:
        try:
            rows = _fingerprints(sql, data)
        except LookupError as exc:
            sys.stderr.write(f'psql:<stdin>:1: ERROR:  relation "{exc.args[0]}" does not exist\n')
            return 3
    elif "pg_catalog.pg_extension" in sql:
        rows = [[name] for name in sorted(data.get("extensions") or ["plpgsql"])]
    elif "pg_catalog.pg_tables" in sql:
        rows = [[name] for name in sorted(data["tables"])]
    else:
        sys.stderr.write("psql:<stdin>:1: ERROR:  the fake psql does not know this query\n")
        return 3
    separator = args[args.index("-F") + 1] if "-F" in args else "|"
    sys.stdout.write("".join(separator.join(row) + "\n" for row in rows))
    return 0


def _catalog(data: dict[str, Any]) -> list[list[str]]:
    """Tagged rows (kind, name, a, b): tables (size 0), extensions (in pg_catalog, version
    1.0), sequences (position, is_called true); no settings and no large objects."""
    rows = [["table", name, "0", ""] for name in sorted(data["tables"])]
    rows += [
        ["extension", name, "pg_catalog", "1.0"]
        for name in sorted(data.get("extensions") or ["plpgsql"])
    ]
    rows += [["sequence", name, str(value), "t"] for name, value in data["sequences"].items()]
    return rows


def _available() -> dict[str, dict[str, bool]]:
    """The extensions this machine's PostgreSQL 15 packages ship (the same contrib set as the
    official postgres image the Convox postgres resource runs), read from their control files
    (src/backend/commands/extension.c: `trusted`, `superuser` default false, true)."""
    out: dict[str, dict[str, bool]] = {}
    for control in Path("/usr/share/postgresql/15/extension").glob("*.control"):
        text = control.read_text(encoding="utf-8", errors="replace")
        flags = dict(re.findall(r"^\s*(trusted|superuser)\s*=\s*(\w+)", text, re.M))
        out[control.stem] = {
            "trusted": flags.get("trusted", "false") == "true",
            "superuser": flags.get("superuser", "true") == "true",
        }
    return out or {"plpgsql": {"trusted": True, "superuser": True}}


def _checkdata_catalog(
    target: tuple[str, str, str], data: dict[str, Any], sql: str
) -> dict[str, Any]:
    """check-data's documents: Heroku's (SOURCE_SQL) or the resource's (TARGET_SQL). The
    resource's role is the image's superuser (POSTGRES_USER; see convox_fake/provision.py)."""
    size = 8_000_000 + 100 * sum(int(t["rows"]) for t in data["tables"].values())
    if "pg_available_extension_versions" not in sql:
        return {
            "version": int(SERVER_VERSION_NUM),
            "bytes": size,
            "schemas": ["information_schema", "pg_catalog", "public"],
            "extensions": [
                {"name": name, "version": "1.0", "schema": "public"}
                for name in sorted(data.get("extensions") or ["plpgsql"])
            ],
            "settings": [],
        }
    return {
        "version": int(SERVER_VERSION_NUM),
        "superuser": target[0] == "convox",
        "create_on_database": True,
        "admin_roles": [],
        "available": _available(),
        "settings": {"search_path": "user"},
        "bytes": size,
        "used_bytes": size + 7_500_000,
        "unreadable_databases": 0,
    }


def _fingerprints(sql: str, data: dict[str, Any]) -> list[list[str]]:
    body = sql.strip()
    body = body[: body.rfind("ORDER BY 1")].strip() if body.endswith("ORDER BY 1") else body
    rows = []
    for part in body.split("\nUNION ALL\n"):
        part = part.strip()
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        match = _TABLE_PART.match(part)
        if match:
            name = match[1].replace("''", "'")
            table = match[3].strip()
            if table not in data["tables"] or name != table:
                raise LookupError(table)
            # A content checksum (pgverify.table_checksum_sql's row hashes, or postgres.py
            # fingerprint_sql's md5) or a count only ('').
            checksum = "hashtextextended(" in match[2] or "md5(" in match[2]
            digest = data["tables"][table]["md5"] if checksum else ""
            rows.append([name, str(data["tables"][table]["rows"]), digest])
        elif "pg_catalog.pg_sequences" in part:
            rows.extend(
                [f"sequence:{name}", "0", value] for name, value in data["sequences"].items()
            )
        else:
            raise LookupError(part[:60])
    return sorted(rows)
