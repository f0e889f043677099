"""The automation event as a webhook receives it (and as a stream entry's
``payload`` decodes): typed models, one per event type, from which
``docs/automation-event.schema.json`` is generated (``python -m
edge.automation.schema > docs/automation-event.schema.json``; a test keeps the
file equal to the models, and checks that the events edge derives validate).

The models describe the wire form only; edge builds events with
``edge.core.automation`` and never parses a webhook body itself.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Level = Literal["claimed", "verified"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Consent(_Strict):
    """The form's marketing-consent checkbox as last sent, and when (unix s)."""

    given: bool
    at: float | None


class Item(_Strict):
    sku: str
    qty: int
    price: float | None = None


class CartItem(Item):
    name: str | None = None


class IdentifiedPayload(_Strict):
    """``email``, ``name`` and ``consent`` only for the lead hand-off: the site
    keeps emails (``identity.keep_email``) and the visitor gave consent."""

    level: Level
    email: str | None = None
    name: str | None = None
    consent: Consent | None = None


class MarketingConsentPayload(_Strict):
    email: str | None  # null for a verified customer on a site that keeps no emails
    consent: Consent


class CartAbandonedPayload(_Strict):
    items: list[CartItem]
    value: float
    currency: str | None
    changed_at: float


class BrowseAbandonedPayload(_Strict):
    skus: list[str] = Field(description="viewed in the visit, newest first (at most 10)")
    visit_started_at: float


class CustomerAwayPayload(_Strict):
    away_days: float
    last_visit_at: float
    orders: int
    last_order_at: float | None


class ChurnRiskPayload(_Strict):
    risk: float = Field(description="the threshold reached (automation.churn_risk_threshold)")
    expected_interval_days: float
    last_order_at: float
    orders: int


class PurchasePayload(_Strict):
    order_id: str
    value: float | None
    currency: str | None
    items: list[Item]


class WatchedPagePayload(_Strict):
    path: str


class ScorePayload(_Strict):
    score: float


class WinbackPayload(_Strict):
    days_away: float


class CouponIssuedPayload(_Strict):
    campaign: str
    code: str | None


class WidgetConvertedPayload(_Strict):
    campaign: str
    variant: str | None
    step: int | None


class SegmentEnteredPayload(_Strict):
    segment: str = Field(description="the id of a segment with membership: true")


class SegmentLeftPayload(_Strict):
    segment: str
    entered_at: float = Field(description="when the visitor entered it (unix s)")


class _Envelope(_Strict):
    site: str
    visitor: str
    customer: str | None = Field(description="the shop's customer id, verified identities only")
    at: float = Field(description="unix seconds")


class IdentifiedEvent(_Envelope):
    type: Literal["identified"]
    payload: IdentifiedPayload


class MarketingConsentEvent(_Envelope):
    type: Literal["marketing_consent"]
    payload: MarketingConsentPayload


class CartAbandonedEvent(_Envelope):
    type: Literal["cart_abandoned"]
    payload: CartAbandonedPayload


class BrowseAbandonedEvent(_Envelope):
    type: Literal["browse_abandoned"]
    payload: BrowseAbandonedPayload


class CustomerAwayEvent(_Envelope):
    type: Literal["customer_away"]
    payload: CustomerAwayPayload


class ChurnRiskEvent(_Envelope):
    type: Literal["churn_risk"]
    payload: ChurnRiskPayload


class PurchaseEvent(_Envelope):
    type: Literal["purchase"]
    payload: PurchasePayload


class WatchedPageVisitedEvent(_Envelope):
    type: Literal["watched_page_visited"]
    payload: WatchedPagePayload


class ScoreThresholdEvent(_Envelope):
    type: Literal["score_threshold"]
    payload: ScorePayload


class WinbackReturnedEvent(_Envelope):
    type: Literal["winback_returned"]
    payload: WinbackPayload


class CouponIssuedEvent(_Envelope):
    type: Literal["coupon_issued"]
    payload: CouponIssuedPayload


class WidgetConvertedEvent(_Envelope):
    type: Literal["widget_converted"]
    payload: WidgetConvertedPayload


class SegmentEnteredEvent(_Envelope):
    type: Literal["segment_entered"]
    payload: SegmentEnteredPayload


class SegmentLeftEvent(_Envelope):
    type: Literal["segment_left"]
    payload: SegmentLeftPayload


AnyEvent = Annotated[
    IdentifiedEvent
    | MarketingConsentEvent
    | CartAbandonedEvent
    | BrowseAbandonedEvent
    | CustomerAwayEvent
    | ChurnRiskEvent
    | PurchaseEvent
    | WatchedPageVisitedEvent
    | ScoreThresholdEvent
    | WinbackReturnedEvent
    | CouponIssuedEvent
    | WidgetConvertedEvent
    | SegmentEnteredEvent
    | SegmentLeftEvent,
    Field(discriminator="type"),
]
BODY: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
# The event types the models describe, in the union's order (a test holds
# them equal to edge.decisioning.config's list of automation events).
EVENT_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(AnyEvent)[0])
)


def json_schema() -> dict[str, Any]:
    """One schema for every event type (``oneOf``, told apart by ``type``)."""
    schema = BODY.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "edge automation event (webhook body, stream entry)",
        **schema,
    }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
