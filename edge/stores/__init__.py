"""Profile stores: where profiles live between events.

``base.ProfileStore`` is the interface; ``memory`` is the embedded default,
``redis`` the shared one (one server, Redis Cluster or Sentinel: ``connect``
reads the URL and builds the client; ``lua`` runs scripts by digest). Both
pass one contract suite (tests/stores/), the Redis store on each topology.
"""

from __future__ import annotations

from edge.stores.base import Conflict, ProfileStore, Stored, Write

__all__ = ["Conflict", "ProfileStore", "Stored", "Write", "open_store"]


def open_store(url: str | None, **options: object) -> ProfileStore:
    """The store for ``url``: none means the embedded in-process store."""
    if not url:
        from edge.stores.memory import MemoryStore

        return MemoryStore()
    from edge.stores.redis import RedisStore

    return RedisStore.from_url(url, **options)  # type: ignore[arg-type]
