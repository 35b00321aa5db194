"""Where things are in the checkout the tests run from, and the skip for a missing heroku CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEROKU_BIN = REPO / "node_modules" / ".bin"
HEROKU_CLI = HEROKU_BIN / "heroku"  # the pinned npm heroku (package.json)

needs_heroku_cli = pytest.mark.skipif(
    not HEROKU_CLI.exists(),
    reason=f"the pinned heroku CLI is not installed ({HEROKU_CLI} missing): run `npm ci` in {REPO}",
)
