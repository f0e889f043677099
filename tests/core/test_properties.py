"""Custom profile properties and custom event props (edge.core.properties): the
declarations in a site's YAML, the checks, the pure change, and conditions
reading ``props.*`` and ``event.*`` (pure: sites loaded from folders,
profiles built by ``apply``, decisions by ``decide``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.config.sites import Site, load_site
from edge.core.context import VisitContext
from edge.core.merge import merge
from edge.core.profile import Profile, decode_profile, encode_profile
from edge.core.properties import (
    PropertyError,
    checked_event_props,
    checked_values,
    event_attributes,
    set_properties,
)
from edge.core.updates import check_event
from edge.decisioning.attributes import Page
from edge.decisioning.engine import decide
from edge.errors import ConfigError, InvalidMessage
from edge.tracker.ingest import decide_all, event_of, triggers
from edge.tracker.protocol import parse_event

SHOP = "https://shop.example"
VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
TAB = "f00d0a9b2d3e4f5061728394a5b6c717"
NOW = 1_741_777_200.0

DECLARED = """\
properties:
  loyalty_points: {type: int, min: 0}
  plan: {enum: [free, pro]}
  preferred_store: {type: str, max_length: 8}
  vip: bool
  balance: float
events:
  wishlist_add:
    props: {sku: str, price: {type: float, min: 0}, gift: bool}
"""

CAMPAIGNS = """\
campaigns:
  - id: pro-upsell
    placement: hero
    audience: {props.plan: pro, props.loyalty_points: {$gte: 100}}
    widget: {kind: banner, headline: Thanks for being pro}
  - id: pricey-wish
    placement: bar
    trigger: {event: wishlist_add}
    audience: {event.price: {$gt: 100}}
    widget: {kind: bar, headline: Free shipping on that one}
