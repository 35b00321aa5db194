"""A local stand-in for the Cloudflare API v4 endpoints the cloudflare DNS provider uses.

A threaded HTTP server on loopback that checks the bearer token and keeps zones and records in
memory. Every route and shape is the API reference's (developers.cloudflare.com/api/):

* every answer is the envelope ``{success, errors: [{code, message}], messages, result}``
  (resources/dns/subresources/settings/index.md: "Returns - errors: array of { code, message,
  documentation_url, source } ... success"); lists add ``result_info {page, per_page, count,
  total_count, total_pages}`` (resources/dns/subresources/records/methods/list);
* ``GET /zones?name=`` (resources/zones/methods/list: "name: A domain name", equal by default;
  ``per_page`` "minimum: 5, maximum: 50", operationId zones-get in cloudflare/api-schemas
  openapi.yaml, refused outside that range here) and ``GET /zones/{zone_id}``, a zone carrying
  ``id, name, status, name_servers``;
* ``GET /zones/{zone_id}/dns_records`` filtered by ``type`` and ``name.exact``
  (records/methods/list: "name: optional object { contains, endswith, exact, startswith }");
* ``POST /zones/{zone_id}/dns_records`` (operations/dns-records-for-a-zone-create-dns-record:
  "A/AAAA records cannot exist on the same name as CNAME records"; "Time To Live (TTL) of the
  DNS record in seconds. Setting to 1 means 'automatic'. Value must be between 60 and 86400");
  ``PUT`` (overwrite) and ``DELETE /zones/{zone_id}/dns_records/{dns_record_id}``;
* a record: ``id, zone_id, zone_name, name, type, content, proxiable, proxied, ttl,
  created_on, modified_on``; only A, AAAA and CNAME can be proxied, and a proxied record's TTL is
  automatic (dns/proxy-status/proxied-records: "all proxied records have a time to live (TTL)
  of Auto");
* a bad token: ``{"success": false, "errors": [{"code": 10000, "message": "Authentication
  error"}]}`` (as Cloudflare answers it: community.cloudflare.com/t/627742), HTTP 403;
* a second record of the same type, name and content: ``{"code": 81058, "message": "An
  identical record already exists."}``, HTTP 400 (Cloudflare's answer as API clients quote
  and handle it; the reference lists no error codes), on a create and on an overwrite.

Error codes the reference does not list are marked as the stand-in's own.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["CloudflareApi"]

PROXIABLE = ("A", "AAAA", "CNAME")
AUTH_ERROR = {"code": 10000, "message": "Authentication error"}
IDENTICAL = {"code": 81058, "message": "An identical record already exists."}
NO_ROUTE = {"code": 7003, "message": "No route for the URI"}  # the reference's example
# The stand-in's own codes (the reference documents the envelope, not these values).
VALIDATION = 1004
ZONES_PER_PAGE = (5, 50)  # List Zones: per_page minimum 5, maximum 50 (zones-get)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class CloudflareApi:
    """``with CloudflareApi(token) as api:`` serves on ``api.url`` (…/client/v4)."""

    token: str = field(repr=False)
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- set-up ---------------------------------------------------------------------------
    def add_zone(self, name: str, name_servers: list[str] | None = None) -> str:
        zone_id = secrets.token_hex(16)
        self.zones[zone_id] = {
            "id": zone_id,
            "name": name,
            "status": "active",
            "type": "full",
            "name_servers": name_servers or ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
        }
        return zone_id

    def add_record(
        self, zone_id: str, name: str, rtype: str, content: str, ttl: int = 1, proxied: bool = False
    ) -> str:
        status, body = self._create(
            zone_id,
            {"name": name, "type": rtype, "content": content, "ttl": ttl, "proxied": proxied},
        )
        if status != 200:
            raise ValueError(body["errors"])
        return str(body["result"]["id"])

    def find(self, name: str) -> list[dict[str, Any]]:
        return sorted(
            (r for r in self.records.values() if r["name"] == name), key=lambda r: r["type"]
        )

    # -- server -----------------------------------------------------------------------------
    def __enter__(self) -> CloudflareApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                status, answer = api.handle(
                    method, self.path, self.headers.get("Authorization", ""), body
                )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_PUT(self) -> None:
                self._answer("PUT")

            def do_DELETE(self) -> None:
                self._answer("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/client/v4"

    # -- the API --------------------------------------------------------------------------
    def handle(  # noqa: PLR0911 - one return per route: a routing table
        self, method: str, target: str, authorization: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path.removeprefix("/client/v4").strip("/").split("/")
        with self.lock:
            self.requests.append((method, parts.path, body))
            if authorization != f"Bearer {self.token}":
                return 403, _fail(AUTH_ERROR)
            if path == ["zones"] and method == "GET":
                if not ZONES_PER_PAGE[0] <= int(query.get("per_page", "20")) <= ZONES_PER_PAGE[1]:
                    return 400, _fail(
                        {"code": VALIDATION, "message": "per_page must be between 5 and 50"}
                    )
                zones = [
                    z for z in self.zones.values() if z["name"] == query.get("name", z["name"])
                ]
                return 200, _list(zones, query)
            if len(path) < 2 or path[0] != "zones" or path[1] not in self.zones:
                return 404, _fail(NO_ROUTE)
            zone_id = path[1]
            if len(path) == 2 and method == "GET":
                return 200, _ok(self.zones[zone_id])
            if len(path) == 3 and path[2] == "dns_records":
                if method == "GET":
                    return 200, _list(self._matching(zone_id, query), query)
                if method == "POST":
                    return self._create(zone_id, body)
            if len(path) == 4 and path[2] == "dns_records" and path[3] in self.records:
                if method == "PUT":
                    return self._create(zone_id, body, replace=path[3])
                if method == "DELETE":
                    del self.records[path[3]]
                    return 200, _ok({"id": path[3]})
            return 404, _fail(NO_ROUTE)

    def _matching(self, zone_id: str, query: dict[str, str]) -> list[dict[str, Any]]:
        found = [r for r in self.records.values() if r["zone_id"] == zone_id]
        if "type" in query:
            found = [r for r in found if r["type"] == query["type"].upper()]
        if "name.exact" in query:
            found = [r for r in found if r["name"] == query["name.exact"].lower().rstrip(".")]
        return sorted(found, key=lambda r: (r["name"], r["type"], r["content"]))

    def _create(  # noqa: PLR0911 - one return per documented refusal
        self, zone_id: str, body: Any, replace: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        zone = self.zones[zone_id]
        if not isinstance(body, dict) or not {"name", "type", "content"} <= body.keys():
            return 400, _fail(
                {"code": VALIDATION, "message": "name, type and content are required"}
            )
        rtype = str(body["type"]).upper()
        name = str(body["name"]).lower().rstrip(".")
        name = zone["name"] if name == "@" else name
        if name != zone["name"] and not name.endswith("." + zone["name"]):
            return 400, _fail({"code": VALIDATION, "message": f"{name} is not in {zone['name']}"})
        ttl = int(body.get("ttl", 1))
        if ttl != 1 and not 60 <= ttl <= 86400:
            return 400, _fail({"code": VALIDATION, "message": "TTL must be 1 or 60 to 86400"})
        proxied = bool(body.get("proxied", False))
        if proxied and rtype not in PROXIABLE:
            return 400, _fail({"code": VALIDATION, "message": f"{rtype} cannot be proxied"})
        others = [r for r in self.records.values() if r["name"] == name and r["id"] != replace]
        clash = {"CNAME": ("A", "AAAA", "CNAME"), "A": ("CNAME",), "AAAA": ("CNAME",)}
        if any(r["type"] in clash.get(rtype, ()) for r in others):
            return 400, _fail(
                {
                    "code": VALIDATION,
                    "message": "A/AAAA records cannot exist on the same name as CNAME records",
                }
            )
        content = str(body["content"]).rstrip(".") if rtype == "CNAME" else body["content"]
        if any(r["type"] == rtype and r["content"] == content for r in others):
            return 400, _fail(IDENTICAL)
        record_id = replace or secrets.token_hex(16)
        created = self.records[replace]["created_on"] if replace else _now()
        self.records[record_id] = {
            "id": record_id,
            "zone_id": zone_id,
            "zone_name": zone["name"],
            "name": name,
            "type": rtype,
            "content": content,
            "proxiable": rtype in PROXIABLE,
            "proxied": proxied,
            "ttl": 1 if proxied else ttl,
            "created_on": created,
            "modified_on": _now(),
        }
        return 200, _ok(self.records[record_id])


def _ok(result: Any) -> dict[str, Any]:
    return {"success": True, "errors": [], "messages": [], "result": result}


def _fail(*errors: dict[str, Any]) -> dict[str, Any]:
    return {"success": False, "errors": list(errors), "messages": [], "result": None}


def _list(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    page = max(int(query.get("page", "1")), 1)
    per_page = max(int(query.get("per_page", "100")), 1)
    chunk = items[(page - 1) * per_page : page * per_page]
    pages = max((len(items) + per_page - 1) // per_page, 1)
    return {
        **_ok(chunk),
        "result_info": {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": pages,
        },
    }
