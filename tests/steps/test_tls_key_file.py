"""tls.key_env's key as a file for ``convox certs import`` (steps/tls.py key_path): written 0600
in a 0700 temporary folder and removed afterwards, also when an earlier run was killed (kill -9
skips the removal) while it existed: the next use under the same project removes the leftover,
so a private key does not stay on disk indefinitely."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from cutover.playbook import load_playbook
from cutover.secrets import SecretMasker
from cutover.steps.tls import key_path

KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----\n"
)

PLAYBOOK = """\
heroku: {app: myapp}
convox: {app: myapp}
dns: {zone: example.test, record: www.example.test}
tls: {mode: import, cert: server.pem, key_env: CUTOVER_TEST_KEY}
"""

KILLED = """
import os, signal, sys
from pathlib import Path
from types import SimpleNamespace
from cutover.playbook import load_playbook
from cutover.secrets import SecretMasker
from cutover.steps.tls import key_path
playbook = load_playbook(Path(sys.argv[1]))
ctx = SimpleNamespace(model=playbook.model, playbook=playbook, masker=SecretMasker())
with key_path(ctx) as path:
    print(path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_key_left_by_a_killed_run_is_removed_by_the_next(tmp_path: Path) -> None:
    book = tmp_path / "cutover.yml"
    book.write_text(PLAYBOOK)
    env = {**os.environ, "CUTOVER_TEST_KEY": KEY}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(book)], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    left = Path(killed.stdout.strip())
    assert left.read_text() == KEY  # what kill -9 leaves behind
    assert left.stat().st_mode & 0o777 == 0o600
    assert left.parent.parent == Path(tempfile.gettempdir())

    playbook = load_playbook(book)
    ctx = SimpleNamespace(model=playbook.model, playbook=playbook, masker=SecretMasker())
    os.environ["CUTOVER_TEST_KEY"] = KEY
    try:
        with key_path(ctx) as path:  # type: ignore[arg-type]
            assert path.read_text() == KEY
            assert not left.exists()
            assert not left.parent.exists()
        assert not path.exists()
    finally:
        del os.environ["CUTOVER_TEST_KEY"]
