"""Polling until something holds, with a generous deadline (tests never assert on timings)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    what: str = "the condition",
    deadline: float = 90.0,
    interval: float = 0.05,
) -> T:
    """Call ``predicate`` until it returns something true and return that; fail the test if
    ``deadline`` seconds pass first."""
    until = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(interval)
