"""The route table: route modules register handlers with :func:`route`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from cutover.sandbox.heroku_api.common import Request, Response

if TYPE_CHECKING:
    from cutover.sandbox.heroku_api.emulator import Emulator

Handler = Callable[["Emulator", Request, "re.Match[str]"], Response]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []

SEG = r"(?P<{}>[^/]+)"
APP = SEG.format("app")


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register ``func`` for ``method`` on paths matching ``pattern`` (anchored)."""

    def register(func: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), func))
        return func

    return register
