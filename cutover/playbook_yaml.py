"""Reading a playbook's bytes into plain data, refusing what a hostile or careless file holds.

- Duplicate keys: PyYAML's SafeLoader keeps the last of two equal keys silently (a second
  ``convox:`` block dropped ``rack``); :class:`StrictLoader` refuses them, naming the key and
  both lines.
- Size: at most :data:`MAX_PLAYBOOK_BYTES` are read (limit + 1 to notice a bigger file), so a
  50 MB file is refused at once instead of taking a minute and most of a GiB.
- Depth: 100,000 nested ``[`` make the composer recurse until RecursionError; it is refused as
  invalid input naming the file.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from cutover.errors import InvalidInput

MAX_PLAYBOOK_BYTES = 1024 * 1024  # 1 MiB: real playbooks are a few KiB.


class DuplicateKeyError(ConstructorError):
    """A mapping holds the same key twice."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (anywhere in the document)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if isinstance(node, MappingNode):
            # Only the keys written in this mapping: keys merged in with ``<<`` may be
            # overridden by an explicit one (YAML merge-key spec), that is no duplicate.
            seen: dict[Any, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise DuplicateKeyError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (line {line}; first at line {first})",
                        key_node.start_mark,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_limited(path: Path, limit: int, what: str) -> str:
    """The file's text, read at most ``limit + 1`` bytes; a bigger file is refused."""
    with path.open("rb") as fh:
        blob = fh.read(limit + 1)
    if len(blob) > limit:
        raise InvalidInput(
            f"{path}: the {what} is larger than the limit of {limit} bytes ({limit // 1024} KiB)",
            resolution=f"A {what} is a small hand-written file; check that this is the right one.",
        )
    return blob.decode("utf-8")


def parse_yaml(text: str, path: Path) -> Any:
    """Parse one YAML document with :class:`StrictLoader`; problems name the file and line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f":{mark.line + 1}:{mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"{path}{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise InvalidInput(
            f"{path}: invalid YAML: nested too deeply (lists or mappings inside each other "
            "thousands of levels deep)"
        ) from None
