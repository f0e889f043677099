"""The process's kept Redis connection (edge/stores/lane.py), against a real
redis-server: replies in order with errors in place, batches of several
callers out at once on the one connection, and a failed or cancelled batch
never leaves a half-read connection behind."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from edge.stores.lane import Lane
from edge.stores.redis import RedisStore
from tests.helpers import RedisServer, free_port, wait_until


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
        await lane.run([("PING",)])  # sent before the loop saw the close: fails
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
    [kept] = await lane.run([("CLIENT", "ID")])  # the connection the next batches use
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
    assert await lane.run([("CLIENT", "ID")]) == [kept]  # its replies were read and dropped
    await lane.run([("DEL", "lane:b")])
    await lane.reset()


async def test_batches_of_several_callers_are_out_at_once_in_order(
    pool: BlockingConnectionPool, redis: RedisServer
) -> None:
    """A batch does not wait for the one before it to come back: it is sent
    behind it, on the same connection, and answered after it."""
    lane = Lane(pool)
    [kept] = await lane.run([("CLIENT", "ID")])
    first = asyncio.create_task(lane.run([("BLPOP", "lane:list", "2")]))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(lane.run([("CLIENT", "ID"), ("ECHO", "second")]))
    await asyncio.sleep(0.1)
    assert not first.done() and not second.done()  # behind the BLPOP Redis is blocked on
    # Sent already: Redis holds it unread in the blocked connection's query buffer.
    [client] = redis.cli("CLIENT", "LIST", "ID", str(kept)).splitlines()
    assert " qbuf=0 " not in f" {client} ", client
    assert redis.cli("LPUSH", "lane:list", "item") == "1"  # from another connection
    assert await first == [[b"lane:list", b"item"]]
    assert await second == [kept, b"second"]
    await lane.reset()


async def test_a_deadline_fails_the_batches_behind_it_and_the_next_reconnects(
    redis: RedisServer,
) -> None:
    pool = BlockingConnectionPool.from_url(redis.url, max_connections=2, socket_timeout=0.2)
    lane = Lane(pool)
    [old] = await lane.run([("CLIENT", "ID")])
    late = asyncio.create_task(lane.run([("BLPOP", "lane:nothing", "1")]))
    await asyncio.sleep(0.05)
    behind = asyncio.create_task(lane.run([("ECHO", "behind")]))
    with pytest.raises(RedisTimeoutError):
        await late
    with pytest.raises(RedisTimeoutError):
        await behind  # its reply would have come after the BLPOP's
    [new] = await lane.run([("CLIENT", "ID")])
    assert new != old
    await lane.reset()
    await pool.aclose()


async def test_batches_from_two_tasks_do_not_mix(pool: BlockingConnectionPool) -> None:
    lane = Lane(pool)
    results = await asyncio.gather(
        *(lane.run([("ECHO", f"{i}a"), ("ECHO", f"{i}b")]) for i in range(20))
    )
    assert results == [[f"{i}a".encode(), f"{i}b".encode()] for i in range(20)]
    await lane.reset()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server that speaks TLS only, with a certificate made here."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    files = ["-keyout", str(key), "-out", str(cert)]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *files,
            *subject,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            *("redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ping = ["redis-cli", "--tls", "--cacert", str(cert), "-p", str(port), "ping"]
    try:
        wait_until(
            lambda: subprocess.run(ping, capture_output=True, timeout=5).stdout.strip() == b"PONG",
            10,
            "redis-server with TLS",
        )
        yield f"rediss://127.0.0.1:{port}/0", cert
    finally:
        process.terminate()
        process.wait(10)


async def test_the_lane_reads_a_tls_connection_too(tls_redis: tuple[str, Path]) -> None:
    """The lane hands the connection's transport to its own reader: over TLS
    that is the TLS layer's transport, and replies still come whole and in
    order (a batch larger than one TLS record included)."""
    url, cert = tls_redis
    pool = BlockingConnectionPool.from_url(url, max_connections=2, ssl_ca_certs=str(cert))
    lane = Lane(pool)
    big = "x" * 100_000
    replies = await lane.run([("SET", "lane:tls", big), ("GET", "lane:tls"), ("ECHO", "end")])
    assert replies[1:] == [big.encode(), b"end"]
    assert await lane.run([("DEL", "lane:tls")]) == [1]
    await lane.reset()
    await pool.aclose()


# --- after an outage: which connection the breaker's probe gives up ------------------


async def test_reset_suspect_gives_up_only_the_connection_kept_before_suspect(
    pool: BlockingConnectionPool, redis: RedisServer
) -> None:
    lane = Lane(pool)
    [before] = await lane.run([("CLIENT", "ID")])
    lane.suspect()
    await lane.reset_suspect()
    [after] = await lane.run([("CLIENT", "ID")])
    assert after != before
    lane.suspect()
    await kill(lane, redis)  # the suspect connection went by itself ...
    await asyncio.sleep(0.05)
    [fresh] = await lane.run([("CLIENT", "ID")])  # ... and a new one was taken since
    out = asyncio.create_task(lane.run([("BLPOP", "lane:nothing", "0.3")]))
    await asyncio.sleep(0.05)
    await lane.reset_suspect()
    assert await out == [None]  # the batch out on the new one was not failed
    assert await lane.run([("CLIENT", "ID")]) == [fresh]
    await lane.reset()


async def test_the_breaker_probe_gives_up_the_connection_from_before_the_outage(
    redis: RedisServer,
) -> None:
    store = RedisStore.from_url(redis.url, breaker_failures=1, breaker_cooldown_s=0.05)
    lane = store.lane
    assert lane is not None
    [before] = await lane.run([("CLIENT", "ID")])
    store.breaker.failure()  # the store stopped answering: the breaker opens
    await asyncio.sleep(0.06)
    assert await store.load("demo", "v" * 22) is None  # the probe, answered
    assert store.breaker.closed
    [after] = await lane.run([("CLIENT", "ID")])
    assert after != before  # it may have been dead without knowing it
    await store.close()


async def test_the_breaker_probe_keeps_a_connection_taken_during_the_outage(
    redis: RedisServer,
) -> None:
    """The recorders (signals, statistics, automation) use the lane without
    waiting for the breaker: a batch of theirs out on a connection taken
    while the outage lasted is not failed by the probe."""
    store = RedisStore.from_url(redis.url, breaker_failures=1, breaker_cooldown_s=0.05)
    lane = store.lane
    assert lane is not None
    store.breaker.failure()  # the breaker opens ...
    await kill(lane, redis)  # ... and the connection kept then is closed
    await asyncio.sleep(0.05)
    [taken] = await lane.run([("CLIENT", "ID")])  # a new connection
    recorder = asyncio.create_task(lane.run([("BLPOP", "lane:nothing", "0.3")]))
    await asyncio.sleep(0.06)  # out on it; the cooldown is over
    assert not recorder.done()
    assert await store.load("demo", "v" * 22) is None  # the probe
    assert await recorder == [None]
    assert await lane.run([("CLIENT", "ID")]) == [taken]
    await store.close()
