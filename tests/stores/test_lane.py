"""The ledger's own connection (edge/stores/lane.py), against a real
redis-server: replies in order with errors in place, and a failed or
cancelled batch never leaves a half-read connection behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from edge.stores.lane import Lane
from tests.helpers import RedisServer


@pytest.fixture
async def pool(redis: RedisServer) -> AsyncIterator[BlockingConnectionPool]:
    pool = BlockingConnectionPool.from_url(redis.url, max_connections=4, socket_timeout=2.0)
    yield pool
    await pool.aclose()


async def kill(lane: Lane, redis: RedisServer) -> None:
    """The server closes the lane's connection (and no other)."""
    [client_id] = await lane.run([("CLIENT", "ID")])
    assert redis.cli("CLIENT", "KILL", "ID", str(client_id)) == "1"


async def test_replies_come_in_order_with_errors_in_place(pool: BlockingConnectionPool) -> None:
    lane = Lane(pool)
    replies = await lane.run(
        [("SET", "lane:a", "x"), ("INCR", "lane:a"), ("GET", "lane:a"), ("DEL", "lane:a")]
    )
    assert replies[0] is True or replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError)
    assert replies[2:] == [b"x", 1]
    await lane.reset()


async def test_a_batch_on_a_killed_connection_fails_and_the_next_reconnects(
    pool: BlockingConnectionPool, redis: RedisServer
) -> None:
    lane = Lane(pool)
    await kill(lane, redis)
    with pytest.raises(RedisConnectionError):
        await lane.run([("PING",)])  # used a moment ago: not checked, fails
    assert await lane.run([("PING",)]) == [b"PONG"]  # a new connection
    await lane.reset()


async def test_a_connection_closed_while_kept_is_replaced_not_failed(
    pool: BlockingConnectionPool, redis: RedisServer
) -> None:
    lane = Lane(pool)
    await kill(lane, redis)
    await asyncio.sleep(0.05)  # the loop has seen the server's end of stream
    assert await lane.run([("PING",)]) == [b"PONG"]  # a new connection, not a failure
    await lane.reset()


async def test_a_late_reply_fails_its_batch_by_the_deadline(redis: RedisServer) -> None:
    pool = BlockingConnectionPool.from_url(redis.url, max_connections=2, socket_timeout=0.2)
    lane = Lane(pool)
    with pytest.raises(RedisTimeoutError):
        await lane.run([("BLPOP", "lane:nothing", "1")])  # answers after 1 s
    assert await lane.run([("ECHO", "next")]) == [b"next"]  # not the BLPOP's late nil
    await lane.reset()
    await pool.aclose()


async def test_error_replies_are_redis_py_s_classes_and_decoding_follows_the_pool(
    redis: RedisServer,
) -> None:
    pool = BlockingConnectionPool.from_url(redis.url, max_connections=2, decode_responses=True)
    lane = Lane(pool)
    replies = await lane.run([("EVALSHA", "0" * 40, 0), ("ECHO", "text")])
    assert isinstance(replies[0], NoScriptError)  # lua.missing finds it, as in a pipeline
    assert replies[1] == "text"
    await lane.reset()
    await pool.aclose()


async def test_a_cancelled_batch_leaves_no_reply_for_the_next(pool: BlockingConnectionPool) -> None:
    lane = Lane(pool)
    assert await lane.run([("PING",)]) == [b"PONG"]  # the connection the next batch uses
    slow = asyncio.create_task(lane.run([("BLPOP", "lane:nothing", "0.3"), ("SET", "lane:b", "1")]))
    await asyncio.sleep(0.05)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    # The BLPOP's nil and the SET's OK were never read: they must not be taken
    # for the answers to these.
    assert await lane.run([("ECHO", "one"), ("ECHO", "two")]) == [b"one", b"two"]
    await asyncio.sleep(0.35)
    assert await lane.run([("ECHO", "three")]) == [b"three"]
    await lane.run([("DEL", "lane:b")])
    await lane.reset()


async def test_batches_from_two_tasks_do_not_mix(pool: BlockingConnectionPool) -> None:
    lane = Lane(pool)
    results = await asyncio.gather(
        *(lane.run([("ECHO", f"{i}a"), ("ECHO", f"{i}b")]) for i in range(20))
    )
    assert results == [[f"{i}a".encode(), f"{i}b".encode()] for i in range(20)]
    await lane.reset()
