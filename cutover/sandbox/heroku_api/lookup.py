"""Finding apps and add-ons in the state, and the public views of add-ons and attachments."""

from __future__ import annotations

from cutover.sandbox.heroku_api.common import NOT_FOUND_APP, ApiError, JSONDict, ref

POSTGRES_SERVICE = "heroku-postgresql"


def find_app(state: JSONDict, ident: str) -> tuple[str, JSONDict]:
    """The app named or with id ``ident``: (name, entry); 404 as the Platform API answers."""
    apps: dict[str, JSONDict] = state.get("apps") or {}
    if ident in apps:
        return ident, apps[ident]
    for name, entry in apps.items():
        if entry.get("app", {}).get("id") == ident:
            return name, entry
    raise ApiError(404, "not_found", NOT_FOUND_APP)


def addon_view(entry: JSONDict, addon: JSONDict) -> JSONDict:
    """The Platform API add-on object: the backing database's facts never leave the emulator."""
    view = {k: v for k, v in addon.items() if k not in ("attachments", "database")}
    view.setdefault("app", ref(entry["app"]))
    return view


def attachment_views(entry: JSONDict, addon: JSONDict) -> list[JSONDict]:
    """The Platform API add-on attachment objects of ``addon``."""
    app_ref = ref(entry["app"])
    addon_app = addon.get("app") or app_ref
    views = []
    for att in addon.get("attachments") or []:
        views.append(
            {
                "addon": {
                    "id": addon.get("id"),
                    "name": addon.get("name"),
                    "app": addon_app,
                    "plan": ref(addon.get("plan") or {}),
                },
                "app": app_ref,
                "config_vars": list(att.get("config_vars", addon.get("config_vars") or [])),
                "created_at": att.get("created_at"),
                "id": att.get("id"),
                "log_input_url": None,
                "name": att.get("name"),
                "namespace": att.get("namespace"),
                "updated_at": att.get("updated_at"),
                "web_url": addon.get("web_url"),
            }
        )
    return views


def all_attachments(state: JSONDict, only_app: str | None = None) -> list[JSONDict]:
    result: list[JSONDict] = []
    for name, entry in (state.get("apps") or {}).items():
        if only_app is not None and name != only_app:
            continue
        for addon in entry.get("addons") or []:
            result.extend(attachment_views(entry, addon))
    return result


def postgres_addon(state: JSONDict, ident: str) -> tuple[str, JSONDict, JSONDict]:
    """Find a heroku-postgresql add-on by id or name: (app name, app entry, add-on).

    The CLI resolves the attachment first (``DatabaseResolver.getAttachment`` in
    @heroku/heroku-cli-util ``dist/utils/pg/databases.js``) and then calls the Data API with the
    add-on's id (``/client/v11/databases/<addon id>``) or name (``/postgres/v0/databases/...``),
    so the add-on named here is exactly the one the attachment points at.
    """
    for name, entry in (state.get("apps") or {}).items():
        for addon in entry.get("addons") or []:
            service = (addon.get("addon_service") or {}).get("name") or ""
            if service != POSTGRES_SERVICE:
                continue
            if ident in (addon.get("id"), addon.get("name")):
                return name, entry, addon
    raise ApiError(404, "not_found", "Couldn't find that database.")
