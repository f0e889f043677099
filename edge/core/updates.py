"""Profile updates: the pure heart of ingest.

``apply(profile, event, context, site, now) -> profile`` folds one event into
a profile. It does no I/O, reads no clock (``now`` is given) and never mutates
its inputs (profiles are immutable values). Replaying an event is a no-op:
``apply`` returns the very same object when the event's (session, seq) or its
event id was applied before, which is what makes delivery exactly-once once the
result is stored atomically with the profile.

``check_event`` holds the refusals that depend on the site (identity tokens);
the ingest shell calls it once, before an event is queued, so a refused event
is reported to the client and never reaches ``apply``.

Each event builds exactly one new ``Profile`` (handlers return their changes
and ``apply`` merges them with the bookkeeping), two when it moves the visitor
into or out of a segment kept on the profile (``edge.core.segments``): this runs
for every event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from edge.core import events as p
from edge.core import offers, segments
from edge.core.context import VisitContext
from edge.core.identity import verify_token
from edge.core.intelligence import on_event
from edge.core.profile import (
    CampaignState,
    Cart,
    CartLine,
    CategoryView,
    CustomCount,
    Profile,
    Purchased,
    Session,
    Stream,
    Touch,
    ViewedProduct,
    evolve,
)
from edge.core.properties import checked_event_props
from edge.core.site import Site
from edge.core.source import DIRECT, Source, classify, url_path
from edge.decisioning.campaigns import Campaign
from edge.errors import InvalidMessage

T = TypeVar("T")
Changes = dict[str, Any]


def new_profile(visitor: str, now: float) -> Profile:
    return Profile(visitor=visitor, created_at=now, first_seen=now, last_seen=now)


def check_event(event: p.Event, site: Site, now: float) -> None:
    """Raise a ``ProtocolError`` for an event this site must refuse."""
    if isinstance(event, p.Identify) and event.customer_id is not None:
        assert event.ts is not None and event.sig is not None  # model_post_init
        verify_token(
            site.secret,
            site.id,
            event.customer_id,
            event.ts,
            event.sig,
            now=now,
            max_age_s=site.token_max_age_s,
        )
    elif isinstance(event, p.Custom) and site.declared.events:
        refusal = checked_event_props(event.name, event.props, site.declared.events)
        if refusal is not None:
            raise InvalidMessage(refusal)


def widget_refusal(profile: Profile | None, event: p.Widget, now: float) -> str | None:
    """Why a widget event is not believed (``edge.core.offers``), or None."""
    return offers.refusal(profile, event.campaign, event.variant, event.step, event.action, now)


def is_duplicate(profile: Profile, event: p.Event, session: str) -> bool:
    stream = profile.stream(session)
    return (stream is not None and stream.seen(event.seq)) or event.id in profile.event_ids


def apply(
    profile: Profile | None, event: p.Event, ctx: VisitContext, site: Site, now: float
) -> Profile:
    if profile is None:
        profile = new_profile(ctx.visitor, now)
    elif is_duplicate(profile, event, ctx.session):
        return profile
    if isinstance(event, p.Widget) and widget_refusal(profile, event, now):
        return profile  # not what the server showed this visitor (edge.core.offers): no effect
    changes = _bookkeeping(profile, event, ctx, site, now)
    changes.update(_HANDLERS[event.type](profile, changes["session"], event, ctx, site, now))
    changes.update(
        on_event(
            profile,
            changes,
            event,
            event.url or ctx.url,
            site.intelligence,
            now,
            site.bounds.interests,
        )
    )
    # segments kept on the profile (membership: true), as of this event
    return segments.refreshed(evolve(profile, changes), site, now)


def _bookkeeping(
    profile: Profile, event: p.Event, ctx: VisitContext, site: Site, now: float
) -> Changes:
    """What every applied event changes: dedupe state, the visit, counters."""
    bounds = site.bounds
    stream = profile.stream(ctx.session) or Stream(ctx.session)
    changes: Changes = {
        "streams": _front(
            stream.mark(event.seq, now),
            profile.streams,
            lambda s: s.session == ctx.session,
            bounds.streams,
        ),
        "event_ids": (event.id, *profile.event_ids[: bounds.event_ids - 1]),
        "last_seen": now,
        "events": profile.events + 1,
    }
    if ctx.consent is not None and ctx.consent != profile.consent:
        changes["consent"] = ctx.consent
    source = _arrival(profile.session, event, ctx, site)
    current = profile.session
    if current is None or now - current.last_at > site.session_timeout_s or source is not None:
        session = _start_session(source or DIRECT, event, ctx, now)
        changes["session"] = session
        changes["visits"] = profile.visits + 1
        changes.update(_touches(profile, session))
        if current is not None:
            changes["previous_visit_at"] = current.last_at
    else:
        changes["session"] = evolve(current, {"last_at": now})
    return changes


def _arrival(
    current: Session | None, event: p.Event, ctx: VisitContext, site: Site
) -> Source | None:
    """The traffic source when this event is an arrival from outside, else None.

    A page view tagged with campaign parameters, or coming from another site,
    starts a new visit when its source differs from the current visit's
    (the usual analytics rule). Internal page views skip classification: they
    are most events, and parsing URLs is the costly part.
    """
    if current is None:
        referrer = event.referrer if isinstance(event, p.PageView) else None
        return classify(event.url or ctx.url, referrer or ctx.referrer, site.hosts)
    if not isinstance(event, p.PageView):
        return None
    url, referrer = event.url or "", event.referrer
    if "?" not in url and not referrer:
        return None
    source = classify(url, referrer, site.hosts)
    if source is None or source.medium == "none":
        return None
    if (source.source, source.medium, source.campaign) == (
        current.source,
        current.medium,
        current.campaign,
    ):
        return None
    return source


def _start_session(source: Source, event: p.Event, ctx: VisitContext, now: float) -> Session:
    return Session(
        started_at=now,
        last_at=now,
        landing=event.url or ctx.url,
        referrer=(event.referrer if isinstance(event, p.PageView) else None) or ctx.referrer,
        source=source.source,
        medium=source.medium,
        campaign=source.campaign,
        term=source.term,
        referrer_domain=source.referrer_domain,
    )


def _touches(profile: Profile, session: Session) -> Changes:
    """First touch: the first visit's source, whatever it was. Last touch: the
    latest visit that came from somewhere (direct visits do not overwrite it,
    the usual last non-direct click rule)."""
    touch = Touch(
        session.source,
        session.medium,
        session.campaign,
        session.term,
        session.referrer_domain,
        session.landing,
        session.started_at,
    )
    changes: Changes = {}
    if profile.first_touch is None:
        changes["first_touch"] = touch
    if session.medium != "none" or profile.last_touch is None:
        changes["last_touch"] = touch
    return changes


def _front(item: T, items: tuple[T, ...], same: Callable[[T], bool], bound: int) -> tuple[T, ...]:
    """``item`` first, then ``items`` without its older copy, at most ``bound`` long."""
    return (item, *(i for i in items if not same(i)))[:bound]


def _page_view(
    profile: Profile, session: Session, event: Any, ctx: VisitContext, site: Site, now: float
) -> Changes:
    pages = (url_path(event.url or ctx.url) or "/", *session.pages[: site.bounds.session_pages - 1])
    return {
        "pageviews": profile.pageviews + 1,
        "session": evolve(session, {"pageviews": session.pageviews + 1, "pages": pages}),
    }


def _product_view(
    profile: Profile, session: Session, event: Any, ctx: VisitContext, site: Site, now: float
) -> Changes:
    bounds = site.bounds
    old = next((v for v in profile.products if v.sku == event.sku), None)
    viewed = ViewedProduct(
        sku=event.sku,
        name=event.name if event.name is not None else (old.name if old else None),
        category=event.category if event.category is not None else (old.category if old else None),
        price=event.price if event.price is not None else (old.price if old else None),
        at=now,
        views=(old.views if old else 0) + 1,
    )
    changes: Changes = {
        "products": _front(viewed, profile.products, lambda v: v.sku == event.sku, bounds.products)
    }
    if viewed.category:
        name = viewed.category
        seen = next((c for c in profile.categories if c.name == name), None)
        bumped = CategoryView(name, (seen.views if seen else 0) + 1, now)
        changes["categories"] = _front(
            bumped, profile.categories, lambda c: c.name == name, bounds.categories
        )
    return changes


def _lines(items: list[p.Item]) -> tuple[CartLine, ...]:
    return tuple(CartLine(i.sku, i.qty, i.price, i.name, i.category) for i in items)


def _cart(
    profile: Profile, session: Session, event: Any, ctx: VisitContext, site: Site, now: float
) -> Changes:
    return {"cart": Cart(_lines(event.items), event.value, event.currency, now)}


def _purchase(
    profile: Profile, session: Session, event: Any, ctx: VisitContext, site: Site, now: float
) -> Changes:
    if event.order_id in profile.order_ids:  # the shop reported the same order twice
        return {}
    bought: dict[str, Purchased] = {}
    for item in event.items:
        old = bought.get(item.sku)
        bought[item.sku] = Purchased(item.sku, item.qty + (old.qty if old else 0), now)
    purchased = (*bought.values(), *(b for b in profile.purchased if b.sku not in bought))
    return {
        "purchased": purchased[: site.bounds.purchased],
        "orders": profile.orders + 1,
        "revenue": round(profile.revenue + event.value, 2),
        "last_order_at": now,
        # orders counted before first_order_at existed have no known start: keep it unknown
        "first_order_at": profile.first_order_at
        if profile.orders or profile.first_order_at is not None
        else now,
        "order_ids": (event.order_id, *profile.order_ids[: site.bounds.order_ids - 1]),
        "cart": Cart(updated_at=now),
    }


def _identify(
    profile: Profile, session: Session, event: Any, ctx: VisitContext, site: Site, now: float
) -> Changes:
    if event.customer_id is not None:  # verified by check_event before it was queued
        changes: Changes = {"level": "verified", "customer_id": event.customer_id}
        # personal data only ever comes with a verified token (the protocol refuses
        # it on a claimed identify); a field not sent keeps its stored value, unless
        # the token is for another customer than before: nothing of theirs is kept
        other = profile.customer_id not in (None, event.customer_id)
        for name in ("first_name", "birthday", "tier"):
            value = getattr(event, name)
            if value is not None or other:
                changes[name] = value
        return changes
    contact = site.contact_key(event.email)
    changes = _typed(event, now)
    if profile.level == "verified":  # a typed email never weakens a verified identity
        return changes if profile.contact else {**changes, "contact": contact}
    return {**changes, "level": "claimed", "contact": contact}


def _typed(event: Any, now: float) -> Changes:
    """What a form sent beside the email: a name, the consent checkbox."""
    changes: Changes = {}
    if event.name is not None:
        changes["claimed_name"] = event.name
    if event.marketing_consent is not None:
        changes["marketing_consent"] = event.marketing_consent
        changes["marketing_consent_at"] = now
    return changes


def _custom(
    profile: Profile, session: Session, event: Any, ctx: VisitContext, site: Site, now: float
) -> Changes:
    old = next((c for c in profile.custom if c.name == event.name), None)
    bumped = CustomCount(event.name, (old.total if old else 0) + 1, now)
    bound = site.bounds.custom_events
    return {"custom": _front(bumped, profile.custom, lambda c: c.name == event.name, bound)}


def _widget(
    profile: Profile, session: Session, event: Any, ctx: VisitContext, site: Site, now: float
) -> Changes:
    """Impressions, clicks, closes and conversions of a campaign's widget: what
    frequency caps, global caps and progressive steps are computed from."""
    bounds = site.bounds
    campaign = site.decisioning.by_id.get(event.campaign)
    old = profile.campaign(event.campaign) or CampaignState(event.campaign)
    changes: Changes = {}
    if event.action == "impression":
        state = _impression(
            old,
            event,
            profile.pageviews,
            session.started_at,
            now,
            profile.visits,
            bounds.campaign_recent,
        )
        if campaign is not None and campaign.is_popup and event.variant != "holdout":
            changes["popups"] = (now, *profile.popups[: bounds.popups - 1])
            changes["popup_page"] = profile.pageviews
    elif event.action == "click":
        state = old._replace(clicks=old.clicks + 1)
    elif event.action == "close":
        state = _advance(
            old._replace(closes=old.closes + 1, closed_at=now), campaign, "close", profile.visits
        )
    elif event.step <= old.converted_step:
        return changes  # converted at this step already (another tab): counted once
    else:
        converted = old._replace(conversions=old.conversions + 1, converted_step=event.step)
        state = _advance(converted, campaign, "conversion", profile.visits)
    changes["campaigns"] = _front(
        state, profile.campaigns, lambda c: c.id == event.campaign, bounds.campaigns
    )
    return changes


def _impression(
    old: CampaignState,
    event: Any,
    page: int,
    session_at: float,
    now: float,
    visits: int,
    recent_bound: int,
) -> CampaignState:
    step, step_visit = old.step, old.step_visit
    if old.impressions == 0:  # a step's visits count from when it was first shown
        step_visit = visits
    if event.step > old.step:  # the engine moved on by visits; the tracker showed that step
        step, step_visit = event.step, visits
    return old._replace(
        impressions=old.impressions + 1,
        first_at=now if old.impressions == 0 else old.first_at,
        last_at=now,
        session_at=session_at,
        session_impressions=(old.session_impressions if old.session_at == session_at else 0) + 1,
        page=page,
        page_impressions=(old.page_impressions if old.page == page else 0) + 1,
        recent=(now, *old.recent[: recent_bound - 1]),
        variant=event.variant,
        step=step,
        step_visit=step_visit,
    )


def _advance(
    state: CampaignState, campaign: Campaign | None, on: str, visits: int
) -> CampaignState:
    """Move a progressive campaign to its next step when this one ends ``on`` this."""
    if campaign is None or state.step >= len(campaign.steps):
        return state
    if campaign.steps[state.step].until != on:
        return state
    return state._replace(step=state.step + 1, step_visit=visits)


Handler = Callable[[Profile, Session, Any, VisitContext, Site, float], Changes]
_HANDLERS: dict[str, Handler] = {
    "page_view": _page_view,
    "product_view": _product_view,
    "cart": _cart,
    "purchase": _purchase,
    "identify": _identify,
    "custom": _custom,
    "widget": _widget,
}
