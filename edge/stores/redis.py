"""The Redis store: profiles shared by every worker and every node, on one
Redis server, a Redis Cluster or the master Sentinel names (the URL forms are
in ``edge.stores.connect``, which builds the client every Redis user shares).

A profile is one hash (see ``edge.stores.keys``): ``v`` its version, ``p`` its
msgpack bytes. A write is one Lua compare-and-set (atomic on the server, and
single-slot on Redis Cluster thanks to the key's hash tag); a batch of writes
is one pipeline, so one round trip carries every profile a flush has (on a
cluster, one round trip per master holding some of them, sent at once).

The connection pool blocks (up to ``pool_timeout_s``) instead of raising
"Too many connections" the moment more commands are in flight than it holds:
redis-py's default pool does raise, and that error would reach visitors. On
a cluster a gate in front of the client does the same (``edge.stores.connect``).

Every call has a deadline (``socket_timeout_s``, ``connect_timeout_s``; no
redis-py retries) and goes through a circuit breaker (``edge.runtime.breaker``): after
a few consecutive connection failures or timeouts the store fails at once
(``StoreUnavailable``) instead of letting each caller wait out a dead server,
then probes with one call after a cool-down (docs/operations.md, "Store
outages").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, cast

from redis.asyncio import Redis

from edge.core.profile import Profile, decode_profile, encode_profile
from edge.errors import StoreError
from edge.runtime.breaker import CircuitBreaker
from edge.stores import connect, keys, lua
from edge.stores.base import Conflict, Stored, StoreUnavailable, Write
from edge.stores.connect import OUTAGE_ERRORS, REDIS_ERRORS, RedisClient
from edge.stores.lane import Lane, batch, raise_errors

# KEYS[1] profile, KEYS[2] its erasure tombstone; ARGV[1] expected version,
# ARGV[2] payload, ARGV[3] TTL in ms (0: persist). Returns 1 on success (or when
# a new profile of an erased visitor is dropped), or {current version, current
# payload} when the version moved.
CAS_SCRIPT = """
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then
  return 1
end
local current = redis.call('HGET', KEYS[1], 'v')
if (current or '0') ~= ARGV[1] then
  return {current or '0', redis.call('HGET', KEYS[1], 'p') or ''}
