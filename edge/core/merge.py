"""Merging a device's profile into a customer's profile: pure functions.

When a visitor proves who they are (a verified identify, ``edge.core.identity``),
the anonymous history of that device joins the customer's own profile, whose
id is derived from the customer id (``customer_visitor``), and the device is
*aliased* to it: later visits of that device, and every other device the
customer verifies on, land on one profile.

A merge takes three compare-and-set writes, each of one profile (so each is
one atomic single-slot operation, on Redis Cluster too), driven by
``edge.stores.aliases``:

1. **seal** the device profile: ``merged_into = <customer>``,
   ``merge_pending = True``. From then on nothing is applied to it: a writer
   that finds it sealed drops its unstored events unacknowledged (the tracker
   resends them, to the customer's profile). So the sealed profile is a
   snapshot that can no longer change.
2. **merge** that snapshot into the customer's profile, which records the
   device in ``merged_from``: merging the same device again is a no-op, so
   the step can be retried, raced by another process, or redone after a crash.
3. **compact** the device profile to a stub that only points at the customer
   (``merge_pending = False``): its data now lives in one place.

A crash between 1 and 2 leaves a sealed, pending device profile: whoever
opens it next finishes the merge first (``edge.stores.aliases.Aliases.resolve``).

How fields combine (``merge``): counters are added; lists are unioned per key
(views and totals added), most recent first and bounded as usual; the earliest
first-seen, first order and first touch are kept, the latest last-seen, last
order and last touch; decaying scores are decayed to ``now`` and added; the
customer's own personal data wins over the device's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from edge.core import offers
from edge.core.intelligence import decay
from edge.core.profile import (
    WINDOW_BITS,
    CampaignState,
    CategoryView,
    CustomCount,
    Interest,
    Profile,
    Purchased,
    Session,
    Stream,
    Touch,
    ViewedProduct,
    evolve,
)
from edge.core.site import Site

T = TypeVar("T")
MERGED_FROM_BOUND = 64  # devices remembered per customer (for idempotency)
_LEVELS = {"anonymous": 0, "claimed": 1, "verified": 2}
_MASK = (1 << WINDOW_BITS) - 1


# --- the three steps ----------------------------------------------------------


def seal(profile: Profile | None, device: str, target: str, now: float) -> Profile:
    """Step 1: point ``device`` at ``target``. A device with nothing stored
    becomes a stub at once; a stub pointing elsewhere (another customer signed
    in on this device) is re-pointed: its data went to the first customer, and
    stays there."""
    if profile is None:
        return Profile(visitor=device, created_at=now, merged_into=target)
    if profile.merged_into == target or profile.merge_pending:
        return profile  # done, or an unfinished merge the caller finishes first
    if profile.merged_into is not None:
        return evolve(profile, {"merged_into": target})
    return evolve(profile, {"merged_into": target, "merge_pending": True})


def compact(profile: Profile | None, target: str) -> Profile | None:
    """Step 3: once merged into ``target``, keep only the pointer."""
    if profile is None or profile.merged_into != target or not profile.merge_pending:
        return profile
    return Profile(
        visitor=profile.visitor,
        created_at=profile.created_at,
        consent=profile.consent,
        merged_into=target,
    )


def merge(
    target: Profile | None, device: Profile, target_id: str, site: Site, now: float
) -> Profile:
    """Step 2: ``device``'s data added to ``target`` (None: a new customer
    profile). Idempotent: a device already in ``merged_from`` changes nothing."""
    if target is not None and device.visitor in target.merged_from:
        return target
    merged_from = (device.visitor, *(target.merged_from if target else ()))
    if target is None:
        return evolve(
            device,
            {
                "visitor": target_id,
                "merged_into": None,
                "merge_pending": False,
                "merged_from": merged_from[:MERGED_FROM_BOUND],
            },
        )
    changes: dict[str, object] = {"merged_from": merged_from[:MERGED_FROM_BOUND]}
    changes.update(_personal(target, device))
    changes.update(_behaviour(target, device, site, now))
    changes.update(_transactions(target, device, site))
    changes.update(_campaigns(target, device, site))
    changes.update(_bookkeeping(target, device, site))
    return evolve(target, changes)


# --- field groups ---------------------------------------------------------------


def _personal(a: Profile, b: Profile) -> dict[str, object]:
    """The customer's (``a``) identity and personal data win; the device adds
    what the customer's profile lacks."""
    return {
        "level": a.level if _LEVELS[a.level] >= _LEVELS[b.level] else b.level,
        "contact": a.contact or b.contact,
        "customer_id": a.customer_id or b.customer_id,
        "consent": a.consent if a.consent is not None else b.consent,
        "first_name": a.first_name or b.first_name,
        "birthday": a.birthday or b.birthday,
        "tier": a.tier or b.tier,
        "claimed_name": a.claimed_name or b.claimed_name,
        # custom properties (edge.core.properties): the customer's win, the device adds the rest
        "props": tuple(sorted({**dict(b.props), **dict(a.props)}.items())),
        **_consent(a, b),
    }


