"""``ProfileStore.iter_profiles``: every profile of one site, each once, on the
embedded store, one Redis server and a real three-node Redis Cluster."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest

from edge.core.profile import Profile, encode_profile
from edge.core.updates import new_profile
from edge.errors import StoreError
from edge.stores import keys
from edge.stores.base import ProfileStore, Write
from edge.stores.memory import MemoryStore
from edge.stores.redis import SCAN_CHUNK, RedisStore
from tests.client import new_id
from tests.cluster import RedisClusterServers
from tests.helpers import RedisServer, free_port


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ProfileStore]:
    if request.param == "embedded":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis")
    redis_store = RedisStore.from_url(server.url.replace("/0", "/3"))
    await redis_store.client.flushdb()
    yield redis_store
    await redis_store.close()


async def visitors_of(store: ProfileStore, site: str) -> list[str]:
    return [profile.visitor async for profile in store.iter_profiles(site)]


async def write(store: ProfileStore, site: str, count: int, ttl_s: int | None = None) -> set[str]:
    ids = {new_id() for _ in range(count)}
    writes = [Write(site, v, 0, new_profile(v, 1000.0), ttl_s) for v in ids]
    assert await store.commit(writes) == [None] * count
    return ids


async def test_every_profile_of_the_site_once_and_no_other_sites(store: ProfileStore) -> None:
    # more than one SCAN chunk, and neighbours whose ids start like the site's
    demo = await write(store, "demo", SCAN_CHUNK * 2 + 37)
    await write(store, "demo2", 20)
    await write(store, "de", 20)
    seen = await visitors_of(store, "demo")
    assert len(seen) == len(demo)
    assert set(seen) == demo
    assert await visitors_of(store, "nosuchsite") == []


async def test_erased_and_forgotten_profiles_are_not_listed(store: ProfileStore) -> None:
    ids = sorted(await write(store, "demo", 5))
    await store.erase("demo", ids[0])
    await store.forget("demo", ids[1], 60)
    assert sorted(await visitors_of(store, "demo")) == ids[2:]


async def test_expired_profiles_are_not_listed() -> None:
    clock = [1000.0]
    store = MemoryStore(clock=lambda: clock[0])
    short = await write(store, "demo", 3, ttl_s=60)
    kept = await write(store, "demo", 2)
    assert set(await visitors_of(store, "demo")) == short | kept
    clock[0] += 61
    assert set(await visitors_of(store, "demo")) == kept


async def test_the_iteration_reads_the_profiles_as_stored(store: ProfileStore) -> None:
    visitor = new_id()
    profile = Profile(visitor=visitor, created_at=5.0, orders=3, revenue=99.5, last_order_at=7.0)
    await store.commit([Write("demo", visitor, 0, profile, None)])
    assert [p async for p in store.iter_profiles("demo")] == [profile]


def test_the_pattern_escapes_glob_characters() -> None:
    assert keys.profile_pattern("demo") == "edge:p:{demo:*}"
    assert keys.profile_pattern("a*b?[c]") == r"edge:p:{a\*b\?\[c\]:*}"


async def test_a_dead_server_is_a_store_error() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError, match="scan"):
        await visitors_of(store, "demo")
    await store.close()


# --- Redis Cluster (the session's real 3-master cluster, tests/cluster.py) -------------


async def test_iter_profiles_on_a_redis_cluster_visits_every_master(
    cluster: RedisClusterServers,
) -> None:
    store = RedisStore.from_url(cluster.url)
    site = "iter-cluster"  # a site of its own: the cluster is shared by the session
    try:
        ids = {new_id() for _ in range(SCAN_CHUNK + 300)}
        # written directly (one HSET per key), so this checks the reading alone
        async with store.client.pipeline(transaction=False) as pipe:
            for visitor in ids:
                payload = encode_profile(new_profile(visitor, 1000.0))
                pipe.hset(keys.profile(site, visitor), mapping={"v": 1, "p": payload})
            pipe.hset(keys.profile(f"{site}2", new_id()), mapping={"v": 1, "p": b"x"})
            await pipe.execute()
        # the keys are spread over the masters: every one holds some of them
        for port in cluster.ports:
            assert int(cli(port, "eval", SITE_KEYS, "0", keys.profile_pattern(site))) > 0
        seen = await visitors_of(store, site)
        assert len(seen) == len(ids)
        assert set(seen) == ids
    finally:
        await store.close()


# how many keys of the pattern ARGV[1] one node holds (KEYS on a test node only)
SITE_KEYS = "return #redis.call('KEYS', ARGV[1])"


def cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], check=True, capture_output=True, timeout=30
    )
    return out.stdout.decode().strip()
