"""The visitor profile: personal, behavioural and transactional data.

A profile is an immutable value (frozen dataclasses, tuples): updates build a
new one (``edge.updates.apply``), so nothing that holds a profile can see it
change under its feet, and "never mutate the input" is enforced by the types.

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
from typing import Any, Literal, TypeVar

import msgpack

IdentityLevel = Literal["anonymous", "claimed", "verified"]
SCHEMA_VERSION = 1
WINDOW_BITS = 64  # the replay window of one stream, see Stream


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


BOUNDS = Bounds()


@dataclass(frozen=True, slots=True)
class Stream:
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
            window = (self.window << (seq - self.hwm) | 1) & ((1 << WINDOW_BITS) - 1)
            return Stream(self.session, seq, window, now)
        return Stream(self.session, self.hwm, self.window | 1 << (self.hwm - seq), now)


@dataclass(frozen=True, slots=True)
class ViewedProduct:
    sku: str
    name: str | None = None
    category: str | None = None
    price: float | None = None
    at: float = 0.0
    views: int = 1


@dataclass(frozen=True, slots=True)
class CategoryView:
    name: str
    views: int = 0
    last_at: float = 0.0


@dataclass(frozen=True, slots=True)
class CustomCount:
    name: str
    count: int = 0
    last_at: float = 0.0


@dataclass(frozen=True, slots=True)
class CartLine:
    sku: str
    qty: int = 1
    price: float | None = None
    name: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Cart:
    lines: tuple[CartLine, ...] = ()
    value: float = 0.0
    currency: str = ""
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Session:
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


@dataclass(frozen=True, slots=True)
class Profile:
    visitor: str
    created_at: float
    # personal
    level: IdentityLevel = "anonymous"
    contact: str | None = None  # claimed: salted hash of the email (see edge.identity)
    customer_id: str | None = None  # verified only
    consent: bool | None = None
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
    # transactional
    cart: Cart = Cart()
    orders: int = 0
    revenue: float = 0.0
    last_order_at: float | None = None
    order_ids: tuple[str, ...] = ()
    # exactly-once bookkeeping
    streams: tuple[Stream, ...] = ()
    event_ids: tuple[str, ...] = ()

    @property
    def identified(self) -> bool:
        return self.level != "anonymous"

    def stream(self, session: str) -> Stream | None:
        for stream in self.streams:
            if stream.session == session:
                return stream
        return None

    def acked(self, session: str) -> int:
        stream = self.stream(session)
        return stream.hwm if stream is not None else 0


R = TypeVar("R")

# --- copying with changes ---------------------------------------------------

_new = object.__new__
_set = object.__setattr__  # frozen dataclasses refuse plain assignment


def evolve(record: R, changes: dict[str, Any]) -> R:
    """A copy of a frozen record with ``changes``: ``dataclasses.replace``
    without its per-call introspection (it is on the hot path, 2x faster)."""
    cls = type(record)
    new = _new(cls)
    for name in cls.__slots__:  # type: ignore[attr-defined]
        _set(new, name, changes[name] if name in changes else getattr(record, name))
    return new


# --- msgpack layout ---------------------------------------------------------


def _record_to_wire(record: Any) -> list[Any]:
    return [getattr(record, f) for f in record.__slots__]


def _records_from_wire(cls: type[R], items: Any) -> tuple[R, ...]:
    return tuple(cls(*item) for item in items or ())


def _session_from_wire(values: Any) -> Session | None:
    if values is None:
        return None
    fields_: list[Any] = [tuple(v) if isinstance(v, list) else v for v in values]
    return Session(*fields_)


_PLAIN = (
    "visitor",
    "created_at",
    "level",
    "contact",
    "customer_id",
    "consent",
    "first_seen",
    "last_seen",
    "visits",
    "pageviews",
    "events",
    "previous_visit_at",
    "orders",
    "revenue",
    "last_order_at",
    "order_ids",
    "event_ids",
)
_LISTS = ("products", "categories", "custom", "streams")


def to_wire(profile: Profile) -> dict[str, Any]:
    """The profile as plain msgpack-able data (tuples pack as arrays)."""
    out: dict[str, Any] = {"_v": SCHEMA_VERSION}
    for name in _PLAIN:
        out[name] = getattr(profile, name)
    for name in _LISTS:
        out[name] = [_record_to_wire(r) for r in getattr(profile, name)]
    session = profile.session
    out["session"] = None if session is None else _record_to_wire(session)
    cart = profile.cart
    out["cart"] = [
        [_record_to_wire(line) for line in cart.lines],
        cart.value,
        cart.currency,
        cart.updated_at,
    ]
    return out


def from_wire(data: dict[str, Any]) -> Profile:
    """Inverse of ``to_wire``; unknown keys (from a newer schema) are ignored."""
    lines, value, currency, updated_at = data.get("cart") or ([], 0.0, "", 0.0)
    return Profile(
        visitor=data["visitor"],
        created_at=data["created_at"],
        level=data.get("level", "anonymous"),
        contact=data.get("contact"),
        customer_id=data.get("customer_id"),
        consent=data.get("consent"),
        first_seen=data.get("first_seen", 0.0),
        last_seen=data.get("last_seen", 0.0),
        visits=data.get("visits", 0),
        pageviews=data.get("pageviews", 0),
        events=data.get("events", 0),
        session=_session_from_wire(data.get("session")),
        previous_visit_at=data.get("previous_visit_at"),
        products=_records_from_wire(ViewedProduct, data.get("products")),
        categories=_records_from_wire(CategoryView, data.get("categories")),
        custom=_records_from_wire(CustomCount, data.get("custom")),
        cart=Cart(_records_from_wire(CartLine, lines), value, currency, updated_at),
        orders=data.get("orders", 0),
        revenue=data.get("revenue", 0.0),
        last_order_at=data.get("last_order_at"),
        order_ids=tuple(data.get("order_ids") or ()),
        streams=_records_from_wire(Stream, data.get("streams")),
        event_ids=tuple(data.get("event_ids") or ()),
    )


def encode_profile(profile: Profile) -> bytes:
    packed: bytes = msgpack.packb(to_wire(profile), use_bin_type=True)
    return packed


def decode_profile(data: bytes) -> Profile:
    return from_wire(msgpack.unpackb(data, raw=False))
