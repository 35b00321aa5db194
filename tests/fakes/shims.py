"""Write the fake executables: tiny scripts whose shebang is this interpreter (not
``/usr/bin/env python3``: the PATH a test gives cutover holds only chosen tools)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

import cutover

TOOLS = ("heroku", "convox", "pg_dump", "pg_restore", "psql")
TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = Path(cutover.__file__).resolve().parent.parent

# -S: no site module (the venv's .pth files cost ~70 ms a call); the folders the fakes import
# from (tests/, PyYAML's site-packages, and the repository for cutover.adapters.convox_cli, the
# convox CLI facts the convox fake parses with) are put on sys.path explicitly.
_SHIM = """#!{python} -S
# A fake {tool} for cutover's tests (see tests/fakes/__init__.py).
import sys
sys.path[:0] = [{tests!r}, {site!r}, {root!r}]
from fakes.dispatch import main
sys.exit(main({tool!r}))
"""


def install(bin_dir: Path, tools: tuple[str, ...] = TOOLS) -> Path:
    """Write one executable per tool into ``bin_dir``; return ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        path = bin_dir / tool
        site = str(Path(yaml.__file__).resolve().parent.parent)
        path.write_text(
            _SHIM.format(
                python=sys.executable,
                tool=tool,
                tests=str(TESTS_DIR),
                site=site,
                root=str(REPO_DIR),
            ),
            encoding="utf-8",
        )
        path.chmod(0o755)
    return bin_dir
