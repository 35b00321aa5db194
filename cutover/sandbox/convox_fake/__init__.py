"""A stand-in for the ``convox`` v3 CLI and its rack, for cutover's tests, demo and rehearsals.

The real CLI cannot run here, so this package behaves like it for every command cutover uses:
same stdout and stderr text, same tables, same ``ERROR:`` lines and exit codes, read from the
convox source (``github.com/convox/convox`` at the commit named in
``cutover/adapters/convox_cli.json``; each module cites the files it follows). Run it as
``python -m cutover.sandbox.convox_fake ...`` or through the ``convox`` shim written by
:func:`install_shim`.

Modules, one per concern: :mod:`.dispatch` (command line, refusals, command table),
:mod:`.output` (tables, info blocks, times), :mod:`.store` (state file, lock, configuration,
timings), :mod:`.model` (racks, apps, releases, builds, env), :mod:`.manifest` (``convox.yml``),
:mod:`.resources`, :mod:`.runtime` (processes, router), :mod:`.faults`, and the ``cmd_*``
modules (one per command group).
"""

from cutover.sandbox.convox_fake.dispatch import main
from cutover.sandbox.convox_fake.output import table
from cutover.sandbox.convox_fake.runtime import stop_processes
from cutover.sandbox.convox_fake.store import (
    STATE_FILE,
    VERSION,
    PostgresBackend,
    Router,
    Store,
    add_fault,
    configure_rack,
    install_shim,
    read_state,
    settings_dir,
)

__all__ = [
    "STATE_FILE",
    "VERSION",
    "PostgresBackend",
    "Router",
    "Store",
    "add_fault",
    "configure_rack",
    "install_shim",
    "main",
    "read_state",
    "settings_dir",
    "stop_processes",
    "table",
]
