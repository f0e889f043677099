"""The Redis store: profiles shared by every worker and every node.

A profile is one hash (see ``edge.keys``): ``v`` its version, ``p`` its
msgpack bytes. A write is one Lua compare-and-set (atomic on the server, and
single-slot on Redis Cluster thanks to the key's hash tag); a batch of writes
is one pipeline, so one round trip carries every profile a flush has.

The connection pool blocks (up to ``pool_timeout_s``) instead of raising
"Too many connections" the moment more commands are in flight than it holds:
redis-py's default pool does raise, and that error would reach visitors.

Every call has a deadline (``socket_timeout_s``, ``connect_timeout_s``; no
redis-py retries) and goes through a circuit breaker (``edge.breaker``): after
a few consecutive connection failures or timeouts the store fails at once
(``StoreUnavailable``) instead of letting each caller wait out a dead server,
then probes with one call after a cool-down (docs/operations.md, "Store
outages").
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from edge import keys
from edge.breaker import CircuitBreaker
from edge.errors import StoreError
from edge.profile import decode_profile, encode_profile
from edge.stores.base import Conflict, Stored, StoreUnavailable, Write

# What says "the server is not there" (as opposed to an error it answered with).
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

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


class RedisStore:
    kind = "redis"

    def __init__(self, client: aioredis.Redis, breaker: CircuitBreaker | None = None) -> None:
        self._client = client
        self.breaker = breaker or CircuitBreaker()
        self.errors = 0  # failed calls, the breaker's fast failures included
        # EVALSHA by a digest computed here: redis-py's Script objects in a
        # pipeline send SCRIPT EXISTS before every batch, a second round trip
        # per flush. The script is loaded once, and again if Redis forgot it.
        self._cas_sha = hashlib.sha1(CAS_SCRIPT.encode()).hexdigest()

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
    ) -> RedisStore:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 0),  # the breaker and the ledger retry, not redis-py
        )
        breaker = CircuitBreaker(failures=breaker_failures, cooldown_s=breaker_cooldown_s)
        return cls(aioredis.Redis(connection_pool=pool), breaker)

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
                await self._client.connection_pool.disconnect(inuse_connections=False)
            yield
        except OUTAGE_ERRORS as exc:
            self.errors += 1
            self.breaker.failure()
            raise StoreError(f"redis {what} failed: {exc or type(exc).__name__}") from exc
        except RedisError as exc:
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
        async with self._call("load"), self._client.pipeline(transaction=False) as pipe:
            for site, visitor in keys_:
                pipe.hmget(keys.profile(site, visitor), "v", "p")
            replies = await pipe.execute()
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
            try:
                replies = await self._cas_batch(payloads)
            except NoScriptError:  # a restarted or flushed Redis: load it, once
                await self._client.script_load(CAS_SCRIPT)
                replies = await self._cas_batch(payloads)
        return [None if reply == 1 else Conflict(_stored(*reply)) for reply in replies]

    async def _cas_batch(self, payloads: Sequence[tuple[str, str, int, bytes, int]]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for key, gone, expected, payload, ttl_ms in payloads:
                pipe.evalsha(self._cas_sha, 2, key, gone, expected, payload, ttl_ms)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):  # NoScriptError among them
                raise reply
        return replies

    async def erase(self, site: str, visitor: str) -> bool:
        async with self._call("erase"):
            deleted: int = await self._client.delete(keys.profile(site, visitor))
        return deleted > 0

    async def forget(self, site: str, visitor: str, tombstone_s: int) -> bool:
        """Delete the profile and set the tombstone in one MULTI (one slot)."""
        async with self._call("erase"), self._client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.profile(site, visitor))
            pipe.set(keys.tombstone(site, visitor), int(time.time()), ex=tombstone_s)
            deleted, _ = await pipe.execute()
        return int(deleted) > 0

    async def ping(self) -> None:
        async with self._call("ping"):
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
        # A pool handed to the client is not the client's to close.
        await self._client.connection_pool.disconnect()

    @property
    def client(self) -> aioredis.Redis:
        return self._client


def _stored(version: Any, payload: Any) -> Stored | None:
    if not payload or version in (None, b"0"):
        return None
    return Stored(decode_profile(payload), int(version))
