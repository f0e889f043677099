"""Coupon pools, the store: codes from a file, handed out atomically.

A pool's codes (read by ``edge.widgets.coupons.read_pool``) are loaded into the
store once (idempotently: every node may load the same file); a visitor's
first claim pops one code and records it against the visitor in the same
atomic step, later claims return that code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from edge.errors import StoreError
from edge.stores import keys, lua
from edge.stores.connect import REDIS_ERRORS, RedisClient


class CouponPools(Protocol):
    async def load(self, site: str, campaign: str, codes: Sequence[str]) -> int:
        """Add codes not seen before; returns how many were new."""
        ...

    async def claim(self, site: str, campaign: str, visitor: str) -> str | None:
        """The visitor's code: the one they have, else a fresh one, else None (empty)."""
        ...

    async def remaining(self, site: str, campaign: str) -> int: ...

    async def code_of(self, site: str, campaign: str, visitor: str) -> str | None:
        """The code the visitor holds, without claiming one (privacy export)."""
        ...

    async def forget(self, site: str, campaign: str, visitor: str) -> bool:
        """Remove the visitor's assignment (erasure). The code is not handed out
        again; True if they had one."""
        ...


class MemoryPools:
    """Pools of the embedded store (one process, so a dict is atomic enough)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], set[str]] = {}
        self._free: dict[tuple[str, str], list[str]] = {}
        self._given: dict[tuple[str, str], dict[str, str]] = {}

    async def load(self, site: str, campaign: str, codes: Sequence[str]) -> int:
        key = (site, campaign)
        known = self._known.setdefault(key, set())
        free = self._free.setdefault(key, [])
        new = [c for c in dict.fromkeys(codes) if c not in known]
        known.update(new)
        free.extend(new)
        return len(new)

    async def claim(self, site: str, campaign: str, visitor: str) -> str | None:
        key = (site, campaign)
        given = self._given.setdefault(key, {})
        if visitor in given:
            return given[visitor]
        free = self._free.get(key)
        if not free:
            return None
        code = given[visitor] = free.pop(0)
        return code

    async def remaining(self, site: str, campaign: str) -> int:
        return len(self._free.get((site, campaign), ()))

    async def code_of(self, site: str, campaign: str, visitor: str) -> str | None:
        return self._given.get((site, campaign), {}).get(visitor)

    async def forget(self, site: str, campaign: str, visitor: str) -> bool:
        return self._given.get((site, campaign), {}).pop(visitor, None) is not None


# Both scripts touch only their KEYS, which share the pool's hash tag
# ``{cp:<site>:<campaign>}``: one slot, so one atomic step on Redis Cluster too.
# KEYS[1] the codes ever loaded (set), KEYS[2] the free codes (list); ARGV the codes.
_LOAD = lua.Script("""
local added = 0
for i = 1, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i])
    added = added + 1
  end
end
return added
""")
# KEYS[1] visitor -> code (hash), KEYS[2] the free codes (list); ARGV[1] the visitor.
_CLAIM = lua.Script("""
local code = redis.call('HGET', KEYS[1], ARGV[1])
if code then return code end
code = redis.call('LPOP', KEYS[2])
if not code then return false end
redis.call('HSET', KEYS[1], ARGV[1], code)
return code
""")


class RedisPools:
    """Pools in Redis: the three keys of one pool share a hash tag (one slot),
    so a claim is one atomic script on Redis Cluster too. Redis failures are
    raised as ``StoreError`` (a coupon form then gets the fallback answer)."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def load(self, site: str, campaign: str, codes: Sequence[str]) -> int:
        pool = [keys.coupon_known(site, campaign), keys.coupon_free(site, campaign)]
        added = 0
        for start in range(0, len(codes), 1000):
            chunk = list(codes[start : start + 1000])
            added += int(await self._run("loading", _LOAD(self._client, pool, chunk)))
        return added

    async def claim(self, site: str, campaign: str, visitor: str) -> str | None:
        pool = [keys.coupon_given(site, campaign), keys.coupon_free(site, campaign)]
        return _code(await self._run("claim", _CLAIM(self._client, pool, [visitor])))

    async def remaining(self, site: str, campaign: str) -> int:
        free = keys.coupon_free(site, campaign)
        return int(await self._run("count", self._client.llen(free)))

    async def code_of(self, site: str, campaign: str, visitor: str) -> str | None:
        given = keys.coupon_given(site, campaign)
        return _code(await self._run("lookup", self._client.hget(given, visitor)))

    async def forget(self, site: str, campaign: str, visitor: str) -> bool:
        given = keys.coupon_given(site, campaign)
        return int(await self._run("erasure", self._client.hdel(given, visitor))) > 0

    @staticmethod
    async def _run(what: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except REDIS_ERRORS as exc:
            raise StoreError(f"coupon pool {what} failed: {exc}") from exc


def _code(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
