"""Heroku commands -> convox.yml ``command`` values.

Heroku runs a command line with bash (see :mod:`cutover.translate.bashsyntax`); Convox splits it
with go-shellquote and execs the words without a shell, after interpolating every ``${...}``
from the app env (convox pkg/manifest/helpers.go, ``regexpInterpolation``). So:

- a trailing ``# comment`` is dropped (Convox would pass its words as arguments);
- ``$PORT`` becomes the fixed port, ``${NAME:-x}`` becomes ``$NAME`` plus a manifest default;
- operators or expansions run through ``sh -c``, or ``bash -c`` when the line uses bash-only
  syntax (``source``, ``[[``, arrays, ...: dash, Debian's ``sh``, has none of them), with a
  finding that the image needs bash;
- the last command of a wrapped line is ``exec``'d, so the server replaces the shell as the
  container's PID 1 and receives SIGTERM (a shell as PID 1 ignores it and the server is killed
  hard after the grace period); where that is impossible (a pipeline, ``&``) a finding says so.
"""

from __future__ import annotations

import re
import shlex
from typing import Final, NamedTuple

from cutover.translate.bashsyntax import bash_only_constructs, has_tilde, scan
from cutover.translate.model import Finding, input_error

__all__ = ["PORT_REF", "Converted", "convert_command", "web_port"]


class Converted(NamedTuple):
    command: str
    findings: list[Finding]
    defaults: dict[str, str]  # ${VAR:-x} fallbacks, to become environment defaults


PORT_REF: Final = re.compile(r"\$\{PORT(?::?[-=][^}]*)?\}|\$PORT(?![A-Za-z0-9_])")
_PORT_FALLBACK: Final = re.compile(r"\$\{PORT:?-(\d+)\}")
_LITERAL_PORT: Final = re.compile(
    r"(?:^|\s)(?:-p|--port)[ =](\d{2,5})\b|(?:--bind|-b|--listen|-l)[ =]\S*:(\d{2,5})\b"
)
_BRACED: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}$`]*))?\}")
_EXPANSION: Final = re.compile(r"\$[A-Za-z_{(]|`")
_ASSIGNMENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELLS: Final = frozenset({"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/bash", "dash"})
_OPERATOR_CHARS: Final = frozenset(";&|<>()")
# Heroku runs the command as one argument of `bash -c`; Linux refuses a single argument longer
# than MAX_ARG_STRLEN = PAGE_SIZE * 32 (include/uapi/linux/binfmts.h; execve(2): E2BIG). The
# bound also keeps shlex (which grows each token one character at a time, quadratic in its
# length) to about a second: a 1 MB line took 33 s, a 10 MB one never finished.
MAX_COMMAND_BYTES: Final = 4096 * 32


