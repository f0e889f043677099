"""The embedded store: profiles in this process's memory. Zero set-up, one
process only (``edge serve --workers N`` needs Redis), lost on restart.

Profiles are immutable values, so the store keeps the objects themselves; no
serialisation is needed to keep writers from sharing mutable state.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from edge.core.profile import Profile
from edge.stores.base import Conflict, Stored, Write


class MemoryStore:
    kind = "embedded"

    def __init__(self, clock: object = time.time) -> None:
        self._data: dict[tuple[str, str], tuple[Stored, float | None]] = {}
        self._gone: dict[tuple[str, str], float] = {}  # forgotten visitor -> tombstone expiry
        self._clock = clock

    def _now(self) -> float:
        now: float = self._clock()  # type: ignore[operator]
        return now

    def _get(self, key: tuple[str, str]) -> Stored | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        stored, expires = entry
        if expires is not None and expires <= self._now():
            del self._data[key]
            return None
        return stored

    async def load(self, site: str, visitor: str) -> Stored | None:
        return self._get((site, visitor))

    async def load_many(self, keys: Sequence[tuple[str, str]]) -> list[Stored | None]:
        return [self._get(key) for key in keys]

    async def commit(self, writes: Sequence[Write]) -> list[Conflict | None]:
        results: list[Conflict | None] = []
        for write in writes:
            key = (write.site, write.visitor)
            current = self._get(key)
            if write.expected == 0 and self._forgotten(key):
                results.append(None)  # dropped: the visitor was erased
                continue
            if (current.version if current else 0) != write.expected:
                results.append(Conflict(current))
                continue
            expires = self._now() + write.ttl_s if write.ttl_s else None
            self._data[key] = (Stored(write.profile, write.expected + 1), expires)
            results.append(None)
        return results

    async def erase(self, site: str, visitor: str) -> bool:
        return self._data.pop((site, visitor), None) is not None

    async def forget(self, site: str, visitor: str, tombstone_s: int) -> bool:
        self._gone[(site, visitor)] = self._now() + tombstone_s
        return self._data.pop((site, visitor), None) is not None

    def _forgotten(self, key: tuple[str, str]) -> bool:
        expires = self._gone.get(key)
        if expires is None:
            return False
        if expires <= self._now():
            del self._gone[key]
            return False
        return True

    async def iter_profiles(self, site: str) -> AsyncIterator[Profile]:
        """Every live profile of ``site``, over a snapshot of the keys taken
        first (the dict may change while the caller awaits between items)."""
        for key in [k for k in self._data if k[0] == site]:
            stored = self._get(key)
            if stored is not None:
                yield stored.profile

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._data)
