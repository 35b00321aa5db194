"""``cutover sandbox up|down|status``: a local world standing in for Heroku and Convox.

What ``up`` starts, all on 127.0.0.1 and recorded in ``<sandbox>/sandbox.json`` (0600):

* a sandbox CA and one server certificate for every sandbox host name;
* "Heroku Postgres": a real PostgreSQL cluster, seeded with a realistic schema;
* the Convox database resource: a second real PostgreSQL cluster;
* "Heroku Redis" (TLS, password, seeded like a Sidekiq app) and the redis-server behind the
  Convox ``redis`` resource (sandbox/redisbox.py);
* the Heroku API emulator (Platform + Data API) that the real heroku CLI talks to, and its
  HTTPS backup download server;
* the sample app serving the "Heroku" app over HTTPS;
* the zone ``example.test`` on two Knot DNS servers (a primary accepting TSIG-signed RFC 2136
  updates, a secondary it NOTIFYs) and a caching resolver (unbound) for it (sandbox/dnsbox.py);
* the convox stand-in (``<sandbox>/bin/convox``) with its rack state in ``<sandbox>/convox``;
  it starts the sample app as the Convox app when a release is promoted.

``<sandbox>/env.json`` tells cutover how to reach all of it (see cutover/engine/context.py).
``down`` stops exactly the processes ``up`` (and the convox stand-in) started, then removes the
folder, which holds the sandbox's secrets.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import cutover
from cutover.errors import CutoverError
from cutover.sandbox import (
    convox_fake,
    dnsbox,
    heroku_api,
    herokuside,
    mysqlbox,
    pgcluster,
    procs,
    redisbox,
    seed,
)
from cutover.sandbox.convox_fake import provision_mysql
from cutover.sandbox.knot import KnotServer
from cutover.sandbox.names import (
    CONVOX_APP,
    HEROKU_APP,
    HEROKU_DNS_TARGET,
    HEROKU_HOSTNAME,
    ORIGINAL_TTL,
    RACK,
    RACK_DOMAIN,
    RECORD,
    ROUTER,
    SOURCE_DB,
    SOURCE_USER,
    TARGET_DB,
    TARGET_USER,
    ZONE,
)
from cutover.sandbox.tls import SandboxCA

STATE = "sandbox.json"
ENV = "env.json"

# The sample app's source (Dockerfile, convox.yml) is package data, so that the sandbox works
# from an installed wheel as well as from the source tree (pyproject.toml's package-data).
SAMPLE_APP = ("data", "sample-app")


@dataclass
class Component:
    name: str
    pid: int | None
    port: int | None
    detail: str = ""


def _heroku_bin() -> list[str]:
    """Where the pinned heroku CLI is: a source checkout's node_modules (``make setup``), else
    PATH (an installed wheel: the operator's own heroku CLI)."""
    checkout = Path(cutover.__file__).resolve().parent.parent
    local = checkout / "node_modules" / ".bin"
    return (
        [str(local)]
        if (checkout / "pyproject.toml").exists() and (local / "heroku").exists()
        else []
    )


def sample_app_source() -> Traversable:
    """The sample app's files inside the installed package."""
    return resources.files("cutover.sandbox").joinpath(*SAMPLE_APP)


def copy_tree(source: Traversable, dest: Path) -> None:
    """Copy package data (a folder of a wheel, zip or source tree) to ``dest``."""
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_dir():
            copy_tree(item, dest / item.name)
        else:
            (dest / item.name).write_bytes(item.read_bytes())


def _load(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise CutoverError(
            f"{folder / STATE}: unreadable sandbox state: {exc}",
            resolution="Stop what is left with `cutover sandbox down`.",
        ) from None
    return data if isinstance(data, dict) else None


def _save(folder: Path, data: dict[str, Any]) -> None:
    procs.write_private(folder / STATE, json.dumps(data, indent=2) + "\n")


def is_up(folder: Path) -> bool:
    data = _load(folder)
    if not data:
        return False
    return all(procs.pid_alive(int(p)) for p in data.get("pids", {}).values())


def up(
    folder: Path,
    *,
    rows: int = 3000,
    say: Any = print,
    rack_timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Start the sandbox (or report the running one). Returns its state document.

    ``rack_timings`` overrides the convox stand-in's rack timings (seconds, each > 0; see
    ``convox_fake.store.DEFAULT_TIMINGS``): tests shorten builds, rollouts, resource start-up.
    """
    folder = folder.absolute()
    existing = _load(folder)
    if existing and is_up(folder):
        say(f"sandbox already up in {folder}")
        return existing
    if existing:
        say("a previous sandbox is partly down: cleaning it up first")
        down(folder, say=say)
    procs.ensure_private_dir(folder)
    data: dict[str, Any] = {"folder": str(folder), "pids": {}, "ports": {}}
    try:
        _start(folder, data, rows, say, rack_timings or {})
    except BaseException as exc:
        _save(folder, data)
        say("sandbox up failed: stopping what was started")
        with contextlib.suppress(Exception):
            down(folder, say=say)
        if isinstance(exc, pgcluster.PgClusterError):
            # An environment problem with its own clear text (e.g. the postgres system user
            # cannot reach the folder), not a bug in cutover.
            raise CutoverError(
                f"sandbox up: {exc}",
                resolution="Choose a --dir that the postgres system user can reach (e.g. "
                "under the project or /tmp), then run `cutover sandbox up` again.",
            ) from None
        raise
    _save(folder, data)
    return data


def _start(
    folder: Path, data: dict[str, Any], rows: int, say: Any, rack_timings: dict[str, float]
) -> None:
    ports = data["ports"]
    port_names = (
        "heroku_api backups heroku_app router dns dns2 resolver pg_heroku pg_convox "
        "redis_heroku redis_convox"
    )
    for name in port_names.split():
        ports[name] = procs.free_port()
    procs.ensure_private_dir(folder / "logs")

    say("sandbox CA and certificates")
    ca = SandboxCA.create(folder / "ca")
    cert, key = folder / "ca" / "server.pem", folder / "ca" / "server-key.pem"
    # Heroku's side (its API, backups and the app, which Heroku's ACM certifies for RECORD).
    names = [RECORD, HEROKU_DNS_TARGET, HEROKU_HOSTNAME, "localhost", "127.0.0.1"]
    ca.issue(names, cert, key)
    # The Convox router's default certificate: the rack's own names, not the custom domain,
    # which gets its certificate only once DNS points at the router (convox_fake/certs.py).
    router_cert, router_key = folder / "ca" / "router.pem", folder / "ca" / "router-key.pem"
    ca.issue(
        [ROUTER, f"web.{CONVOX_APP}.{RACK_DOMAIN}", "localhost", "127.0.0.1"],
        router_cert,
        router_key,
    )

    src_password, dst_password = _start_databases(folder, data, rows, say, cert, key)
    redis_url = redisbox.start_sandbox(folder, data, cert, key, ca.ca_file, say)
    mysqlbox.sandbox_start(folder, data, say)  # issue 14: the ClearDB app's two MariaDB servers
    api_key, home = herokuside.start(folder, data, cert, key, src_password, say, redis_url)
    knot = _start_dns(folder, data, say)
    convox_config, bin_dir = _start_convox(
        folder, data, router_cert, router_key, dst_password, say, rack_timings
    )
    _write_env(folder, data, api_key, home, ca, knot, convox_config, bin_dir)
    data["started_at"] = time.time()


def _start_databases(
    folder: Path, data: dict[str, Any], rows: int, say: Any, cert: Path, key: Path
) -> tuple[str, str]:
    ports, logs = data["ports"], folder / "logs"
    say(f"PostgreSQL for Heroku on 127.0.0.1:{ports['pg_heroku']} (seeding {rows} rows)")
    src = pgcluster.init_cluster(
        folder / "pg" / "heroku",
        ports["pg_heroku"],
        password=secrets.token_urlsafe(18),
        traverse_root=folder,
    )
    # Heroku Postgres takes TLS connections (cutover asks for sslmode=require): so does the
    # sandbox's, with the sandbox CA's certificate for 127.0.0.1 (issue 10, decision 4).
    pgcluster.enable_ssl(src, cert, key)
    data["pids"]["pg_heroku"] = pgcluster.start(src, logs / "pg-heroku.log")
    pgcluster.save(src, folder / "pg-heroku.json")
    src_password = secrets.token_urlsafe(18)
    pgcluster.create_role_and_db(src, SOURCE_DB, SOURCE_USER, src_password)
    seed.seed(src, SOURCE_DB, user=SOURCE_USER, password=src_password, rows=rows)

    say(f"PostgreSQL for the Convox resource on 127.0.0.1:{ports['pg_convox']}")
    dst = pgcluster.init_cluster(
        folder / "pg" / "convox",
        ports["pg_convox"],
        password=secrets.token_urlsafe(18),
        traverse_root=folder,
    )
    data["pids"]["pg_convox"] = pgcluster.start(dst, logs / "pg-convox.log")
    pgcluster.save(dst, folder / "pg-convox.json")
    # The Convox resource's role and database do not exist yet: the convox stand-in creates
    # them (empty) at the first promote, with this password, through the cluster's admin access.
    dst_password = secrets.token_urlsafe(18)
    return src_password, dst_password


def _start_dns(folder: Path, data: dict[str, Any], say: Any) -> KnotServer:
    records = [("www", "CNAME", ORIGINAL_TTL, HEROKU_DNS_TARGET + ".")]
    return dnsbox.start(folder, data["ports"], data["pids"], ZONE, records, say)


def _start_convox(
    folder: Path,
    data: dict[str, Any],
    cert: Path,
    key: Path,
    dst_password: str,
    say: Any,
    rack_timings: dict[str, float],
) -> tuple[Path, Path]:
    ports = data["ports"]
    say(f"convox stand-in, rack {RACK} (router https://127.0.0.1:{ports['router']})")
    bin_dir = folder / "bin"
    convox_fake.install_shim(bin_dir)
    convox_config = procs.ensure_private_dir(folder / "convox")
    admin = pgcluster.load(folder / "pg-convox.json")
    convox_fake.configure_rack(
        convox_config,
        name=RACK,
        domain=ROUTER,
        router=convox_fake.Router(
            "127.0.0.1",
            ports["router"],
            str(cert),
            str(key),
            ca_folder=str(folder / "ca"),
            dns_host="127.0.0.1",
            dns_port=ports["dns"],
        ),
        postgres=convox_fake.PostgresBackend(
            "127.0.0.1",
            ports["pg_convox"],
            TARGET_USER,
            dst_password,
            TARGET_DB,
            admin_user=admin.superuser,
            admin_password=admin.password,
        ),
        redis=convox_fake.RedisBackend("127.0.0.1", ports["redis_convox"]),
        timings=rack_timings,
    )
    mysql_convox = mysqlbox.convox_backend(folder)
    if mysql_convox is not None:  # issue 14: the rack's mysql resources live there
        provision_mysql.configure(
            convox_config, "127.0.0.1", mysql_convox.port, "root", mysql_convox.admin_password
        )

    app_dir = folder / "app"
    if app_dir.exists():
        shutil.rmtree(app_dir)
    copy_tree(sample_app_source(), app_dir)
    return convox_config, bin_dir


def _write_env(
    folder: Path,
    data: dict[str, Any],
    api_key: str,
    home: Path,
    ca: SandboxCA,
    knot: KnotServer,
    convox_config: Path,
    bin_dir: Path,
) -> None:
    ports = data["ports"]
    env = heroku_api.cli_env(ports["heroku_api"], api_key, home, ca.ca_file)
    env.pop("PATH", None)
    env["CONVOX_CONFIG"] = str(convox_config)
    resolve = {
        f"web.{CONVOX_APP}.{RACK_DOMAIN}": f"127.0.0.1:{ports['router']}",
        ROUTER: f"127.0.0.1:{ports['router']}",
        HEROKU_DNS_TARGET: f"127.0.0.1:{ports['heroku_app']}",
        HEROKU_HOSTNAME: f"127.0.0.1:{ports['heroku_app']}",
    }
    procs.write_private(
        folder / ENV,
        json.dumps(
            {
                "env": env,
                "path_prefix": [str(bin_dir), *_heroku_bin()],
                "resolve": resolve,
                "ca_file": str(ca.ca_file),
                "dns": {
                    "server": "127.0.0.1",
                    "port": ports["dns"],
                    "key_name": knot.tsig_name,
                    "key_secret": knot.tsig_secret,
                    **dnsbox.check_servers(ports),
                },
            },
            indent=2,
        )
        + "\n",
    )


def down(folder: Path, *, say: Any = print) -> list[str]:
    """Stop everything ``up`` and the convox stand-in started; remove the folder."""
    folder = folder.absolute()
    stopped = []
    convox_config = folder / "convox"
    if (convox_config / convox_fake.STATE_FILE).exists():
        with contextlib.suppress(Exception):
            for pid in convox_fake.stop_processes(convox_config):
                stopped.append(f"convox process (pid {pid})")
    data = _load(folder) or {}
    for name in ("pg_heroku", "pg_convox"):
        path = folder / f"{name.replace('_', '-')}.json"
        if path.exists():
            with contextlib.suppress(Exception):
                cluster = pgcluster.load(path)
                if pgcluster.is_running(cluster):
                    pgcluster.stop(cluster)
                    stopped.append(name)
    for name, pid in (data.get("pids") or {}).items():
        if procs.pid_alive(int(pid)):
            procs.stop_pid(int(pid))
            stopped.append(f"{name} (pid {pid})")
    if folder.exists():
        shutil.rmtree(folder)
    say("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return stopped


def status(folder: Path) -> list[Component]:
    folder = folder.absolute()
    data = _load(folder)
    if not data:
        return []
    out = []
    ports = data.get("ports", {})
    port_of = {
        "pg_heroku": "pg_heroku",
        "pg_convox": "pg_convox",
        "redis_heroku": "redis_heroku",
        "redis_convox": "redis_convox",
        "heroku_api": "heroku_api",
        "heroku_app": "heroku_app",
        "dns": "dns",
        "dns2": "dns2",
        "resolver": "resolver",
    }
    for name, pid in data.get("pids", {}).items():
        alive = procs.pid_alive(int(pid))
        out.append(
            Component(
                name,
                int(pid),
                ports.get(port_of.get(name, name)),
                "running" if alive else "stopped",
            )
        )
    convox_config = folder / "convox"
    if (convox_config / convox_fake.STATE_FILE).exists():
        rack_state = convox_fake.read_state(convox_config)
        for rack in rack_state.get("racks", []):
            served = rack.get("served")
            if served:
                pid = int(served["pid"])
                out.append(
                    Component(
                        f"convox web ({served.get('app')} {served.get('release')})",
                        pid,
                        ports.get("router"),
                        "running" if procs.pid_alive(pid) else "stopped",
                    )
                )
    return out


# The sandbox's names (cutover/sandbox/names.py) are re-exported: tests and the demo read them here.
__all__ = [
    "CONVOX_APP",
    "ENV",
    "HEROKU_APP",
    "HEROKU_DNS_TARGET",
    "HEROKU_HOSTNAME",
    "ORIGINAL_TTL",
    "RACK",
    "RACK_DOMAIN",
    "RECORD",
    "ROUTER",
    "SAMPLE_APP",
    "SOURCE_DB",
    "SOURCE_USER",
    "STATE",
    "TARGET_DB",
    "TARGET_USER",
    "ZONE",
    "Component",
    "copy_tree",
    "down",
    "is_up",
    "sample_app_source",
    "status",
    "up",
]
