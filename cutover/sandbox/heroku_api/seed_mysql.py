"""The sandbox's second Heroku app (issue 14): ``myapp-mysql-sandbox`` on ClearDB.

Built like the standard app (seed.default_state, ids derived from its name), then given what a
ClearDB app has instead of Heroku Postgres and Redis: one ``cleardb`` add-on (service slug as in
catalog/addons.json; plan ``punch``) attached as CLEARDB_DATABASE, whose config var
``CLEARDB_DATABASE_URL`` holds ``mysql://<user>:<password>@<host>/heroku_<hex>?reconnect=true``
(Heroku Dev Center, "ClearDB MySQL": the URL's shape), here pointing at the sandbox's "Heroku"
MariaDB (cutover/sandbox/mysqlbox.py). No Postgres add-on, no backup schedule, no DATABASE_URL:
playbooks/sandbox-mysql.yml runs without a database section.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cutover.sandbox.heroku_api.common import JSONDict, iso
from cutover.sandbox.heroku_api.seed import _addon, _facts, default_state

MYSQL_APP = "myapp-mysql-sandbox"
CLEARDB = {"service": "cleardb", "plan": "punch", "name": "cleardb-tapered-{digits}", "cents": 999}


def add_mysql_app(
    state: JSONDict,
    url: str,
    *,
    app: str = MYSQL_APP,
    domain: str = "mysql.example.test",
    heroku_dns_target: str = "mysql.herokudns.test",
) -> None:
    """Add ``app`` to an emulator state (its own entry under ``apps``)."""
    placeholder: dict[str, str | int] = {
        "host": "127.0.0.1",
        "port": 1,
        "user": "none",
        "password": "none",
        "database": "none",
    }
    built = default_state(
        app,
        db=placeholder,
        domain=domain,
        heroku_dns_target=heroku_dns_target,
        api_key=str(state["api_key"]),
    )
    entry = built["apps"][app]
    facts = _facts(app)
    stamp = iso(datetime.now(UTC).replace(microsecond=0))
    entry["addons"] = [
        _addon(app, dict(CLEARDB), facts, stamp, "CLEARDB_DATABASE", ["CLEARDB_DATABASE_URL"])
    ]
    config = {
        k: v for k, v in entry["config_vars"].items() if k not in ("DATABASE_URL", "REDIS_URL")
    }
    config["CLEARDB_DATABASE_URL"] = url
    entry["config_vars"] = dict(sorted(config.items()))
    entry["backup_schedules"] = []
    entry["transfers"] = []
    for release in entry["releases"]:
        release["addon_plan_names"] = [f"{CLEARDB['service']}:{CLEARDB['plan']}"]
        release["description"] = str(release["description"]).replace(
            "Attach DATABASE", "Attach CLEARDB_DATABASE"
        )
    state["apps"][app] = entry
