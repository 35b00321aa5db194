"""Just enough of bash's grammar to move a Procfile line from Heroku to Convox.

Heroku runs a Procfile command with bash: Heroku's Procfile buildpack declares every process
``direct: false`` (heroku/buildpacks-procfile, src/launch.rs), which the launcher runs as
``bash -c COMMAND`` (the buildpack's README: ``pack inspect`` shows ``SHELL bash``). Convox splits
a ``command`` with go-shellquote and execs the words without any shell
(convox provider/k8s/process.go: ``shellquote.Split(s.Command)``), so everything bash would do
has to be written out: comments, operators, expansions, and the ``exec`` that makes the server
the container's main process.

This module only scans; :mod:`cutover.translate.shell` decides what to write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Scan",
    "bash_only_constructs",
    "ends_with_exec",
    "has_tilde",
    "scan",
    "variables_used",
]

# Top-level list and pipeline operators (bash(1), SHELL GRAMMAR: Lists, Pipelines).
_OPERATORS: Final = ("&&", "||", ";;", ";", "|&", "|", "&")
_WORD_START_AFTER: Final = frozenset(" \t\n;&|()<>")


@dataclass(frozen=True)
class Scan:
    """Where a command's top-level operators are, and where a trailing comment starts."""

    text: str  # the command without its comment, right-stripped
    comment: str | None  # the comment's text, "#" included
    operators: tuple[tuple[int, str], ...]  # (offset in text, operator) at nesting depth 0
    balanced: bool  # quotes, $( ), ( ), ` ` and ${ } all closed

    def segments(self) -> list[tuple[str | None, str]]:
        """``(operator before it or None, segment text)`` for every top-level command."""
        out: list[tuple[str | None, str]] = []
        start, before = 0, None
        for offset, op in self.operators:
            out.append((before, self.text[start:offset].strip()))
            start, before = offset + len(op), op
        out.append((before, self.text[start:].strip()))
        return out


def scan(command: str) -> Scan:
    """Scan a bash command line: quotes ('...', "...", \\x), ``$( )``, ``( )``, backticks and
    ``${ }`` nest; ``#`` starts a comment only at the start of a word outside quotes (bash(1),
    COMMENTS: "a word beginning with # causes that word and all remaining characters on that
    line to be ignored")."""
    scanner = _Scanner(command)
    scanner.run()
    at = scanner.comment_at
    text = (command if at is None else command[:at]).rstrip()
    comment = None if at is None else command[at:].rstrip()
    kept = tuple((o, op) for o, op in scanner.operators if o < len(text))
    return Scan(text, comment, kept, balanced=not scanner.stack)


_CLOSERS: Final = {"`": "`", "{": "}"}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.stack: list[str] = []  # open constructs: "'", '"', "`", "(", "{"
        self.operators: list[tuple[int, str]] = []
        self.comment_at: int | None = None

    def run(self) -> None:
        i = 0
        while i < len(self.text) and self.comment_at is None:
            i = self.step(i)

    def step(self, i: int) -> int:
        ch = self.text[i]
        top = self.stack[-1] if self.stack else None
        if top == "'":
            if ch == "'":
                self.stack.pop()
            return i + 1
        if ch == "\\":
            return i + 2
        if top == '"':
            return self.in_double_quotes(i, ch)
        if top in _CLOSERS and ch == _CLOSERS[top]:
            self.stack.pop()
            return i + 1
        return self.unquoted(i, ch, top)

    def in_double_quotes(self, i: int, ch: str) -> int:
        if ch == '"':
            self.stack.pop()
        elif self.text.startswith(("$(", "${"), i):
            self.stack.append("(" if self.text[i + 1] == "(" else "{")
            return i + 2
        elif ch == "`":
            self.stack.append("`")
        return i + 1

    def unquoted(self, i: int, ch: str, top: str | None) -> int:
        text = self.text
        if ch in "'\"`":
            self.stack.append(ch)
        elif text.startswith("${", i):
            self.stack.append("{")
            return i + 2
        elif ch == "(":
            self.stack.append("(")
        elif ch == ")" and top == "(":
            self.stack.pop()
        elif ch == "#" and (i == 0 or text[i - 1] in _WORD_START_AFTER):
            if not self.stack:
                self.comment_at = i
        elif not self.stack:
            return self.operator(i)
        return i + 1

    def operator(self, i: int) -> int:
        text = self.text
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is None:
            return i + 1
        if op == "&" and i > 0 and text[i - 1] in "<>":
            return i + 1  # `2>&1`, `>&2`, `<&0`: redirections, not the background operator
        if op == "&" and text.startswith("&>", i):
            return i + 2  # `&>file`: a redirection (bash only)
        self.operators.append((i, op))
        return i + len(op)


