"""The store interface: versioned profiles written by compare-and-set.

Invariant: a write succeeds only when the stored version still equals the
version the writer read (0 = "no profile yet"), and then the version grows by
exactly one. Two writers that read the same version cannot both succeed, so no
update is ever lost: the loser re-reads and re-applies its events
(``edge.stores.ledger``). Writes are batched: a store turns a list of writes into
as few round trips as it can (one pipeline for Redis).

Erasure (``forget``) leaves a tombstone: for its lifetime, a write that would
create the visitor's profile again is dropped (docs/operations.md, "Privacy").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.core.profile import Profile
from edge.errors import StoreError


class StoreUnavailable(StoreError):
    """The store is known to be down (its circuit breaker is open, or the last
    write failed): refused at once, without waiting on the network."""


@dataclass(frozen=True, slots=True)
class Stored:
    profile: Profile
    version: int


@dataclass(frozen=True, slots=True)
class Write:
    site: str
    visitor: str
    expected: int  # the version this write was based on; 0 when there was none
    profile: Profile
    ttl_s: int | None  # None keeps the profile until erased


@dataclass(frozen=True, slots=True)
class Conflict:
    """The write lost: ``current`` is what is stored now (None if it vanished)."""

    current: Stored | None


class ProfileStore(Protocol):
    async def load(self, site: str, visitor: str) -> Stored | None: ...

    async def load_many(self, keys: Sequence[tuple[str, str]]) -> list[Stored | None]: ...

    async def commit(self, writes: Sequence[Write]) -> list[Conflict | None]:
        """Apply each write by compare-and-set; ``None`` where it succeeded."""
        ...

    async def erase(self, site: str, visitor: str) -> bool: ...

    async def forget(self, site: str, visitor: str, tombstone_s: int) -> bool:
        """Erase the profile and refuse to create it again for ``tombstone_s``:
        a write expecting version 0 (a new profile) of a forgotten visitor is
        dropped and reported as succeeded, so writers holding events of that
        visitor (a browser's queue, another process's hot copy) move on without
        storing anything. True if a profile was there."""
        ...

    def iter_profiles(self, site: str) -> AsyncIterator[Profile]:
        """Every stored profile of ``site``, each once, in no particular order.
        For offline jobs (``edge rfm propose``), never the hot path: a profile
        written during the iteration may be seen before or after that write."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def kind(self) -> str: ...
