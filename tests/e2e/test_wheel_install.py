"""The built wheel, installed in a fresh venv outside the repository (issue 9).

`pipx install 'cutover[sandbox]'` then `cutover sandbox up` must work from the wheel alone: the
sandbox's data (seed file, sample app) ships as package data (pyproject.toml's package-data,
read with importlib.resources), and without the extra `cutover sandbox ...` names what to install.

The wheel is built by pip (build isolation: pyproject's build-system, setuptools>=68) and the fresh
venv's pip resolves the dependencies, both from the same index the dev venv was installed from
(pip's configuration: /etc/pip.conf and PIP_* variables, which this test passes through).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.paths import REPO

from cutover import __version__
from cutover.sandbox import pgcluster
from cutover.sandbox.knot import KnotError, knotd_binary

pytestmark = pytest.mark.slow

# What setuptools needs to build the wheel: the project file, the readme it names, the package.
SOURCES = ("pyproject.toml", "README.md", "cutover")
INSTALL_TIMEOUT = 600
SANDBOX_TIMEOUT = 300


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (
        f"{proc.args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """(fresh venv, work folder outside the repository, environment) with the wheel installed
    WITHOUT the sandbox extra; the tests add the extra themselves, in order."""
    try:
        pgcluster.pg_bindir()
        knotd_binary()
    except (pgcluster.PgClusterError, KnotError) as exc:
        pytest.skip(str(exc))
    base = Path(tempfile.mkdtemp(prefix="cutover-wheel-"))
    try:
        src = base / "src"
        src.mkdir()
        for name in SOURCES:
            if (REPO / name).is_dir():
                shutil.copytree(
                    REPO / name,
                    src / name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                )
            else:
                shutil.copy2(REPO / name, src / name)
        # The child's PATH: the system's tools, not the dev venv (whose cutover is editable).
        dev_bin = str(Path(sys.executable).parent)
        path = os.pathsep.join(
            p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != dev_bin
        )
        env: dict[str, str] = {**os.environ, "PATH": path}
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        _ok(
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--quiet",
                    "-w",
                    str(base / "dist"),
                    str(src),
                ],
                cwd=base,
                env=env,
                timeout=INSTALL_TIMEOUT,
            )
        )
        wheels = list((base / "dist").glob("cutover-*.whl"))
        assert len(wheels) == 1, wheels
        venv = base / "venv"
        _ok(_run([sys.executable, "-m", "venv", str(venv)], cwd=base, env=env))
        _ok(
            _run(
                [str(venv / "bin" / "pip"), "install", "--quiet", str(wheels[0])],
                cwd=base,
                env=env,
                timeout=INSTALL_TIMEOUT,
            )
        )
        work = base / "elsewhere"
        work.mkdir()
        env["CUTOVER_TEST_WHEEL"] = str(wheels[0])
        yield venv, work, env
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_wheel_runs_from_its_venv_not_the_source_tree(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    venv, work, env = installed
    assert (
        _ok(_run([str(venv / "bin" / "cutover"), "--version"], cwd=work, env=env))
        == f"cutover {__version__}\n"
    )
    where = _ok(
        _run(
            [str(venv / "bin" / "python"), "-c", "import cutover; print(cutover.__file__)"],
            cwd=work,
            env=env,
        )
    ).strip()
    assert Path(where).is_relative_to(venv), where
    assert not Path(where).is_relative_to(REPO)
    # The package data the sandbox reads (pyproject.toml's package-data), inside the venv.
    data = Path(where).parent / "sandbox" / "data"
    assert (data / "heroku_seed.json").is_file()
    assert (data / "sample-app" / "convox.yml").read_text(encoding="utf-8") == (
        REPO / "cutover" / "sandbox" / "data" / "sample-app" / "convox.yml"
    ).read_text(encoding="utf-8")


def test_wheel_sandbox_without_extra_names_what_to_install_then_works_with_it(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    venv, work, env = installed
    cutover = str(venv / "bin" / "cutover")
    # Its own temp folder, as tests/e2e/conftest.py does: PostgreSQL runs as the postgres user,
    # which must be able to traverse to the clusters (pgcluster's traverse_root).
    folder = Path(tempfile.mkdtemp(prefix="cutover-wheelbox-"))
    folder.rmdir()
    for sub in ("up", "status", "down"):
        proc = _run([cutover, "sandbox", sub, "--dir", str(folder)], cwd=work, env=env)
        assert proc.returncode == 2, (sub, proc.stdout, proc.stderr)
        assert "pip install 'cutover[sandbox]'" in proc.stderr
        assert "missing: psycopg, trustme" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
    assert not folder.exists()
    folder.mkdir(mode=0o700)

    _ok(
        _run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                f"{env['CUTOVER_TEST_WHEEL']}[sandbox]",
            ],
            cwd=work,
            env=env,
            timeout=INSTALL_TIMEOUT,
        )
    )
    try:
        out = _ok(
            _run(
                [cutover, "sandbox", "up", "--dir", str(folder), "--rows", "50"],
                cwd=work,
                env=env,
                timeout=SANDBOX_TIMEOUT,
            )
        )
        assert f"sandbox up in {folder}" in out.replace("\n", "")
        # The sample app came from the package data, not from a source tree.
        assert (folder / "app" / "convox.yml").read_text(encoding="utf-8") == (
            REPO / "cutover" / "sandbox" / "data" / "sample-app" / "convox.yml"
        ).read_text(encoding="utf-8")
        sandbox_env = json.loads((folder / "env.json").read_text(encoding="utf-8"))
        assert not any(Path(p).is_relative_to(REPO) for p in sandbox_env["path_prefix"])
        assert (folder / "env.json").stat().st_mode & 0o777 == 0o600

        status = _run([cutover, "sandbox", "status", "--dir", str(folder)], cwd=work, env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        for component in ("pg_heroku", "pg_convox", "heroku_api", "heroku_app", "dns"):
            assert component in status.stdout
        assert "stopped" not in status.stdout
    finally:
        down = _run(
            [cutover, "sandbox", "down", "--dir", str(folder)],
            cwd=work,
            env=env,
            timeout=SANDBOX_TIMEOUT,
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped: " in down.stdout
    assert "heroku_api" in down.stdout
    assert not folder.exists()
