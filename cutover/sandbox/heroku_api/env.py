"""The environment and HOME the real ``heroku`` CLI runs with against the emulator."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cutover.sandbox.heroku_api.common import LOOPBACK


def cli_env(port: int, api_key: str, home: Path, ca_file: Path | None) -> dict[str, str]:
    """The complete child environment for running the real ``heroku`` CLI against the emulator.

    Built from scratch (only ``PATH`` is taken over, so that ``node`` and ``git`` are found):
    every host is loopback and every phone-home switch is off (reference §3).
    """
    base = f"http://{LOOPBACK}:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "HEROKU_HOST": base,
        "HEROKU_API_KEY": api_key,
        "HEROKU_DATA_HOST": LOOPBACK,
        "HEROKU_PARTICLEBOARD_URL": base,
        "DISABLE_TELEMETRY": "true",
        "HEROKU_SKIP_NEW_VERSION_CHECK": "true",
        "HEROKU_DISABLE_AUTOUPDATE": "1",
        "OCLIF_COLUMNS": "1000",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "TZ": "UTC",
        "LANG": "C.UTF-8",
    }
    if ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca_file)
    return env


def prepare_home(home: Path, port: int) -> None:
    """Pre-seed an isolated HOME so the CLI writes nothing there and prints no ToS warning."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache = home / ".cache" / "heroku"
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # never touch an existing one (mtime)
        os.close(os.open(cache / "terms-of-service", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    gitconfig = home / ".gitconfig"
    section = f'[credential "https://{LOOPBACK}:{port}"]'
    text = gitconfig.read_text(encoding="utf-8") if gitconfig.exists() else ""
    if section not in text:
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"{section}\n\thelper = !heroku git:credentials\n"
        fd = os.open(gitconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
