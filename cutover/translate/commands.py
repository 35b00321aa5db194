"""The two functions behind ``cutover translate`` and ``cutover init``.

Both take their inputs and streams as parameters and return an exit code:

- 0 (``EXIT_OK``): a manifest was produced (with or without findings);
- 1 (``EXIT_STEP_FAILED``): ``init`` refused to overwrite an existing playbook (pass
  ``force``), or a file could not be written;
- 2 (``InvalidInput.exit_code``): the input is invalid (the message names the file, line and
  field) or the translation would be refused by convox's validation.

Errors are the project's (:mod:`cutover.errors`). These functions report the ones about the
app's description themselves, because ``--json`` reports them as JSON on stderr; anything else
(the heroku CLI failing, Ctrl-C) goes to the one error boundary in :mod:`cutover.cli`.

Findings always go to ``stderr``: one line per finding (severity, subject, message, code) and an
indented advice line; with ``as_json`` a single JSON document instead. ``stdout`` carries only
the manifest (``translate`` without ``output``) or the written paths (``init``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from cutover.errors import EXIT_OK, EXIT_STEP_FAILED, InvalidInput
from cutover.fsutil import atomic_write
from cutover.translate.facts import LiveFacts
from cutover.translate.manifest import render, validate
from cutover.translate.mapping import translate
from cutover.translate.model import (
    NAME_RULE,
    Finding,
    Severity,
    SourceInputError,
    TranslateOptions,
    Translation,
    input_error,
)
from cutover.translate.playbook_init import build_playbook
from cutover.translate.sources import read_sources

__all__ = [
    "format_findings",
    "run_init",
    "run_translate",
    "translate_folder",
]

_PLURAL = {
    "info": "info",
    "change": "changes",
    "guess": "guesses",
    "unmapped": "unmapped",
    "warning": "warnings",
}
_ORDER: tuple[Severity, ...] = ("warning", "unmapped", "guess", "change", "info")


def translate_folder(
    source_dir: Path, facts: LiveFacts | None, options: TranslateOptions
) -> tuple[Translation, str]:
    """Read, translate, validate and render. Raises InvalidInput (bad input, or a manifest
    convox's validation would refuse: convox's own messages in ``details``)."""
    tree = read_sources(source_dir)
    translation = translate(tree, facts, options)
    errors = validate(translation.manifest)
    if errors:
        raise InvalidInput("validation errors:", details="\n".join(errors))
    header = [
        "convox.yml written by `cutover translate` from: " + ", ".join(translation.inputs) + ".",
        "Review the findings it printed (changes, guesses, unmapped add-ons) before deploying.",
    ]
    return translation, render(translation.manifest, header)


def format_findings(findings: Sequence[Finding]) -> str:
    """Readable findings: ``severity  subject: message [code]`` then ``advice: ...`` indented."""
    lines: list[str] = []
    for finding in findings:
        lines.append(
            f"{finding.severity:<8}  {finding.subject}: {finding.message} [{finding.code}]"
        )
        if finding.advice:
            lines.append(f"{'':<8}    advice: {finding.advice}")
    return "\n".join(lines) + ("\n" if lines else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _summary(translation: Translation, where: str) -> str:
    manifest = translation.manifest
    counts = Counter(f.severity for f in translation.findings)
    parts = [f"{counts[s]} {_PLURAL[s] if counts[s] != 1 else s}" for s in _ORDER if counts[s]]
    sizes = [
        _count(len(manifest.get(key) or {}), key.removesuffix("s"))
        for key in ("services", "resources", "timers")
        if manifest.get(key)
    ]
    found = _count(len(translation.findings), "finding") + (
        f" ({', '.join(parts)})" if parts else ""
    )
    return f"cutover: {where}: {', '.join(sizes)}; {found}\n"


def _report_error(error: InvalidInput, as_json: bool, stderr: TextIO) -> None:
    message = "\n".join(part for part in (error.brief, error.details) if part)
    if as_json:
        payload: dict[str, Any] = {"ok": False, "error": {"message": message}}
        if isinstance(error, SourceInputError):
            payload["error"].update(error.place())
        if error.details:  # e.g. convox's validation messages, one per line, as a list
            payload["error"]["details"] = error.details.splitlines()
        stderr.write(json.dumps(payload, indent=2) + "\n")
        return
    stderr.write(f"cutover: invalid input: {message}\n")


def _report_findings(translation: Translation, where: str, as_json: bool, stderr: TextIO) -> None:
    if as_json:
        payload = {
            "ok": True,
            "manifest": where,
            "findings": [f.as_dict() for f in translation.findings],
        }
        stderr.write(json.dumps(payload, indent=2) + "\n")
        return
    stderr.write(format_findings(translation.findings))
    label = "convox.yml on stdout" if where == "stdout" else f"wrote {where}"
    stderr.write(_summary(translation, label))


def _write_atomic(path: Path, text: str) -> None:
    """Write a user-facing file (0644) atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, 0o644)


