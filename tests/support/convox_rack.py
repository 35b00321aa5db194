"""A private rack of the convox stand-in (``cutover.sandbox.convox_fake``) for a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cutover.sandbox import convox_fake


@contextmanager
def convox_rack(bin_dir: Path, config: Path, **rack: Any) -> Iterator[Path]:
    """Install the ``convox`` shim in ``bin_dir`` and configure a rack (``rack``: the keyword
    arguments of ``convox_fake.configure_rack``) in the CONVOX_CONFIG folder ``config``; on the
    way out, stop every process the rack started. Yields ``config``."""
    convox_fake.install_shim(bin_dir)
    convox_fake.configure_rack(config, **rack)
    try:
        yield config
    finally:
        convox_fake.stop_processes(config)
