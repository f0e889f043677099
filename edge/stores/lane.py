"""A pooled connection kept for this process's per-event Redis round trips,
on one Redis server: the ledger's writes, the profile loads, and the
batches of the signal, statistics and automation recorders
(``RedisStore.lane``).

Every flush of the ledger (``edge.stores.ledger``) is one batch of
compare-and-set scripts, sent as soon as the previous one returned: at 1,000
events/s that is about 750 batches a second of one or two writes each, so
what a round trip costs this process is paid about once per event. Through
redis-py, even on a kept connection, a round trip is an ``asyncio``
stream read per reply, each under its own deadline (a timer made and
cancelled), then the parser: about half of a one-write batch's CPU
(``python -m benchmarks store``, ``benchmarks/RESULTS.md``). A pipeline
from the pool adds taking and giving back a connection, under a deadline of
its own, and redis-py's packing of every argument.

``Lane`` takes one connection from the client's pool and keeps it (so with
the pool's address, credentials, TLS, deadlines and, under Sentinel, its
master; it counts against the pool's size), then reads it itself: the
connection's transport is handed to a small protocol (``_Replies``) that
feeds what arrives to a hiredis reader made as redis-py makes its own (same
error classes, same decoding). A batch is sent as a pipeline would send it:
the commands packed together, then one reply per command, error replies in
place (as ``raise_on_error=False``). Batches of several callers share the
connection without waiting for each other: each is sent at once, behind
those still out, and Redis answers in the order it was asked, so the
replies are handed out first in, first out. Each batch has one deadline,
the pool's ``socket_timeout``, counted from when it was sent.

Invariants:
- Replies go to batches in the order the batches were sent; a batch whose
  caller was cancelled keeps its place, and its replies are read and dropped.
- A batch that failed (a lost connection, a deadline) fails every batch
  sent after it on that connection too (their replies would come after
  its), and the connection is closed and given back to the pool, never left
  half read: the next batch takes a connection from the pool again, as a
  pipeline would. (Not a new one made outside the pool: when Redis answers
  slower than the socket deadline, opening a connection fails too, while a
  pooled one that is still open can at least deliver the writes.)
- A connection the server closed while it was kept is known to be closed
  (the protocol is told at once) and is given back before the next batch,
  which takes another: a server restarted meanwhile is reconnected to, not
  failed on.
- Nothing arrives on the connection that a batch did not ask for (RESP2,
  no pushes): bytes with no batch waiting are a broken connection.

This reads a redis-py connection's private stream writer (``_writer``) to
reach its transport; the lock file pins redis-py, and tests/stores/test_lane.py
fails if that changes. Redis Cluster keeps redis-py's pipeline (``batch``
chooses): it routes each command by its key.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = Sequence[str | bytes | int | float]


class _Replies(asyncio.Protocol):
    """The kept connection's reading end: replies for the batches out, in
    the order they were sent."""

    def __init__(self, conn: AbstractConnection) -> None:
        options: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "replyError": conn._parser.parse_error,
        }
        if conn.encoder.decode_responses:
            options["encoding"] = conn.encoder.encoding
            options["errors"] = conn.encoder.encoding_errors
        self.reader = hiredis.Reader(**options)
        self.transport: asyncio.WriteTransport = conn._writer.transport  # type: ignore[union-attr]
        self.closed: Exception | None = None  # why it can no longer be used
        # (future, replies expected, replies so far) of every batch out, oldest first
        self.out: deque[tuple[asyncio.Future[list[Any]], int, list[Any]]] = deque()
        self.transport.set_protocol(self)

    def send(self, packed: bytes, expected: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.out.append((future, expected, []))
        self.transport.write(packed)
        return future

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        out = self.out
        while True:
            reply = self.reader.gets()
            if reply is False:  # a reply not yet whole
                return
            if not out:
                self.broken(InvalidResponse("a reply nobody asked for"))
                return
            future, expected, replies = out[0]
            replies.append(reply)
            if len(replies) == expected:
                out.popleft()
                if not future.done():  # done: its caller was cancelled, the replies dropped
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def eof_received(self) -> bool:
        self.broken(RedisConnectionError("Redis closed the connection"))
        return False  # close our end too

    def expire(self, future: asyncio.Future[list[Any]], timeout_s: float) -> None:
        """A batch's deadline passed: it, and every batch out behind it, fail."""
        if not future.done():
            self.broken(RedisTimeoutError(f"Timeout reading from Redis ({timeout_s} s)"))

    def broken(self, exc: Exception) -> None:
        """No more batches on this connection; those out fail with ``exc``."""
        if self.closed is None:
            self.closed = exc
        out, self.out = self.out, deque()
        for future, _, _ in out:
            if not future.done():
                future.set_exception(exc)


