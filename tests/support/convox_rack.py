"""A private rack of the convox stand-in (``cutover.sandbox.convox_fake``) for a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cutover.runner import Runner
from cutover.sandbox import convox_fake
from cutover.secrets import SecretMasker


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


def no_convox(masker: SecretMasker) -> Runner:
    """A runner that finds no program (its PATH is a folder that does not exist): a ConvoxAdapter
    over it fails every call with ToolMissing, whatever this machine has installed."""
    return Runner(masker, base_env={"PATH": "/nonexistent/cutover-tests"})