def run_translate(
    source_dir: Path,
    *,
    facts: LiveFacts | None,
    options: TranslateOptions,
    output: Path | None,
    as_json: bool,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """``cutover translate [DIR]``: convox.yml to ``stdout`` (or ``output``), findings to
    ``stderr``. Returns 0, or 2 on invalid input, or 1 when ``output`` cannot be written."""
    try:
        translation, text = translate_folder(source_dir, facts, options)
    except InvalidInput as error:
        _report_error(error, as_json, stderr)
        return error.exit_code
    if output is None:
        stdout.write(text)
        where = "stdout"
    else:
        try:
            _write_atomic(output, text)
        except OSError as error:
            message = f"cannot write {output}: {error.strerror or error}"
            stderr.write(
                json.dumps({"ok": False, "error": {"message": message}}, indent=2) + "\n"
                if as_json
                else f"cutover: {message}\n"
            )
            return EXIT_STEP_FAILED
        where = str(output)
    _report_findings(translation, where, as_json, stderr)
    return EXIT_OK


def _relative(target: Path, start: Path) -> str:
    try:
        return os.path.relpath(target.resolve(), start.resolve()).replace(os.sep, "/")
    except ValueError:  # another drive on Windows
        return str(target.resolve())


def run_init(
    source_dir: Path,
    *,
    facts: LiveFacts,
    convox_rack: str | None,
    convox_app: str,
    options: TranslateOptions,
    playbook_path: Path,
    force: bool,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """``cutover init``: translate, write ``convox.yml`` into ``source_dir`` (an existing one is
    kept unless ``force``) and the playbook at ``playbook_path`` (refused when it exists, unless
    ``force``), print the findings and what to review. Returns 0, 1 (refused) or 2 (invalid)."""
    if playbook_path.exists() and not force:
        stderr.write(
            f"cutover: {playbook_path} already exists; not overwritten "
            "(pass --force to replace it)\n"
        )
        return EXIT_STEP_FAILED
    if not NAME_RULE.match(convox_app):
        invalid = input_error(
            "convox app", f'"{convox_app}" is not a valid Convox app name (^[a-z][a-z0-9-]*$)'
        )
        _report_error(invalid, False, stderr)
        return invalid.exit_code
    try:
        translation, text = translate_folder(source_dir, facts, options)
    except InvalidInput as error:
        _report_error(error, False, stderr)
        return error.exit_code

    manifest_path = source_dir / "convox.yml"
    playbook_dir = playbook_path.parent if str(playbook_path.parent) else Path(".")
    draft = build_playbook(
        translation,
        facts,
        heroku_app=facts.app or convox_app,
        convox_app=convox_app,
        convox_rack=convox_rack,
        manifest=_relative(manifest_path, source_dir),  # convox deploy -m: inside the source
        source=_relative(source_dir, playbook_dir),
    )
    kept_manifest = manifest_path.exists() and not force
    try:
        if not kept_manifest:
            _write_atomic(manifest_path, text)
        _write_atomic(playbook_path, draft.text)
    except OSError as error:
        stderr.write(f"cutover: cannot write: {error.strerror or error} ({error.filename})\n")
        return EXIT_STEP_FAILED

    _report_findings(translation, str(manifest_path), False, stderr)
    review = list(draft.review)
    if kept_manifest:
        review.insert(
            0,
            f"{manifest_path} already existed and was kept: compare it with "
            "`cutover translate` (or rerun init with --force to replace it).",
        )
    review.append(
        "env.exclude: the config vars not copied to Convox; add any the app must not get."
    )
    if translation.findings:
        review.append("the findings above: every guess, unmapped add-on and warning.")
    stderr.write(f"cutover: review {playbook_path} before `cutover plan`:\n")
    for item in review:
        stderr.write(f"  - {item}\n")
    if not kept_manifest:
        stdout.write(f"wrote {manifest_path}\n")
    stdout.write(f"wrote {playbook_path}\n")
    return EXIT_OK