end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(ARGV[1]) + 1), 'p', ARGV[2])
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
return 1
"""
CAS = lua.Script(CAS_SCRIPT)
SCAN_CHUNK = 500  # keys per SCAN COUNT hint and per HGET pipeline (iter_profiles)

# KEYS[1] profile, KEYS[2] its erasure tombstone; ARGV[1] now (unix s), ARGV[2]
# the tombstone's TTL (s). Both in one atomic step, one slot (one hash tag):
# a MULTI would do on one server, but not on a cluster (``edge.stores.connect``).
# Returns how many profiles were deleted (0 or 1).
FORGET = lua.Script("""
local deleted = redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return deleted
""")


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        client: RedisClient,
        breaker: CircuitBreaker | None = None,
        *,
        own_connection: bool = True,
    ) -> None:
        """``own_connection``: the ledger's writes and the profile loads on a
        connection of their own (``edge.stores.lane``); never on a cluster,
        and off only to compare (``python -m benchmarks store``)."""
        self._client = client
        self._lane: Lane | None = None
        if own_connection and isinstance(client, Redis):
            self._lane = Lane(client.connection_pool)
        self.breaker = breaker or CircuitBreaker()
        if self._lane is not None:
            self.breaker.on_open.append(self._lane.suspect)
        self.errors = 0  # failed calls, the breaker's fast failures included

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_connections: int = 32,
        pool_timeout_s: float = 5.0,
        socket_timeout_s: float = 1.0,
        connect_timeout_s: float = 1.0,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 0.5,
        own_connection: bool = True,
    ) -> RedisStore:
        """Any URL form of ``edge.stores.connect`` (``BadRedisUrl`` otherwise)."""
        client = connect.open_client(
            url,
            connect.ClientOptions(
                max_connections=max_connections,
                pool_timeout_s=pool_timeout_s,
                socket_timeout_s=socket_timeout_s,
                connect_timeout_s=connect_timeout_s,
            ),
        )
        breaker = CircuitBreaker(failures=breaker_failures, cooldown_s=breaker_cooldown_s)
        return cls(client, breaker, own_connection=own_connection)

    @property
    def available(self) -> bool:
        """False while the breaker is open or half-open (calls fail at once)."""
        return self.breaker.closed

    @contextlib.asynccontextmanager
    async def _call(self, what: str) -> AsyncIterator[None]:
        """One store call under the breaker: refused at once while it is open;
        a connection failure or timeout counts against it, anything else the
        server answered (a script error) proves it is up."""
        if not self.breaker.allow():
            self.errors += 1
            raise StoreUnavailable(f"redis {what}: unavailable (circuit open)")
        probe = not self.breaker.closed
        try:
            if probe:  # after an outage, pooled connections are dead: start afresh
                await connect.start_afresh(self._client)
                if self._lane is not None:
                    await self._lane.reset_suspect()
            yield
        except OUTAGE_ERRORS as exc:
            self.errors += 1
            self.breaker.failure()
            raise StoreError(f"redis {what} failed: {exc or type(exc).__name__}") from exc
        except REDIS_ERRORS as exc:
            self.errors += 1
            self.breaker.success()
            raise StoreError(f"redis {what} failed: {exc}") from exc
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.success()

    async def load(self, site: str, visitor: str) -> Stored | None:
        return (await self.load_many([(site, visitor)]))[0]

    async def load_many(self, keys_: Sequence[tuple[str, str]]) -> list[Stored | None]:
        commands = [("HMGET", keys.profile(site, visitor), "v", "p") for site, visitor in keys_]
        async with self._call("load"):
            replies = await batch(self._client, self._lane, commands)
            raise_errors(replies)
        return [_stored(version, payload) for version, payload in replies]

    async def commit(self, writes: Sequence[Write]) -> list[Conflict | None]:
        payloads = [
            (
                keys.profile(w.site, w.visitor),
                keys.tombstone(w.site, w.visitor),
                w.expected,
                encode_profile(w.profile),
                w.ttl_s * 1000 if w.ttl_s else 0,
            )
            for w in writes
        ]
        async with self._call("commit"):
            replies = await self._cas_batch(payloads)
            again = lua.missing(replies)
            if again:  # a restarted, flushed or failed-over node: load it, once
                await CAS.load(self._client)
                retried = await self._cas_batch([payloads[i] for i in again])
                for i, reply in zip(again, retried, strict=True):
                    replies[i] = reply
            raise_errors(replies)
        return [None if reply == 1 else Conflict(_stored(*reply)) for reply in replies]

    async def _cas_batch(self, payloads: Sequence[tuple[str, str, int, bytes, int]]) -> list[Any]:
        """One EVALSHA per write in one batch (on the lane, or in a pipeline on
        a cluster). Only the writes that got NOSCRIPT are sent again: the
        others ran, and a second compare-and-set of theirs would lose to their
        own first one."""
        commands = [
            CAS.command([key, gone], [expected, payload, ttl_ms])
            for key, gone, expected, payload, ttl_ms in payloads
        ]
        return await batch(self._client, self._lane, commands)

    async def erase(self, site: str, visitor: str) -> bool:
        async with self._call("erase"):
            deleted: int = await self._client.delete(keys.profile(site, visitor))
        return deleted > 0

    async def forget(self, site: str, visitor: str, tombstone_s: int) -> bool:
        """Delete the profile and set the tombstone in one script (one slot)."""
        gone = [keys.profile(site, visitor), keys.tombstone(site, visitor)]
        async with self._call("erase"):
            deleted = await FORGET(self._client, gone, [int(time.time()), tombstone_s])
        return int(deleted) > 0

    async def iter_profiles(self, site: str) -> AsyncIterator[Profile]:
        """Every stored profile of ``site``: SCAN MATCH ``keys.profile_pattern``
        (redis-py's ``scan_iter`` walks every master of a cluster in turn), then
        one pipeline of ``HGET p`` per ``SCAN_CHUNK`` keys. SCAN may report a key
        twice (across a rehash): each is read once, at the cost of remembering
        the keys seen (about 100 bytes a profile). A key that expired or was
        erased after the scan saw it is skipped. Each round trip goes through the
        breaker like any other call; none of it is on a visitor's path."""
        seen: set[Any] = set()
        found = cast(
            "AsyncGenerator[Any, None]",
            self._client.scan_iter(match=keys.profile_pattern(site), count=SCAN_CHUNK),
        )
        async with contextlib.aclosing(found):
            while True:
                async with self._call("scan"):
                    batch = await _take(found, SCAN_CHUNK, seen)
                if not batch:
                    return
                async with self._call("scan"), self._client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.hget(key, "p")
                    payloads: list[Any] = await pipe.execute()
                for payload in payloads:
                    if payload:
                        yield decode_profile(payload)

    async def ping(self) -> None:
        """The server answers; on a cluster, every master does."""
        async with self._call("ping"):
            await connect.ping(self._client)

    async def close(self) -> None:
        if self._lane is not None:
            await self._lane.reset()
        await connect.close_client(self._client)

    @property
    def client(self) -> RedisClient:
        """The client every other Redis user of this process shares (pools,
        statistics, signals, automation): same deadlines, same pool."""
        return self._client

    @property
    def lane(self) -> Lane | None:
        """The kept connection the per-event batches share (the signal,
        statistics and automation recorders' too); None on a cluster. Closed
        with the store."""
        return self._lane


async def _take(found: AsyncGenerator[Any, None], size: int, seen: set[Any]) -> list[Any]:
    """Up to ``size`` keys from the scan not seen before; empty when it is done."""
    batch: list[Any] = []
    async for key in found:  # leaving the loop early does not close ``found``
        if key not in seen:
            seen.add(key)
            batch.append(key)
            if len(batch) >= size:
                break
    return batch


def _stored(version: Any, payload: Any) -> Stored | None:
    if not payload or version in (None, b"0"):
        return None
    return Stored(decode_profile(payload), int(version))
