"""A pooled connection kept for the ledger's writes, on one Redis server.

Every flush of the ledger (``edge.stores.ledger``) is one batch of
compare-and-set scripts, sent as soon as the previous one returned: at 1,000
events/s that is about 750 batches a second of one or two writes each, so
what a round trip costs this process is paid about once per event. Through
redis-py, even on a kept connection, a round trip is an ``asyncio``
stream read per reply, each under its own deadline (a timer made and
cancelled), then the parser: about half of a one-write batch's CPU
(``python -m benchmarks store``, ``benchmarks/RESULTS.md``).

``Lane`` takes one connection from the client's pool and keeps it (so with
the pool's address, credentials, TLS, deadlines and, under Sentinel, its
master; it counts against the pool's size), then reads it itself: the
connection's transport is handed to a small protocol (``_Replies``) that
feeds what arrives to a hiredis reader made as redis-py makes its own (same
error classes, same decoding), and wakes the batch once all its replies
are in. A batch is sent as a pipeline would send it: the commands packed
together, then one reply per command, error replies in place (as
``raise_on_error=False``). One batch at a time (a lock: there is one
flusher, the lock is for anyone else), under one deadline, the pool's
``socket_timeout``.

Invariants:
- A batch that failed anywhere (a lost connection, a deadline, a
  cancellation) closes its connection and gives it back to the pool, never
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
fails if that changes. Redis Cluster keeps redis-py's pipeline: it routes
each script by its key.
"""

from __future__ import annotations

import asyncio
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
    """The kept connection's reading end: replies for the one batch waiting."""

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
        self.waiting: asyncio.Future[list[Any]] | None = None
        self.expected = 0
        self.replies: list[Any] = []
        self.transport.set_protocol(self)

    def send(self, packed: bytes, expected: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting, self.expected, self.replies = future, expected, []
        self.transport.write(packed)
        return future

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        replies = self.replies
        while True:
            reply = self.reader.gets()
            if reply is False:  # a reply not yet whole
                return
            if self.waiting is None or self.waiting.done():
                self._broken(InvalidResponse("a reply nobody asked for"))
                return
            replies.append(reply)
            if len(replies) == self.expected:
                self.waiting.set_result(replies)
                self.waiting = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._broken(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def eof_received(self) -> bool:
        self._broken(RedisConnectionError("Redis closed the connection"))
        return False  # close our end too

    def _broken(self, exc: Exception) -> None:
        if self.closed is None:
            self.closed = exc
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(exc)
        self.waiting = None


class Lane:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: AbstractConnection | None = None
        self._replies: _Replies | None = None
        self._lock = asyncio.Lock()
        timeout_s = pool.connection_kwargs.get("socket_timeout")
        self._timeout_s: float | None = float(timeout_s) if timeout_s else None

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """The replies, in order; a reply that is an error comes as its
        ``ResponseError``. Connection failures and deadlines raise (redis-py's
        ``ConnectionError`` and ``TimeoutError``)."""
        if not commands:
            return []
        async with self._lock:
            replies = self._replies
            if replies is not None and replies.closed is not None:  # closed while kept
                await self._give_back()
                replies = None
            if replies is None:
                conn = self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                try:
                    replies = self._replies = _Replies(conn)
                except BaseException:
                    await self._give_back()
                    raise
            try:
                answers = await self._round_trip(replies, commands)
            except BaseException:
                await self._give_back()
                raise
            for answer in answers:
                if isinstance(answer, RedisConnectionError):  # LOADING and such, as redis-py
                    await self._give_back()
                    raise answer
            return answers

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
            self._timeout_s, _expire, future, self._timeout_s
        )
        try:
            return await future
        finally:
            timer.cancel()

    async def reset(self) -> None:
        """Close the connection and give it back (after an outage, or at
        shutdown); the next batch takes one from the pool again."""
        async with self._lock:
            await self._give_back()

    async def _give_back(self) -> None:
        conn, replies = self._conn, self._replies
        self._conn = self._replies = None
        if replies is not None:
            # Closed at once, without TLS's goodbye: nothing more is read from
            # a connection given up on, and a graceful TLS close would leave
            # its socket open for round trips after the lane has moved on.
            replies.transport.abort()
        if conn is not None:
            await conn.disconnect(nowait=True)
            await self._pool.release(conn)


def _expire(future: asyncio.Future[list[Any]], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(RedisTimeoutError(f"Timeout reading from Redis ({timeout_s} s)"))
