"""The visitor profile: personal, behavioural and transactional data.

A profile is an immutable value (a frozen dataclass of named tuples and
tuples): updates build a new one (``edge.core.updates.apply``), so nothing that
holds a profile can see it change under its feet, and "never mutate the input"
is enforced by the types. Records are ``NamedTuple``s because they are built
by the thousand on every load and msgpack packs them as arrays as they are:
decoding a full profile is 5x faster than with frozen dataclasses.

Every list is bounded (``Bounds``) so a profile stays a few KB however long
a visitor stays. The schema is documented in docs/profile.md; the msgpack
layout is here (``to_wire`` / ``from_wire``).

Wire layout rules (so stored profiles survive upgrades): the profile itself is
a map keyed by field name; small records (products, cart lines, streams ...)
are arrays in field order, and fields are only ever appended to them, with a
default, never reordered or removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

import msgpack

IdentityLevel = Literal["anonymous", "claimed", "verified"]
SCHEMA_VERSION = 1
WINDOW_BITS = 64  # the replay window of one stream, see Stream
_MASK = (1 << WINDOW_BITS) - 1


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much history a profile keeps (most recent first everywhere)."""

    products: int = 50
    categories: int = 30
    session_pages: int = 30
    order_ids: int = 20
    event_ids: int = 64
    streams: int = 16
    custom_events: int = 30
    campaigns: int = 50
    purchased: int = 50
    campaign_recent: int = 20
    popups: int = 20
    interests: int = 20
    offers: int = 20


BOUNDS = Bounds()


class Stream(NamedTuple):
    """Exactly-once state of one tab session (the ``session`` of the protocol).

    ``hwm`` is the highest sequence number applied; bit ``i`` of ``window`` says
    whether ``hwm - i`` was applied (the anti-replay window of RFC 4303).
    Sequence numbers older than the window count as already applied.
    """

    session: str
    hwm: int = 0
    window: int = 0
    last_at: float = 0.0

    def seen(self, seq: int) -> bool:
        if seq > self.hwm:
            return False
        age = self.hwm - seq
        return age >= WINDOW_BITS or bool(self.window >> age & 1)

    def mark(self, seq: int, now: float) -> Stream:
        if seq > self.hwm:
            gap = seq - self.hwm
            # Shift only within the window: a huge jump must not build a huge int.
            window = (self.window << gap | 1) & _MASK if gap < WINDOW_BITS else 1
            return Stream(self.session, seq, window, now)
        age = self.hwm - seq
        if age >= WINDOW_BITS:  # older than the window: already counted as seen
            return self
        return Stream(self.session, self.hwm, self.window | 1 << age, now)


class ViewedProduct(NamedTuple):
    sku: str
    name: str | None = None
    category: str | None = None
    price: float | None = None
    at: float = 0.0
    views: int = 1


class CategoryView(NamedTuple):
    name: str
    views: int = 0
    last_at: float = 0.0


class Interest(NamedTuple):
    """Affinity to one category: ``score`` as of ``at``; it halves every
    half-life after that (``edge.core.intelligence``)."""

    name: str
    score: float = 0.0
    at: float = 0.0


class CustomCount(NamedTuple):
    name: str
    total: int = 0
    last_at: float = 0.0


class CartLine(NamedTuple):
    sku: str
    qty: int = 1
    price: float | None = None
    name: str | None = None
    category: str | None = None


class Cart(NamedTuple):
    lines: tuple[CartLine, ...] = ()
    value: float = 0.0
    currency: str = ""
    updated_at: float = 0.0


EMPTY_CART = Cart()


class Purchased(NamedTuple):
    """A product bought: for replenishment and for not recommending it again."""

    sku: str
    qty: int = 1
    at: float = 0.0


class CampaignState(NamedTuple):
    """What one visitor did with one campaign: frequency caps and progressive
    steps read it; widget events (impression, click, close, convert) write it."""

    id: str
    impressions: int = 0
    clicks: int = 0
    closes: int = 0
    conversions: int = 0
    last_at: float = 0.0  # last impression
    session_at: float = 0.0  # started_at of the visit the session counter belongs to
    session_impressions: int = 0
    page: int = -1  # the visitor's page view count at the last impression
    page_impressions: int = 0  # impressions on that page
    recent: tuple[float, ...] = ()  # recent impression times, for "N per D days"
    step: int = 0  # progressive step reached
    step_visit: int = 0  # visits count when that step was reached
    variant: str = ""  # the experiment arm last shown ("holdout" when held out)
    closed_at: float = 0.0  # last close
    # The highest step this visitor converted (-1: none). A conversion counts
    # once per visitor and step: a second tab's (or a second process's) form
    # for the same step changes nothing, so it is neither counted nor advances.
    converted_step: int = -1
    # The first impression (first exposure; 0: none recorded, as in states
    # stored before this field): the campaign's statistics count a visitor's
    # outcomes only within its attribution window from here (edge.core.stats).
    first_at: float = 0.0


