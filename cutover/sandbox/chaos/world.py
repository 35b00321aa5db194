"""What a cutover leaves in the sandbox, as comparable content (issue 15, ``make chaos``).

:func:`snapshot` reads the world after a run or a rollback; two snapshots taken in two different
sandboxes compare equal when the two runs did the same thing. Nothing that legitimately differs
between runs is kept: release and build ids, timestamps, ports. Values that are secrets of one
sandbox (Heroku's config values, which ``sandbox up`` draws at random:
cutover/sandbox/heroku_api/seed.py) are replaced by the name of the Heroku config var that holds
them, so "the Convox env holds exactly Heroku's SECRET_KEY_BASE" compares equal across sandboxes.

What is read, and from where:

* Convox: the app's status and env (its latest release, as ``convox env`` shows it:
  convox_fake/model.py ``app_env``), the promoted release's env and its build's manifest, the
  services' scale, and how many builds and releases the app has, from the stand-in rack's
  state file (convox_fake/store.py);
* the Convox database: every user table's row count and content checksum, with the query
  verify-data itself runs (adapters/pgverify.py ``table_checksum_sql``), as the cluster's
  superuser;
* DNS: the record's type, values and TTL on both authoritative servers (adapters/dns.py
  ``query_authoritative``: a direct, non-recursive query);
* Heroku: maintenance and the formation (the API emulator's state file), and the write freeze
  (``default_transaction_read_only`` set on the database: adapters/pgfreeze.py);
* the Convox server's list of databases (a staging copy left behind shows);
* the state folder: each step's status, whether the lock is free, and its files (a download
  left behind shows).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cutover.adapters.dns import DnsError, query_authoritative
from cutover.adapters.pgverify import table_checksum_sql
from cutover.sandbox import convox_fake, heroku_api, pgcluster
from cutover.sandbox.convox_fake.model import app_env, find_build, find_release
from cutover.sandbox.names import CONVOX_APP, HEROKU_APP, RECORD, SOURCE_DB, TARGET_DB

World = dict[str, Any]

_TABLES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1
"""

_FREEZE_SQL = """
SELECT coalesce(array_to_string(s.setconfig, ','), '')
FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
WHERE d.datname = %s AND s.setrole = 0
"""


class Secrets:
    """One sandbox's secret values and where they come from, to replace them by name."""

    def __init__(self, named: Mapping[str, str]) -> None:
        # Longest first, so a value holding another is replaced whole.
        self.named = sorted(
            ((v, k) for k, v in named.items() if len(v) >= 6), key=lambda p: -len(p[0])
        )

    def clean(self, text: str) -> str:
        for value, name in self.named:
            text = text.replace(value, f"<{name}>")
        return text

    def clean_env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {key: self.clean(value) for key, value in sorted(env.items())}


def sandbox_secrets(sandbox: Path) -> Secrets:
    state = heroku_api.load_state(sandbox / "heroku" / "state.json")
    config = state["apps"][HEROKU_APP]["config_vars"]
    return Secrets({f"heroku:{k}": str(v) for k, v in config.items()})


def _convox(sandbox: Path, secrets: Secrets) -> World:
    rack = convox_fake.read_state(sandbox / "convox")["racks"][0]
    app = (rack.get("apps") or {}).get(CONVOX_APP)
    if app is None:
        return {"app": "absent"}
    promoted: World = {"id": "none"}
    if app.get("release"):
        release = find_release(app, app["release"])
        build = find_build(app, release["build"]) if release.get("build") else {}
        promoted = {
            "env": secrets.clean_env(app_env(app, release["id"])),
            "manifest": secrets.clean(str(build.get("manifest", ""))),
        }
    return {
        "status": app.get("status"),
        "env": secrets.clean_env(app_env(app)),
        "promoted": promoted,
        "scale": app.get("scale"),
        # How many, not which: a resume that builds or releases again (instead of finding the
        # killed run's build: README, deploy's ``--id``) shows as one more.
        "builds": len(app.get("builds") or []),
        "releases": len(app.get("releases") or []),
    }


