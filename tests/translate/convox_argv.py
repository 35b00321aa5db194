"""What Convox execs for a convox.yml ``command``, derived from its sources at 9e02452:

1. pkg/manifest/helpers.go ``interpolate``: every ``${NAME}`` in the raw manifest text becomes
   the app env's value ('' when unset), before YAML is parsed;
2. provider/k8s/template/app/service.yml.tmpl ``args: {{ range shellsplit . }}``, with
   ``shellsplit`` = vendor/github.com/kballard/go-shellquote ``Split`` (unquote.go), ported
   below: backslash escapes, '...' and "..." (where only $ ` " \\ and newline are escaped),
   no expansion of any kind;
3. the words are exec'd without a shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["convox_argv", "interpolate", "split"]

_INTERPOLATION = re.compile(r"\$\{([^}]*?)\}")
_SPLIT_CHARS = " \n\t"
_DOUBLE_ESCAPES = '$`"\n\\'


def interpolate(text: str, env: Mapping[str, str]) -> str:
    return _INTERPOLATION.sub(lambda m: env.get(m.group(1), ""), text)


def split(text: str) -> list[str]:
    """go-shellquote's Split; raises ValueError where it returns an error."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in _SPLIT_CHARS:
            i += 1
            continue
        if text.startswith("\\\n", i):
            i += 2
            continue
        word: list[str] = []
        while i < n and text[i] not in _SPLIT_CHARS:
            char = text[i]
            if char == "\\":
                if i + 1 >= n:
                    raise ValueError("Unterminated backslash-escape")
                if text[i + 1] != "\n":
                    word.append(text[i + 1])
                i += 2
            elif char == "'":
                end = text.find("'", i + 1)
                if end == -1:
                    raise ValueError("Unterminated single-quoted string")
                word.append(text[i + 1 : end])
                i = end + 1
            elif char == '"':
                i += 1
                while True:
                    if i >= n:
                        raise ValueError("Unterminated double-quoted string")
                    if text[i] == '"':
                        i += 1
                        break
                    if text[i] == "\\" and i + 1 < n and text[i + 1] in _DOUBLE_ESCAPES:
                        if text[i + 1] != "\n":
                            word.append(text[i + 1])
                        i += 2
                        continue
                    word.append(text[i])
                    i += 1
            else:
                word.append(char)
                i += 1
        words.append("".join(word))
    return words


def convox_argv(command: str, env: Mapping[str, str]) -> list[str]:
    return split(interpolate(command, env))