class Lane:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: AbstractConnection | None = None
        self._replies: _Replies | None = None
        self._lock = asyncio.Lock()  # one connection taken or given back at a time
        self._suspect: _Replies | None = None  # kept when the store stopped answering
        timeout_s = pool.connection_kwargs.get("socket_timeout")
        self._timeout_s: float | None = float(timeout_s) if timeout_s else None

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """The replies, in order; a reply that is an error comes as its
        ``ResponseError``. Connection failures and deadlines raise (redis-py's
        ``ConnectionError`` and ``TimeoutError``)."""
        if not commands:
            return []
        replies = self._replies
        if replies is None or replies.closed is not None:
            replies = await self._connection()
        try:
            answers = await self._round_trip(replies, commands)
        except asyncio.CancelledError:
            raise  # the batch keeps its place; its replies are dropped when they come
        except BaseException:
            await self._give_back(replies)
            raise
        for answer in answers:
            if isinstance(answer, RedisConnectionError):  # LOADING and such, as redis-py
                await self._give_back(replies)
                raise answer
        return answers

    async def _connection(self) -> _Replies:
        """The kept connection, after giving back one closed meanwhile, or a
        new one from the pool."""
        async with self._lock:
            replies = self._replies
            if replies is not None and replies.closed is None:
                return replies  # taken by another batch while this one waited
            if replies is not None:
                await self._give_back(replies)
            conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                replies = _Replies(conn)
            except BaseException:
                await conn.disconnect(nowait=True)
                await self._pool.release(conn)
                raise
            self._conn, self._replies = conn, replies
            return replies

    async def _round_trip(self, replies: _Replies, commands: Sequence[Command]) -> list[Any]:
        # (hiredis's stub types the argument as a tuple of one item, not of any length)
        packed = b"".join(
            hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
            for command in commands
        )
        future = replies.send(packed, len(commands))
        if self._timeout_s is None:
            return await future
        timer = asyncio.get_running_loop().call_later(
            self._timeout_s, replies.expire, future, self._timeout_s
        )
        try:
            return await future
        finally:
            timer.cancel()

    async def reset(self) -> None:
        """Close the connection and give it back (at shutdown); the next batch
        takes one from the pool again."""
        async with self._lock:
            if self._replies is not None:
                await self._give_back(self._replies)

    def suspect(self) -> None:
        """The store stopped answering (its breaker opened): the connection
        kept now may be dead without knowing it (a host gone, no reset
        sent); ``reset_suspect`` gives it up. One taken after this is not
        suspect: it was made while the outage lasted, so the server took it."""
        self._suspect = self._replies

    async def reset_suspect(self) -> None:
        """After an outage (the breaker's probe): give up the connection kept
        since before it (``suspect``), not one taken since. A newer one may
        carry other callers' batches (the signal, statistics and automation
        recorders do not wait for the breaker), and giving it up would fail
        them for nothing."""
        async with self._lock:
            suspect, self._suspect = self._suspect, None
            if suspect is not None and suspect is self._replies:
                await self._give_back(suspect)

    async def _give_back(self, replies: _Replies) -> None:
        """Close ``replies``'s connection, failing the batches still out on
        it, and give it back to the pool (once: a connection taken since is
        not this one)."""
        replies.broken(RedisConnectionError("connection given up after a failed batch"))
        if self._replies is not replies:
            return
        conn = self._conn
        self._conn = self._replies = None
        # Closed at once, without TLS's goodbye: nothing more is read from a
        # connection given up on, and a graceful TLS close would leave its
        # socket open for round trips after the lane has moved on.
        replies.transport.abort()
        if conn is not None:
            await conn.disconnect(nowait=True)
            await self._pool.release(conn)


def raise_errors(replies: Sequence[Any]) -> None:
    """Raise the first error reply of a batch (as a pipeline's ``execute()``
    does), for callers that take no error in place."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def batch(client: Any, lane: Lane | None, commands: Sequence[Command]) -> list[Any]:
    """``commands`` in one round trip: on ``lane`` when there is one (one
    Redis server, or Sentinel's master), else in a pipeline of ``client``'s
    (a cluster routes each command by its key). Replies in order, an error
    reply in place as its ``ResponseError``, either way."""
    if lane is not None:
        return await lane.run(commands)
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies
