"""The emulator, transport independent: authentication, faults and route dispatch.

Routes register themselves in :mod:`.routing` when :mod:`.routes_platform` and
:mod:`.routes_data` are imported (here); :class:`Emulator` answers a
:class:`~.common.Request` with a :class:`~.common.Response`.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import threading
from collections.abc import Iterator
from pathlib import Path

from cutover.sandbox.heroku_api import backups, faults, routes_data, routes_platform
from cutover.sandbox.heroku_api.common import (
    NOT_FOUND_ENDPOINT,
    ApiError,
    JSONDict,
    Request,
    Response,
    fault_response,
)
from cutover.sandbox.heroku_api.lookup import find_app
from cutover.sandbox.heroku_api.routing import ROUTES
from cutover.sandbox.heroku_api.state import load_state, update_state


class Emulator:
    """Answers API and backup requests from the state file."""

    def __init__(
        self,
        state_path: Path,
        *,
        backup_port: int,
        pg_dump: str = "pg_dump",
        stop: threading.Event | None = None,
    ) -> None:
        self.state_path = state_path
        self.backup_port = backup_port
        self.pg_dump = pg_dump
        self.stop = stop or threading.Event()
        self.workers: list[threading.Thread] = []

    # -- state --------------------------------------------------------------------------------

    def read(self) -> JSONDict:
        return load_state(self.state_path)

    @contextlib.contextmanager
    def edit(self) -> Iterator[JSONDict]:
        with update_state(self.state_path) as state:
            yield state

    @property
    def backups_dir(self) -> Path:
        return self.state_path.parent / "backups"

    def app(self, ident: str) -> tuple[str, JSONDict]:
        return find_app(self.read(), ident)

    def run_pg_dump(self, database: JSONDict, target: Path) -> tuple[bool, int, list[str]]:
        """``pg_dump -Fc`` the backing database into ``target`` (0600); (ok, size, log lines)."""
        return backups.run_pg_dump(self.pg_dump, database, target)

    # -- faults -------------------------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> JSONDict | None:
        """Consume and return the first fault matching ``method`` and ``path``, if any
        (:mod:`.faults`: ``times`` -1 is forever; each firing is recorded)."""
        if not any(faults.matches(f, method, path) for f in self.read().get("faults") or []):
            return None
        with self.edit() as state:
            return faults.take(state, method, path)

    def apply_fault(self, method: str, path: str) -> Response | None:
        """Fire a matching fault: hang for its delay, then return its response (or None)."""
        fault = self.take_fault(method, path)
        if fault is None:
            return None
        delay = float(fault.get("delay", 0) or 0)
        if delay > 0:
            self.stop.wait(delay)
        if fault.get("reset"):
            return Response(0, drop=True)
        if "status" in fault:
            return fault_response(fault)
        return None

    # -- entry points -------------------------------------------------------------------------

    def handle_api(self, request: Request) -> Response:
        try:
            fault = self.apply_fault(request.method, request.path)
            if fault is not None:
                return fault
            state = self.read()
            self._authenticate(state, request)
            for method, pattern, func in ROUTES:
                match = pattern.match(request.path)
                if match and method == request.method:
                    return func(self, request, match)
            raise ApiError(404, "not_found", NOT_FOUND_ENDPOINT)
        except ApiError as exc:
            return exc.response()

    def handle_backup(self, request: Request) -> Response:
        """Answer a request to the HTTPS backup listener (``/backups/<token>/<file>``)."""
        return backups.serve_backup(self, request)

    def _authenticate(self, state: JSONDict, request: Request) -> None:
        expected = str(state.get("api_key", ""))
        header = request.headers.get("authorization", "")
        token = ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except ValueError:
                decoded = ""
            token = decoded.partition(":")[2]
        valid = (
            bool(expected)
            and token not in ("", "undefined")
            and hmac.compare_digest(token.encode(), expected.encode())
        )
        if not valid:
            raise ApiError(401, "unauthorized", "Invalid credentials provided.")


__all__ = ["Emulator", "routes_data", "routes_platform"]  # the route modules register on import
