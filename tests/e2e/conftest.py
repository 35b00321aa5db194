"""A sandbox for end-to-end tests: started per test module, always stopped."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.paths import HEROKU_CLI

from cutover.sandbox import manager


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    if not HEROKU_CLI.exists():
        pytest.skip("the pinned heroku CLI is not installed (run `make setup`)")
    # Not pytest's tmp folder: it is 0700, and PostgreSQL runs as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="cutover-e2e-"))
    try:
        manager.up(folder, rows=400, say=lambda m: None)
        yield folder
    finally:
        manager.down(folder, say=lambda m: None)
        shutil.rmtree(folder, ignore_errors=True)