"""


def make_site(tmp_path: Path, extra: str = DECLARED, campaigns: str = CAMPAIGNS) -> Site:
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    (folder / "site.yaml").write_text(
        f"site: {{id: shop, allowed_origins: ['{SHOP}']}}\n" + textwrap.dedent(extra)
    )
    (folder / "campaigns.yaml").write_text(textwrap.dedent(campaigns))
    return load_site(folder)


def problems_of(tmp_path: Path, extra: str, campaigns: str = "campaigns: []\n") -> str:
    with pytest.raises(ConfigError) as caught:
        make_site(tmp_path, extra, campaigns)
    return "\n".join(caught.value.problems)


CTX = VisitContext(visitor=VISITOR, session=TAB, url=f"{SHOP}/")


def profile_with(**props: object) -> Profile:
    base = Profile(visitor=VISITOR, created_at=NOW, first_seen=NOW, last_seen=NOW)
    return set_properties(base, props)  # type: ignore[arg-type]


def custom(seq: int, name: str, **props: object) -> object:
    return parse_event(
        {"type": "custom", "seq": seq, "id": f"ev{seq:06d}", "name": name, "props": props}
    )


# --- declarations ---------------------------------------------------------------


def test_declarations_compile_with_their_bounds(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    props = site.declared.properties
    assert props["loyalty_points"].kind == "int" and props["loyalty_points"].min == 0
    assert props["plan"].kind == "str" and props["plan"].enum == ("free", "pro")
    assert props["vip"].kind == "bool" and props["balance"].kind == "float"
    assert set(site.declared.events["wishlist_add"]) == {"sku", "price", "gift"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "properties: {points: {type: integer}}\n",
            "properties.points.type: Input should be 'str'",
        ),
        ("properties: {points: {min: 0}}\n", "a type (str, int, float, bool) or an enum"),
        ("properties: {plan: {type: str, min: 1}}\n", "min and max are for int and float"),
        ("properties: {n: {type: int, max_length: 3}}\n", "max_length is for str"),
        ("properties: {n: {type: int, min: 5, max: 1}}\n", "max must not be below min"),
        ("properties: {plan: {type: int, enum: [a]}}\n", "every enum value must be of type int"),
        ("properties: {Plan: str}\n", "properties.Plan"),
        ("events: {wish: {prop: {sku: str}}}\n", "unknown key 'prop'"),
    ],
)
def test_a_bad_declaration_names_file_line_and_field(
    tmp_path: Path, extra: str, expected: str
) -> None:
    text = problems_of(tmp_path, extra)
    assert "site.yaml:2:" in text
    assert expected in text


def test_conditions_may_only_name_declared_properties_and_event_props(tmp_path: Path) -> None:
    text = problems_of(
        tmp_path,
        DECLARED,
        """\
        segments:
          - {id: s, condition: {event.price: {$gt: 1}}}
        campaigns:
          - id: a
            placement: hero
            audience: {props.plna: pro}
            widget: {kind: banner, headline: x}
          - id: b
            placement: hero
            trigger: {event: wishlist_add}
            audience: {event.colour: red}
            widget: {kind: banner, headline: x}
          - id: c
            placement: hero
            trigger: {event: newsletter_signup}
            audience: {event.list: weekly}
            widget: {kind: banner, headline: x}
          - id: d
            placement: hero
            audience: {event.price: {$gt: 1}}
            widget: {kind: banner, headline: x}
        """,
    )
    assert "campaigns.yaml:2: segments[0].condition['event.price']: " in text
    assert "only set for a campaign with trigger: {event: <name>}" in text
    assert "campaigns[0].audience['props.plna']: unknown property 'props.plna'" in text
    assert "(declared: balance, loyalty_points, plan, preferred_store, vip)" in text
    assert (
        "unknown prop 'event.colour' of event 'wishlist_add' (declared: gift, price, sku)" in text
    )
    assert "the event 'newsletter_signup' is not declared under events:" in text
    assert "campaigns[3].audience['event.price']" in text


def test_a_kept_segment_may_use_properties(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        DECLARED,
        "segments:\n  - {id: pros, membership: true, condition: {props.plan: pro}}\n",
    )
    assert "props" in site.decisioning.kept_roots


# --- values ----------------------------------------------------------------------


def test_values_are_checked_against_the_declaration(tmp_path: Path) -> None:
    declared = make_site(tmp_path).declared.properties
    assert checked_values({"loyalty_points": 5, "plan": None, "balance": 3}, declared) == {
        "loyalty_points": 5,
        "plan": None,
        "balance": 3.0,
    }
    bad = [
        ({"loyalty_points": -1}, "property 'loyalty_points': must be at least 0"),
        ({"loyalty_points": 1.5}, "property 'loyalty_points': must be a whole number"),
        ({"loyalty_points": True}, "property 'loyalty_points': must be a whole number"),
        ({"plan": "gold"}, "property 'plan': must be one of 'free', 'pro'"),
        ({"preferred_store": "x" * 9}, "property 'preferred_store': must be at most 8 characters"),
        ({"vip": 1}, "property 'vip': must be true or false"),
        ({"balance": "3"}, "property 'balance': must be a number"),
        ({"nickname": "x"}, "unknown property 'nickname' (declared: balance, loyalty_points"),
        ({}, "the body is a JSON object"),
        ([1], "the body is a JSON object"),
    ]
    for values, message in bad:
        with pytest.raises(PropertyError) as caught:
            checked_values(values, declared)
        assert message in str(caught.value)


def test_set_properties_sets_deletes_and_never_mutates() -> None:
    start = profile_with(plan="free", loyalty_points=10)
    assert start.props == (("loyalty_points", 10), ("plan", "free"))
    after = set_properties(start, {"plan": "pro", "loyalty_points": None, "vip": True})
    assert after.props == (("plan", "pro"), ("vip", True))
    assert start.props == (("loyalty_points", 10), ("plan", "free"))
    assert set_properties(after, {"plan": "pro"}) is after  # nothing changed: the same object
    assert set_properties(after, {"nope": None}) is after
    assert decode_profile(encode_profile(after)).props == after.props


def test_a_merge_keeps_the_customers_properties_and_adds_the_devices(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    customer = set_properties(
        Profile(visitor="c" + "1" * 32, created_at=NOW, level="verified"), {"plan": "pro"}
    )
    device = set_properties(
        Profile(visitor=VISITOR, created_at=NOW, merged_into=customer.visitor, merge_pending=True),
        {"plan": "free", "vip": True},
    )
    merged = merge(customer, device, customer.visitor, site, NOW)
    assert merged is not None
    assert dict(merged.props) == {"plan": "pro", "vip": True}


# --- custom event props -------------------------------------------------------------


def test_declared_event_props_are_checked_and_others_pass(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    events = site.declared.events
    assert checked_event_props("wishlist_add", {"sku": "A", "price": 3}, events) is None
    assert checked_event_props("undeclared", {"anything": [1]}, events) is None
    assert checked_event_props("wishlist_add", {"colour": "red"}, events) == (
        "event 'wishlist_add': undeclared prop 'colour' (declared: gift, price, sku)"
    )
    assert checked_event_props("wishlist_add", {"price": "cheap"}, events) == (
        "event 'wishlist_add': prop 'price' must be a number"
    )
    with pytest.raises(InvalidMessage) as caught:
        check_event(custom(1, "wishlist_add", price=-3), site, NOW)  # type: ignore[arg-type]
    assert caught.value.code == "invalid"
    assert "prop 'price' must be at least 0" in caught.value.message
    check_event(custom(2, "newsletter_signup", list="weekly"), site, NOW)  # type: ignore[arg-type]


def test_event_attributes_hold_every_declared_prop(tmp_path: Path) -> None:
    specs = make_site(tmp_path).declared.events["wishlist_add"]
    assert event_attributes({"price": 120}, specs) == {"sku": None, "price": 120.0, "gift": None}


# --- conditions ---------------------------------------------------------------------


def shown(decisions: object) -> list[str]:
    return [d.campaign for d in decisions]  # type: ignore[attr-defined]


def test_a_condition_on_props_decides(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    page = Page(url=f"{SHOP}/")
    pro = profile_with(plan="pro", loyalty_points=150)
    assert shown(decide(pro, CTX, site, NOW, page=page).items) == ["pro-upsell"]
    for other in (
        profile_with(plan="free", loyalty_points=150),
        profile_with(plan="pro", loyalty_points=99),
        profile_with(),
        None,
    ):
        assert shown(decide(other, CTX, site, NOW, page=page).items) == []


def test_an_event_trigger_reads_the_events_props(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    page = Page(url=f"{SHOP}/")
    cheap = [custom(1, "wishlist_add", sku="MUG", price=12.5)]
    dear = [custom(2, "wishlist_add", sku="LMP", price=149)]
    for batch, expected in ((cheap, []), (dear, ["pricey-wish"])):
        wanted = triggers(batch)  # type: ignore[arg-type]
        assert wanted == ["event:wishlist_add"]
        chosen = decide_all(None, CTX, site, NOW, page, wanted, events=batch)  # type: ignore[arg-type]
        assert shown(chosen) == expected
    # the engine on its own: the event's attributes given, or not
    attrs = event_of("event:wishlist_add", site, dear)  # type: ignore[arg-type]
    assert attrs == {"sku": "LMP", "price": 149.0, "gift": None}
    decided = decide(None, CTX, site, NOW, trigger="event:wishlist_add", page=page, event=attrs)
    assert shown(decided.items) == ["pricey-wish"]
    assert shown(decide(None, CTX, site, NOW, trigger="event:wishlist_add", page=page).items) == []
    # the last event of that name in a batch is the one decided for
    both = [*dear, custom(3, "wishlist_add", price=5)]
    assert shown(decide_all(None, CTX, site, NOW, page, triggers(both), events=both)) == []  # type: ignore[arg-type]
