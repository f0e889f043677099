"""One contract, every store: compare-and-set versions, TTL, erase. The Redis
store passes it on one server, a 3-master Redis Cluster and through Sentinel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge.core.updates import new_profile
from edge.stores.base import Conflict, ProfileStore, Write
from edge.stores.memory import MemoryStore
from edge.stores.redis import RedisStore
from tests.client import new_id
from tests.cluster import RedisClusterServers, SentinelServers
from tests.helpers import RedisServer


def redis_url(request: pytest.FixtureRequest, topology: str) -> str:
    """The URL of a Redis of that topology (visitor ids are random: no flush needed
    on the shared cluster)."""
    if topology == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("cluster")
        return cluster.url
    if topology == "sentinel":
        sentinel: SentinelServers = request.getfixturevalue("sentinel")
        return sentinel.url.removesuffix("/0") + "/2"
    server: RedisServer = request.getfixturevalue("redis")
    return server.url.replace("/0", "/2")


@pytest.fixture(params=["embedded", "redis", "cluster", "sentinel"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ProfileStore]:
    if request.param == "embedded":
        yield MemoryStore()
        return
    redis_store = RedisStore.from_url(redis_url(request, request.param))
    if request.param != "cluster":
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


@pytest.mark.parametrize("topology", ["redis", "cluster"])
async def test_redis_reloads_a_forgotten_script(
    request: pytest.FixtureRequest, topology: str
) -> None:
    """After SCRIPT FLUSH (or a Redis restart, or a failover) writes go on; on a
    cluster every master forgot it, and a batch spans several of them."""
    store = RedisStore.from_url(redis_url(request, topology))
    await store.client.script_flush()
    visitors = [new_id() for _ in range(20)]
    writes = [Write("demo", v, 0, new_profile(v, 1.0), None) for v in visitors]
    assert await store.commit(writes) == [None] * 20
    assert [
        s.version if s else None for s in await store.load_many([("demo", v) for v in visitors])
    ] == [1] * 20
    await store.client.script_flush()
    visitor = visitors[0]
    assert await store.forget("demo", visitor, 60) is True
    assert await store.load("demo", visitor) is None
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
