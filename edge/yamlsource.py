"""Read YAML with ``safe_load`` semantics and remember where every value came from.

Errors in site files must name file, line and key
(``profiles/demo/campaigns.yaml:42: campaigns[3].audience: ...``). PyYAML's
safe loader builds plain data and forgets positions, so we compose the node
tree ourselves (SafeLoader: no Python tags, no object construction) and record
the line of every mapping key and sequence item on the way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass
class Located:
    """Merged data of several YAML files and the origin of each path in it."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[PathKey, tuple[Path, int]] = field(default_factory=dict)

    def where(self, path: Iterable[str | int]) -> str:
        """``file:line`` of the deepest known prefix of ``path``."""
        key = tuple(path)
        while key:
            if key in self.origins:
                file, line = self.origins[key]
                return f"{file}:{line}"
            key = key[:-1]
        files = sorted({str(f) for f, _ in self.origins.values()})
        return files[0] if files else "<no file>"


class YamlProblem(ValueError):
    pass


def load_file(path: Path) -> tuple[Any, dict[PathKey, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        # The same text: values exactly as safe_load makes them (tags that would
        # build Python objects are refused here, never executed).
        data = yaml.safe_load(text) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise YamlProblem(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if node is None:
        return None, {}
    lines: dict[PathKey, int] = {}
    _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def load_merged(paths: Iterable[Path]) -> Located:
    """Merge top-level mappings of several files; lists under one key concatenate."""
    merged = Located()
    for path in paths:
        data, lines = load_file(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise YamlProblem(f"{path}:1: the file must be a mapping of sections")
        for key, value in data.items():
            _merge_key(merged, path, str(key), value, lines)
    return merged


def _merge_key(
    merged: Located, path: Path, key: str, value: Any, lines: dict[PathKey, int]
) -> None:
    offset = 0
    if key in merged.data:
        if not (isinstance(value, list) and isinstance(merged.data[key], list)):
            first = merged.where((key,))
            raise YamlProblem(f"{path}:{lines.get((key,), 1)}: {key}: also defined at {first}")
        offset = len(merged.data[key])
        merged.data[key] = merged.data[key] + value
    else:
        merged.data[key] = value
    for sub, line in lines.items():
        if sub and sub[0] == key:
            rest = sub[1:]
            if offset and rest and isinstance(rest[0], int):
                rest = (rest[0] + offset, *rest[1:])
            merged.origins[(key, *rest)] = (path, line)
