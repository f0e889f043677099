"""One contract, every store: compare-and-set versions, TTL, erase."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge.stores.base import Conflict, ProfileStore, Write
from edge.stores.memory import MemoryStore
from edge.stores.redis import RedisStore
from edge.updates import new_profile
from tests.client import new_id
from tests.helpers import RedisServer


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ProfileStore]:
    if request.param == "embedded":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis")
    redis_store = RedisStore.from_url(server.url.replace("/0", "/2"))
    await redis_store.client.flushdb()
    yield redis_store
    await redis_store.close()


async def test_missing_profile_loads_as_none(store: ProfileStore) -> None:
    assert await store.load("demo", new_id()) is None


async def test_first_write_expects_version_zero(store: ProfileStore) -> None:
    visitor = new_id()
    profile = new_profile(visitor, 1000.0)
    assert await store.commit([Write("demo", visitor, 0, profile, None)]) == [None]
    stored = await store.load("demo", visitor)
    assert stored is not None
    assert stored.profile == profile
    assert stored.version == 1


async def test_stale_write_loses_and_sees_the_winner(store: ProfileStore) -> None:
    visitor = new_id()
    first = new_profile(visitor, 1000.0)
    second = new_profile(visitor, 2000.0)
    await store.commit([Write("demo", visitor, 0, first, None)])
    [result] = await store.commit([Write("demo", visitor, 0, second, None)])
    assert isinstance(result, Conflict)
    assert result.current is not None
    assert result.current.profile == first
    assert result.current.version == 1
    assert await store.commit([Write("demo", visitor, 1, second, None)]) == [None]
    stored = await store.load("demo", visitor)
    assert stored is not None and stored.version == 2 and stored.profile == second


async def test_a_batch_succeeds_and_fails_per_write(store: ProfileStore) -> None:
    a, b = new_id(), new_id()
    await store.commit([Write("demo", a, 0, new_profile(a, 1.0), None)])
    results = await store.commit(
        [
            Write("demo", a, 0, new_profile(a, 2.0), None),  # stale
            Write("demo", b, 0, new_profile(b, 2.0), None),  # fresh
        ]
    )
    assert isinstance(results[0], Conflict)
    assert results[1] is None
    loaded = await store.load_many([("demo", a), ("demo", b), ("demo", new_id())])
    assert [s.version if s else None for s in loaded] == [1, 1, None]


async def test_sites_do_not_share_profiles(store: ProfileStore) -> None:
    visitor = new_id()
    await store.commit([Write("demo", visitor, 0, new_profile(visitor, 1.0), None)])
    assert await store.load("other", visitor) is None


async def test_ttl_expires_anonymous_profiles(store: ProfileStore) -> None:
    visitor, kept = new_id(), new_id()
    await store.commit(
        [
            Write("demo", visitor, 0, new_profile(visitor, 1.0), 1),
            Write("demo", kept, 0, new_profile(kept, 1.0), None),
        ]
    )
    assert await store.load("demo", visitor) is not None
    await asyncio.sleep(1.2)
    assert await store.load("demo", visitor) is None
    assert await store.load("demo", kept) is not None


async def test_erase_removes_the_profile(store: ProfileStore) -> None:
    visitor = new_id()
    await store.commit([Write("demo", visitor, 0, new_profile(visitor, 1.0), None)])
    assert await store.erase("demo", visitor) is True
    assert await store.load("demo", visitor) is None
    assert await store.erase("demo", visitor) is False


async def test_redis_reloads_a_forgotten_script(redis: RedisServer) -> None:
    """After SCRIPT FLUSH (or a Redis restart) writes go on."""
    store = RedisStore.from_url(redis.url.replace("/0", "/2"))
    visitor = new_id()
    await store.client.script_flush()
    assert await store.commit([Write("demo", visitor, 0, new_profile(visitor, 1.0), None)]) == [
        None
    ]
    stored = await store.load("demo", visitor)
    assert stored is not None and stored.version == 1
    await store.close()


async def test_forget_erases_and_refuses_to_recreate(store: ProfileStore) -> None:
    visitor, other = new_id(), new_id()
    await store.commit([Write("demo", visitor, 0, new_profile(visitor, 1.0), None)])
    assert await store.forget("demo", visitor, 60) is True
    assert await store.load("demo", visitor) is None
    # A writer still holding the visitor's events (a queued browser, a hot copy
    # elsewhere): creating the profile again is dropped, yet reported stored.
    assert await store.commit(
        [
            Write("demo", visitor, 0, new_profile(visitor, 2.0), None),
            Write("demo", other, 0, new_profile(other, 2.0), None),
        ]
    ) == [None, None]
    assert await store.load("demo", visitor) is None
    assert await store.load("demo", other) is not None  # others are unaffected
    # A writer that had read the old version loses, and then is dropped as above.
    [lost] = await store.commit([Write("demo", visitor, 1, new_profile(visitor, 3.0), None)])
    assert isinstance(lost, Conflict) and lost.current is None
    assert await store.load("demo", visitor) is None
    assert await store.forget("demo", visitor, 60) is False  # nothing left to erase
    # The same visitor on another site is a different person's id space.
    assert await store.commit([Write("other", visitor, 0, new_profile(visitor, 1.0), None)]) == [
        None
    ]
    assert await store.load("other", visitor) is not None


async def test_a_tombstone_expires(store: ProfileStore) -> None:
    visitor = new_id()
    await store.forget("demo", visitor, 1)
    await asyncio.sleep(1.2)
    await store.commit([Write("demo", visitor, 0, new_profile(visitor, 1.0), None)])
    assert await store.load("demo", visitor) is not None
