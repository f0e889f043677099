"""Shared recommendation signals: co-occurrence counts and popularity.

A visitor's profile only knows that visitor; "people who viewed this also
viewed" and "bestsellers" need counts over every visitor, kept where every node
adds to them: the ``SignalStore`` (in memory for the embedded store, sorted
sets in Redis). Four kinds:

- ``viewed_together``: for each sku, partner skus viewed in the same visit;
- ``bought_together``: for each sku, partner skus in the same order;
- ``bestsellers``: units purchased per sku (all time);
- ``trending``: views per sku over the last 24 hours.

Trending uses hour buckets (one sorted set per hour with a 25 h TTL, summed
over the last 24 on read) rather than an exponentially decayed score: the
buckets give exactly "views in the last day" (what a merchant expects the word
to mean and can check against analytics), old data disappears by TTL without a
sweeper, and the scores cannot overflow. A decayed score would need a landmark
time and periodic rescaling of every member. The price is one ``ZUNIONSTORE``
over 24 small sets per read, which the Redis store caches for a few seconds.

``edge.core.signals.signal_updates`` derives what one applied event adds;
this module keeps the counts.

Partner lists are bounded: at most ``max_partners`` (100) per sku, trimmed to
the best scores. Redis trims with ``ZREMRANGEBYRANK`` on a random fraction of
writes (so a write is usually one ``ZINCRBY``), which lets a set overshoot the
bound by a few entries between trims; the memory store trims exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from edge.core.signals import KINDS, PAIR_KINDS, SignalKind, SignalUpdate
from edge.errors import StoreError
from edge.stores import connect, keys, lua
from edge.stores.connect import REDIS_ERRORS, RedisClient
from edge.stores.lane import Command, Lane, batch, raise_errors

MAX_PARTNERS = 100
MAX_RANKED = 1000  # bound of the site-wide rankings (bestsellers, each trending bucket)
HOUR_S = 3600
TRENDING_HOURS = 24

Scores = list[tuple[str, float]]
Clock = Callable[[], float]


def _check(kind: str, sku: str | None) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown signal {kind!r}; valid: {', '.join(KINDS)}")
    if (kind in PAIR_KINDS) != (sku is not None) or sku == "":
        need = "a sku" if kind in PAIR_KINDS else "no sku"
        raise ValueError(f"signal {kind!r} takes {need}")


def _check_update(update: SignalUpdate) -> None:
    """Pair kinds need a partner, rankings must not have one."""
    _check(update.kind, update.sku if update.partner is not None else None)
    if update.partner == "" or not update.sku:
        raise ValueError("signal updates need non-empty skus")


def _ranked(scores: dict[str, float], n: int) -> Scores:
    """Best first; ties by member descending, which is Redis's ZREVRANGE order,
    so both stores answer identically."""
    return sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[: max(n, 0)]


class SignalStore(Protocol):
    async def record(self, site: str, updates: Sequence[SignalUpdate]) -> None:
        """Add every update; one round trip for Redis."""
        ...

    async def top(self, site: str, kind: SignalKind, sku: str | None, n: int) -> Scores:
        """The ``n`` best (member, score), best first: partners of ``sku`` for pair
        kinds, the site-wide ranking when ``sku`` is None."""
        ...

    async def top_many(
        self, site: str, queries: Sequence[tuple[SignalKind, str | None]], n: int
    ) -> list[Scores]:
        """``top`` for several (kind, sku) at once; one round trip for Redis."""
        ...

    async def close(self) -> None: ...


class MemorySignalStore:
    """Signals in this process: for the embedded store (one process only)."""

    def __init__(
        self,
        clock: Clock = time.time,
        *,
        max_partners: int = MAX_PARTNERS,
        max_ranked: int = MAX_RANKED,
    ) -> None:
        self._clock = clock
        self._max = {"pair": max_partners, "ranked": max_ranked}
        self._sets: dict[tuple[str, str, str | None], dict[str, float]] = {}
        self._buckets: dict[str, dict[int, dict[str, float]]] = {}

    async def record(self, site: str, updates: Sequence[SignalUpdate]) -> None:
        hour = int(self._clock() // HOUR_S)
        for update in updates:
            _check_update(update)
            if update.kind == "trending":
                buckets = self._buckets.setdefault(site, {})
                self._add(buckets.setdefault(hour, {}), update.sku, update.amount, "ranked")
                for old in [h for h in buckets if h <= hour - TRENDING_HOURS]:
                    del buckets[old]
            elif update.partner is not None:
                target = self._sets.setdefault((site, update.kind, update.sku), {})
                self._add(target, update.partner, update.amount, "pair")
            else:
                target = self._sets.setdefault((site, update.kind, None), {})
                self._add(target, update.sku, update.amount, "ranked")

    def _add(self, scores: dict[str, float], member: str, amount: float, bound: str) -> None:
        scores[member] = scores.get(member, 0.0) + amount
        if len(scores) > self._max[bound]:
            keep = dict(_ranked(scores, self._max[bound]))
            scores.clear()
            scores.update(keep)

    async def top(self, site: str, kind: SignalKind, sku: str | None, n: int) -> Scores:
        _check(kind, sku)
        if kind != "trending":
            return _ranked(self._sets.get((site, kind, sku), {}), n)
        hour = int(self._clock() // HOUR_S)
        total: dict[str, float] = {}
        for h, scores in self._buckets.get(site, {}).items():
            if h > hour - TRENDING_HOURS:
                for member, score in scores.items():
                    total[member] = total.get(member, 0.0) + score
        return _ranked(total, n)

    async def top_many(
        self, site: str, queries: Sequence[tuple[SignalKind, str | None]], n: int
    ) -> list[Scores]:
        return [await self.top(site, kind, sku, n) for kind, sku in queries]

    async def close(self) -> None:
        return None


# KEYS[1] the trending cache, KEYS[2..] the hour buckets: all of one site's
# ``{sig:<site>}`` tag, so one slot on Redis Cluster (the script reads nothing else).
# ARGV[1] n, ARGV[2] cache TTL in ms (0: do not keep), ARGV[3] members the cache keeps.
TRENDING_SCRIPT = """
local n = tonumber(ARGV[1])
if ARGV[2] ~= '0' and redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('ZREVRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
end
redis.call('ZUNIONSTORE', KEYS[1], #KEYS - 1, unpack(KEYS, 2))
local out = redis.call('ZREVRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1 - tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return out
"""
TRENDING = lua.Script(TRENDING_SCRIPT)


class RedisSignalStore:
    """Signals in Redis sorted sets (layout in ``edge.stores.keys``), shared by all nodes.

    ``trim_probability`` is the share of writes to a set that also trim it;
    ``trending_cache_s`` how long one 24-bucket sum is reused (0: never).
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        clock: Clock = time.time,
        max_partners: int = MAX_PARTNERS,
        max_ranked: int = MAX_RANKED,
        trim_probability: float = 0.05,
        trending_cache_s: float = 10.0,
        rng: Callable[[], float] = random.random,
        owns_client: bool = False,
        lane: Lane | None = None,
    ) -> None:
        """``lane``: record on it (the profile store's, ``RedisStore.lane``)
        rather than in a pipeline from the pool; a lane is not closed here."""
        self._client = client
        self._lane = lane
        self._clock = clock
        self._max_partners = max_partners
        self._max_ranked = max_ranked
        self._trim_probability = trim_probability
        self._cache_ms = int(trending_cache_s * 1000)
        self._rng = rng
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSignalStore:
        """Any URL form of ``edge.stores.connect``."""
        return cls(connect.open_client(url), owns_client=True, **options)

    def _target(self, site: str, update: SignalUpdate, hour: int) -> tuple[str, str, int]:
        """(key, member, bound) one update increments."""
        if update.kind == "trending":
            return keys.trending_bucket(site, hour), update.sku, self._max_ranked
        if update.kind == "bestsellers":
            return keys.bestsellers(site), update.sku, self._max_ranked
        assert update.partner is not None  # _check
        key = keys.viewed_together if update.kind == "viewed_together" else keys.bought_together
        return key(site, update.sku), update.partner, self._max_partners

    async def record(self, site: str, updates: Sequence[SignalUpdate]) -> None:
        if not updates:
            return
        hour = int(self._clock() // HOUR_S)
        totals: dict[tuple[str, str], float] = {}  # one ZINCRBY per (key, member) per batch
        bounds: dict[str, int] = {}
        for update in updates:
            _check_update(update)
            key, member, bound = self._target(site, update, hour)
            totals[key, member] = totals.get((key, member), 0.0) + update.amount
            bounds[key] = bound
        commands: list[Command] = [
            ("ZINCRBY", key, amount, member) for (key, member), amount in totals.items()
        ]
        for key, bound in bounds.items():
            if self._rng() < self._trim_probability:
                commands.append(("ZREMRANGEBYRANK", key, 0, -1 - bound))
        if any(u.kind == "trending" for u in updates):
            ttl_s = (TRENDING_HOURS + 1) * HOUR_S
            commands.append(("EXPIRE", keys.trending_bucket(site, hour), ttl_s))
        try:
            raise_errors(await batch(self._client, self._lane, commands))
        except REDIS_ERRORS as exc:  # an error reply (a ResponseError) included
            raise StoreError(f"redis signal record failed: {exc}") from exc

    async def top(self, site: str, kind: SignalKind, sku: str | None, n: int) -> Scores:
        return (await self.top_many(site, [(kind, sku)], n))[0]

    async def top_many(
        self, site: str, queries: Sequence[tuple[SignalKind, str | None]], n: int
    ) -> list[Scores]:
        for kind, sku in queries:
            _check(kind, sku)
        if n <= 0 or not queries:
            return [[] for _ in queries]
        hour = int(self._clock() // HOUR_S)
        try:
            replies = await self._read(site, queries, n, hour)
            if lua.missing(replies):  # Redis forgot the script: load it, read again
                await TRENDING.load(self._client)
                replies = await self._read(site, queries, n, hour)
        except REDIS_ERRORS as exc:
            raise StoreError(f"redis signal read failed: {exc}") from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreError(f"redis signal read failed: {reply}")
        return [_scores(reply) for reply in replies]

    async def _read(
        self, site: str, queries: Sequence[tuple[SignalKind, str | None]], n: int, hour: int
    ) -> list[Any]:
        """One pipeline, one slot (the site's tag): reads only, so safe to repeat."""
        async with self._client.pipeline(transaction=False) as pipe:
            for kind, sku in queries:
                self._query(pipe, site, kind, sku, n, hour)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _query(
        self, pipe: Any, site: str, kind: SignalKind, sku: str | None, n: int, hour: int
    ) -> None:
        if kind == "trending":
            buckets = [keys.trending_bucket(site, hour - i) for i in range(TRENDING_HOURS)]
            TRENDING.queue(
                pipe, [keys.trending(site), *buckets], [n, self._cache_ms, self._max_ranked]
            )
        elif kind == "bestsellers":
            pipe.zrevrange(keys.bestsellers(site), 0, n - 1, withscores=True)
        else:
            assert sku is not None
            key = keys.viewed_together if kind == "viewed_together" else keys.bought_together
            pipe.zrevrange(key(site, sku), 0, n - 1, withscores=True)

    async def close(self) -> None:
        if self._owns_client:
            await connect.close_client(self._client)

    @property
    def client(self) -> RedisClient:
        return self._client


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _scores(reply: Any) -> Scores:
    """ZREVRANGE WITHSCORES answers pairs; the Lua script a flat list."""
    if reply and not isinstance(reply[0], (list, tuple)):
        reply = list(zip(reply[::2], reply[1::2], strict=True))
    return [(_text(member), float(score)) for member, score in reply]