# Constructs dash (Debian's /bin/sh) does not have; each with the reason shown in findings.
_BASH_ONLY: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"(?:^|[;&|(]\s*|\s)(source)\s"), "`source` (POSIX sh has only `.`)"),
    (re.compile(r"\[\["), "`[[ ... ]]` tests"),
    (re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*=\("), "array assignments"),
    (re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\["), "array subscripts"),
    (re.compile(r"\$'"), "$'...' strings"),
    (re.compile(r"[<>]\("), "process substitution <(...)"),
    (re.compile(r"&>|\|&"), "`&>` / `|&` redirections"),
    (re.compile(r"(?:^|[;&|]\s*)(?:function|declare|local|shopt|typeset)\s"), "bash builtins"),
    (re.compile(r"pipefail"), "`set -o pipefail`"),
    (re.compile(r"\{[0-9a-z]+\.\.[0-9a-z]+\}"), "brace ranges {a..b}"),
    (re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:,,|\^\^|//?)"), "bash parameter operators"),
    # dash's test knows only `=`: `[ a == a ]` is "unexpected operator", status 2, so a
    # `[ ... == ... ] && A || B` line silently takes B.
    (re.compile(r"(?:^|[\s;&|(])(?:\[|test)\s[^;&|\]]*\s==\s"), "`==` in `[ ]`/`test`"),
    (re.compile(r"<<<"), "here-strings <<<"),
    (re.compile(r"(?:^|[;&|]\s*)\(\("), "`(( ))` arithmetic commands"),
)


def _outside_single_quotes(text: str) -> str:
    return re.sub(r"'[^']*'", "''", text)


# Expansions bash does only outside any quotes: `~` after `=` in an assignment-like argument
# (`env ROOT=~/x`; dash expands it only in real assignments before the command) and brace
# expansion.
_BASH_ONLY_UNQUOTED: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"[^\s;&|(]\s+[A-Za-z_][A-Za-z0-9_]*=~"), "`~` after `NAME=` in an argument"),
    (re.compile(r"(?<![$\w])\{[^{}\s'\"]*,[^{}\s'\"]*\}"), "brace expansion {a,b}"),
)


def bash_only_constructs(command: str) -> list[str]:
    """The bash-only constructs a command uses (ignoring single-quoted text)."""
    visible = _outside_single_quotes(command)
    found = [reason for pattern, reason in _BASH_ONLY if pattern.search(visible)]
    unquoted = re.sub(r'"[^"]*"', '""', visible)
    return found + [r for pattern, r in _BASH_ONLY_UNQUOTED if pattern.search(unquoted)]


_VARIABLE: Final = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
_LOCAL_ASSIGN: Final = re.compile(r"(?:^|[\s;&|(])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")


_TILDE: Final = re.compile(r"(?:^|[\s;&|(])(?:[A-Za-z_][A-Za-z0-9_]*=)?~")


def has_tilde(command: str) -> bool:
    """An unquoted word (or ``NAME=`` value) starting with ``~``: bash expands it to $HOME
    (bash(1), Tilde Expansion); go-shellquote does not, so exec would look for a file named
    ``~/...``."""
    visible = re.sub(r"'[^']*'|\"[^\"]*\"", "''", command)
    return bool(_TILDE.search(visible))


def variables_used(command: str) -> set[str]:
    """Names a command reads with ``$NAME`` or ``${NAME...}`` (outside single quotes), except
    names the command assigns itself (``X=1 && run $X``, ``for X in``); a leading ``~`` reads
    ``HOME``."""
    visible = _outside_single_quotes(command)
    used = {m.group(1) or m.group(2) for m in _VARIABLE.finditer(visible)}
    if has_tilde(command):
        used.add("HOME")
    assigned = set(_LOCAL_ASSIGN.findall(visible))
    assigned |= set(re.findall(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b", visible))
    return used - assigned


def ends_with_exec(script: str) -> bool:
    """True when the last top-level command of ``script`` is ``exec ...`` and is not part of a
    pipeline or sent to the background: the shell then becomes the server process."""
    result = scan(script)
    segments = result.segments()
    before, last = segments[-1]
    if not last:  # a trailing `&` or `;`
        return False
    if before in ("|", "|&"):
        return False
    return last.split(None, 1)[0] == "exec"
