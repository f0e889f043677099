"""Campaign statistics, added up across every node.

Per campaign, arm (variant, or ``holdout``) and day in the site's time zone:
``impressions``, ``visitors`` (first impression of a visitor), ``clicks``,
``closes``, ``conversions`` (the widget's own goal: a form sent, a click-through
marked as conversion), and the shop's outcome among visitors who met the
campaign: ``orders`` and ``revenue`` of purchases made after their first
impression, attributed to the arm they saw. A holdout visitor "meets" the
campaign when the tracker reports what they would have seen, so ``orders /
visitors`` of an arm against the holdout's is the campaign's uplift.

``stat_updates`` is pure and, like ``signal_updates``, derives the counts from
one applied event, so replayed events add nothing. It is fed the events as
they were stored (``Ledger.on_stored``), each against the profile the store
held before it, not as a process first applied them on its own copy: the
profile's campaign state is the single source of truth. A ``convert`` counts
once per visitor, campaign and step (``CampaignState.converted_step``): the
same visitor converting in a second tab, or through a second server process,
changes nothing there and counts nothing (issue 16: 7 conversions for 6
visitors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from edge import keys
from edge.errors import StoreError
from edge.profile import Profile
from edge.stores.connect import REDIS_ERRORS, RedisClient
from edge.tracker import protocol as p

FIELDS = ("impressions", "visitors", "clicks", "closes", "conversions", "orders", "revenue")
KEEP_DAYS = 400
_ACTION_FIELD = {
    "impression": "impressions",
    "click": "clicks",
    "close": "closes",
    "convert": "conversions",
}


@dataclass(frozen=True, slots=True)
class StatUpdate:
    campaign: str
    arm: str
    field: str
    day: str  # YYYY-MM-DD in the site's time zone
    amount: float = 1.0


def day_of(now: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(now, tz).date().isoformat()


def stat_updates(
    before: Profile | None, after: Profile, event: p.Event, tz: ZoneInfo, now: float
) -> list[StatUpdate]:
    day = day_of(now, tz)
    if isinstance(event, p.Widget):
        old = before.campaign(event.campaign) if before is not None else None
        if after.campaign(event.campaign) == old:  # not believed (edge.offers): not counted
            return []
        arm = event.variant or "a"
        updates = [StatUpdate(event.campaign, arm, _ACTION_FIELD[event.action], day)]
        if event.action == "impression" and (old is None or old.impressions == 0):
            updates.append(StatUpdate(event.campaign, arm, "visitors", day))
        return updates
    if isinstance(event, p.Purchase) and (before is None or after.orders > before.orders):
        return [
            update
            for state in after.campaigns
            if state.impressions and state.variant
            for update in (
                StatUpdate(state.id, state.variant, "orders", day),
                StatUpdate(state.id, state.variant, "revenue", day, event.value),
            )
        ]
    return []


Table = dict[str, dict[str, dict[str, float]]]  # day -> arm -> field -> value


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

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def record(self, site: str, updates: Sequence[StatUpdate]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                touched = set()
                for u in updates:
                    key = keys.campaign_stats(site, u.campaign, u.day)
                    pipe.hincrbyfloat(key, f"{u.arm}:{u.field}", u.amount)
                    touched.add(key)
                for key in touched:
                    pipe.expire(key, KEEP_DAYS * 86400)
                await pipe.execute()
        except REDIS_ERRORS as exc:
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
