"""Fake ``heroku``, ``convox``, ``pg_dump``, ``pg_restore`` and ``psql`` executables for tests.

They are real programs: :func:`fakes.shims.install` writes tiny executables (``#!<python>``) into
a bin folder that a test puts first (and almost alone) on PATH. Every fake shares one JSON "world"
file (``FAKE_WORLD``) holding the Heroku and Convox state and the data fingerprint of each
database, and appends every call to ``FAKE_CALLS``. They print what the real CLIs print for the
commands cutover's adapters run (shared/reference/heroku-cli.md and convox-cli.md).

Modules:

* :mod:`fakes.world`   the world file (locked), the call log, the fault and kill hooks;
* :mod:`fakes.seed`    the starting world and its secrets;
* :mod:`fakes.heroku`, :mod:`fakes.convox` (with :mod:`fakes.convox_store`), :mod:`fakes.postgres`:
  one ``main`` per tool;
* :mod:`fakes.dispatch` the entry point the shims call;
* :mod:`fakes.shims`   writes the shims;
* :mod:`fakes.servers` the HTTPS server (backup storage and the deployed app) and a DNS tap in
  front of a real Knot server (counts RFC 2136 updates, can kill cutover right after one);
* :mod:`fakes.harness` a whole project (playbook, manifest, sandbox env.json, world, servers) and
  helpers to run ``python -m cutover`` in it and read what happened.

The tool modules import only the standard library (PyYAML lazily), so a fake starts in ~60 ms.
"""
