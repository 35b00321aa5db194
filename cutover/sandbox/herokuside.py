"""The sandbox's Heroku side (cutover/sandbox/manager.py ``up``): the Heroku API emulator the real
heroku CLI talks to (with its HTTPS backup server), the sample app as the Heroku app, and its
worker dynos as real processes following the emulator's formation."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from cutover.sandbox import heroku_api, mysqlbox, procs
from cutover.sandbox.heroku_api import seed_mysql
from cutover.sandbox.names import HEROKU_APP, HEROKU_DNS_TARGET, RECORD, SOURCE_DB, SOURCE_USER


def start(
    folder: Path,
    data: dict[str, Any],
    cert: Path,
    key: Path,
    src_password: str,
    say: Any,
    redis_url: str | None = None,
) -> tuple[str, Path]:
    ports, logs = data["ports"], folder / "logs"
    say(f"Heroku API emulator on 127.0.0.1:{ports['heroku_api']}")
    api_key = secrets.token_hex(16)
    state = heroku_api.default_state(
        HEROKU_APP,
        db={
            "host": "127.0.0.1",
            "port": ports["pg_heroku"],
            "user": SOURCE_USER,
            "password": src_password,
            "database": SOURCE_DB,
        },
        domain=RECORD,
        heroku_dns_target=HEROKU_DNS_TARGET,
        api_key=api_key,
        scheduled_backups=True,
        redis_url=redis_url,
    )
    # As on a real app, scheduled backups exist beside cutover's, and one finishes while
    # initial-sync's capture runs: `pg:backups:url` without an id would hand out that one.
    state["apps"][HEROKU_APP]["scheduled_backup_during_capture"] = 1
    cleardb = mysqlbox.cleardb_url(folder)
    if cleardb:  # issue 14: the second app, on ClearDB (playbooks/sandbox-mysql.yml)
        seed_mysql.add_mysql_app(state, cleardb)
    procs.ensure_private_dir(folder / "heroku")
    heroku_api.save_state(folder / "heroku" / "state.json", state)
    pid_file = folder / "heroku" / "api.pid"
    api_pid = procs.spawn_daemon(
        [
            sys.executable,
            "-m",
            "cutover.sandbox.heroku_api",
            "--state",
            str(folder / "heroku" / "state.json"),
            "--port",
            str(ports["heroku_api"]),
            "--backup-port",
            str(ports["backups"]),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--pid-file",
            str(pid_file),
        ],
        log_path=logs / "heroku-api.log",
    )
    data["pids"]["heroku_api"] = api_pid
    api_log = logs / "heroku-api.log"
    procs.wait_for_port("127.0.0.1", ports["heroku_api"], 30, pid=api_pid, log_path=api_log)
    procs.wait_for_port("127.0.0.1", ports["backups"], 30, pid=api_pid, log_path=api_log)
    home = folder / "heroku" / "home"
    heroku_api.prepare_home(home, ports["heroku_api"])

    say(f"the Heroku app (sample app) on https://127.0.0.1:{ports['heroku_app']}")
    config = state["apps"][HEROKU_APP]["config_vars"]
    app_env = {
        **{k: str(v) for k, v in config.items()},
        "PORT": str(ports["heroku_app"]),
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "PLATFORM": "heroku",
        "APP": HEROKU_APP,
        # maintenance mode: the app answers Heroku's maintenance page (sampleapp.Maintenance)
        "SANDBOX_HEROKU_STATE": str(folder / "heroku" / "state.json"),
        "DATABASE_URL": heroku_api.database_url(
            {
                "host": "127.0.0.1",
                "port": ports["pg_heroku"],
                "user": SOURCE_USER,
                "password": src_password,
                "database": SOURCE_DB,
            }
        ),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    data["pids"]["heroku_app"] = procs.spawn_daemon(
        [sys.executable, "-m", "cutover.sandbox.sampleapp"],
        env=app_env,
        log_path=logs / "heroku-app.log",
    )
    procs.wait_for_port(
        "127.0.0.1",
        ports["heroku_app"],
        30,
        pid=data["pids"]["heroku_app"],
        log_path=logs / "heroku-app.log",
    )
    # The worker dynos as real processes (sampleworker), following the emulator's formation:
    # they keep writing to the Heroku database until scale-down stops them.
    say("the Heroku worker dynos (sample worker), following the formation")
    worker_env = {k: v for k, v in app_env.items() if k not in ("PORT", "TLS_CERT", "TLS_KEY")}
    worker_env["WORKER_INTERVAL"] = "1"
    data["pids"]["heroku_dynos"] = procs.spawn_daemon(
        [
            sys.executable,
            "-m",
            "cutover.sandbox.herokudynos",
            "--state",
            str(folder / "heroku" / "state.json"),
            "--app",
            HEROKU_APP,
            "--log-dir",
            str(logs),
        ],
        env=worker_env,
        log_path=logs / "heroku-dynos.log",
    )
    return api_key, home