def _consent(a: Profile, b: Profile) -> dict[str, object]:
    """The consent checkbox sent last, on either device."""
    latest = a if (a.marketing_consent_at or 0) >= (b.marketing_consent_at or 0) else b
    return {
        "marketing_consent": latest.marketing_consent,
        "marketing_consent_at": latest.marketing_consent_at,
    }


def _behaviour(a: Profile, b: Profile, site: Site, now: float) -> dict[str, object]:
    bounds, cfg = site.bounds, site.intelligence
    score_a = decay(a.score, a.score_at, now, cfg.score_half_life_days)
    score_b = decay(b.score, b.score_at, now, cfg.score_half_life_days)
    session: Session | None = _latest(a.session, b.session, _session_at)
    last_touch: Touch | None = _latest(a.last_touch, b.last_touch, _touch_at)
    return {
        "created_at": min(a.created_at, b.created_at),
        "first_seen": min(a.first_seen or b.first_seen, b.first_seen or a.first_seen),
        "last_seen": max(a.last_seen, b.last_seen),
        "visits": a.visits + b.visits,
        "pageviews": a.pageviews + b.pageviews,
        "events": a.events + b.events,
        "session": session,
        "previous_visit_at": _max_opt(a.previous_visit_at, b.previous_visit_at),
        "products": _union(
            a.products,
            b.products,
            lambda p: p.sku,
            _product,
            lambda p: -p.at,
            bounds.products,
        ),
        "categories": _union(
            a.categories,
            b.categories,
            lambda c: c.name,
            lambda x, y: CategoryView(x.name, x.views + y.views, max(x.last_at, y.last_at)),
            lambda c: -c.last_at,
            bounds.categories,
        ),
        "custom": _union(
            a.custom,
            b.custom,
            lambda c: c.name,
            lambda x, y: CustomCount(x.name, x.total + y.total, max(x.last_at, y.last_at)),
            lambda c: -c.last_at,
            bounds.custom_events,
        ),
        "interests": _interests(
            a.interests, b.interests, cfg.interests_half_life_days, now, bounds.interests
        ),
        "score": round(score_a + score_b, 6),
        "score_at": now,
        "score_crossed_at": _min_opt(a.score_crossed_at, b.score_crossed_at),
        "first_touch": _earliest_touch(a.first_touch, b.first_touch),
        "last_touch": last_touch,
    }


def _transactions(a: Profile, b: Profile, site: Site) -> dict[str, object]:
    bounds = site.bounds
    known = set(a.order_ids)
    # an order both profiles recorded (the same order reported on two devices)
    # is counted once; its value cannot be told apart, so revenue adds up
    shared = sum(1 for order in b.order_ids if order in known)
    return {
        "cart": a.cart if a.cart.updated_at >= b.cart.updated_at else b.cart,
        "orders": a.orders + b.orders - shared,
        "revenue": round(a.revenue + b.revenue, 2),
        "last_order_at": _max_opt(a.last_order_at, b.last_order_at),
        "first_order_at": _min_opt(a.first_order_at, b.first_order_at),
        "order_ids": _dedupe((*a.order_ids, *b.order_ids))[: bounds.order_ids],
        "purchased": _union(
            a.purchased,
            b.purchased,
            lambda p: p.sku,
            lambda x, y: Purchased(x.sku, x.qty + y.qty, max(x.at, y.at)),
            lambda p: -p.at,
            bounds.purchased,
        ),
    }


