"""Start-up (issue 9): a command imports what it needs when it runs, not every library up front.

Proved without timing anything: `python -X importtime` lists every module a process imports,
nested under the module that imported it (CPython's Python/import.c prints one line per import
when it finishes, children before their parent, two spaces of indent per level).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

from cutover import __version__, cli, playbook
from cutover.engine.plan import new_state
from cutover.playbook import load_playbook
from cutover.secrets import SecretMasker
from cutover.state import StateStore, Status

# Libraries a command must not load unless it uses them.
HEAVY = (
    "pydantic",
    "yaml",
    "httpx",
    "dns",
    "sh",
    "psycopg",
    "trustme",
    "rich.table",
    "rich.prompt",
    "tenacity",
)
# cutover's own heavy layers.
LAYERS = (
    "cutover.playbook",
    "cutover.engine",
    "cutover.steps",
    "cutover.adapters",
    "cutover.runner",
    "cutover.translate",
    "cutover.sandbox",
    "cutover.catalog",
)


def import_tree(
    argv: list[str], cwd: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]:
    """Run ``python -X importtime -m cutover ARGV``; map each imported module to the chain of
    modules that imported it (outermost first)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cutover", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc, parse_import_tree(proc.stderr)


def parse_import_tree(stderr: str) -> dict[str, list[str]]:
    """``-X importtime`` lines are ``import time: SELF | CUMULATIVE | <2*level spaces>NAME``."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("import time:")]
    assert len(lines) > 1, stderr
    chains: dict[str, list[str]] = {}
    stack: list[str] = []
    # Children are printed before their parent: read bottom-up so parents come first.
    for line in reversed(lines[1:]):  # lines[0] is the header
        field = line.split("|", 2)[2]
        name = field.strip()
        level = (len(field) - len(field.lstrip(" ")) - 1) // 2
        del stack[level:]
        chains.setdefault(name, list(stack))
        stack.append(name)
    return chains


def _loaded(chains: dict[str, list[str]], prefix: str) -> list[str]:
    return [m for m in chains if m == prefix or m.startswith(prefix + ".")]


def test_version_imports_no_library_and_no_layer(tmp_path: Path) -> None:
    proc, chains = import_tree(["--version"], tmp_path)
    assert proc.returncode == 0
    assert proc.stdout == f"cutover {__version__}\n"
    assert "cutover.cli" in chains  # the walk really saw cutover's own imports
    for name in (*HEAVY, *LAYERS):
        assert _loaded(chains, name) == [], name


@pytest.fixture
def playbook_with_state(tmp_path: Path) -> Path:
    path = tmp_path / "cutover.yml"
    path.write_text(
        (REPO / "playbooks" / "example.yml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    loaded = load_playbook(path)
    state = new_state(loaded)
    state.step("preflight").status = Status.DONE
    StateStore(loaded.state_dir, SecretMasker()).save(state)
    return path


def test_status_loads_neither_the_annexes_nor_the_adapters_from_cli_or_context(
    playbook_with_state: Path, tmp_path: Path
) -> None:
    proc, chains = import_tree(["status", "-f", str(playbook_with_state)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "preflight" in proc.stdout
    assert "done" in proc.stdout
    assert "cutover.engine.run" in chains  # the walk really saw the engine load
    # Not for status at all: the translate and sandbox groups and their libraries, the
    # context builder, the adapters and their libraries (sh, httpx, dnspython): steps name
    # adapter types only under TYPE_CHECKING and build_context imports them for a run.
    for name in (
        "cutover.translate",
        "cutover.sandbox",
        "psycopg",
        "trustme",
        "cutover.engine.context",
        "cutover.adapters",
        "cutover.runner",
        "httpx",
        "dns",
        "sh",
    ):
        assert _loaded(chains, name) == [], name


def test_status_without_a_run_and_help_still_work(tmp_path: Path) -> None:
    """The groups registered per command line still appear in help and run when named."""
    proc, chains = import_tree(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("plan", "run", "status", "log", "unlock", "translate", "init", "sandbox"):
        assert command in proc.stdout
    proc, chains = import_tree(["translate", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--timer" in proc.stdout
    assert _loaded(chains, "cutover.sandbox") == []
    proc, chains = import_tree(["sandbox", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "up" in proc.stdout
    assert _loaded(chains, "cutover.translate") == []
    assert _loaded(chains, "psycopg") == []  # the extra is imported by a sandbox command only


def test_the_import_tree_parser_nests_children_under_their_importer(tmp_path: Path) -> None:
    """The parser above against a process whose imports are known: cutover.engine.context
    imports cutover.errors (its only cutover import at the top)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import cutover.engine.context"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    chains = parse_import_tree(proc.stderr)
    assert chains["cutover.engine.context"] == []  # its packages finish first, at level 0
    assert chains["cutover.errors"] == ["cutover.engine.context"]
    assert "pydantic" not in chains
    assert "sh" not in chains


def test_cli_default_playbook_is_the_playbook_modules() -> None:
    """cli.py names the default playbook without importing cutover.playbook (pydantic)."""
    assert cli.DEFAULT_PLAYBOOK == playbook.DEFAULT_PLAYBOOK
