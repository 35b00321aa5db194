"""A sandbox for end-to-end tests: started per test module, always stopped."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.paths import HEROKU_CLI

from cutover.sandbox import manager

# The convox stand-in's rack stays asynchronous (builds pass through created and running, a
# rollout's pods are pending, a new resource refuses connections for a while: DEFAULT_TIMINGS in
# cutover/sandbox/convox_fake/store.py), only shorter: every end-to-end module runs a whole
# cutover with two promotes, and at the defaults each spent ~25 s of it idle.
RACK_TIMINGS = {"build_created": 0.3, "build_running": 1.2, "rollout": 1.0, "resource_start": 2.5}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    if not HEROKU_CLI.exists():
        pytest.skip("the pinned heroku CLI is not installed (run `make setup`)")
    # Not pytest's tmp folder: it is 0700, and PostgreSQL runs as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="cutover-e2e-"))
    try:
        manager.up(folder, rows=400, say=lambda m: None, rack_timings=RACK_TIMINGS)
        yield folder
    finally:
        manager.down(folder, say=lambda m: None)
        shutil.rmtree(folder, ignore_errors=True)
