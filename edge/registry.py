"""The sites being served, and their hot reload.

``SiteRegistry.reload()`` re-reads a site folder only when a file in it
changed (by size and mtime), and swaps the compiled ``Site`` in one assignment.
A site whose files are now invalid keeps serving its last good ``Site``; its
problems are logged and shown in ``/healthz`` until fixed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import ConfigError
from edge.sites import Site, load_site

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass
class SiteRegistry:
    profiles: Path
    sites: dict[str, Site] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    reloads: int = 0
    _prints: dict[str, Fingerprint] = field(default_factory=dict)

    def get(self, site_id: str | None) -> Site | None:
        return self.sites.get(site_id) if site_id else None

    def reload(self) -> bool:
        """Pick up changed, added and removed sites; True if anything changed."""
        if not self.profiles.is_dir():
            raise ConfigError([f"{self.profiles}: profiles folder not found"])
        folders = {
            p.name: p for p in self.profiles.iterdir() if p.is_dir() and not p.name.startswith(".")
        }
        changed = False
        for name in set(self._prints) - set(folders):
            self._prints.pop(name)
            self.sites.pop(name, None)
            self.problems.pop(name, None)
            log.info("site %s removed", name)
            changed = True
        for name, folder in sorted(folders.items()):
            prints = _fingerprint(folder)
            if self._prints.get(name) == prints:
                continue
            self._prints[name] = prints
            changed = True
            self._load(name, folder)
        if changed:
            self.reloads += 1
        return changed

    def _load(self, name: str, folder: Path) -> None:
        try:
            site = load_site(folder)
        except ConfigError as exc:
            self.problems[name] = exc.problems
            kept = (
                "keeps serving the last good configuration" if name in self.sites else "not served"
            )
            log.error(
                "site %s: invalid configuration, %s:\n  %s", name, kept, "\n  ".join(exc.problems)
            )
            return
        self.problems.pop(name, None)
        old = self.sites.get(name)
        self.sites[name] = site
        if old is None or old.version != site.version:
            log.info("site %s: configuration %s loaded", name, site.version)


def _fingerprint(folder: Path) -> Fingerprint:
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)
