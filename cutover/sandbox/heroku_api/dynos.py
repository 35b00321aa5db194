"""Dynos derived from the formation, passing through the Platform API dyno states over time.

The Platform API's dyno ``state`` is one of ``crashed``, ``down``, ``idle``, ``starting``,
``up`` (Platform API reference, "Dyno"); ``heroku ps --json`` prints ``GET /apps/<app>/dynos``
as it comes (node_modules/heroku/dist/commands/ps/index.js). A formation PATCH changes the
quantity at once (its answer and ``GET /formation`` show the new number), while the dynos follow:

- a dyno added by scaling up is ``starting`` for ``timings.dyno_start_seconds``, then ``up``;
- a dyno removed by scaling down stays listed for ``timings.dyno_stop_seconds``: ``up`` for the
  first half (it got SIGTERM and finishes its work), then ``down``, then it is gone.

The transitions are kept in ``apps.<name>.dyno_transitions`` (name -> phase, type, size, command,
epoch seconds ``at``). A dyno's ``updated_at`` is when its state last changed (Platform API
reference, "Dyno"): scaling a process type leaves the dynos it keeps alone, so a dyno without a
transition has been ``up`` since the current release (each release restarts the dynos on
Heroku), and a started dyno keeps its record (phase ``up``) once it is up.

One-off dynos (``heroku run``) are listed after the formation's, with ``type`` ``run`` and name
``run.N`` (commands/ps/index.js prints ``d.type === 'run'`` dynos as "one-off processes"). They
are kept in ``apps.<name>.one_off_dynos`` (name -> command, size, ``stamp`` created_at, and
``stopped_at`` epoch once stopped; ``type`` ``scheduler`` for a Scheduler job's dyno, as
``scheduler.N``); tests seed them there. ``heroku ps:stop --dyno-name NAME``
posts ``/apps/<app>/dynos/<name>/actions/stop`` (commands/ps/stop.js): a one-off dyno then stops
like a scaled-away dyno (``up`` for half of ``timings.dyno_stop_seconds``, ``down``, gone); a
dyno of the formation is restarted by the platform (Heroku Dev Center, "heroku ps:stop":
stopped dynos that belong to a scaled process type are restarted), so its listing stays.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cutover.sandbox.heroku_api.common import JSONDict, iso, now, ref, stable_id
from cutover.sandbox.heroku_api.state import timing


def _current_release(entry: JSONDict) -> JSONDict | None:
    releases = entry.get("releases") or []
    current = next((r for r in releases if r.get("current")), None)
    if current is None and releases:
        current = max(releases, key=lambda r: int(r.get("version", 0)))
    return current


def _epoch_iso(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC).replace(microsecond=0))


def record_scaling(state: JSONDict, entry: JSONDict, before: dict[str, int]) -> None:
    """Note which dynos start and which stop after the formation changed from ``before``."""
    transitions: dict[str, JSONDict] = entry.setdefault("dyno_transitions", {})
    moment = time.time()
    stamp = iso(now())
    _prune(state, transitions, moment)
    since = (_current_release(entry) or {}).get("created_at")
    start_for = timing(state, "dyno_start_seconds")
    for proc in entry.get("formation") or []:
        old, new = before.get(proc["type"], 0), int(proc["quantity"])
        facts = {"type": proc["type"], "size": proc.get("size"), "command": proc.get("command")}
        for index in range(new + 1, old + 1):
            # A stopping dyno keeps its created_at, and its updated_at until it is down.
            name = f"{proc['type']}.{index}"
            created = up_at = since or proc.get("created_at") or stamp
            previous = transitions.get(name)
            if previous is not None and previous.get("phase") in ("starting", "up"):
                created = up_at = str(previous.get("stamp") or created)
                if previous.get("phase") == "up":
                    up_at = str(previous.get("up_at") or up_at)
                elif moment - float(previous.get("at", 0)) >= start_for:
                    up_at = _epoch_iso(float(previous.get("at", 0)) + start_for)
            transitions[name] = {
                "phase": "stopping",
                "at": moment,
                "stamp": stamp,
                "created": created,
                "up_at": up_at,
                **facts,
            }
        for index in range(old + 1, new + 1):
            transitions[f"{proc['type']}.{index}"] = {
                "phase": "starting",
                "at": moment,
                "stamp": stamp,
                **facts,
            }


def _prune(state: JSONDict, transitions: dict[str, JSONDict], moment: float) -> None:
    """Forget transitions that are over (stopped dynos gone, started dynos up)."""
    for name, item in list(transitions.items()):
        limit = timing(
            state, "dyno_stop_seconds" if item.get("phase") == "stopping" else "dyno_start_seconds"
        )
        if item.get("phase") == "up" or moment - float(item.get("at", 0)) < limit:
            continue
        if item.get("phase") == "starting":  # up now: keep when it came up
            item.update(phase="up", up_at=_epoch_iso(float(item.get("at", 0)) + limit))
        else:
            del transitions[name]


def _dyno(
    app: JSONDict,
    release: JSONDict | None,
    name: str,
    facts: JSONDict,
    state: str,
    stamp: str | None,
    created: str | None = None,
) -> JSONDict:
    return {
        "app": ref(app),
        "attach_url": None,
        "command": facts.get("command"),
        "created_at": created or stamp,
        "id": stable_id("dyno", str(app.get("id")), name),
        "name": name,
        "release": release,
        "size": facts.get("size"),
        "state": state,
        "type": facts["type"],
        "updated_at": stamp,
    }


def list_dynos(state: JSONDict, entry: JSONDict) -> list[JSONDict]:
    """``GET /apps/<app>/dynos`` now: formation order, then dyno number."""
    app = entry["app"]
    current = _current_release(entry)
    release = {"id": current.get("id"), "version": current.get("version")} if current else None
    since = (current or {}).get("created_at")
    transitions: dict[str, JSONDict] = entry.get("dyno_transitions") or {}
    start_for = timing(state, "dyno_start_seconds")
    stop_for = timing(state, "dyno_stop_seconds")
    moment = time.time()
    result: list[JSONDict] = []
    for proc in entry.get("formation") or []:
        quantity = int(proc.get("quantity", 0))
        for index in range(1, quantity + 1):
            name = f"{proc['type']}.{index}"
            item = transitions.get(name)
            stamp = since or proc.get("created_at") or app.get("created_at")
            created, dyno_state = stamp, "up"
            if item is not None and item.get("phase") in ("starting", "up"):
                created = stamp = item.get("stamp") or stamp
                if item.get("phase") == "up":
                    stamp = item.get("up_at") or stamp
                elif moment - float(item["at"]) < start_for:
                    dyno_state = "starting"
                else:
                    stamp = _epoch_iso(float(item["at"]) + start_for)
            result.append(_dyno(app, release, name, proc, dyno_state, stamp, created))
        stopping = sorted(
            (int(name.rsplit(".", 1)[1]), item)
            for name, item in transitions.items()
            if item.get("phase") == "stopping"
            and item.get("type") == proc["type"]
            and int(name.rsplit(".", 1)[1]) > quantity
        )
        for index, item in stopping:
            elapsed = moment - float(item["at"])
            if elapsed >= stop_for:
                continue
            if elapsed < stop_for / 2:
                dyno_state, changed = "up", item.get("up_at") or item.get("stamp")
            else:
                dyno_state, changed = "down", _epoch_iso(float(item["at"]) + stop_for / 2)
            name = f"{proc['type']}.{index}"
            created = item.get("created") or item.get("stamp")
            result.append(_dyno(app, release, name, item, dyno_state, changed, created))
    result.extend(_one_offs(entry, release, moment, stop_for))
    return result


def _one_offs(
    entry: JSONDict, release: JSONDict | None, moment: float, stop_for: float
) -> list[JSONDict]:
    """The one-off dynos (type ``run``): ``up`` until stopped, then like a scaled-away dyno."""
    app = entry["app"]
    result: list[JSONDict] = []
    one_offs: dict[str, JSONDict] = entry.get("one_off_dynos") or {}
    for name, item in sorted(one_offs.items(), key=lambda kv: _number(kv[0])):
        stamp = str(item.get("stamp") or app.get("created_at"))
        dyno_state, changed = "up", stamp
        stopped_at = item.get("stopped_at")
        if stopped_at is not None:
            elapsed = moment - float(stopped_at)
            if elapsed >= stop_for:
                continue
            if elapsed >= stop_for / 2:
                dyno_state, changed = "down", _epoch_iso(float(stopped_at) + stop_for / 2)
        facts = {
            "type": item.get("type", "run"),  # "scheduler" for a Scheduler job's dyno
            "size": item.get("size", "Standard-1X"),
            "command": item.get("command"),
        }
        result.append(_dyno(app, release, name, facts, dyno_state, changed, stamp))
    return result


def _number(name: str) -> int:
    tail = name.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def stop_dyno(state: JSONDict, entry: JSONDict, name: str) -> bool:
    """``POST /apps/<app>/dynos/<name>/actions/stop``: False when no such dyno is listed."""
    one_offs: dict[str, JSONDict] = entry.get("one_off_dynos") or {}
    if name in one_offs:
        if one_offs[name].get("stopped_at") is None:
            one_offs[name]["stopped_at"] = time.time()
        return True
    listed = {d["name"] for d in list_dynos(state, entry)}
    return name in listed  # a formation dyno: restarted by the platform, listed as before
