"""The sandbox is an annex of the product (issue 9): the core never imports it, and without its
extra (`cutover[sandbox]`: psycopg, trustme) `cutover sandbox ...` says what to install."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cutover

PACKAGE = Path(cutover.__file__).resolve().parent
CORE = ("engine", "steps", "adapters")


def _imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """Every module an ``import``/``from ... import`` names in ``tree`` (anywhere: TYPE_CHECKING
    blocks and function bodies included), resolved to absolute names; ``package`` is the
    package the file lives in (for relative imports)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            # `from cutover import sandbox` names the sandbox as an attribute
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _is_sandbox(module: str) -> bool:
    return module == "cutover.sandbox" or module.startswith("cutover.sandbox.")


def test_core_packages_never_import_the_sandbox() -> None:
    offenders = []
    checked = 0
    for name in CORE:
        for path in sorted((PACKAGE / name).rglob("*.py")):
            checked += 1
            package = ".".join(("cutover", *path.relative_to(PACKAGE).parent.parts))
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            offenders += [
                f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
                for line, module in _imported_modules(tree, package)
                if _is_sandbox(module)
            ]
    assert checked > 10  # the walk really saw the packages
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import cutover.sandbox.manager", "cutover.sandbox.manager"),
        ("from cutover import sandbox", "cutover.sandbox"),
        ("from ..sandbox import procs", "cutover.sandbox"),
        ("from .. import sandbox", "cutover.sandbox"),
        ("def f():\n    from cutover.sandbox.knot import KnotServer", "cutover.sandbox.knot"),
        ("if TYPE_CHECKING:\n    import cutover.sandbox", "cutover.sandbox"),
    ],
)
def test_the_import_walk_sees_every_form_of_import(source: str, expected: str) -> None:
    """The check above is only as good as its walk: each form, as if in cutover/engine/."""
    found = [module for _, module in _imported_modules(ast.parse(source), "cutover.engine")]
    assert expected in found
    assert any(_is_sandbox(m) for m in found)


def test_the_import_walk_lets_the_rest_through() -> None:
    found = [
        module
        for _, module in _imported_modules(
            ast.parse(
                "from cutover.engine.state import RunState\nimport sandboxlib\n"
                "from .lock import RunLock"
            ),
            "cutover.engine",
        )
    ]
    assert found == [
        "cutover.engine.state",
        "cutover.engine.state.RunState",
        "sandboxlib",
        "cutover.engine.lock",
        "cutover.engine.lock.RunLock",
    ]
    assert not any(_is_sandbox(m) for m in found)


@pytest.mark.parametrize("command", ["up", "status", "down"])
def test_sandbox_without_its_extra_says_what_to_install(command: str, tmp_path: Path) -> None:
    """psycopg and trustme made unimportable (as in a venv without the extra)."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.modules['trustme'] = None\n"
        f"sys.argv = ['cutover', 'sandbox', {command!r}, '--dir', 'box']\n"
        "from cutover.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "missing: psycopg, trustme" in proc.stderr
    assert "Install them with: pip install 'cutover[sandbox]'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "box").exists()
