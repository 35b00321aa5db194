"""Platform API routes: account, apps, add-ons, attachments, dynos, formation, config vars,
domains, releases, collaborators (devcenter.heroku.com/articles/platform-api-reference)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cutover.sandbox.heroku_api import dynos
from cutover.sandbox.heroku_api.common import ApiError, JSONDict, Request, Response, iso, now
from cutover.sandbox.heroku_api.lookup import addon_view, all_attachments, find_app
from cutover.sandbox.heroku_api.records import add_release
from cutover.sandbox.heroku_api.routing import APP, route

if TYPE_CHECKING:
    from cutover.sandbox.heroku_api.emulator import Emulator


@route("GET", r"/account")
def _get_account(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, emu.read().get("account") or {})


@route("GET", r"/apps")
def _list_apps(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    apps = emu.read().get("apps") or {}
    return Response.json(200, [dict(e["app"]) for e in apps.values()])


@route("GET", rf"/apps/{APP}")
def _get_app(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu.app(match["app"])
    return Response.json(200, dict(entry["app"]))


@route("PATCH", rf"/apps/{APP}")
def _patch_app(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """``maintenance:on``/``off``. ``apps.<name>.app.maintenance`` is also what the sandbox's
    Heroku app reads to serve the maintenance page: keep that key."""
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_params", "Invalid params.")
    if "maintenance" in body and not isinstance(body["maintenance"], bool):
        raise ApiError(422, "invalid_params", "Maintenance must be a boolean.")
    unknown = sorted(set(body) - {"maintenance"})
    if unknown:
        raise ApiError(422, "invalid_params", f"Unsupported attribute: {', '.join(unknown)}.")
    with emu.edit() as state:
        _, entry = find_app(state, match["app"])
        if "maintenance" in body:
            entry["app"]["maintenance"] = body["maintenance"]
            entry["app"]["updated_at"] = iso(now())
        view = dict(entry["app"])
    return Response.json(200, view)


@route("GET", rf"/apps/{APP}/addons")
def _list_addons(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu.app(match["app"])
    return Response.json(200, [addon_view(entry, a) for a in entry.get("addons") or []])


@route("GET", r"/addon-attachments")
def _list_all_attachments(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, all_attachments(emu.read()))


@route("GET", rf"/apps/{APP}/addon-attachments")
def _list_app_attachments(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    state = emu.read()
    name, _ = find_app(state, match["app"])
    return Response.json(200, all_attachments(state, only_app=name))


@route("POST", r"/actions/addon-attachments/resolve")
def _resolve_attachment(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """Attachments whose name, id, add-on name/id or config var is ``addon_attachment``."""
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("addon_attachment"), str):
        raise ApiError(422, "invalid_params", "Missing addon_attachment.")
    wanted: str = body["addon_attachment"]
    state = emu.read()
    only_app = None
    if body.get("app"):
        only_app, _ = find_app(state, str(body["app"]))
    service = body.get("addon_service")
    found = []
    for att in all_attachments(state, only_app=only_app):
        addon = att["addon"]
        if service and addon["plan"].get("name", "").split(":", 1)[0] != service:
            continue
        if wanted in (att["name"], att["id"], addon["name"], addon["id"]) or (
            wanted in att["config_vars"]
        ):
            found.append(att)
    if not found:
        raise ApiError(404, "not_found", "Couldn't find that add on attachment.")
    return Response.json(200, found)


@route("GET", rf"/apps/{APP}/dynos")
def _list_dynos(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    state = emu.read()
    _, entry = find_app(state, match["app"])
    return Response.json(200, dynos.list_dynos(state, entry))


@route("POST", rf"/apps/{APP}/dynos/(?P<dyno>[^/]+)/actions/stop")
def _stop_dyno(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """``heroku ps:stop --dyno-name NAME`` (commands/ps/stop.js); Platform API "Dyno Stop"
    answers 202 with an empty object."""
    with emu.edit() as state:
        _, entry = find_app(state, match["app"])
        if not dynos.stop_dyno(state, entry, match["dyno"]):
            raise ApiError(404, "not_found", "Couldn't find that dyno.")
    return Response.json(202, {})


@route("GET", rf"/apps/{APP}/collaborators")
def _list_collaborators(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu.app(match["app"])
    return Response.json(200, entry.get("collaborators") or [])


@route("GET", rf"/apps/{APP}/pipeline-couplings")
def _pipeline_coupling(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    emu.app(match["app"])
    raise ApiError(404, "not_found", "Couldn't find that pipeline coupling.")


@route("GET", rf"/apps/{APP}/formation")
def _list_formation(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu.app(match["app"])
    return Response.json(200, entry.get("formation") or [])


_QUANTITY = re.compile(r"^([+-]?)(\d+)$")


@route("PATCH", rf"/apps/{APP}/formation")
def _patch_formation(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    """Batch update (``ps:scale``): the formation's quantity changes at once, as on Heroku;
    the dynos follow over time (:mod:`.dynos`)."""
    body = request.json()
    updates = body.get("updates") if isinstance(body, dict) else None
    if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
        raise ApiError(422, "invalid_params", "Invalid formation updates.")
    with emu.edit() as state:
        _, entry = find_app(state, match["app"])
        formation: list[JSONDict] = entry.get("formation") or []
        by_type = {proc["type"]: proc for proc in formation}
        changed: list[JSONDict] = []
        before = {proc["type"]: int(proc["quantity"]) for proc in formation}
        stamp = iso(now())
        for update in updates:
            proc = by_type.get(str(update.get("type")))
            if proc is None:
                raise ApiError(
                    404, "not_found", f"Couldn't find that process type ({update.get('type')})."
                )
            if "quantity" in update:
                parsed = _QUANTITY.match(str(update["quantity"]).strip())
                if not parsed:
                    raise ApiError(422, "invalid_params", "Invalid quantity.")
                sign, number = parsed.group(1), int(parsed.group(2))
                quantity = int(proc["quantity"]) + (number if sign == "+" else -number)
                proc["quantity"] = quantity if sign else number
                if proc["quantity"] < 0:
                    raise ApiError(422, "invalid_params", "Quantity cannot be negative.")
            if update.get("size"):
                proc["size"] = str(update["size"])
            proc["updated_at"] = stamp
            if proc not in changed:
                changed.append(proc)
        dynos.record_scaling(state, entry, before)
        response = [dict(proc) for proc in changed]
    return Response.json(200, response)


@route("GET", rf"/apps/{APP}/config-vars")
def _get_config(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu.app(match["app"])
    return Response.json(200, entry.get("config_vars") or {})


@route("PATCH", rf"/apps/{APP}/config-vars")
def _patch_config(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    body = request.json()
    if not isinstance(body, dict) or not all(
        isinstance(v, str) or v is None for v in body.values()
    ):
        raise ApiError(422, "invalid_params", "Config var values must be strings or null.")
    with emu.edit() as state:
        _, entry = find_app(state, match["app"])
        config: dict[str, str] = entry.setdefault("config_vars", {})
        set_keys = sorted(k for k, v in body.items() if v is not None)
        removed = sorted(k for k, v in body.items() if v is None and k in config)
        for key, value in body.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        parts = []
        if set_keys:
            parts.append(f"Set {', '.join(set_keys)} config vars")
        if removed:
            parts.append(f"Remove {', '.join(removed)} config vars")
        if parts:
            add_release(state, entry, " and ".join(parts))
        result = dict(config)
    return Response.json(200, result)


_RANGE = re.compile(
    r"^\s*(?:(?P<field>[a-z_]+)\s+)?(?P<excl>\])?(?P<start>[^.;\s]*)\.\.(?P<end>[^;]*)"
    r"(?:;(?P<opts>.*))?$"
)


def parse_range(header: str) -> tuple[str | None, bool, str, int | None, str | None]:
    """Parse ``id ..; max=1000;`` / ``]d1..; max=1000;`` / ``version ..; max=15, order=desc``.

    Returns (field, exclusive start, start, max, order).
    """
    found = _RANGE.match(header or "")
    if not found:
        return None, False, "", None, None
    size: int | None = None
    order: str | None = None
    for option in re.split(r"[;,]", found["opts"] or ""):
        key, _, value = option.strip().partition("=")
        if key == "max" and value.strip().isdigit():
            size = int(value)
        elif key == "order" and value.strip() in ("asc", "desc"):
            order = value.strip()
    return found["field"], bool(found["excl"]), found["start"].strip(), size, order


@route("GET", rf"/apps/{APP}/domains")
def _list_domains(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu.app(match["app"])
    domains = sorted(entry.get("domains") or [], key=lambda d: str(d.get("id")))
    _, exclusive, start, size, order = parse_range(request.headers.get("range", ""))
    page_size = min(size or 1000, int(entry.get("domains_page_size") or 1000), 1000)
    if order == "desc":
        domains.reverse()
    if start:
        if order == "desc":
            domains = [d for d in domains if (str(d["id"]) < start if exclusive else True)]
        else:
            domains = [
                d for d in domains if (str(d["id"]) > start if exclusive else str(d["id"]) >= start)
            ]
    page = domains[:page_size]
    if len(domains) > page_size:
        last = str(page[-1]["id"])
        return Response.json(206, page, headers={"Next-Range": f"id ]{last}..; max={page_size};"})
    return Response.json(200, page)


@route("GET", rf"/apps/{APP}/releases")
def _list_releases(emu: Emulator, request: Request, match: re.Match[str]) -> Response:
    _, entry = emu.app(match["app"])
    releases = sorted(entry.get("releases") or [], key=lambda r: int(r.get("version", 0)))
    _, _, _, size, order = parse_range(request.headers.get("range", ""))
    if order == "desc":
        releases.reverse()
    return Response.json(200, releases[: size or 200])
