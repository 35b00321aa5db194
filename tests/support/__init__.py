"""Helpers shared by every test folder (importable as ``support``: pytest puts tests/ on
sys.path for tests/conftest.py, and mypy finds it through ``mypy_path = "tests"``).

Not a test package: it holds no tests and no fixtures, only what tests and fixtures call.

- ``support.waiting``: polling with a generous deadline (no timed assertions);
- ``support.tls``: throwaway CAs and certificates, the names a TLS server presents;
- ``support.databases``: a database and its owner role on a test cluster;
- ``support.heroku_emulator``: ``python -m cutover.sandbox.heroku_api`` as a subprocess;
- ``support.convox_rack``: a private rack of the convox stand-in (shim, rack, clean-up).
"""
