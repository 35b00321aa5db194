"""Guards for every test: nothing may reach a real cloud or the user's real state.

* In this process, sockets may connect to loopback addresses only.
* Child processes get an environment that points every tool at loopback or at nothing:
  HEROKU_HOST at a closed loopback port (the CLI silently falls back to api.heroku.com for
  non-Heroku, non-loopback hosts, so it must be loopback), telemetry and update checks off,
  CONVOX_CONFIG in a temp folder, no RACK_URL/CONVOX_HOST/CONVOX_PASSWORD, HOME in a temp folder.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

from cutover.sandbox import pgcluster, procs
from cutover.sandbox.pgcluster import PgCluster

# -- parallel runs (pytest-xdist; `make test` passes -n 4 --dist loadfile) ----------------------
# Each test file is one unit of work for a worker, so module-scoped fixtures (a sandbox, a rack)
# start once per file, as in a serial run. The engine files that read the expensive scenarios of
# tests/engine/conftest.py (session-scoped there) form one unit, so only one worker builds them.
# (Not `--dist loadgroup` with xdist_group marks: xdist 3.8 renames the nodeids for it by setting
# Item._nodeid, which pytest 9.2 no longer reads, so every test became a unit of its own.)
SHARED_UNITS = {
    "engine-scenarios": (
        "tests/engine/test_contracts.py",
        "tests/engine/test_plan.py",
        "tests/engine/test_reporting.py",
        "tests/engine/test_resume.py",
    ),
}
_UNIT_OF_FILE = {path: unit for unit, paths in SHARED_UNITS.items() for path in paths}


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the shared unit that file is part of."""
    path = nodeid.split("::", 1)[0]
    return _UNIT_OF_FILE.get(path, path)


def _heavy(item: pytest.Item) -> bool:
    """A slow test, or one using engine's ``project`` (a whole cutover with the recording fakes,
    10-30 s, though tests/engine/test_real_cli_behaviour.py's are not marked slow)."""
    return item.get_closest_marker("slow") is not None or "project" in getattr(
        item, "fixturenames", ()
    )


def _weight(unit: list[pytest.Item]) -> tuple[bool, int]:
    """Sort key, heaviest first: the end-to-end files (each brings a whole sandbox up and runs a
    cutover in it: minutes), then the units with the most heavy tests."""
    e2e = unit[0].nodeid.startswith("tests/e2e/")
    return (not e2e, -sum(1 for item in unit if _heavy(item)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a parallel worker: the units of work in one piece each, the heaviest first.

    xdist hands the units out in collection order (make test passes --no-loadscope-reorder, which
    would order them by test count): starting the longest units first keeps one long file from
    running alone at the end. Order inside a unit is kept. A serial run keeps pytest's order.
    """
    if not hasattr(config, "workerinput"):
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(work_unit(item.nodeid), []).append(item)
    items[:] = [item for unit in sorted(units.values(), key=_weight) for item in unit]


class _UnitScheduling(LoadFileScheduling):  # type: ignore[misc]  # xdist: untyped here
    """``--dist loadfile`` with :func:`work_unit` as the unit."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)


class _WorkUnits:
    """Registered when xdist is loaded (the hook exists only then)."""

    @pytest.hookimpl
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadfile":
            return None
        return _UnitScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_WorkUnits(), "cutover-work-units")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(address: Any) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host in ("localhost",):
            return
        try:
            ip = ipaddress.ip_address(host.split("%", maxsplit=1)[0])
        except ValueError:
            raise RuntimeError(
                f"test tried to connect to {host!r}: only loopback is allowed"
            ) from None
        if not ip.is_loopback:
            raise RuntimeError(f"test tried to connect to {host}: only loopback is allowed")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _loopback_only(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _loopback_only(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


GUARD_ENV = {
    "HEROKU_HOST": "http://127.0.0.1:9",  # discard port: nothing listens
    "HEROKU_DATA_HOST": "127.0.0.1",
    "HEROKU_API_KEY": "test-guard-key",
    "HEROKU_PARTICLEBOARD_URL": "http://127.0.0.1:9",
    "DISABLE_TELEMETRY": "true",
    "HEROKU_SKIP_NEW_VERSION_CHECK": "true",
    "HEROKU_DISABLE_AUTOUPDATE": "1",
    "NO_PROXY": "127.0.0.1,localhost",
}
UNSET = [
    "RACK_URL",
    "CONVOX_HOST",
    "CONVOX_PASSWORD",
    "CONVOX_RACK",
    "HEROKU_APP",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "CUTOVER_DNS_TSIG_SECRET",
    "PGHOST",
    "PGPASSWORD",
    "PGUSER",
    "PGDATABASE",
    "PGPORT",
    "DATABASE_URL",
]


@pytest.fixture(autouse=True)
def _guard_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    for key, value in GUARD_ENV.items():
        monkeypatch.setenv(key, value)
    for key in UNSET:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CONVOX_CONFIG", str(home / "convox"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))


# -- real PostgreSQL clusters, shared by every test folder -------------------------------------
PgFactory = Callable[[str], PgCluster]


@pytest.fixture(scope="session")
def sandbox_base() -> Iterator[Path]:
    """A private (0700) folder for this session's servers, removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="cutover-test-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_factory(sandbox_base: Path) -> Iterator[PgFactory]:
    """Start named clusters (superuser ``postgres``, random password); stop them all at the end."""
    try:
        pgcluster.pg_bindir()
    except pgcluster.PgClusterError as exc:
        pytest.skip(str(exc))
    started: list[PgCluster] = []

    def make(name: str) -> PgCluster:
        cluster = pgcluster.init_cluster(
            sandbox_base / "pg" / name,
            procs.free_port(),
            password=secrets.token_urlsafe(16),
            traverse_root=sandbox_base,
        )
        started.append(cluster)
        pgcluster.start(cluster, sandbox_base / f"{name}.log")
        return cluster

    try:
        yield make
    finally:
        errors = []
        for cluster in started:
            try:
                pgcluster.stop(cluster)
            except Exception as exc:  # keep stopping the others
                errors.append(f"{cluster.datadir}: {exc}")
        assert not errors, errors


@pytest.fixture(scope="session")
def pg_source(pg_factory: PgFactory) -> PgCluster:
    """A running cluster for the whole session (shared: use your own database)."""
    return pg_factory("source")


@pytest.fixture(scope="session")
def pg_target(pg_factory: PgFactory) -> PgCluster:
    """A second running cluster for the whole session (shared: use your own database)."""
    return pg_factory("target")