def tables(cluster: pgcluster.PgCluster, dbname: str) -> World:
    try:
        conn = pgcluster.connect(cluster, dbname)
    except pgcluster.PgClusterError as exc:
        return {"error": str(exc).split(":", 1)[0]}
    with conn:
        tables = [row[0] for row in conn.execute(_TABLES_SQL).fetchall()]
        out: World = {}
        for table in tables:
            row = conn.execute(table_checksum_sql(table, checksum=True)).fetchone()
            assert row is not None
            out[table] = [int(row[1]), str(row[2])]
        return out


def databases(cluster: pgcluster.PgCluster) -> list[str]:
    """The Convox server's databases: a sync's staging copy (``<db>__cutover_next``) or a
    previous copy left by a killed run shows here."""
    with pgcluster.connect(cluster) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_catalog.pg_database WHERE NOT datistemplate ORDER BY 1"
        ).fetchall()
    return [str(row[0]) for row in rows]


def leftover_files(state_folder: Path) -> list[str]:
    """Every file in the state folder but the audit log (its length differs by the kills): a
    download or dump a killed sync did not delete shows here."""
    if not state_folder.is_dir():
        return []
    return sorted(
        str(path.relative_to(state_folder))
        for path in state_folder.rglob("*")
        if path.is_file() and path.name != "events.jsonl"
    )


def _freeze(sandbox: Path) -> str:
    cluster = pgcluster.load(sandbox / "pg-heroku.json")
    with pgcluster.connect(cluster) as conn:
        row = conn.execute(_FREEZE_SQL, (SOURCE_DB,)).fetchone()
    return str(row[0]) if row else ""


def _dns(sandbox: Path) -> World:
    ports = json.loads((sandbox / "sandbox.json").read_text(encoding="utf-8"))["ports"]
    out: World = {}
    for server in ("dns", "dns2"):
        try:
            record = query_authoritative("127.0.0.1", int(ports[server]), RECORD, "CNAME")
        except DnsError as exc:
            out[server] = f"error: {exc}"
            continue
        out[server] = (
            None
            if record is None
            else {"type": record.rtype, "ttl": record.ttl, "values": sorted(record.values)}
        )
    return out


def _heroku(sandbox: Path) -> World:
    app = heroku_api.load_state(sandbox / "heroku" / "state.json")["apps"][HEROKU_APP]
    return {
        "maintenance": bool(app["app"].get("maintenance")),
        "formation": {p["type"]: int(p["quantity"]) for p in app.get("formation") or []},
    }


def lock_state(state_folder: Path) -> str:
    """``free``, ``held`` (a process holds the flock) or ``stale: <holder>`` (a holder recorded
    but nobody holds the flock: engine/lock.py empties the file when it releases)."""
    path = state_folder / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "free"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held"
        content = os.read(fd, 4096).decode(errors="replace").strip()
        return f"stale: {content}" if content else "free"
    finally:
        os.close(fd)


def _steps(state_folder: Path) -> World:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        state = json.loads((state_folder / "state.json").read_text(encoding="utf-8"))
        return {sid: step.get("status") for sid, step in state.get("steps", {}).items()}
    return {}


def snapshot(sandbox: Path, state_folder: Path) -> World:
    """The world as content (see the module docstring); processes are checked by procs.py."""
    secrets = sandbox_secrets(sandbox)
    return {
        "convox": _convox(sandbox, secrets),
        "convox_db": tables(pgcluster.load(sandbox / "pg-convox.json"), TARGET_DB),
        "convox_databases": databases(pgcluster.load(sandbox / "pg-convox.json")),
        "dns": _dns(sandbox),
        "heroku": _heroku(sandbox),
        "heroku_write_freeze": _freeze(sandbox),
        "lock": lock_state(state_folder),
        "steps": _steps(state_folder),
        "state_folder_files": leftover_files(state_folder),
    }


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def differences(reference: World, world: World) -> list[str]:
    """Every path whose content differs, ``path: reference -> found`` (values cut short)."""
    ref: dict[str, Any] = {}
    got: dict[str, Any] = {}
    _flatten(reference, "", ref)
    _flatten(world, "", got)
    out = []
    for path in sorted(set(ref) | set(got)):
        if ref.get(path, "<absent>") != got.get(path, "<absent>"):
            want = json.dumps(ref.get(path, "<absent>"))[:80]
            found = json.dumps(got.get(path, "<absent>"))[:80]
            out.append(f"{path}: {want} -> {found}")
    return out
