"""`cutover sandbox up` in a folder the postgres system user cannot reach says so clearly."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does PostgreSQL run as another user")
def test_up_in_a_folder_postgres_cannot_reach_is_a_clear_error() -> None:
    # Not under tmp_path: a private 0700 folder of our own above the sandbox blocks the
    # postgres user, and the sandbox never widens folders above its own (pgcluster.py).
    outer = Path(tempfile.mkdtemp(prefix="cutover-sandbox-blocked-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, outer, True)
        proc = subprocess.run(
            [sys.executable, "-m", "cutover", "sandbox", "up", "--dir", str(outer / "sb")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert "does not let it traverse" in out
        assert "--dir" in out  # what to do next
        assert "unexpected error" not in out
        assert "Traceback" not in out