class Membership(NamedTuple):
    """The visitor is in segment ``id`` (one with ``membership: true``) since
    ``since``: recomputed whenever an event is applied (``edge.core.segments``)."""

    id: str
    since: float = 0.0


class Offer(NamedTuple):
    """A widget the server decided to show this visitor: the only campaigns,
    arms and steps whose widget events (impressions, clicks, conversions,
    coupon reveals) are accepted from this visitor (issue 12: clients could
    report, and convert, any campaign). One per campaign, most recent first."""

    campaign: str
    variant: str  # the arm, or "holdout"
    step: int = 0  # the progressive step decided; events of earlier steps are accepted too
    at: float = 0.0  # when it was (last) decided


class Session(NamedTuple):
    """The current visit: starts after ``session_timeout_s`` of inactivity or
    when the visitor arrives again from a different traffic source."""

    started_at: float
    last_at: float
    landing: str | None = None
    referrer: str | None = None
    source: str = "direct"
    medium: str = "none"
    campaign: str | None = None
    term: str | None = None  # search phrase, when the referrer or UTM tags carry one
    referrer_domain: str | None = None
    pageviews: int = 0
    pages: tuple[str, ...] = ()  # paths, most recent first, bounded


class Touch(NamedTuple):
    """Where a visit came from, kept as first touch (the visitor's first visit)
    and last touch (the latest visit from a non-direct source) for attribution."""

    source: str = "direct"
    medium: str = "none"
    campaign: str | None = None
    term: str | None = None
    referrer_domain: str | None = None
    landing: str | None = None
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Profile:
    visitor: str
    created_at: float
    # personal
    level: IdentityLevel = "anonymous"
    contact: str | None = None  # claimed: salted hash of the email (see edge.core.identity)
    customer_id: str | None = None  # verified only
    consent: bool | None = None
    first_name: str | None = None  # verified only, from the shop's signed identify
    birthday: str | None = None  # verified only: "MM-DD" or "YYYY-MM-DD"
    tier: str | None = None  # verified only: the shop's customer tier
    claimed_name: str | None = None  # typed into a form (claimed): never shown back as trusted
    marketing_consent: bool | None = None  # a form's consent checkbox, as last sent
    marketing_consent_at: float | None = None
    # behavioural
    first_seen: float = 0.0
    last_seen: float = 0.0
    visits: int = 0
    pageviews: int = 0
    events: int = 0
    session: Session | None = None
    previous_visit_at: float | None = None  # last activity of the visit before this one
    products: tuple[ViewedProduct, ...] = ()
    categories: tuple[CategoryView, ...] = ()
    custom: tuple[CustomCount, ...] = ()
    interests: tuple[Interest, ...] = ()  # category affinities, best first when written
    score: float = 0.0  # lead score as of score_at (it decays from there)
    score_at: float = 0.0
    score_crossed_at: float | None = None  # when the score first reached the threshold
    # transactional
    cart: Cart = EMPTY_CART
    orders: int = 0
    revenue: float = 0.0
    last_order_at: float | None = None
    first_order_at: float | None = None
    order_ids: tuple[str, ...] = ()
    purchased: tuple[Purchased, ...] = ()  # most recent first, one entry per sku
    # campaigns
    campaigns: tuple[CampaignState, ...] = ()
    popups: tuple[float, ...] = ()  # recent pop-up impression times, for global caps
    popup_page: int = -1  # page view count at the last pop-up impression
    # exactly-once bookkeeping
    streams: tuple[Stream, ...] = ()
    event_ids: tuple[str, ...] = ()
    # attribution
    first_touch: Touch | None = None
    last_touch: Touch | None = None
    # identity links (edge.core.merge): a device profile merged into a customer's
    # profile points at it; the customer's profile lists the devices merged in
    merged_into: str | None = None  # set: events of this visitor go to that profile
    merge_pending: bool = False  # sealed, and its data may not be in the target yet
    merged_from: tuple[str, ...] = ()  # device visitor ids merged in, most recent first
    # widgets decided for this visitor (edge.core.offers)
    offers: tuple[Offer, ...] = ()
    # segments kept on the profile (edge.core.segments), in configuration order
    segments: tuple[Membership, ...] = ()
    # custom properties (edge.core.properties): (name, value) sorted by name, set
    # only by a verified server-side call (the admin API)
    props: tuple[tuple[str, str | int | float | bool], ...] = ()

    @property
    def identified(self) -> bool:
        return self.level != "anonymous"

    @property
    def sealed(self) -> bool:
        """Merged into another profile: nothing may be applied here any more."""
        return self.merged_into is not None

    def stream(self, session: str) -> Stream | None:
        for stream in self.streams:
            if stream.session == session:
                return stream
        return None

    def campaign(self, campaign_id: str) -> CampaignState | None:
        for state in self.campaigns:
            if state.id == campaign_id:
                return state
        return None

    def acked(self, session: str) -> int:
        stream = self.stream(session)
        return stream.hwm if stream is not None else 0


R = TypeVar("R")

# --- copying with changes ---------------------------------------------------

