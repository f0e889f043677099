"""The events a tracker sends, as validated models: what the core applies.

The parsing of frames and messages (``edge.tracker.protocol``, docs/protocol.md)
turns a message's items into these; ``edge.core.updates`` folds them into a
profile. Validation is strict about what could hurt us (sizes, number ranges,
id formats, NaN) and lenient about what could not (unknown extra fields are
ignored so that a newer tracker still talks to an older server).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.ids import EVENT_ID

MAX_SEQ = 2**53 - 1  # the largest integer a JavaScript number holds exactly

Url = Annotated[str, Field(max_length=2048)]
ShortText = Annotated[str, Field(max_length=300)]
Sku = Annotated[str, Field(min_length=1, max_length=64)]
Money = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
BIRTHDAY = r"^([0-9]{4}-)?[0-9]{2}-[0-9]{2}$"  # MM-DD or YYYY-MM-DD


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class _EventBase(_Model):
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ, strict=True)]
    id: Annotated[str, Field(pattern=EVENT_ID.pattern)]
    at: Annotated[int, Field(ge=0, le=MAX_SEQ)] | None = None  # client clock, ms; advisory
    url: Url | None = None  # the page the event happened on


class PageView(_EventBase):
    type: Literal["page_view"]
    title: ShortText | None = None
    referrer: Url | None = None
    page_type: Annotated[str, Field(max_length=32)] | None = None


class ProductView(_EventBase):
    type: Literal["product_view"]
    sku: Sku
    name: ShortText | None = None
    category: ShortText | None = None
    price: Money | None = None


class Item(_Model):
    sku: Sku
    qty: Annotated[int, Field(ge=1, le=10_000)] = 1
    price: Money | None = None
    name: ShortText | None = None
    category: ShortText | None = None


Items = Annotated[list[Item], Field(max_length=100)]


class Cart(_EventBase):
    type: Literal["cart"]
    items: Items
    value: Money
    currency: Currency


class Purchase(_EventBase):
    type: Literal["purchase"]
    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    items: Items
    value: Money
    currency: Currency


class Identify(_EventBase):
    """Either ``email`` (claimed) or ``customer_id`` + ``ts`` + ``sig`` (verified)."""

    type: Literal["identify"]
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = (
        None
    )
    customer_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    ts: Annotated[int, Field(ge=0, le=MAX_SEQ)] | None = None
    sig: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    # Personal data, accepted only with a verified token (see docs/profile.md):
    # trusted because the token is fresh and signed by the shop's backend.
    first_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    birthday: Annotated[str, Field(pattern=BIRTHDAY)] | None = None
    tier: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    # What the visitor typed into a coupon form beside the email (claimed, like
    # the email): a name, and the form's consent checkbox, recorded with its time.
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    marketing_consent: bool | None = None

    def model_post_init(self, context: Any, /) -> None:
        verified = (self.customer_id, self.ts, self.sig)
        if self.email is None and None in verified:
            raise ValueError("identify needs email, or customer_id with ts and sig")
        if self.email is not None and any(v is not None for v in verified):
            raise ValueError("identify takes email or a signed customer_id, not both")
        if self.email is not None and (self.first_name, self.birthday, self.tier) != (
            None,
            None,
            None,
        ):
            raise ValueError("first_name, birthday and tier need a verified identify, not email")
        if self.email is None and (self.name, self.marketing_consent) != (None, None):
            raise ValueError("name and marketing_consent come with an email")
        if self.birthday is not None:
            _check_birthday(self.birthday)


def _check_birthday(value: str) -> None:
    """``MM-DD`` (29 February allowed) or a real ``YYYY-MM-DD`` date."""
    parts = [int(p) for p in value.split("-")]
    year = parts[0] if len(parts) == 3 else 2000  # a leap year: 02-29 exists
    try:
        date(year, parts[-2], parts[-1])
    except ValueError:
        raise ValueError(f"birthday {value!r} is not a date") from None


Scalar = (
    Annotated[str, Field(max_length=256)]
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
    | None
)


class Custom(_EventBase):
    type: Literal["custom"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    props: Annotated[dict[Annotated[str, Field(max_length=64)], Scalar], Field(max_length=32)] = {}


class Widget(_EventBase):
    """What the visitor did with a widget the tracker showed (or, for a holdout
    visitor, would have shown: ``variant`` is then ``"holdout"``)."""

    type: Literal["widget"]
    campaign: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    variant: Annotated[str, Field(max_length=32)] = ""
    action: Literal["impression", "click", "close", "convert"]
    step: Annotated[int, Field(ge=0, le=100)] = 0


Event = PageView | ProductView | Cart | Purchase | Identify | Custom | Widget
