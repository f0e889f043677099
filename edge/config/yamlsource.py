"""Read YAML with ``safe_load`` semantics and remember where every value came from.

Errors in site files must name file, line and key
(``profiles/demo/campaigns.yaml:42: campaigns[3].audience: ...``). PyYAML's
safe loader builds plain data and forgets positions, so we compose the node
tree ourselves (SafeLoader: no Python tags, no object construction) and record
the line of every mapping key and sequence item on the way.

A file must never stop or freeze the process that reads it
(docs/configuration.md, "Limits"), so a file is bounded before anything walks
or builds it: its size (``MAX_FILE_BYTES``, checked before it is read), the
aliases it uses and how deep it nests (``MAX_ALIASES``, ``MAX_DEPTH``, counted
while composing), and how many values it stands for once every alias is
expanded (``MAX_NODES``: measured on the composed node graph, where an alias
is the node it names, so the measure costs one visit per distinct node and a
"billion laughs" file is refused in microseconds). An alias that names the
value containing it is refused too. Only then are lines recorded and Python
values built (aliases stay shared references while building). Every failure
is a ``YamlProblem`` naming the file, and the line when one is known.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

PathKey = tuple[str | int, ...]

# Generous for real configuration (the demo's largest file is 5 KB, 400
# values, 7 levels deep, no aliases) and small enough that reading, composing
# and validating the worst allowed file takes well under a second.
MAX_FILE_BYTES = 1024 * 1024
MAX_ALIASES = 1_000  # uses of *name in one file
MAX_NODES = 200_000  # values in one file, counting every alias as the value it names
MAX_DEPTH = 64  # mappings and sequences inside each other, through aliases too


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


class _Limit(Exception):
    """A bound of this module was passed at ``mark`` (0-based line)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _BoundedComposer(Composer):
    """PyYAML's composer, counting aliases and nesting as it goes. The
    composer recurses once per level, so the depth bound also keeps it far
    from Python's recursion limit."""

    def __init__(self) -> None:
        super().__init__()
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Limit(f"more than {MAX_ALIASES} aliases in one file", _line(event))
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(f"nested more than {MAX_DEPTH} levels deep", _line(event))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _line(event: yaml.Event) -> int:
    return event.start_mark.line if event.start_mark is not None else 0


class _LocatingConstructor(SafeConstructor):
    """SafeConstructor that names the line of a value it cannot build (a
    date like 2001-13-45, an integer of 5,000 digits raise plain ValueErrors)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # whatever a scalar makes a constructor raise
            raise ConstructorError(None, None, _brief(exc), node.start_mark) from None


try:  # libyaml parses ten times faster; its events go to our composer
    from yaml._yaml import CParser

    class _Loader(_BoundedComposer, CParser, _LocatingConstructor, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _BoundedComposer.__init__(self)
            _LocatingConstructor.__init__(self)
            Resolver.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(  # type: ignore[no-redef]
        _BoundedComposer, Reader, Scanner, Parser, _LocatingConstructor, Resolver
    ):
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            _BoundedComposer.__init__(self)
            _LocatingConstructor.__init__(self)
            Resolver.__init__(self)


def load_file(path: Path) -> tuple[Any, dict[PathKey, int]]:
    text = _read(path)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            _check_expansion(node)
            lines: dict[PathKey, int] = {}
            _walk(node, (), lines)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except _Limit as exc:
        raise YamlProblem(f"{path}:{exc.line + 1}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise YamlProblem(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except Exception as exc:  # nothing in a file may escape as anything but a problem
        raise YamlProblem(f"{path}: not valid YAML: {_brief(exc)}") from None
    return data, lines


def _read(path: Path) -> str:
    """The file's text, refusing what is not a regular file (a FIFO would block
    the reader forever, /dev/zero never ends) or is larger than the limit."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise YamlProblem(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise YamlProblem(_too_large(path, info.st_size))
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # it may have grown since stat()
    except OSError as exc:
        raise YamlProblem(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblem(_too_large(path, len(raw)))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _too_large(path: Path, size: int) -> str:
    return (
        f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} bytes a configuration "
        "file may have (split it into several files)"
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands to more than ``MAX_NODES`` values or
    ``MAX_DEPTH`` levels, or that contains itself. Post-order and iterative,
    each distinct node measured once: aliases share nodes, so this costs the
    size of the file, not of its expansion."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth)
    open_: set[int] = set()  # nodes whose measure is being taken: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in measured:
            continue
        children = _children(node)
        if not children_done:
            open_.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in open_:
                    raise _Limit("an alias names the value that contains it", child.start_mark.line)
                stack.append((child, False))
            continue
        open_.discard(key)
        values = 1 + sum(measured[id(c)][0] for c in children)
        depth = 1 + max((measured[id(c)][1] for c in children), default=0)
        if values > MAX_NODES:
            raise _Limit(
                f"stands for more than {MAX_NODES} values once its aliases are expanded",
                node.start_mark.line,
            )
        if depth > MAX_DEPTH:
            raise _Limit(
                f"nested more than {MAX_DEPTH} levels deep through its aliases",
                node.start_mark.line,
            )
        measured[key] = (values, depth)


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    # Bounded by _check_expansion: at most MAX_NODES visits, MAX_DEPTH deep.
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (
                key_node.value
                if isinstance(key_node, yaml.ScalarNode)
                else f"<{type(key_node).__name__} on line {key_node.start_mark.line + 1}>"
            )
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def _brief(exc: BaseException) -> str:
    """One line, of bounded length, for a problem list."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
