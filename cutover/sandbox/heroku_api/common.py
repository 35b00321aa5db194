"""Shared pieces of the Heroku API emulator: time formats, ids, requests, responses, errors."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

JSONDict = dict[str, Any]

LOOPBACK = "127.0.0.1"
_ID_NAMESPACE = uuid.UUID("6f1d2c1e-3b51-4c1e-9a8e-5c7d00c0ffee")

NOT_FOUND_APP = "Couldn't find that app."
NOT_FOUND_ENDPOINT = (
    "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. "
    "`POST`), and did you specify your API version in the Accept header?"
)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """Platform API timestamp: ``2024-05-01T12:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def data_time(moment: datetime) -> str:
    """Data API timestamp: ``2024-05-01 12:00:00 +0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


def stable_id(*parts: str) -> str:
    """A UUID derived from ``parts``: the same sandbox app always gets the same ids."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def ref(obj: JSONDict) -> JSONDict:
    return {"id": obj.get("id"), "name": obj.get("name")}


def database_url(db: dict[str, Any]) -> str:
    """``postgres://user:password@host:port/database`` for a ``database`` record."""
    user = quote(str(db["user"]), safe="")
    password = quote(str(db["password"]), safe="")
    name = quote(str(db["database"]), safe="")
    return f"postgres://{user}:{password}@{db['host']}:{db['port']}/{name}"


def normalize_db(db: dict[str, str | int]) -> JSONDict:
    """Accept ``dbname``/``database``/``db`` for the database name; return the stored shape."""
    name = db.get("database", db.get("dbname", db.get("db")))
    missing = [key for key in ("host", "port", "user", "password") if key not in db]
    if name is None:
        missing.append("database")
    if missing:
        raise ValueError(f"database facts lack {', '.join(sorted(missing))}")
    return {
        "host": str(db["host"]),
        "port": int(db["port"]),
        "database": str(name),
        "user": str(db["user"]),
        "password": str(db["password"]),
    }


@dataclass
class Request:
    """One HTTP request as the emulator sees it (header names lower-case)."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "bad_request", "Request body is not valid JSON.") from exc


@dataclass
class Response:
    """An answer: a body in memory, or a file streamed from disk."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    # A fault's "reset": the server closes the connection with no answer (see faults.py).
    drop: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), headers=dict(headers or {}))


class ApiError(Exception):
    """Answered as ``{"id": ..., "message": ...}`` with ``status``."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message

    def response(self) -> Response:
        return Response.json(self.status, {"id": self.error_id, "message": self.message})


def fault_response(fault: JSONDict) -> Response:
    """The answer of a fault with a ``status``: JSON bodies as JSON, other strings as HTML."""
    status = int(fault["status"])
    body = fault.get("body", "")
    if isinstance(body, dict | list):
        return Response.json(status, body)
    text = str(body)
    try:
        json.loads(text)
    except ValueError:
        return Response(status, text.encode(), content_type="text/html; charset=utf-8")
    return Response(status, text.encode())
