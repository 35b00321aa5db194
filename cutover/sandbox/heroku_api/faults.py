"""Faults of the Heroku API emulator: what the real ``heroku`` CLI meets when the network or
the API is in trouble, injected per API call (method and path), once, N times or forever.

A fault is a dict in the state's ``"faults"`` list (see the package docstring); the builders
here give the shapes the real API and network produce, each from the CLI's own source
(``heroku`` 11.10.0 as installed in node_modules):

* :func:`server_error`, JSON body: Heroku's API answers 5xx with ``{"id", "message"}``; the CLI's
  ``HerokuAPIError`` (@heroku-cli/command/lib/api-client.js) prints the message and
  ``Error ID: <id>`` and exits 2 (oclif CLIError). The API does not retry a 5xx.
* :func:`server_error`, ``html=True``: a 5xx with a non-JSON body (a load balancer's or
  router's page). ``HerokuAPIError`` rethrows the raw ``HTTPError`` whose message is
  ``HTTP Error <status> for <METHOD> <url>\\n<body>`` (@heroku/http-call/lib/http.js
  ``HTTPError``); exit 1.
* :func:`reset`: the connection is closed with a TCP reset and no answer. Node raises
  ``ECONNRESET`` ("socket hang up" / "read ECONNRESET"); http-call's ``_maybeRetry`` retries
  every error with a code outside is-retry-allowed's deny list (ECONNRESET, ECONNREFUSED,
  ETIMEDOUT...) up to 5 times, waiting ``2^n * 100 ms`` + noise: a reset fewer than 6 times in a
  row is absorbed by the CLI itself; more and the CLI fails with that error, exit 1.
* :func:`delay`: the request is held (``"delay"`` seconds), then answered normally, or (with
  ``status``) with that status. http-call sets a 60 s socket timeout
  (``HTTP.defaults.timeout``); on it the request fails with "Request timed out" (an Error
  without a code: not retried by http-call). Hold longer than the caller's timeout to emulate
  a hang.

Connection *refused* cannot be chosen per path (it happens before a request is sent); stop the
emulator for that (the CLI prints ``connect ECONNREFUSED 127.0.0.1:<port>`` after its 5
retries).

A fault's ``path`` is exact, or a prefix ending in ``*``. ``times``: default 1; a positive
number is decremented as the fault fires; ``-1`` fires forever until the fault is removed
(:func:`remove`). Every firing is appended to the state's
``"faults_fired"`` list (method, path, status or kind), so a test can show which fired.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cutover.sandbox.heroku_api.state import update_state

JSONDict = dict[str, Any]

# Heroku's own 5xx ids (the adapter's classifier reads them from ``Error ID: <id>``).
SERVICE_UNAVAILABLE = {
    "id": "service_unavailable",
    "message": "The API is temporarily unavailable. Please try again in a few minutes.",
}
HTML_503 = (
    "<html><head><title>503 Service Unavailable</title></head><body>"
    "<h1>503 Service Unavailable</h1>No server is available to handle this request."
    "</body></html>"
)


def server_error(
    method: str, path: str, *, status: int = 503, html: bool = False, times: int = 1
) -> JSONDict:
    """A 5xx answer: Heroku's JSON error (exit 2 in the CLI) or an HTML page (exit 1)."""
    body: Any = HTML_503.replace("503", str(status)) if html else dict(SERVICE_UNAVAILABLE)
    return {"method": method, "path": path, "status": status, "body": body, "times": times}


def reset(method: str, path: str, *, times: int = 1) -> JSONDict:
    """Close the connection with no answer (ECONNRESET in the CLI)."""
    return {"method": method, "path": path, "reset": True, "times": times}


def delay(method: str, path: str, seconds: float, *, times: int = 1) -> JSONDict:
    """Hold the request ``seconds``, then answer it normally."""
    return {"method": method, "path": path, "delay": seconds, "times": times}


def add(state_path: Path, fault: JSONDict) -> None:
    """Append ``fault`` to the emulator's state (read on every request)."""
    if not isinstance(fault.get("method"), str) or not isinstance(fault.get("path"), str):
        raise ValueError("a fault needs a 'method' and a 'path' (e.g. GET /apps/myapp)")
    with update_state(state_path) as state:
        state.setdefault("faults", []).append(dict(fault))


def remove(state_path: Path, method: str | None = None, path: str | None = None) -> int:
    """Remove the faults matching ``method``/``path`` (all without them); return how many."""
    with update_state(state_path) as state:
        queued: list[Any] = state.get("faults") or []
        kept = [
            f
            for f in queued
            if not (
                (method is None or str(f.get("method", "")).upper() == method.upper())
                and (path is None or f.get("path") == path)
            )
        ]
        state["faults"] = kept
        return len(queued) - len(kept)


def fired(state: JSONDict) -> list[JSONDict]:
    """The faults that fired so far, oldest first."""
    return list(state.get("faults_fired") or [])


def take(state: JSONDict, method: str, path: str) -> JSONDict | None:
    """Consume (in ``state``, which the caller saves) the first fault for ``method path``."""
    queued: list[Any] = state.get("faults") or []
    for index, fault in enumerate(queued):
        if not matches(fault, method, path):
            continue
        times = int(fault.get("times", 1))
        if times in {0, 1}:
            del queued[index]
        elif times > 1:
            fault["times"] = times - 1
        state["faults"] = queued
        kind = "reset" if fault.get("reset") else fault.get("status", "delay")
        state.setdefault("faults_fired", []).append(
            {"method": method.upper(), "path": path, "kind": kind}
        )
        return dict(fault)
    return None


def matches(fault: Any, method: str, path: str) -> bool:
    """Exact method and path; a fault path ending in ``*`` matches every path it prefixes
    (``/backups/*``: the download of any backup, whose token is not known in advance)."""
    if not isinstance(fault, dict) or str(fault.get("method", "")).upper() != method.upper():
        return False
    wanted = str(fault.get("path", ""))
    if wanted.endswith("*"):
        return path.startswith(wanted[:-1])
    return wanted == path
