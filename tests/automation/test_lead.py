"""The lead hand-off: a typed email reaches a mailing tool only when the site
keeps emails and the visitor consented; consent changes follow it; every
event edge derives matches the published JSON Schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from edge.automation import schema
from edge.automation.config import automation_of
from edge.config.sites import Site
from edge.core import offers
from edge.core.automation import AutomationEvent, cart_payload, derive, timed
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.updates import apply, new_profile
from edge.decisioning.config import AUTOMATION_EVENTS
from edge.tracker import protocol as p
from tests.client import new_id

NOW = 1_790_000_000.0
DAY = 86400.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keeping(site: Site) -> Site:
    return dataclasses.replace(site, keep_email=True)


class Visitor:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.ctx = VisitContext(new_id(), new_id())
        self.profile: Profile | None = None
        self.seq = 0
        self.due: dict[str, AutomationEvent | None] = {}

    def send(self, raw: dict[str, Any], at: float) -> list[AutomationEvent]:
        self.seq += 1
        event = p.parse_event({"seq": self.seq, "id": f"ev{self.seq:08d}", **raw})
        if isinstance(event, p.Widget):  # the server offered it first (edge.core.offers)
            shown = self.profile or new_profile(self.ctx.visitor, at)
            self.profile = offers.record(shown, [(event.campaign, event.variant, 0)], at, 20)
        before = self.profile
        self.profile = apply(before, event, self.ctx, self.site, at)
        cfg = automation_of(self.site)
        for kind, due, payload in timed(before, self.profile, event, cfg, self.site.intelligence):
            # what the claimer would emit when the deadline falls due, as set last
            self.due[kind] = (
                None
                if due is None
                else AutomationEvent(kind, self.site.id, self.ctx.visitor, due, None, payload or {})
            )
        return derive(self.site.id, before, self.profile, event, cfg, self.site.intelligence, at)


def identify(email: str, **form: Any) -> dict[str, Any]:
    return {"type": "identify", "email": email, **form}


def test_identified_carries_email_name_and_consent_when_kept_and_consented(
    keeping: Site,
) -> None:
    v = Visitor(keeping)
    v.send({"type": "page_view", "url": "http://127.0.0.1:8000/demo"}, NOW)
    (event,) = v.send(identify("Ann@Example.com", name="Ann", marketing_consent=True), NOW + 5)
    assert event.type == "identified"
    assert event.payload == {
        "level": "claimed",
        "email": "ann@example.com",
        "name": "Ann",
        "consent": {"given": True, "at": NOW + 5},
    }


@pytest.mark.parametrize(
    ("keep", "form"),
    [
        (True, {"marketing_consent": False}),  # kept, but no consent
        (True, {}),  # kept, consent not asked
        (False, {"marketing_consent": True}),  # consent, but the site keeps hashes only
    ],
)
def test_no_email_leaves_without_a_kept_email_and_a_consent(
    site: Site, keep: bool, form: dict[str, Any]
) -> None:
    v = Visitor(dataclasses.replace(site, keep_email=keep))
    out = v.send(identify("ann@example.com", **form), NOW)
    assert [e.payload for e in out] == [{"level": "claimed"}]
    assert "ann@example.com" not in json.dumps([e.to_json() for e in out])


def test_a_later_consent_and_its_withdrawal_are_handed_on(keeping: Site) -> None:
    v = Visitor(keeping)
    assert [e.type for e in v.send(identify("ann@example.com"), NOW)] == ["identified"]
    (given,) = v.send(identify("ann@example.com", marketing_consent=True), NOW + DAY)
    assert given.type == "marketing_consent"
    assert given.payload == {
        "email": "ann@example.com",
        "consent": {"given": True, "at": NOW + DAY},
    }
    assert v.send(identify("ann@example.com", marketing_consent=True), NOW + 2 * DAY) == []
    (withdrawn,) = v.send(identify("ann@example.com", marketing_consent=False), NOW + 3 * DAY)
    assert withdrawn.payload == {
        "email": "ann@example.com",
        "consent": {"given": False, "at": NOW + 3 * DAY},
    }


def test_consent_of_a_visitor_without_a_kept_email_or_customer_id_is_not_sent(
    site: Site,
) -> None:
    v = Visitor(dataclasses.replace(site, keep_email=False))  # the demo keeps emails
    v.send(identify("ann@example.com"), NOW)
    assert v.send(identify("ann@example.com", marketing_consent=True), NOW + 1) == []


def test_the_schema_file_is_generated_from_the_models() -> None:
    on_disk = json.loads((ROOT / "docs" / "automation-event.schema.json").read_text())
    assert on_disk == schema.json_schema(), (
        "regenerate: python -m edge.automation.schema > docs/automation-event.schema.json"
    )
    assert set(on_disk["discriminator"]["mapping"]) == set(schema.EVENT_TYPES)
    assert set(schema.EVENT_TYPES) == set(AUTOMATION_EVENTS)


def _every_kind(site: Site) -> list[AutomationEvent]:
    v = Visitor(site)
    out: list[AutomationEvent] = []
    out += v.send({"type": "page_view", "url": "http://127.0.0.1:8000/demo/c/lighting"}, NOW)
    out += v.send({"type": "product_view", "sku": "LAMP-1"}, NOW + 0.5)
    browse = v.due["browse_abandoned"]
    assert browse is not None
    out.append(browse)
    out += v.send(identify("ann@example.com", name="Ann", marketing_consent=True), NOW + 1)
    out += v.send(identify("ann@example.com", marketing_consent=False), NOW + 2)
    for i in range(3):
        out += v.send({"type": "custom", "name": "newsletter_signup"}, NOW + 3 + i)
    cart = {
        "type": "cart",
        "items": [{"sku": "LAMP-1", "qty": 2, "price": 40.0, "name": "Lamp"}],
        "value": 80.0,
        "currency": "EUR",
    }
    out += v.send(cart, NOW + 10)
    assert v.profile is not None and v.profile.cart is not None
    abandoned = cart_payload(v.profile.cart)
    out.append(AutomationEvent("cart_abandoned", site.id, v.ctx.visitor, NOW + 20, None, abandoned))
    out += v.send(
        {
            "type": "purchase",
            "order_id": "A1",
            "items": [{"sku": "LAMP-1", "qty": 2, "price": 40.0}],
            "value": 80.0,
            "currency": "EUR",
        },
        NOW + 30,
    )
    out += v.send(
        {"type": "widget", "campaign": "welcome-coupon", "variant": "a", "action": "convert"},
        NOW + 40,
    )
    coupon = {"campaign": "welcome-coupon", "code": "WELCOME-ABC"}
    out.append(AutomationEvent("coupon_issued", site.id, v.ctx.visitor, NOW + 41, None, coupon))
    # back after 100 days: lapsed-customers (membership: true) entered ...
    out += v.send({"type": "page_view", "url": "http://127.0.0.1:8000/demo"}, NOW + 100 * DAY)
    # ... and left at the next visit (not a winback any more)
    out += v.send({"type": "page_view", "url": "http://127.0.0.1:8000/demo"}, NOW + 101 * DAY)
    out += [e for kind, e in v.due.items() if e is not None and kind != "browse_abandoned"]
    return out


def test_every_event_edge_derives_validates_against_the_schema(keeping: Site) -> None:
    events = _every_kind(keeping)
    assert {e.type for e in events} == set(schema.EVENT_TYPES)
    for event in events:
        schema.BODY.validate_json(json.dumps(event.to_json()))


def test_the_schema_refuses_what_is_not_an_event() -> None:
    good = {"type": "watched_page_visited", "site": "demo", "visitor": "v", "customer": None}
    with pytest.raises(ValueError, match="at"):
        schema.BODY.validate_python({**good, "payload": {"path": "/x"}})
    with pytest.raises(ValueError, match="extra"):
        schema.BODY.validate_python({**good, "at": 1.0, "payload": {"path": "/x", "email": "a"}})
