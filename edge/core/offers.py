"""Offers: the widgets the server decided to show a visitor, kept on the profile.

The server decides, the tracker reports: impressions, clicks, closes and
conversions arrive as ``widget`` events naming a campaign, arm and step. A
client can name anything, so the report is believed only for what the server
itself decided to show this visitor (issue 12: one crafted ``convert`` got
any campaign's coupon, and made-up campaigns and arms filled the statistics).
Each decision sent to a visitor is recorded here, in the same store write as
the events it answers, and a widget event is accepted only when it matches:

* an offer of that campaign exists, made at most ``OFFER_TTL_S`` ago (a tab
  left open a week still counts; an offer from last month does not);
* its arm is the one offered (``holdout`` only reports an impression: the
  visitor saw nothing to click);
* its step is the one offered or an earlier one (steps only move forward).

Pure: ``record`` is a change the ledger folds like an event, ``refusal``
says why an event does not match. One offer per campaign, most recent first,
bounded by ``Bounds.offers``.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.core.profile import Offer, Profile, evolve

OFFER_TTL_S = 7 * 86400.0
# A decision repeated within this time does not rewrite its offer: answering a
# resent page view must not cost a store write of its own.
REFRESH_S = 3600.0
HOLDOUT = "holdout"

Decided = tuple[str, str, int]  # (campaign, variant, step)


def record(profile: Profile, decided: Iterable[Decided], now: float, bound: int) -> Profile:
    """``profile`` with ``decided`` as its most recent offers; the same object
    when every one of them is already on record (recently enough)."""
    offers = profile.offers
    changed = False
    for campaign, variant, step in decided:
        old = find(profile, campaign)
        fresh = old is not None and now - old.at < REFRESH_S
        if fresh and old is not None and (old.variant, old.step) == (variant, step):
            continue
        others = (o for o in offers if o.campaign != campaign)
        offers = (Offer(campaign, variant, step, now), *others)
        changed = True
    if not changed:
        return profile
    return evolve(profile, {"offers": offers[:bound]})


def find(profile: Profile | None, campaign: str) -> Offer | None:
    if profile is None:
        return None
    for offer in profile.offers:
        if offer.campaign == campaign:
            return offer
    return None


def refusal(
    profile: Profile | None, campaign: str, variant: str, step: int, action: str, now: float
) -> str | None:
    """Why a widget event does not match an offer to this visitor, or None."""
    offer = find(profile, campaign)
    if offer is None:
        return f"campaign {campaign!r:.60} was not shown to this visitor"
    if now - offer.at > OFFER_TTL_S:
        return f"campaign {campaign!r:.60} was last shown to this visitor over 7 days ago"
    if variant != offer.variant:
        return f"variant {variant!r:.40} of {campaign!r:.60} was not shown to this visitor"
    if step > offer.step:
        return f"step {step} of {campaign!r:.60} was not shown to this visitor"
    if variant == HOLDOUT and action != "impression":
        return "the holdout group is shown nothing: only its impression is reported"
    return None


def merged(a: tuple[Offer, ...], b: tuple[Offer, ...], bound: int) -> tuple[Offer, ...]:
    """Both profiles' offers (identity merge): per campaign the later one."""
    best: dict[str, Offer] = {}
    for offer in (*a, *b):
        kept = best.get(offer.campaign)
        if kept is None or offer.at > kept.at:
            best[offer.campaign] = offer
    return tuple(sorted(best.values(), key=lambda o: -o.at))[:bound]
