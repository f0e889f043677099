"""Campaign statistics, the store: figures added up across every node.

``edge.core.stats`` derives the figures of one applied event (docs/statistics.md);
a ``StatsStore`` adds them up, in memory or in one Redis hash per campaign and day.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from edge.core.stats import FIELDS, StatUpdate, Table
from edge.errors import StoreError
from edge.stores import keys
from edge.stores.connect import REDIS_ERRORS, RedisClient
from edge.stores.lane import Command, Lane, batch, raise_errors

KEEP_DAYS = 400


class StatsStore(Protocol):
    async def record(self, site: str, updates: Sequence[StatUpdate]) -> None: ...

    async def read(self, site: str, campaign: str, days: Sequence[str]) -> Table: ...


class MemoryStats:
    def __init__(self) -> None:
        self._data: dict[tuple[str, str, str], dict[str, float]] = {}

    async def record(self, site: str, updates: Sequence[StatUpdate]) -> None:
        for u in updates:
            row = self._data.setdefault((site, u.campaign, u.day), {})
            row[f"{u.arm}:{u.field}"] = row.get(f"{u.arm}:{u.field}", 0.0) + u.amount

    async def read(self, site: str, campaign: str, days: Sequence[str]) -> Table:
        return {day: _table(self._data.get((site, campaign, day), {})) for day in days}


class RedisStats:
    """One hash per campaign and day. A batch is one non-transactional pipeline:
    on Redis Cluster its commands go to the masters of their campaigns' slots
    (one tag per campaign), each increment atomic on its own."""

    def __init__(self, client: RedisClient, lane: Lane | None = None) -> None:
        """``lane``: record on it (the profile store's, ``RedisStore.lane``)
        rather than in a pipeline from the pool."""
        self._client = client
        self._lane = lane

    async def record(self, site: str, updates: Sequence[StatUpdate]) -> None:
        commands: list[Command] = []
        touched: dict[str, None] = {}  # in order, once each
        for u in updates:
            key = keys.campaign_stats(site, u.campaign, u.day)
            commands.append(("HINCRBYFLOAT", key, f"{u.arm}:{u.field}", u.amount))
            touched[key] = None
        commands.extend(("EXPIRE", key, KEEP_DAYS * 86400) for key in touched)
        try:
            raise_errors(await batch(self._client, self._lane, commands))
        except REDIS_ERRORS as exc:  # an error reply (a ResponseError) included
            raise StoreError(f"recording campaign statistics failed: {exc}") from exc

    async def read(self, site: str, campaign: str, days: Sequence[str]) -> Table:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(keys.campaign_stats(site, campaign, day))
                rows = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreError(f"reading campaign statistics failed: {exc}") from exc
        return {
            day: _table({_text(k): float(v) for k, v in row.items()})
            for day, row in zip(days, rows, strict=True)
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _table(row: dict[str, float]) -> dict[str, dict[str, float]]:
    arms: dict[str, dict[str, float]] = {}
    for name, value in row.items():
        arm, _, field = name.rpartition(":")
        arms.setdefault(arm, dict.fromkeys(FIELDS, 0.0))[field] = value
    return arms
