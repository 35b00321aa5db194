"""Data API routes (``HEROKU_DATA_HOST``): databases, backups/transfers, schedules, credentials.

Paths are the ones heroku CLI 11.10.0 requests (node_modules/heroku/dist/commands/pg/backups/
*.js, dist/lib/pg/backups.js, commands/pg/credentials/url.js).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from cutover.sandbox.heroku_api import backups
from cutover.sandbox.heroku_api.common import (
    LOOPBACK,
    ApiError,
    Request,
    Response,
    data_time,
    now,
    stable_id,
)
from cutover.sandbox.heroku_api.lookup import postgres_addon
from cutover.sandbox.heroku_api.records import transfer_view
from cutover.sandbox.heroku_api.routing import APP, route

if TYPE_CHECKING:
    from cutover.sandbox.heroku_api.emulator import Emulator

PUBLIC_URL_TTL = timedelta(hours=1)


@route("GET", r"/client/v11/databases/(?P<db>[^/]+)")
def _db_info(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, _, addon = postgres_addon(emu.read(), match["db"])
    plan = (addon.get("plan") or {}).get("name", "")
    return Response.json(
        200,
        {
            "addon_id": addon.get("id"),
            "name": addon.get("name"),
            "plan": plan.split(":", 1)[-1],
            "resource_url": None,
            "info": [
                {"name": "Plan", "values": [plan.split(":", 1)[-1].title()]},
                {"name": "Status", "values": ["Available"]},
                {"name": "Continuous Protection", "values": ["Off"]},
                {"name": "PG Version", "values": ["15"]},
            ],
        },
    )


@route("POST", r"/client/v11/databases/(?P<db>[^/]+)/backups")
def _capture(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """Start a backup of exactly this add-on's database; it finishes in the background."""
    return Response.json(201, backups.start_capture(emu, match["db"]))


@route("GET", r"/client/v11/databases/(?P<db>[^/]+)/transfer-schedules")
def _schedules(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """``pg:backups:schedules`` prints ``<name>: daily at <hour>:00 <timezone>``."""
    _, entry, addon = postgres_addon(emu.read(), match["db"])
    found = [
        {k: v for k, v in schedule.items() if k != "addon_id"}
        for schedule in entry.get("backup_schedules") or []
        if schedule.get("addon_id") == addon.get("id")
    ]
    return Response.json(200, found)


@route("GET", rf"/client/v11/apps/{APP}/transfers")
def _list_transfers(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """Every transfer of every database of the app (scheduled ones included), by number."""
    _, entry = emu.app(match["app"])
    transfers = sorted(entry.get("transfers") or [], key=lambda t: int(t.get("num", 0)))
    return Response.json(200, [transfer_view(t) for t in transfers])


@route("GET", rf"/client/v11/apps/{APP}/transfers/(?P<id>[^/]+)")
def _get_transfer(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """By uuid (the capture's poll) or by number (``pg:backups:info``)."""
    _, entry = emu.app(match["app"])
    verbose = request.query.get("verbose", ["false"])[0] == "true"
    for transfer in entry.get("transfers") or []:
        if match["id"] in (transfer.get("uuid"), str(transfer.get("num"))):
            return Response.json(200, transfer_view(transfer, verbose))
    raise ApiError(404, "not_found", "Couldn't find that transfer.")


@route("POST", rf"/client/v11/apps/{APP}/transfers/(?P<num>[^/]+)/actions/public-url")
def _public_url(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    app, entry = emu.app(match["app"])
    for transfer in entry.get("transfers") or []:
        if str(transfer.get("num")) == match["num"] and transfer.get("succeeded"):
            backups.materialize(emu, app, transfer)
            name = Path(str(transfer["file"])).name
            url = f"https://{LOOPBACK}:{emu.backup_port}/backups/{transfer['token']}/{name}"
            expires = data_time(now() + PUBLIC_URL_TTL)
            return Response.json(200, {"url": url, "expires_at": expires})
    raise ApiError(404, "not_found", "Couldn't find that backup.")


@route("GET", r"/postgres/v0/databases/(?P<db>[^/]+)/credentials/(?P<cred>[^/]+)")
def _credentials(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, _, addon = postgres_addon(emu.read(), unquote(match["db"]))
    database = addon.get("database")
    if unquote(match["cred"]) != "default" or not isinstance(database, dict):
        raise ApiError(404, "not_found", "Couldn't find that credential.")
    return Response.json(
        200,
        {
            "uuid": stable_id("credential", str(addon.get("id")), "default"),
            "name": "default",
            "state": "active",
            "database": database["database"],
            "host": database["host"],
            "port": int(database["port"]),
            "credentials": [
                {
                    "user": database["user"],
                    "password": database["password"],
                    "state": "active",
                    "connections": None,
                }
            ],
        },
    )
