"""Erasure and export of one visitor: shared by the admin API (any store, in
the serving process) and ``edge privacy`` (Redis only, from outside).

What is stored about a visitor, and where:

* the profile (``edge:p:{<site>:<visitor>}``) with everything edge knows;
* their code in each coupon pool they claimed one from
  (``edge:cp:{cp:<site>:<campaign>}:given``, a hash field named by their id);
* in a running server, the hot copy of the profile (``edge.stores.ledger``).

Campaign statistics and recommendation signals are counts without visitor
ids, and generated coupon codes are computed, not stored: nothing to erase.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from edge.core.profile import to_wire
from edge.errors import StoreError
from edge.stores import keys
from edge.stores.base import ProfileStore
from edge.stores.connect import REDIS_ERRORS
from edge.stores.coupons import CouponPools
from edge.stores.ledger import Ledger
from edge.stores.redis import RedisStore

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
    assignments, and they must be found too. One SCAN of the keyspace; on
    Redis Cluster, of every master's (each pool has its own hash tag, so a
    site's pools are spread over the cluster)."""
    found = set(configured)
    if isinstance(store, RedisStore):
        head = f"{keys.PREFIX}:cp:{{cp:{site}:"
        pattern = _GLOB.sub(r"\\\1", head) + "*}:given"
        try:
            async for raw in store.client.scan_iter(match=pattern, count=1000):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                if key.startswith(head) and key.endswith("}:given"):
                    found.add(key[len(head) : -len("}:given")])
        except REDIS_ERRORS as exc:
            raise StoreError(f"finding the coupon pools of {site} failed: {exc}") from exc
    return sorted(found)


async def linked(store: ProfileStore, site: str, visitor: str) -> list[str]:
    """The visitor and every profile linked to it by identity (``edge.core.merge``):
    a device leads to its customer's profile, a customer's profile to every
    device merged into it. Erasure and export cover them all, since they are
    one person's data."""
    found = [visitor]
    stored = await store.load(site, visitor)
    customer = stored.profile.merged_into if stored else None
    if customer is not None:
        found.append(customer)
        stored = await store.load(site, customer)
    if stored is not None:
        found += [device for device in stored.profile.merged_from if device not in found]
    return found


async def export_visitor(
    store: ProfileStore, pools: CouponPools, site: str, visitor: str, campaigns: Iterable[str]
) -> dict[str, Any] | None:
    """Everything stored about the visitor and the profiles linked to it
    (``linked``); None when nothing is."""
    pooled = await pool_campaigns(store, site, campaigns)
    profiles = []
    coupons: dict[str, str] = {}
    for key in await linked(store, site, visitor):
        stored = await store.load(site, key)
        if stored is not None:
            profiles.append(
                {"id": key, "profile": to_wire(stored.profile), "version": stored.version}
            )
        for campaign in pooled:
            code = await pools.code_of(site, campaign, key)
            if code is not None:
                coupons[campaign] = code
    if not profiles and not coupons:
        return None
    own = profiles[0] if profiles and profiles[0]["id"] == visitor else None
    return {
        "site": site,
        "visitor": visitor,
        "exported_at": time.time(),
        "profile": own["profile"] if own else None,
        "profile_version": own["version"] if own else None,
        "linked_profiles": [p for p in profiles if p is not own],
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
    """Erase the profile and every profile linked to it (``linked``), each
    leaving a tombstone (see ``ProfileStore.forget``), their coupon
    assignments and, given the ledger, their hot copies. The store goes
    first: from then on no write can recreate a profile, so the ledger's
    pending writes, flushed while it waits, are dropped."""
    pooled = await pool_campaigns(store, site, campaigns)
    ids = await linked(store, site, visitor)
    erased: list[str] = []
    coupons: set[str] = set()
    hot = False
    for key in ids:
        if await store.forget(site, key, tombstone_s):
            erased.append(key)
        if ledger is not None and await ledger.forget(site, key):
            hot = True
        for campaign in pooled:
            if await pools.forget(site, campaign, key):
                coupons.add(campaign)
    return {
        "site": site,
        "visitor": visitor,
        "profile": visitor in erased,
        "linked_profiles": [key for key in erased if key != visitor],
        "coupons": sorted(coupons),
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
