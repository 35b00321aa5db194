"""Records the emulator creates at run time: releases and backup transfers.

Transfer fields follow what the Data API returns and what heroku CLI 11.10.0 reads
(``node_modules/heroku/dist/lib/pg/backups.js``: ``name()`` prefixes ``a`` when ``schedule``
is set on a ``pg_dump`` -> ``gof3r`` transfer, ``b`` otherwise; ``status()`` reads
``finished_at``/``succeeded``/``started_at``/``processed_bytes``; ``poll()`` stops when
``finished_at`` is set).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from cutover.sandbox.heroku_api.common import JSONDict, data_time, iso, now, ref


def add_release(state: JSONDict, entry: JSONDict, description: str) -> None:
    """Append a new current release (config changes and add-on attachments make one)."""
    releases: list[JSONDict] = entry.setdefault("releases", [])
    version = max((int(r.get("version", 0)) for r in releases), default=0) + 1
    for release in releases:
        release["current"] = False
    account = state.get("account") or {}
    stamp = iso(now())
    previous = max(releases, key=lambda r: int(r.get("version", 0)), default=None)
    releases.append(
        {
            "addon_plan_names": [a["plan"]["name"] for a in entry.get("addons") or []],
            "app": ref(entry["app"]),
            "created_at": stamp,
            "current": True,
            "description": description,
            "id": str(uuid.uuid4()),
            "output_stream_url": None,
            "slug": previous.get("slug") if previous else None,
            "status": "succeeded",
            "updated_at": stamp,
            "user": {"email": account.get("email"), "id": account.get("id")},
            "version": version,
        }
    )


def reserve_backup_num(state: JSONDict) -> int:
    """The next transfer number; numbers are unique over the whole state file."""
    nums = [
        int(t.get("num", 0))
        for e in (state.get("apps") or {}).values()
        for t in e.get("transfers") or []
    ]
    num = max([int(state.get("next_backup_num") or 1), *(n + 1 for n in nums)])
    state["next_backup_num"] = num + 1
    return num


def new_transfer(
    state: JSONDict, addon: JSONDict, started: datetime, schedule: JSONDict | None = None
) -> JSONDict:
    """A running ``pg_dump`` -> ``gof3r`` backup of ``addon`` (not yet stored).

    ``from_name`` is the add-on's first attachment name (``DATABASE``,
    ``HEROKU_POSTGRESQL_PINK``), which ``pg:backups`` prints in its Database column. Scheduled
    transfers carry ``schedule: {"uuid": ...}`` and get files named ``a<num>``.
    """
    num = reserve_backup_num(state)
    stamp = data_time(started)
    prefix = "a" if schedule else "b"
    return {
        "uuid": str(uuid.uuid4()),
        "num": num,
        "addon_id": addon.get("id"),
        "from_name": next((a.get("name") for a in addon.get("attachments") or []), "DATABASE"),
        "from_type": "pg_dump",
        "from_url": None,
        "to_name": "BACKUP",
        "to_type": "gof3r",
        "to_url": None,
        "options": {},
        "schedule": {"uuid": schedule["uuid"]} if schedule else None,
        "source_bytes": 0,
        "processed_bytes": 0,
        "succeeded": False,
        "warnings": 0,
        "created_at": stamp,
        "started_at": stamp,
        "updated_at": stamp,
        "finished_at": None,
        "canceled_at": None,
        "deleted_at": None,
        "purged_at": None,
        "expires_at": None,
        "logs": [],
        "file": f"backups/{prefix}{num:03d}.dump",
        "token": secrets.token_urlsafe(32),
    }


# Keys the emulator keeps for itself: never part of an API answer.
_PRIVATE = {"file", "token", "addon_id", "materialize"}


def transfer_view(transfer: JSONDict, verbose: bool = False) -> JSONDict:
    """The transfer as the Data API shows it (``logs`` only with ``?verbose=true``)."""
    hidden = _PRIVATE if verbose else _PRIVATE | {"logs"}
    return {k: v for k, v in transfer.items() if k not in hidden}
