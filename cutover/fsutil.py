"""Durable file writes shared by the state file, the sandbox and translate's outputs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cutover.errors import CutoverError


class StateFolderError(CutoverError):
    """The state folder cannot be written (read-only, full, not a folder): the command stops
    before going on without its lock, log or checkpoint (exit 1)."""


def unwritable(folder: Path, exc: OSError, what: str) -> StateFolderError:
    """The error for an OSError met while writing ``what`` (lock, log, state) in ``folder``."""
    return StateFolderError(
        f"cannot write the {what} in the state folder {folder}: {exc.strerror or exc}",
        resolution="Fix the cause (disk space, permissions, a file where the folder should "
        "be), then run the command again; what was written before is intact.",
    )


def make_private(fd: int) -> None:
    """Make an opened file 0600: a lock or log file created earlier with a wider mode (by
    hand, a restore, an older cutover) is narrowed when cutover opens it."""
    os.fchmod(fd, 0o600)


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same folder (created with
    ``mode``), fsync, rename over ``path``, fsync the folder. A failure leaves ``path`` as it
    was and no temp file behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700; return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    return path
