"""Fixtures of the engine tests.

* ``fake_bin``: the fake ``heroku``/``convox``/``pg_*``/``psql`` executables (once a session);
* ``certs``: a throwaway CA and a leaf for the HTTPS server's names (once a session);
* ``project``: a fresh project (playbook, manifest, sandbox env.json, world, Knot + DNS tap, HTTPS
  server); every process it started is stopped at the end;
* ``finished``: one uninterrupted ``cutover run --yes``, kept for read-only tests and as the
  reference of the kill -9 tests. Tests must not run commands that write to it;
* ``boundary_chain`` / ``effect_chain``: the kill -9 chains of :mod:`fakes.chains`.

The last three are expensive (10-20 s each) and independent of every other test: when the
collected tests need them they start at once in one background thread, so they overlap with the
other tests (the suite otherwise runs one cutover process at a time on a 2-core machine). A test
that needs one waits for it; a failure inside shows in that test.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fakes import chains, shims
from fakes.chains import Chain
from fakes.harness import Certificates, Finished, Project, open_project

from cutover.sandbox.knot import KnotError, knotd_binary


@pytest.fixture(scope="session")
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shims.install(tmp_path_factory.mktemp("fakebin") / "bin")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("certs"))


def _knot_missing() -> str | None:
    try:
        knotd_binary()
    except KnotError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def _knotd() -> None:
    missing = _knot_missing()
    if missing:
        pytest.skip(missing)


@pytest.fixture
def project(tmp_path: Path, fake_bin: Path, certs: Certificates, _knotd: None) -> Iterator[Project]:
    with open_project(tmp_path, fake_bin, certs) as proj:
        yield proj


class ScenarioPool:
    """Runs the expensive scenarios in one background thread, each in a project of its own."""

    def __init__(
        self, factory: pytest.TempPathFactory, fake_bin: Path, certs: Certificates
    ) -> None:
        self._factory, self._fake_bin, self._certs = factory, fake_bin, certs
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scenario")
        self._stack = contextlib.ExitStack()
        self._futures: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()

    def new_project(self, name: str) -> Project:
        with self._lock:
            return self._stack.enter_context(
                open_project(self._factory.mktemp(name), self._fake_bin, self._certs)
            )

    def start(self, name: str) -> None:
        # One worker runs scenarios in submission order: a dependency submitted first is done
        # before the scenario that waits for it starts (no self-deadlock).
        for dependency in DEPENDS.get(name, ()):
            self.start(dependency)
        with self._lock:
            if name not in self._futures:
                self._futures[name] = self._executor.submit(SCENARIOS[name], self)

    def result(self, name: str) -> Any:
        self.start(name)
        return self._futures[name].result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._stack.close()


SCENARIOS: dict[str, Callable[[ScenarioPool], Any]] = {
    "finished": lambda pool: chains.finished_run(pool.new_project("finished")),
    "effect_chain": lambda pool: chains.effect_chain(pool.new_project("effects")),
    "boundary_chain": lambda pool: chains.boundary_chain(
        pool.new_project("boundaries"), list(pool.result("finished").first_call)
    ),
}


DEPENDS = {"boundary_chain": ("finished",)}


def _needed(session: pytest.Session) -> list[str]:
    """The scenarios the collected tests use, in the order they are needed."""
    needed = {
        name
        for item in session.items
        for name in getattr(item, "fixturenames", ())
        if name in SCENARIOS
    }
    return [name for name in ("finished", "effect_chain", "boundary_chain") if name in needed]


@pytest.fixture(scope="session")
def scenarios(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_bin: Path,
    certs: Certificates,
    _knotd: None,
) -> Iterator[ScenarioPool]:
    pool = ScenarioPool(tmp_path_factory, fake_bin, certs)
    try:
        # Start every scenario the collected tests need, in the order they are needed. In a
        # parallel run this fixture is first used by the one worker that runs the
        # "engine-scenarios" unit of work (tests/conftest.py), so only that worker builds them.
        for name in _needed(request.session):
            pool.start(name)
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session", autouse=True)
def _start_scenarios_early(request: pytest.FixtureRequest) -> None:
    """In a serial run, start the scenarios at once, to overlap with the other tests.

    A parallel worker gets every test collected, not the ones it will run: there the scenarios
    start when a test first needs them (on the one worker running "engine-scenarios").
    """
    if hasattr(request.config, "workerinput"):
        return
    if not _needed(request.session) or _knot_missing():
        return
    request.getfixturevalue("scenarios")


@pytest.fixture
def finished(scenarios: ScenarioPool) -> Finished:
    result: Finished = scenarios.result("finished")
    return result


@pytest.fixture
def boundary_chain(scenarios: ScenarioPool) -> Chain:
    result: Chain = scenarios.result("boundary_chain")
    return result


@pytest.fixture
def effect_chain(scenarios: ScenarioPool) -> Chain:
    result: Chain = scenarios.result("effect_chain")
    return result
