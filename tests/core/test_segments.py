"""Segments kept on the profile (``membership: true``, edge.core.segments): pure.

Membership is recomputed by ``apply`` from the new profile, the site and the
time; what changed is the automation events ``segment_entered`` and
``segment_left`` (``derive``), once per applied change."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from edge.automation.config import automation_of
from edge.config.sites import Site, SiteFile, compile_site, load_site
from edge.core.automation import AutomationEvent, derive
from edge.core.context import VisitContext
from edge.core.profile import Membership, Profile, decode_profile, encode_profile
from edge.core.properties import set_properties
from edge.core.segments import member_of, membership, refreshed
from edge.core.updates import apply
from edge.decisioning.attributes import KNOWN, PER_PAGE
from edge.decisioning.campaigns import Problems, compile_decisioning
from edge.errors import ConfigError
from edge.tracker import protocol as p

T0 = 1_790_000_000.0
SHOP = "https://shop.example"
VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
CTX = VisitContext(VISITOR, "f00d0a9b2d3e4f5061728394a5b6c717", url=f"{SHOP}/")
SEGMENTS: list[dict[str, Any]] = [
    {"id": "has-cart", "membership": True, "condition": {"cart.items": {"$gte": 1}}},
    {"id": "big-spender", "membership": True, "condition": {"orders.revenue": {"$gte": 100}}},
    {"id": "on-sale-page", "condition": {"page.path": "/sale"}},  # not kept: per page view
]


def make_site(segments: list[dict[str, Any]] = SEGMENTS) -> Site:
    raw = {"site": {"id": "shop", "allowed_origins": [SHOP]}, "segments": segments}
    parsed = SiteFile.model_validate(raw)
    site = compile_site(parsed, Path("profiles/shop"), "test")
    problems = Problems()
    decisioning = compile_decisioning(parsed, site.timezone, problems)
    assert problems.items == []
    return dataclasses.replace(site, decisioning=decisioning)


SITE = make_site()


class Visitor:
    """A profile fed event by event, with the automation events of each."""

    def __init__(self, site: Site = SITE) -> None:
        self.site = site
        self.profile: Profile | None = None
        self.seq = 0

    def send(self, raw: dict[str, Any], at: float) -> list[AutomationEvent]:
        self.seq += 1
        event = p.parse_event({"seq": self.seq, "id": f"ev{self.seq:08d}", **raw})
        return self.apply(event, at)

    def apply(self, event: p.Event, at: float) -> list[AutomationEvent]:
        before = self.profile
        self.profile = apply(before, event, CTX, self.site, at)
        kept = {s.id for s in self.site.decisioning.kept}
        cfg = automation_of(self.site)
        intelligence = self.site.intelligence
        out = derive(self.site.id, before, self.profile, event, cfg, intelligence, at, kept)
        return [e for e in out if e.type.startswith("segment_")]

    @property
    def segments(self) -> list[tuple[str, float]]:
        assert self.profile is not None
        return [(m.id, m.since) for m in self.profile.segments]


def cart(*skus: str) -> dict[str, Any]:
    items = [{"sku": sku, "qty": 1, "price": 10.0} for sku in skus]
    return {"type": "cart", "items": items, "value": 10.0 * len(skus), "currency": "EUR"}


def purchase(order: str, value: float) -> dict[str, Any]:
    items = [{"sku": "LAMP-1", "qty": 1, "price": value}]
    return {
        "type": "purchase",
        "order_id": order,
        "items": items,
        "value": value,
        "currency": "EUR",
    }


def kinds(events: list[AutomationEvent]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, dict(e.payload)) for e in events]


def test_only_segments_with_membership_are_compiled_as_kept() -> None:
    assert [s.id for s in SITE.decisioning.kept] == ["has-cart", "big-spender"]
    assert SITE.decisioning.kept_roots == {"cart", "orders"}
    assert [sid for sid, _ in SITE.decisioning.segments] == [
        "has-cart",
        "big-spender",
        "on-sale-page",
    ]


def test_entering_and_leaving_a_segment_are_events_with_the_time_entered() -> None:
    v = Visitor()
    assert v.send({"type": "page_view", "url": f"{SHOP}/sale"}, T0) == []
    assert v.segments == []  # on the sale page, but that is no membership
    assert kinds(v.send(cart("LAMP-1"), T0 + 10)) == [("segment_entered", {"segment": "has-cart"})]
    assert v.segments == [("has-cart", T0 + 10)]
    assert v.send(cart("LAMP-1", "RUG-2"), T0 + 20) == []  # still in it, since unchanged
    assert v.segments == [("has-cart", T0 + 10)]
    left = v.send(cart(), T0 + 30)
    assert kinds(left) == [("segment_left", {"segment": "has-cart", "entered_at": T0 + 10})]
    assert left[0].at == T0 + 30 and left[0].visitor == VISITOR
    assert v.segments == []


def test_one_event_can_enter_one_segment_and_leave_another() -> None:
    v = Visitor()
    v.send(cart("LAMP-1"), T0)
    out = v.send(purchase("A1", 150.0), T0 + 60)  # a purchase empties the cart
    assert kinds(out) == [
        ("segment_entered", {"segment": "big-spender"}),
        ("segment_left", {"segment": "has-cart", "entered_at": T0}),
    ]
    assert v.segments == [("big-spender", T0 + 60)]


def test_a_replayed_event_changes_nothing_and_emits_nothing() -> None:
    v = Visitor()
    event = p.parse_event({"seq": 1, "id": "ev00000001", **cart("LAMP-1")})
    assert len(v.apply(event, T0)) == 1
    stored = v.profile
    assert v.apply(event, T0 + 5) == []
    assert v.profile is stored


def test_an_event_that_changes_no_membership_keeps_the_same_tuple() -> None:
    v = Visitor()
    v.send(cart("LAMP-1"), T0)
    assert v.profile is not None
    before = v.profile.segments
    v.send({"type": "page_view", "url": f"{SHOP}/"}, T0 + 1)
    assert v.profile.segments is before


def test_membership_is_a_function_of_profile_site_and_time() -> None:
    v = Visitor()
    v.send(purchase("A1", 150.0), T0)
    assert v.profile is not None
    assert membership(v.profile, SITE, T0 + 999) == (Membership("big-spender", T0),)
    fresh = dataclasses.replace(v.profile, segments=())
    assert membership(fresh, SITE, T0 + 999) == (Membership("big-spender", T0 + 999),)
    assert member_of(v.profile, "big-spender") == Membership("big-spender", T0)
    assert member_of(v.profile, "has-cart") is None


def test_a_segment_no_longer_kept_is_dropped_without_an_event() -> None:
    v = Visitor()
    v.send(cart("LAMP-1"), T0)
    v.site = make_site([{"id": "has-cart", "condition": {"cart.items": {"$gte": 1}}}])
    assert v.send({"type": "page_view", "url": f"{SHOP}/"}, T0 + 1) == []
    assert v.segments == []


def test_a_site_without_kept_segments_stores_no_membership() -> None:
    v = Visitor(make_site([{"id": "has-cart", "condition": {"cart.items": {"$gte": 1}}}]))
    v.send(cart("LAMP-1"), T0)
    assert v.segments == []


def test_memberships_survive_the_wire_and_older_profiles_have_none() -> None:
    v = Visitor()
    v.send(cart("LAMP-1"), T0)
    assert v.profile is not None
    assert decode_profile(encode_profile(v.profile)) == v.profile
    older = Profile(visitor=VISITOR, created_at=T0)
    assert decode_profile(encode_profile(older)).segments == ()


@pytest.mark.parametrize("attribute", ["page.path", "device.type", "time.hour", "geo.country"])
def test_a_kept_segment_may_not_depend_on_the_page_view(tmp_path: Path, attribute: str) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "site.yaml").write_text(f"site:\n  id: shop\n  allowed_origins: ['{SHOP}']\n")
    (folder / "segments.yaml").write_text(
        "segments:\n"
        "  - id: ok\n"
        "    condition: {orders.count: {$gte: 1}}\n"
        "  - id: bad\n"
        "    membership: true\n"
        f"    condition: {{orders.count: {{$gte: 1}}, {attribute}: 'x'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_site(folder)
    (problem,) = caught.value.problems
    assert f"segments.yaml:6: segments[1].condition['{attribute}']: " in problem
    assert "membership: true" in problem and "one page view" in problem


def test_a_kept_segment_may_name_custom_properties(tmp_path: Path) -> None:
    """``props.*`` is the profile's (docs/configuration.md, "What counts"):
    a kept segment on it loads, and a property set by the admin API's change
    (set_properties, then membership recomputed) enters and leaves it."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "site.yaml").write_text(
        f"site:\n  id: shop\n  allowed_origins: ['{SHOP}']\nproperties:\n  points: int\n"
    )
    (folder / "segments.yaml").write_text(
        "segments:\n"
        "  - id: loyal\n"
        "    membership: true\n"
        "    condition: {props.points: {$gte: 500}}\n"
    )
    site = load_site(folder)
    assert [s.id for s in site.decisioning.kept] == ["loyal"]
    profile = Profile(visitor=VISITOR, created_at=T0)
    entered = refreshed(set_properties(profile, {"points": 620}), site, T0 + 5)
    assert entered.segments == (Membership("loyal", T0 + 5),)
    still = refreshed(set_properties(entered, {"points": 900}), site, T0 + 9)
    assert still.segments == entered.segments  # since: when it entered
    left = refreshed(set_properties(still, {"points": None}), site, T0 + 20)
    assert left.segments == ()


def test_the_documented_namespaces_of_kept_segments_are_the_allowed_ones() -> None:
    """docs/configuration.md lists what a kept segment may name: every
    namespace but the per-page ones, ``segments`` and ``event`` (refused)."""
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    section = doc.split("### Segments kept on the profile", 1)[1]
    counts = section.split("- **What counts**:", 1)[1].split("A kept segment", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", counts))
    allowed = set(KNOWN) - PER_PAGE - {"segments", "event"}
    assert documented == allowed