_new = object.__new__
_set = object.__setattr__  # frozen dataclasses refuse plain assignment


def evolve(record: R, changes: dict[str, Any]) -> R:
    """A copy of ``record`` with ``changes``: ``dataclasses.replace`` without
    its per-call introspection (it is on the hot path, 2x faster), and
    ``_replace`` for named tuples."""
    if isinstance(record, tuple):
        replaced: R = record._replace(**changes)  # type: ignore[attr-defined]
        return replaced
    cls = type(record)
    new = _new(cls)
    for name in cls.__slots__:  # type: ignore[attr-defined]
        _set(new, name, changes[name] if name in changes else getattr(record, name))
    return new


# --- msgpack layout ---------------------------------------------------------


_PLAIN = (
    "visitor",
    "created_at",
    "level",
    "contact",
    "customer_id",
    "consent",
    "first_name",
    "birthday",
    "tier",
    "first_seen",
    "last_seen",
    "visits",
    "pageviews",
    "events",
    "session",
    "previous_visit_at",
    "products",
    "categories",
    "custom",
    "interests",
    "score",
    "score_at",
    "score_crossed_at",
    "cart",
    "orders",
    "revenue",
    "last_order_at",
    "first_order_at",
    "order_ids",
    "purchased",
    "campaigns",
    "popups",
    "popup_page",
    "streams",
    "event_ids",
    "first_touch",
    "last_touch",
    "merged_into",
    "merge_pending",
    "merged_from",
    "offers",
    "claimed_name",
    "marketing_consent",
    "marketing_consent_at",
    "segments",
    "props",
)


def to_wire(profile: Profile) -> dict[str, Any]:
    """The profile as msgpack-able data: named tuples pack as arrays as they are."""
    out: dict[str, Any] = {"_v": SCHEMA_VERSION}
    for name in _PLAIN:
        out[name] = getattr(profile, name)
    return out


def _records(cls: Any, items: Any) -> tuple[Any, ...]:
    return tuple(map(cls._make, items)) if items else ()


def _campaign(values: Any) -> CampaignState:
    state = CampaignState(*values)  # records stored before a field was added have fewer
    return state._replace(recent=tuple(state.recent))


def from_wire(data: dict[str, Any]) -> Profile:
    """Inverse of ``to_wire`` (arrays arrive as tuples); unknown keys are ignored."""
    session = data.get("session")
    cart = data.get("cart")
    return Profile(
        visitor=data["visitor"],
        created_at=data["created_at"],
        level=data.get("level", "anonymous"),
        contact=data.get("contact"),
        customer_id=data.get("customer_id"),
        consent=data.get("consent"),
        first_name=data.get("first_name"),
        birthday=data.get("birthday"),
        tier=data.get("tier"),
        first_seen=data.get("first_seen", 0.0),
        last_seen=data.get("last_seen", 0.0),
        visits=data.get("visits", 0),
        pageviews=data.get("pageviews", 0),
        events=data.get("events", 0),
        session=Session._make(session) if session else None,
        previous_visit_at=data.get("previous_visit_at"),
        products=_records(ViewedProduct, data.get("products")),
        categories=_records(CategoryView, data.get("categories")),
        custom=_records(CustomCount, data.get("custom")),
        interests=_records(Interest, data.get("interests")),
        score=data.get("score", 0.0),
        score_at=data.get("score_at", 0.0),
        score_crossed_at=data.get("score_crossed_at"),
        cart=Cart(_records(CartLine, cart[0]), *cart[1:]) if cart else Cart(),
        orders=data.get("orders", 0),
        revenue=data.get("revenue", 0.0),
        last_order_at=data.get("last_order_at"),
        first_order_at=data.get("first_order_at"),
        order_ids=data.get("order_ids") or (),
        purchased=_records(Purchased, data.get("purchased")),
        campaigns=tuple(_campaign(c) for c in data.get("campaigns") or ()),
        popups=data.get("popups") or (),
        popup_page=data.get("popup_page", -1),
        streams=_records(Stream, data.get("streams")),
        event_ids=data.get("event_ids") or (),
        first_touch=_touch(data.get("first_touch")),
        last_touch=_touch(data.get("last_touch")),
        merged_into=data.get("merged_into"),
        merge_pending=data.get("merge_pending", False),
        merged_from=data.get("merged_from") or (),
        offers=_records(Offer, data.get("offers")),
        claimed_name=data.get("claimed_name"),
        marketing_consent=data.get("marketing_consent"),
        marketing_consent_at=data.get("marketing_consent_at"),
        segments=_records(Membership, data.get("segments")),
        props=tuple(map(tuple, data.get("props") or ())),
    )


def _touch(values: Any) -> Touch | None:
    return Touch(*values) if values else None  # Touch(*...): shorter (older) arrays get defaults


def encode_profile(profile: Profile) -> bytes:
    packed: bytes = msgpack.packb(to_wire(profile), use_bin_type=True)
    return packed


def decode_profile(data: bytes) -> Profile:
    return from_wire(msgpack.unpackb(data, raw=False, use_list=False))