def _tokens(command: str, where: str, line: int | None, subject: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError as exc:
        raise input_error(
            where, f"cannot split the command: {exc}", line=line, field=subject
        ) from None


def _check_splittable(command: str, where: str, line: int | None, subject: str) -> None:
    """Refuse, as named input errors, a command too long to run or with unbalanced quotes (a
    quote in a trailing comment is fine: bash ignores it)."""
    size = len(command.encode())
    if size > MAX_COMMAND_BYTES:
        raise input_error(
            where,
            f"the command is {size} bytes long, over Linux's limit of {MAX_COMMAND_BYTES} for "
            "one argument: Heroku's `bash -c COMMAND` could not run it",
            line=line,
            field=subject,
        )
    _tokens(scan(command).text, where, line, subject)


def web_port(command: str | None) -> tuple[int | None, str | None]:
    """The port a web command says it wants, and how we know."""
    if not command:
        return None, None
    fallback = _PORT_FALLBACK.search(command)
    if fallback:
        return int(fallback.group(1)), f"${{PORT:-{fallback.group(1)}}}"
    if PORT_REF.search(command):
        return None, None
    literal = _LITERAL_PORT.search(command)
    if literal:
        value = literal.group(1) or literal.group(2)
        return int(value), f"the literal port {value}"
    return None, None


def convert_command(
    command: str,
    *,
    port: int,
    subject: str,
    where: str,
    line: int | None,
    injected: frozenset[str] = frozenset(),
    heroku_shell: str = "bash",
) -> Converted:
    """Make a Heroku command runnable as a convox.yml ``command`` (split by shellquote and
    exec'd without a shell, after ``${...}`` interpolation from the app env).

    ``heroku_shell`` is the shell Heroku ran it with: ``bash`` for Procfile lines of buildpack
    apps; ``sh`` for heroku.yml and container-registry apps, whose commands run with the
    image's /bin/sh (Dev Center, "Container Registry & Runtime", unsupported Dockerfile
    commands: "SHELL - The default shell for Docker images is /bin/sh").
    """
    findings: list[Finding] = []
    defaults: dict[str, str] = {}
    _check_splittable(command, where, line, subject)
    scanned = scan(command := _literal_braces(command))  # ...unless a nested shell reads it
    if scanned.comment is not None:
        if not scanned.text:
            raise input_error(where, "the command is only a comment", line=line, field=subject)
        command = scanned.text
        findings.append(
            Finding(
                "command-comment",
                "change",
                subject,
                f"the trailing comment `{scanned.comment}` was dropped",
                "Heroku's bash ignores it; Convox runs the command without a shell and would "
                "pass its words to the program as arguments.",
            )
        )
    if PORT_REF.search(command):
        forms = sorted(set(PORT_REF.findall(command)))
        command = PORT_REF.sub(str(port), command)
        findings.append(
            Finding(
                "port-fixed",
                "change",
                subject,
                f"{', '.join(forms)} replaced by the fixed port {port}",
                "Convox sets PORT to the declared port, but nothing expands $PORT (commands run "
                "without a shell) and convox.yml interpolates ${...} from the app env (where "
                "PORT is unset), so the port is written out.",
            )
        )
    tokens = _tokens(command, where, line, subject)
    has_ops = any(tok and set(tok) <= _OPERATOR_CHARS for tok in tokens)
    has_expansion = bool(_EXPANSION.search(command)) or _has_glob(command) or has_tilde(command)
    is_shell = (
        len(tokens) >= 2
        and tokens[0] in _SHELLS
        and tokens[1].startswith("-")
        and ("c" in tokens[1])
    )
    leading_assignment = bool(tokens) and bool(_ASSIGNMENT.match(tokens[0]))

    if has_expansion:

        def rewrite(match: re.Match[str]) -> str:
            name, operator, word = match.group(1), match.group(2), match.group(3)
            if operator is not None and name not in injected and word:
                defaults.setdefault(name, word)
            end = match.end()
            follows = command[end : end + 1]
            return f'${name}""' if follows and (follows.isalnum() or follows == "_") else f"${name}"

        command = _BRACED.sub(rewrite, command)
        unsupported = re.findall(r"\$\{[^}]*\}", command)
        if defaults:
            findings.append(
                Finding(
                    "command-env-default",
                    "change",
                    subject,
                    "shell fallbacks became environment defaults: "
                    + ", ".join(f"{k}={v}" for k, v in defaults.items()),
                    "convox.yml would read ${NAME:-x} as the variable 'NAME:-x' (always empty); "
                    "the command now reads $NAME and the manifest declares the default.",
                )
            )
        if unsupported:
            findings.append(
                Finding(
                    "command-unsupported-expansion",
                    "warning",
                    subject,
                    f"{', '.join(sorted(set(unsupported)))} cannot be written in convox.yml "
                    "(it interpolates every ${...} from the app env)",
                    "Move the command into a script in the image (e.g. bin/start) and use that "
                    "script as the command.",
                )
            )

    bash = bash_only_constructs(command) if heroku_shell == "bash" else []
    if is_shell:
        return Converted(_exec_inside(tokens, command, subject, findings), findings, defaults)
    if not has_ops and not has_expansion and not bash:
        if len(tokens) >= 2 and tokens[0] == "exec":
            # `exec` is a shell builtin: there is no program of that name to exec without a
            # shell, and without one the command already is the container's main process.
            command = command.split(None, 1)[1]
            leading_assignment = bool(_ASSIGNMENT.match(tokens[1]))
            findings.append(
                Finding(
                    "command-exec-dropped",
                    "change",
                    subject,
                    "the leading `exec` was dropped",
                    "`exec` is a shell builtin; Convox runs the command without a shell (it "
                    "would look for a program named `exec`), and the command is already the "
                    "container's main process.",
                )
            )
        if leading_assignment:
            findings.append(
                Finding(
                    "command-env-prefix",
                    "change",
                    subject,
                    "leading variable assignments now go through `env`",
                    "Convox runs commands without a shell, so `NAME=value cmd` needs `env`.",
                )
            )
            command = f"env {command}"
        return Converted(command, findings, defaults)

    known = len(findings)
    body = _exec_last(command, subject, findings)
    execd = not any(f.code == "command-no-exec" for f in findings[known:])
    shell = "bash" if bash else "sh"
    reason = (
        "shell operators"
        if has_ops
        else ("bash syntax" if bash else "variable expansion or file name patterns")
    )
    findings.append(
        Finding(
            "command-shell",
            "change",
            subject,
            f"the command uses {reason}; it now runs through `{shell} -c`"
            + (", its last command exec'd" if execd else " (nothing can be exec'd: see below)"),
            "Heroku runs every command with bash; Convox splits the command into words and runs "
            f"it without a shell. The image needs /bin/{shell}; `exec` makes the server the "
            "container's main process, so it receives SIGTERM and drains on deploys.",
        )
    )
    if bash:
        findings.append(
            Finding(
                "command-needs-bash",
                "warning",
                subject,
                "the command uses bash-only syntax (" + ", ".join(bash) + "): it runs "
                "through `bash -c`, as on Heroku",
                "The image must contain /bin/bash (Debian/Ubuntu-based images do; on Alpine "
                "add `RUN apk add --no-cache bash`), or rewrite the line in POSIX sh.",
            )
        )
    return Converted(f"{shell} -c {shlex.quote(body)}", findings, defaults)


_NESTED_SHELL: Final = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?(?:ba|da)?sh\s+-\w*c|\beval\s")


def _literal_braces(command: str) -> str:
    """``'${name}'`` is literal text under bash, but convox.yml interpolates every ``${...}``
    from the app env before splitting (convox pkg/manifest/helpers.go), so the program would get
    ''. Inside single quotes, ``${`` becomes ``'"$"'{`` (and an escaped ``\\${`` becomes
    ``\\$""{``): the same word for bash, sh and go-shellquote (adjacent quoted parts join), with
    no ``${`` left for convox to replace."""
    if _NESTED_SHELL.search(command):
        return command  # `sh -c '${X}'`: the quoted text is a script, where ${X} expands
    out: list[str] = []
    quote: str | None = None
    index = 0
    while index < len(command):
        char = command[index]
        if quote != "'" and command.startswith("\\${", index):
            out.append('\\$""{')  # `\${X}`: bash's literal ${X}, which convox would replace
            index += 3
            continue
        if quote is None and char == "\\":
            out.append(command[index : index + 2])
            index += 2
            continue
        if quote == "'" and command.startswith("${", index):
            out.append("'\"$\"'{")
            index += 2
            continue
        if quote is None and char in "'\"":
            quote = char
        elif quote == char:
            quote = None
        elif quote == '"' and char == "\\":
            out.append(command[index : index + 2])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


_GLOB: Final = re.compile(r"(?:^|\s)[^\s'\"]*[*?][^\s'\"]*")


def _has_glob(command: str) -> bool:
    """An unquoted ``*``/``?`` word: bash expands it (``-jar target/*.jar``), exec does not."""
    visible = re.sub(r"'[^']*'|\"[^\"]*\"", "''", command)
    return bool(_GLOB.search(visible))


_NO_EXEC_FIRST: Final = frozenset({"wait", "fi", "done", "esac", "}", ")", "exit", "true"})


def _exec_last(script: str, subject: str, findings: list[Finding]) -> str:
    """``exec`` the last top-level command of a shell script, when it can be."""
    scanned = scan(script)
    segments = scanned.segments()
    ops = [op for _, op in scanned.operators]
    if "&" in ops:
        findings.append(
            Finding(
                "command-background",
                "warning",
                subject,
                "the command starts a process in the background (`&`); on Convox it dies "
                "with the container without being signalled",
                "Run each long-lived process as its own service (one process per container).",
            )
        )
    before, last = segments[-1]
    if not last and before == ";":
        return _exec_last(scanned.text.rstrip().removesuffix(";").rstrip(), subject, findings)
    problem = None
    first = last.split(None, 1)[0] if last else ""
    if not last:
        problem = "it ends by sending a process to the background"
    elif before in ("|", "|&"):
        problem = "it ends with a pipeline, which the shell waits for"
    elif first == "exec":
        return scanned.text
    elif first in _NO_EXEC_FIRST or last[0] in "({":
        problem = f"it ends with `{first}`, not with a command to exec"
    if problem is not None:
        findings.append(
            Finding(
                "command-no-exec",
                "warning",
                subject,
                f"the shell cannot exec the server: {problem}; the shell stays PID 1, ignores "
                "SIGTERM, and the server is killed after the grace period",
                "Move the line into a script in the image that ends with `exec SERVER`, and "
                "use the script as the command.",
            )
        )
        return scanned.text
    prefix = "exec env " if _ASSIGNMENT.match(last) else "exec "
    cut = scanned.text.rindex(last)
    return _exec_then_branches(scanned.text[:cut]) + prefix + last


def _exec_then_branches(head: str) -> str:
    """In the final and-or list, ``TEST && SERVER || FALLBACK`` runs SERVER as the last command
    whenever TEST succeeds: it needs ``exec`` as much as FALLBACK does (issue 8 writes the same
    idiom as ``[[ ... ]] && exec rq worker $QUEUES || exec rq worker default``). ``head`` is the
    script up to the last command, which ends with ``||``."""
    scanned = scan(head)
    ops = list(scanned.operators)
    if not ops or ops[-1][1] != "||" or head.rstrip()[-2:] != "||":
        return head
    out = head
    # walk back through the and-or list: (operator before, operator after) for each command
    for index in range(len(ops) - 1, 0, -1):  # right to left: earlier offsets stay valid
        offset, after = ops[index]
        before_offset, before = ops[index - 1]
        if before in (";", "&", "|", "|&", ";;"):
            break
        if after == "||" and before == "&&":
            start = before_offset + len(before)
            segment = head[start:offset]
            word = segment.split(None, 1)[0] if segment.strip() else ""
            if word and word != "exec" and word not in _NO_EXEC_FIRST and word[0] not in "({":
                lead = len(segment) - len(segment.lstrip())
                prefix = "exec env " if _ASSIGNMENT.match(segment.lstrip()) else "exec "
                out = out[: start + lead] + prefix + out[start + lead :]
    return out


def _exec_inside(tokens: list[str], command: str, subject: str, findings: list[Finding]) -> str:
    """An explicit ``sh -c 'SCRIPT'`` keeps its shell; its script gets the same exec."""
    if len(tokens) != 3:
        return command
    script = _exec_last(tokens[2], subject, findings)
    if script == tokens[2]:
        return command
    return shlex.join([tokens[0], tokens[1], script])