def _campaigns(a: Profile, b: Profile, site: Site) -> dict[str, object]:
    """Frequency caps count both devices' impressions, so a pop-up capped at
    once is not shown again on the second device."""
    bounds = site.bounds
    return {
        "campaigns": _union(
            a.campaigns,
            b.campaigns,
            lambda c: c.id,
            lambda x, y: _campaign(x, y, bounds.campaign_recent),
            lambda c: -c.last_at,
            bounds.campaigns,
        ),
        "popups": tuple(sorted((*a.popups, *b.popups), reverse=True)[: bounds.popups]),
        # a widget offered on the device can still be converted after sign-in
        "offers": offers.merged(a.offers, b.offers, bounds.offers),
    }


def _bookkeeping(a: Profile, b: Profile, site: Site) -> dict[str, object]:
    """Both devices' replay windows and event ids, so events resent after the
    merge (to the customer's profile) are still recognised as duplicates."""
    bounds = site.bounds
    return {
        "streams": _union(
            a.streams, b.streams, lambda s: s.session, _stream, lambda s: -s.last_at, bounds.streams
        ),
        "event_ids": _dedupe((*b.event_ids, *a.event_ids))[: bounds.event_ids],
    }


# --- record merges --------------------------------------------------------------


def _product(x: ViewedProduct, y: ViewedProduct) -> ViewedProduct:
    newer, older = (x, y) if x.at >= y.at else (y, x)
    return newer._replace(
        name=newer.name or older.name,
        category=newer.category or older.category,
        price=newer.price if newer.price is not None else older.price,
        views=x.views + y.views,
    )


def _campaign(x: CampaignState, y: CampaignState, recent_bound: int) -> CampaignState:
    newer = x if x.last_at >= y.last_at else y
    stepped = x if (x.step, x.step_visit) >= (y.step, y.step_visit) else y
    return newer._replace(
        impressions=x.impressions + y.impressions,
        clicks=x.clicks + y.clicks,
        closes=x.closes + y.closes,
        conversions=x.conversions + y.conversions,
        recent=tuple(sorted((*x.recent, *y.recent), reverse=True)[:recent_bound]),
        step=stepped.step,
        step_visit=stepped.step_visit,
        variant=x.variant or y.variant,  # the customer's arm stays sticky
        closed_at=max(x.closed_at, y.closed_at),
        converted_step=max(x.converted_step, y.converted_step),
        first_at=min((t for t in (x.first_at, y.first_at) if t), default=0.0),
    )


def _stream(x: Stream, y: Stream) -> Stream:
    """One tab session seen by both: the union of what each applied."""
    high, low = (x, y) if x.hwm >= y.hwm else (y, x)
    gap = high.hwm - low.hwm
    window = high.window | ((low.window << gap) & _MASK if gap < WINDOW_BITS else 0)
    return Stream(high.session, high.hwm, window, max(x.last_at, y.last_at))


def _interests(
    a: Iterable[Interest], b: Iterable[Interest], half_life_days: float, now: float, bound: int
) -> tuple[Interest, ...]:
    scores: dict[str, float] = {}
    for interest in (*a, *b):
        value = decay(interest.score, interest.at, now, half_life_days)
        scores[interest.name] = scores.get(interest.name, 0.0) + value
    best = sorted(scores.items(), key=lambda kv: -kv[1])[:bound]
    return tuple(Interest(name, round(score, 6), now) for name, score in best)


# --- helpers ------------------------------------------------------------------------


def _union(
    a: Iterable[T],
    b: Iterable[T],
    key: Callable[[T], object],
    combine: Callable[[T, T], T],
    order: Callable[[T], float],
    bound: int,
) -> tuple[T, ...]:
    merged: dict[object, T] = {}
    for item in (*a, *b):
        k = key(item)
        merged[k] = combine(merged[k], item) if k in merged else item
    return tuple(sorted(merged.values(), key=order)[:bound])


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _latest(a: T | None, b: T | None, at: Callable[[T], float]) -> T | None:
    if a is None or b is None:
        return a if b is None else b
    return a if at(a) >= at(b) else b


def _session_at(session: Session) -> float:
    return session.last_at


def _touch_at(touch: Touch) -> float:
    return touch.at


def _earliest_touch(a: Touch | None, b: Touch | None) -> Touch | None:
    if a is None or b is None:
        return a if b is None else b
    return a if a.at <= b.at else b


def _max_opt(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _min_opt(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
