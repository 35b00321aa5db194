"""What a dyno gives a process that an image does not, read from the files a command runs.

- heroku-buildpack-nodejs profile/nodejs.sh puts ``$HOME/node_modules/.bin`` on every dyno's
  PATH, so ``web: next start`` runs there; an image built with ``npm ci`` has no such PATH.
- Dev Center, "Dyno Shutdown Behavior": SIGTERM "sends to all processes in the dyno", so a
  start script that runs its server without ``exec`` still stops it gracefully on Heroku. On
  Convox (Kubernetes) only the container's main process gets SIGTERM: the script's shell, which
  does not pass it on, so the server is killed after the grace period.
"""

from __future__ import annotations

import json
import re
from typing import Final

from cutover.translate.bashsyntax import scan
from cutover.translate.model import FindingLog
from cutover.translate.sourcetypes import ProcessType, SourceTree

__all__ = ["runtime_findings"]


def runtime_findings(tree: SourceTree, log: FindingLog, service: str, process: ProcessType) -> None:
    """Findings for what a process's command relies on at run time (node_modules/.bin on PATH
    only for buildpack apps: a heroku.yml image has the same PATH on both platforms)."""
    if not process.command:
        return
    if process.dockerfile is None:
        node_bin_findings(tree, log, service, process.command)
    start_script_findings(tree, log, service, process.command)


_NODE_TOOLS: Final = frozenset({"node", "npm", "npx", "yarn", "pnpm", "corepack", "bun"})
_LEADING: Final = re.compile(r"^(?:(?:exec|env|[A-Za-z_][A-Za-z0-9_]*=\S*)\s+)*")


def _node_packages(tree: SourceTree) -> set[str]:
    try:
        data = json.loads((tree.root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict):
        return set()
    names: set[str] = set()
    for key in ("dependencies", "devDependencies"):
        section = data.get(key)
        if isinstance(section, dict):
            names |= {str(name).rsplit("/", 1)[-1] for name in section}
    return names


def node_bin_findings(tree: SourceTree, log: FindingLog, service: str, command: str) -> None:
    """A bare program name from node_modules (``next start``, ``pm2-runtime``): the Node.js
    buildpack puts ``$HOME/node_modules/.bin`` on every dyno's PATH (heroku-buildpack-nodejs
    profile/nodejs.sh: ``export PATH=...:$HOME/node_modules/.bin``); an image built with
    ``npm ci`` does not, so exec fails with "executable file not found"."""
    if not (tree.root / "package.json").is_file():
        return
    packages = _node_packages(tree)
    programs: list[str] = []
    for _, segment in scan(command).segments():
        word = _LEADING.sub("", segment).split(None, 1)[0] if segment.strip() else ""
        if not word or "/" in word or word in _NODE_TOOLS or word in programs:
            continue
        if word in packages or word.split("-", 1)[0] in packages:  # pm2-runtime: pm2
            programs.append(word)
    if programs:
        log.add(
            "command-node-bin",
            "warning",
            service,
            f"{', '.join(programs)} runs from node_modules/.bin, which the Node.js buildpack "
            "puts on PATH on Heroku; an image's PATH does not have it",
            "Add `ENV PATH=/app/node_modules/.bin:$PATH` to the Dockerfile (with the app's "
            f"folder), or call it through npx or an npm script (`npx {programs[0]} ...`).",
        )


_SCRIPT_SHELLS: Final = frozenset({"sh", "bash", "dash", "/bin/sh", "/bin/bash"})
_CLOSERS: Final = frozenset({"fi", "done", "esac", "}", ")", ";;"})


def _script_of(command: str) -> str | None:
    """The repository file the command's last top-level command runs, if any."""
    last = scan(command).segments()[-1][1]
    words = _LEADING.sub("", last).split()
    if words and words[0] in _SCRIPT_SHELLS and len(words) > 1 and not words[1].startswith("-"):
        words = words[1:]
    return words[0] if words and "$" not in words[0] and "~" not in words[0] else None


def start_script_findings(tree: SourceTree, log: FindingLog, service: str, command: str) -> None:
    script = _script_of(command)
    if script is None:
        return
    path = tree.root / script
    try:
        if not path.is_file() or path.stat().st_size > 256_000:
            return
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return
    first = text.split("\n", 1)[0]
    if not (
        re.match(r"#!.*\b(?:ba|da)?sh\b", first)
        or (not first.startswith("#!") and script.endswith(".sh"))
    ):
        return
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        return
    last = scan(lines[-1]).text or lines[-1]
    word = last.split(None, 1)[0]
    if word == "exec" or word in _CLOSERS or last.endswith(("fi", "done")):
        return
    log.add(
        "script-no-exec",
        "warning",
        service,
        f"{script} ends with `{last[:60]}`, not `exec ...`: on Heroku SIGTERM reaches every "
        "process of the dyno; on Convox only the container's main process (the script's shell, "
        "which ignores it) gets it, and the server is killed after the grace period",
        f"Make the last line of {script} `exec {word} ...`, so the server replaces the shell "
        "(or trap TERM in the script and pass it on).",
    )
