"""Erasure and export of one visitor: shared by the admin API (any store, in
the serving process) and ``edge privacy`` (Redis only, from outside).

What is stored about a visitor, and where:

* the profile (``edge:p:{<site>:<visitor>}``) with everything edge knows;
* their code in each coupon pool they claimed one from
  (``edge:cp:{cp:<site>:<campaign>}:given``, a hash field named by their id);
* in a running server, the hot copy of the profile (``edge.ledger``).

Campaign statistics and recommendation signals are counts without visitor
ids, and generated coupon codes are computed, not stored: nothing to erase.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from edge import keys
from edge.ledger import Ledger
from edge.profile import to_wire
from edge.stores.base import ProfileStore
from edge.stores.redis import RedisStore
from edge.widgets.coupons import CouponPools

_GLOB = re.compile(r"([*?\[\]\\])")


def configured_pools(campaigns: Iterable[Any]) -> list[str]:
    """Ids of the campaigns whose coupon comes from a pool."""
    found = []
    for campaign in campaigns:
        widgets = [s.widget for s in campaign.steps]
        widgets += [v.widget for v in campaign.variants if v.widget is not None]
        for widget in widgets:
            coupon = widget.get("coupon")
            if isinstance(coupon, Mapping) and coupon.get("source") == "pool":
                found.append(campaign.id)
                break
    return found


async def pool_campaigns(store: ProfileStore, site: str, configured: Iterable[str]) -> list[str]:
    """The configured pool campaigns, plus (on Redis) every pool of the site
    still in the store: a campaign removed from the configuration keeps its
    assignments, and they must be found too. One SCAN of the keyspace."""
    found = set(configured)
    if isinstance(store, RedisStore):
        head = f"{keys.PREFIX}:cp:{{cp:{site}:"
        pattern = _GLOB.sub(r"\\\1", head) + "*}:given"
        async for raw in store.client.scan_iter(match=pattern, count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if key.startswith(head) and key.endswith("}:given"):
                found.add(key[len(head) : -len("}:given")])
    return sorted(found)


async def export_visitor(
    store: ProfileStore, pools: CouponPools, site: str, visitor: str, campaigns: Iterable[str]
) -> dict[str, Any] | None:
    """Everything stored about the visitor; None when nothing is."""
    stored = await store.load(site, visitor)
    coupons = {}
    for campaign in await pool_campaigns(store, site, campaigns):
        code = await pools.code_of(site, campaign, visitor)
        if code is not None:
            coupons[campaign] = code
    if stored is None and not coupons:
        return None
    return {
        "site": site,
        "visitor": visitor,
        "exported_at": time.time(),
        "profile": to_wire(stored.profile) if stored else None,
        "profile_version": stored.version if stored else None,
        "coupons": coupons,
    }


async def erase_visitor(
    store: ProfileStore,
    pools: CouponPools,
    site: str,
    visitor: str,
    campaigns: Iterable[str],
    *,
    tombstone_s: int,
    ledger: Ledger | None = None,
) -> dict[str, Any]:
    """Erase the profile (leaving a tombstone, see ``ProfileStore.forget``),
    the coupon assignments and, given the ledger, the hot copy. The store goes
    first: from then on no write can recreate the profile, so the ledger's
    pending writes, flushed while it waits, are dropped."""
    profile = await store.forget(site, visitor, tombstone_s)
    hot = await ledger.forget(site, visitor) if ledger is not None else False
    coupons = []
    for campaign in await pool_campaigns(store, site, campaigns):
        if await pools.forget(site, campaign, visitor):
            coupons.append(campaign)
    return {
        "site": site,
        "visitor": visitor,
        "profile": profile,
        "coupons": coupons,
        "hot_copy": hot,
        "tombstone_days": tombstone_s / 86400,
    }


def dumps(data: Any) -> str:
    """JSON of exported data (tuples as arrays, bytes as text)."""
    return json.dumps(data, default=_plain, ensure_ascii=False, indent=2)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
