"""--redis URLs and the clients built from them: every form parsed in one place,
bad ones refused with a message that names the problem (never the password),
and no topology ever answers "Too many connections"."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from edge.cli import main
from edge.errors import BadRedisUrl, EdgeError, StoreError
from edge.stores import keys
from edge.stores.base import StoreUnavailable
from edge.stores.connect import (
    ClientOptions,
    EdgeCluster,
    Gate,
    close_client,
    open_client,
    parse_redis_url,
    redact,
)
from edge.stores.redis import RedisStore
from tests.cluster import RedisClusterServers, SentinelServers
from tests.helpers import free_port


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://u:p@cache.example:6380/2",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_plain_urls_keep_working(url: str) -> None:
    parsed = parse_redis_url(url)
    assert parsed.topology == "single"
    assert parsed.url == url
    assert parsed.tls == url.startswith("rediss")


def test_cluster_urls_list_seed_nodes() -> None:
    parsed = parse_redis_url("redis+cluster://a.example:7000,b.example,[::1]:7002/")
    assert parsed.topology == "cluster"
    assert parsed.nodes == (("a.example", 7000), ("b.example", 6379), ("::1", 7002))
    assert (parsed.db, parsed.tls, parsed.username, parsed.password) == (0, False, None, None)
    tls = parse_redis_url(
        "rediss+cluster://edge:s%40cret@10.0.0.1:7000/0?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem"
    )
    assert tls.tls and (tls.username, tls.password) == ("edge", "s@cret")
    assert tls.option("ssl_cert_reqs") == "none" and tls.option("ssl_ca_certs") == "/ca.pem"


def test_sentinel_urls_name_the_service_and_database() -> None:
    parsed = parse_redis_url("redis+sentinel://:pw@s1:26380,s2/my%20master/3?sentinel_password=x")
    assert parsed.topology == "sentinel"
    assert parsed.nodes == (("s1", 26380), ("s2", 26379))
    assert (parsed.service, parsed.db, parsed.password) == ("my master", 3, "pw")
    assert parsed.option("sentinel_password") == "x"
    assert parse_redis_url("rediss+sentinel://s1/svc").db == 0


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("localhost:6379", "not a Redis URL"),
        ("http://127.0.0.1:6379", "scheme"),
        ("redis+replica://h:1", "unknown Redis URL scheme"),
        ("redis://h:notaport/0", "bad Redis URL"),
        ("redis+cluster://h:7000/1", "only database 0"),
        ("redis+cluster://h:7000,,h:7001", "every node needs a host"),
        ("redis+cluster://h:70000", "bad port"),
        ("redis+cluster://[::1:7000", "IPv6"),
        ("redis+cluster://h:7000?ssl_ca_certs=/ca.pem", "unknown option 'ssl_ca_certs'"),
        ("rediss+cluster://h:7000?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis+cluster://h:7000?sentinel_password=x", "unknown option"),
        ("redis+sentinel://h:26379", "names the service"),
        ("redis+sentinel://h:26379/svc/one", "must be a number"),
        ("redis+sentinel://h:26379/svc/1/2", "names the service"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(BadRedisUrl, match=says) as caught:
        parse_redis_url(url)
    assert isinstance(caught.value, EdgeError) and isinstance(caught.value, ValueError)


def test_messages_never_show_the_password() -> None:
    with pytest.raises(BadRedisUrl) as caught:
        parse_redis_url("redis+cluster://edge:hunter2@h:7000/5")
    assert "hunter2" not in str(caught.value) and "edge:***@h:7000" in str(caught.value)
    assert redact("rediss://edge:hunter2@h:6380/0") == "rediss://edge:***@h:6380/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_serve_refuses_a_bad_url_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--redis", "redis+cluster://u:hunter2@h:7000/3"]) == 2
    err = capsys.readouterr().err
    assert "only database 0" in err and "hunter2" not in err


async def test_the_gate_waits_then_gives_up_like_a_blocking_pool() -> None:
    gate = Gate(1, timeout_s=0.05)
    async with gate.hold():
        async with gate.hold():  # the same call, again (a pipeline's redirects): no deadlock
            pass
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await asyncio.create_task(_enter(gate))
    await _enter(gate)  # free again


async def _enter(gate: Gate) -> None:
    async with gate.hold():
        await asyncio.sleep(0)


async def test_a_small_cluster_pool_never_says_too_many_connections(
    cluster: RedisClusterServers,
) -> None:
    """redis-py's own cluster client raises MaxConnectionsError beyond its
    per-node pool; behind the gate, 300 concurrent calls on 2 connections wait."""
    client = open_client(cluster.url, ClientOptions(max_connections=2, pool_timeout_s=30))
    assert isinstance(client, EdgeCluster)
    try:

        async def one(i: int) -> object:
            if i % 3:
                return await client.incr(keys.profile("gate", str(i % 11)))
            async with client.pipeline(transaction=False) as pipe:
                for j in range(5):  # several slots, so several masters at once
                    pipe.get(keys.profile("gate", str(j)))
                return await pipe.execute()

        results = await asyncio.gather(*(one(i) for i in range(300)))
        assert len(results) == 300
        for node in client.get_nodes():  # each master saw at most 2 at once
            assert len(node._connections) <= 2 * 2
    finally:
        await close_client(client)


async def test_no_transactions_on_a_cluster(cluster: RedisClusterServers) -> None:
    client = open_client(cluster.url)
    try:
        with pytest.raises(RedisClusterException, match="Lua script"):
            client.pipeline(transaction=True)
    finally:
        await close_client(client)


async def test_a_small_sentinel_pool_waits_too(sentinel: SentinelServers) -> None:
    client = open_client(sentinel.url, ClientOptions(max_connections=2, pool_timeout_s=30))
    try:
        replies = await asyncio.gather(*(client.incr("edge:test:gate") for _ in range(200)))
        assert sorted(replies)[-1] - sorted(replies)[0] == 199
        pool = client.connection_pool  # redis-py's Sentinel pool would have raised instead
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
    finally:
        await close_client(client)


async def test_a_dead_cluster_opens_the_breaker_at_once() -> None:
    """Nobody listens on the seed nodes: each call fails fast as a StoreError
    (counted as an outage), then the breaker refuses without touching the network."""
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    store = RedisStore.from_url(
        url, connect_timeout_s=0.2, breaker_failures=2, breaker_cooldown_s=60
    )
    try:
        for _ in range(2):
            with pytest.raises(StoreError, match="cannot be connected"):
                await store.load("demo", "0" * 32)
        with pytest.raises(StoreUnavailable):
            await store.load("demo", "0" * 32)
        assert not store.available
    finally:
        await store.close()
