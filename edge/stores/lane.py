"""A pooled connection kept for the ledger's writes, on one Redis server.

Every flush of the ledger (``edge.stores.ledger``) is one batch of
compare-and-set scripts, sent as soon as the previous one returned: at 1,000
events/s that is about 750 batches a second of one or two writes each. Taking
a connection from redis-py's pool for each costs its lock and a read of the
socket to check that it is still good, and redis-py's pipeline its
bookkeeping around the commands; together about a quarter to a third of a
small batch's CPU (``python -m benchmarks store``, ``benchmarks/RESULTS.md``).

``Lane`` takes one connection from the client's pool and keeps it (so with
the pool's address, credentials, TLS, deadlines and, under Sentinel, its
master; it counts against the pool's size), and sends a batch on it as a
pipeline would: the commands packed together, then one reply per command,
error replies in place (as ``raise_on_error=False``). One batch at a time (a
lock: there is one flusher, the lock is for anyone else).

Invariants:
- A batch that failed anywhere (a lost connection, a deadline, a
  cancellation) closes its connection and gives it back to the pool, never
  half read: the next batch takes a connection from the pool again, as a
  pipeline would. (Not a new one made outside the pool: when Redis answers
  slower than the socket deadline, opening a connection fails too, while a
  pooled one that is still open can at least deliver the writes.)
- A connection kept idle for ``IDLE_CHECK_S`` is checked as the pool checks
  one before use (a server restarted meanwhile is reconnected to, not failed
  on); a busy lane is not checked, as a pool connection in constant use would
  be found good anyway.

Redis Cluster keeps redis-py's pipeline: it routes each script by its key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

IDLE_CHECK_S = 1.0

Command = Sequence[str | bytes | int | float]


class Lane:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: AbstractConnection | None = None
        self._used_at = 0.0
        self._lock = asyncio.Lock()

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """The replies, in order; a reply that is an error comes as its
        ``ResponseError``. Connection failures and deadlines raise (redis-py's
        ``ConnectionError`` and ``TimeoutError``)."""
        async with self._lock:
            conn = self._conn
            try:
                if conn is None:
                    conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                elif time.monotonic() - self._used_at > IDLE_CHECK_S:
                    await self._pool.ensure_connection(conn)
                await conn.send_packed_command(conn.pack_commands(commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
            except BaseException:
                self._conn = None
                if conn is not None:
                    await self._give_back(conn)
                raise
            self._conn = conn
            self._used_at = time.monotonic()
            return replies

    async def reset(self) -> None:
        """Close the connection and give it back (after an outage, or at
        shutdown); the next batch takes one from the pool again."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await self._give_back(conn)

    async def _give_back(self, conn: AbstractConnection) -> None:
        await conn.disconnect(nowait=True)
        await self._pool.release(conn)
