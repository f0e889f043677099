"""Unit tests for edge/core/intelligence.py: RFM, lead score, interests, lifecycle and
churn, win-back and verified personal data, through ``apply`` and the attributes."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.config.sites import Site, SiteFile, compile_site, load_site
from edge.core.context import VisitContext
from edge.core.identity import sign_token
from edge.core.intelligence import (
    DAY_S,
    RFM_GRID,
    SEGMENTS,
    Intelligence,
    ScoreRule,
    add_interests,
    churn_risk,
    days_to_birthday,
    decay,
    interest_scores,
    lifecycle_stage,
    rfm_scores,
    rfm_segment,
    winback,
)
from edge.core.profile import Interest, Profile, Session, decode_profile, encode_profile
from edge.core.updates import apply, check_event
from edge.decisioning.attributes import Page, build, unknown_attribute
from edge.decisioning.engine import decide
from edge.errors import ConfigError, InvalidMessage
from edge.tracker.protocol import Event, parse_event

VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
TAB = "f00d0a9b2d3e4f5061728394a5b6c717"
SECRET = b"s3cret-for-tests"
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
SHOP = "https://shop.example"
DEMO = Path(__file__).resolve().parents[2] / "profiles" / "demo"
CTX = VisitContext(visitor=VISITOR, session=TAB, url=f"{SHOP}/", referrer=None)
RULES = [
    {"event": "page_view", "path": "^/p/", "points": 2},
    {"event": "custom", "name": "newsletter_signup", "points": 20},
    {"event": "cart", "points": 5},
]


def make_site(intelligence: dict[str, Any] | None = None, **site: Any) -> Site:
    data: dict[str, Any] = {"site": {"id": "shop", "allowed_origins": [SHOP], **site}}
    if intelligence is not None:
        data["intelligence"] = intelligence
    parsed = SiteFile.model_validate(data)
    return dataclasses.replace(compile_site(parsed, Path("profiles/shop"), "test"), secret=SECRET)


SITE = make_site({"score": {"rules": RULES, "half_life_days": 30, "threshold": 50}})
CFG = SITE.intelligence


def event(seq: int, kind: str, **fields: Any) -> Event:
    return parse_event({"seq": seq, "id": f"ev-{seq:06d}", "type": kind, **fields})


def run(events: list[tuple[float, Event]], site: Site = SITE) -> Profile:
    profile: Profile | None = None
    for at, ev in events:
        profile = apply(profile, ev, CTX, site, at)
    assert profile is not None
    return profile


def customer(orders: int, revenue: float, last_days_ago: float, now: float = T0) -> Profile:
    return Profile(
        visitor=VISITOR,
        created_at=0.0,
        orders=orders,
        revenue=revenue,
        last_order_at=now - last_days_ago * DAY_S,
    )


def attrs(profile: Profile | None, now: float, site: Site = SITE) -> dict[str, Any]:
    return build(profile, CTX, site, now, Page(), {})


# --- RFM ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orders", "revenue", "days", "expected"),
    [
        (1, 50.0, 3, (5, 1, 1, "new")),
        (1, 1200.0, 3, (5, 1, 5, "potential_loyalists")),  # fm = 3
        (9, 2000.0, 10, (5, 5, 5, "champions")),
        (5, 500.0, 60, (4, 4, 4, "loyal")),
        (1, 50.0, 45, (4, 1, 1, "promising")),
        (1, 120.0, 45, (4, 1, 2, "potential_loyalists")),  # fm = round-half-up(1.5) = 2
        (2, 150.0, 120, (3, 2, 2, "needs_attention")),
        (8, 1000.0, 120, (3, 5, 5, "loyal")),
        (3, 300.0, 200, (2, 3, 3, "at_risk")),
        (8, 1500.0, 400, (1, 5, 5, "cant_lose")),
        (2, 100.0, 200, (2, 2, 2, "hibernating")),
        (1, 20.0, 500, (1, 1, 1, "lost")),
    ],
)
def test_rfm_scores_and_segments(
    orders: int, revenue: float, days: float, expected: tuple[int, int, int, str]
) -> None:
    profile = customer(orders, revenue, days)
    scores = rfm_scores(profile, CFG, T0)
    assert scores is not None
    assert (*scores, rfm_segment(*scores)) == expected
    rfm = attrs(profile, T0)["rfm"]
    assert (rfm["r"], rfm["f"], rfm["m"], rfm["segment"]) == expected


def test_rfm_cutoffs_are_inclusive_at_the_edges() -> None:
    # recency: <= 30 days is 5; frequency and monetary: >= the cut-off moves up
    assert rfm_scores(customer(2, 100.0, 30), CFG, T0) == (5, 2, 2)
    assert rfm_scores(customer(1, 99.99, 30.001), CFG, T0) == (4, 1, 1)


def test_the_grid_uses_every_segment_and_only_those() -> None:
    assert {s for row in RFM_GRID for s in row} == set(SEGMENTS)
    assert all(len(row) == 5 for row in RFM_GRID) and len(RFM_GRID) == 5


def test_no_orders_means_no_rfm() -> None:
    profile = Profile(visitor=VISITOR, created_at=T0)
    assert rfm_scores(profile, CFG, T0) is None
    assert attrs(profile, T0)["rfm"] == {"r": None, "f": None, "m": None, "segment": "none"}


def test_rfm_thresholds_come_from_the_site() -> None:
    site = make_site({"rfm": {"recency_days": [7, 14, 21, 28], "frequency": [10, 20, 30, 40]}})
    assert rfm_scores(customer(12, 50.0, 10), site.intelligence, T0) == (4, 2, 1)
    assert site.intelligence.monetary == (100, 250, 500, 1000)  # the default


# --- configuration errors name file:line -------------------------------------------


def problems_of(tmp_path: Path, intelligence: str) -> list[str]:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "site.yaml").write_text("site:\n  id: shop\n" + intelligence, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_site(folder)
    return caught.value.problems


def test_cutoffs_must_ascend(tmp_path: Path) -> None:
    text = "intelligence:\n  rfm:\n    frequency: [1, 2, 2, 5]\n"
    [problem] = problems_of(tmp_path, text)
    assert problem == (
        f"{tmp_path / 'shop' / 'site.yaml'}:5: intelligence.rfm.frequency: "
        "needs 4 strictly ascending cut-offs, e.g. [30, 90, 180, 365]"
    )


def test_cutoffs_are_four(tmp_path: Path) -> None:
    text = "intelligence:\n  rfm:\n    recency_days: [30, 60]\n"
    [problem] = problems_of(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'shop' / 'site.yaml'}:5: intelligence.rfm.recency_days")
    assert "at least 4 items" in problem


def test_unknown_score_event_type_is_refused_with_its_line(tmp_path: Path) -> None:
    text = (
        "intelligence:\n  score:\n    rules:\n"
        "      - {event: cart, points: 5}\n"
        "      - {event: pageview, points: 1}\n"
    )
    [problem] = problems_of(tmp_path, text)
    assert problem.startswith(
        f"{tmp_path / 'shop' / 'site.yaml'}:7: intelligence.score.rules[1].event: Input should be"
    )
    assert "'page_view'" in problem


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{event: page_view, path: '([a-z', points: 1}", "invalid regular expression"),
        ("{event: page_view, path: '" + "a" * 201 + "', points: 1}", "at most 200 characters"),
        ("{event: cart, name: x, points: 1}", "'name' matches custom events only"),
        ("{event: cart, points: 1, bonus: 2}", "unknown key 'bonus'"),
    ],
)
def test_bad_score_rules(tmp_path: Path, rule: str, message: str) -> None:
    text = f"intelligence:\n  score:\n    rules:\n      - {rule}\n"
    [problem] = problems_of(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'shop' / 'site.yaml'}:6: intelligence.score.rules[0]")
    assert message in problem


# --- lead score ----------------------------------------------------------------------


def test_decay_halves_every_half_life() -> None:
    assert decay(40.0, T0, T0 + 30 * DAY_S, 30) == pytest.approx(20.0)
    assert decay(40.0, T0, T0 + 60 * DAY_S, 30) == pytest.approx(10.0)
    assert decay(40.0, T0, T0 + 15 * DAY_S, 30) == pytest.approx(40.0 / 2**0.5)
    assert decay(40.0, T0, T0 + 365 * DAY_S, None) == 40.0  # no half-life: no decay


def test_matching_events_add_points_and_the_score_decays() -> None:
    profile = run(
        [
            (T0, event(1, "page_view", url=f"{SHOP}/p/lamp")),  # 2
            (T0 + 10, event(2, "page_view", url=f"{SHOP}/c/lamps")),  # no rule
            (T0 + 20, event(3, "custom", name="newsletter_signup")),  # 20
            (T0 + 30, event(4, "custom", name="other")),  # no rule
        ]
    )
    assert (profile.score, profile.score_at) == (pytest.approx(22.0, abs=1e-3), T0 + 20)
    assert attrs(profile, T0 + 20)["score"] == {"value": 22.0, "hot": False}
    # 30 days later the points are worth half; a cart then adds 5 to the decayed value
    later = T0 + 20 + 30 * DAY_S
    assert attrs(profile, later)["score"]["value"] == pytest.approx(11.0)
    again = apply(profile, event(5, "cart", items=[], value=0, currency="EUR"), CTX, SITE, later)
    assert again.score == pytest.approx(16.0, abs=1e-3)
    assert again.score_at == later


def test_crossing_the_threshold_is_recorded_once() -> None:
    signups = [(T0 + i, event(i + 1, "custom", name="newsletter_signup")) for i in range(3)]
    profile = run(signups)
    assert profile.score == pytest.approx(60.0)
    assert profile.score_crossed_at == T0 + 2  # the third signup reached 50
    assert attrs(profile, T0 + 2)["score"]["hot"] is True
    assert attrs(profile, T0 + 2)["lifecycle"]["stage"] == "lead"
    # it cools down below the threshold, and climbs again: the first crossing stays
    later = T0 + 60 * DAY_S
    assert attrs(profile, later)["score"]["hot"] is False
    for seq in (10, 11, 12):
        profile = apply(profile, event(seq, "custom", name="newsletter_signup"), CTX, SITE, later)
    assert profile.score_crossed_at == T0 + 2


def test_a_replayed_event_adds_no_points() -> None:
    ev = event(1, "custom", name="newsletter_signup")
    once = run([(T0, ev)])
    assert apply(once, ev, CTX, SITE, T0 + 5) is once


def test_without_rules_the_score_never_moves() -> None:
    site = make_site()
    profile = run([(T0, event(1, "custom", name="newsletter_signup"))], site)
    assert (profile.score, profile.score_crossed_at) == (0.0, None)


def test_every_matching_rule_counts() -> None:
    rules = (ScoreRule("page_view", 1.0), ScoreRule("page_view", 2.0))
    site = dataclasses.replace(SITE, intelligence=Intelligence(rules=rules))
    profile = run([(T0, event(1, "page_view", url=f"{SHOP}/"))], site)
    assert profile.score == 3.0


# --- interests --------------------------------------------------------------------


def test_views_cart_and_purchases_weigh_1_3_and_5() -> None:
    lamp = {"sku": "LMP-01", "price": 49.0, "category": "lamps"}
    profile = run(
        [
            (T0, event(1, "product_view", sku="VAS-02", category="vases")),  # vases 1
            (T0, event(2, "product_view", sku="LMP-01", category="lamps")),  # lamps 1
            (T0, event(3, "product_view", sku="MUG-07", category="mugs")),  # mugs 1
            (T0, event(4, "product_view", sku="MUG-07", category="mugs")),  # mugs 2
            (T0, event(5, "cart", items=[lamp], value=49.0, currency="EUR")),  # lamps 4
            # the same cart again (a quantity change elsewhere): the lamp is not new
            (T0, event(6, "cart", items=[lamp], value=49.0, currency="EUR")),
            # a purchase line without a category takes the one seen on the product page
            (
                T0,
                event(
                    7,
                    "purchase",
                    order_id="A-1",
                    items=[{"sku": "VAS-02"}],
                    value=20.0,
                    currency="EUR",
                ),
            ),  # vases 6
        ]
    )
    assert interest_scores(profile, CFG, T0) == {"vases": 6.0, "lamps": 4.0, "mugs": 2.0}
    interests = attrs(profile, T0)["interests"]
    assert interests["top"] == ["vases", "lamps", "mugs"]
    assert interests["scores"] == {"vases": 6.0, "lamps": 4.0, "mugs": 2.0}


def test_a_repeated_order_id_earns_no_interest() -> None:
    buy = {"order_id": "A-1", "items": [{"sku": "X", "category": "tea"}], "value": 1.0}
    profile = run(
        [
            (T0, event(1, "purchase", currency="EUR", **buy)),
            (T0, event(2, "purchase", currency="EUR", **buy)),
        ]
    )
    assert interest_scores(profile, CFG, T0) == {"tea": 5.0}


def test_interests_decay_with_a_30_day_half_life() -> None:
    profile = run([(T0, event(1, "product_view", sku="A", category="tea"))])
    for i in range(4):  # 4 more tea views: 5 points at T0
        profile = apply(
            profile, event(i + 2, "product_view", sku="A", category="tea"), CTX, SITE, T0
        )
    later = T0 + 30 * DAY_S
    profile = apply(profile, event(9, "product_view", sku="B", category="coffee"), CTX, SITE, later)
    assert interest_scores(profile, CFG, later) == {"tea": 2.5, "coffee": 1.0}
    assert interest_scores(profile, CFG, later + 60 * DAY_S) == {"tea": 0.62, "coffee": 0.25}


def test_interests_are_bounded_and_keep_the_strongest() -> None:
    points = {f"c{i:02d}": float(i + 1) for i in range(25)}
    kept = add_interests((), points, T0, 30, 20)
    assert len(kept) == 20
    assert kept[0] == Interest("c24", 25.0, T0)
    assert {i.name for i in kept} == {f"c{i:02d}" for i in range(5, 25)}
    # a huge burst is capped
    capped = add_interests(kept, {"c24": 1e9}, T0, 30, 20)
    assert capped[0].score == 1000.0
    assert kept[0] == Interest("c24", 25.0, T0)  # the input is untouched


def test_only_three_top_interests() -> None:
    views = [
        (T0, event(i + 1, "product_view", sku=f"S{i}", category=c))
        for i, c in enumerate(["a", "b", "b", "c", "c", "c", "d", "d", "d", "d"])
    ]
    assert attrs(run(views), T0)["interests"]["top"] == ["d", "c", "b"]


# --- lifecycle and churn ---------------------------------------------------------------


def water_filter_buyer() -> Profile:
    """An order every 30 days: days 0, 30, 60, 90 (from T0)."""
    return run(
        [
            (
                T0 + day * DAY_S,
                event(
                    day + 1, "purchase", order_id=f"W-{day}", items=[], value=15.0, currency="EUR"
                ),
            )
            for day in (0, 30, 60, 90)
        ]
    )


def test_a_water_filter_buyer_is_at_risk_after_60_quiet_days() -> None:
    profile = water_filter_buyer()
    assert (profile.first_order_at, profile.last_order_at) == (T0, T0 + 90 * DAY_S)
    last = T0 + 90 * DAY_S
    assert churn_risk(profile, CFG, last + 20 * DAY_S) == 0.0
    assert lifecycle_stage(profile, CFG, last + 20 * DAY_S) == "repeat_customer"
    assert churn_risk(profile, CFG, last + 45 * DAY_S) == 0.25
    assert lifecycle_stage(profile, CFG, last + 45 * DAY_S) == "repeat_customer"
    at_60 = attrs(profile, last + 60 * DAY_S)["lifecycle"]
    assert (at_60["stage"], at_60["churn_risk"]) == ("at_risk", 0.5)
    at_90 = attrs(profile, last + 90 * DAY_S)["lifecycle"]
    assert (at_90["stage"], at_90["churn_risk"]) == ("lapsed", 1.0)


def test_a_one_time_appliance_buyer_is_not_flagged() -> None:
    buy = event(1, "purchase", order_id="F-1", items=[], value=1899.0, currency="EUR")
    profile = run([(T0, buy)])
    assert profile.first_order_at == T0
    for quiet_days in (60, 180, 365):
        life = attrs(profile, T0 + quiet_days * DAY_S)["lifecycle"]
        assert (life["stage"], life["churn_risk"]) == ("customer", 0.0)
    # one order: single_order_days (365) stands in for the rhythm
    assert lifecycle_stage(profile, CFG, T0 + 730 * DAY_S) == "at_risk"
    assert lifecycle_stage(profile, CFG, T0 + 1095 * DAY_S) == "lapsed"


def test_orders_within_a_day_do_not_make_a_one_day_rhythm() -> None:
    profile = dataclasses.replace(customer(2, 50.0, 10), first_order_at=T0 - 10 * DAY_S - 60)
    # a one-minute "rhythm" would make 10 quiet days a certain churn (1.0); the
    # interval has a floor of 7 days instead
    assert churn_risk(profile, CFG, T0) == round((10 / 7 - 1) / 2, 3)


def test_stages_of_visitors_without_orders() -> None:
    new = Profile(visitor=VISITOR, created_at=T0, visits=1, pageviews=1)
    assert lifecycle_stage(new, CFG, T0) == "new_visitor"
    assert attrs(new, T0)["lifecycle"] == {
        "stage": "new_visitor",
        "churn_risk": None,
        "winback": False,
    }
    assert lifecycle_stage(dataclasses.replace(new, visits=2), CFG, T0) == "engaged"
    assert lifecycle_stage(dataclasses.replace(new, pageviews=5), CFG, T0) == "engaged"
    assert lifecycle_stage(dataclasses.replace(new, level="claimed"), CFG, T0) == "lead"


# --- win-back -----------------------------------------------------------------------


def test_a_visitor_back_after_90_days_is_marked_for_win_back() -> None:
    first = run([(T0, event(1, "page_view", url=f"{SHOP}/"))])
    back = apply(first, event(2, "page_view", url=f"{SHOP}/"), CTX, SITE, T0 + 91 * DAY_S)
    assert back.previous_visit_at == T0
    assert winback(back, CFG)
    # still marked later in that visit
    later = apply(back, event(3, "page_view", url=f"{SHOP}/x"), CTX, SITE, T0 + 91 * DAY_S + 60)
    assert attrs(later, T0 + 91 * DAY_S + 60)["lifecycle"]["winback"] is True
    # back after 10 days: no
    soon = apply(first, event(2, "page_view", url=f"{SHOP}/"), CTX, SITE, T0 + 10 * DAY_S)
    assert attrs(soon, T0 + 10 * DAY_S)["lifecycle"]["winback"] is False
    # the number of days is the site's
    site = make_site({"winback_days": 5})
    assert winback(soon, site.intelligence)


def test_the_demo_win_back_offers_follow_the_rfm_monetary_score() -> None:
    demo = load_site(DEMO)

    def shown(orders: int, revenue: float, away_days: float = 200) -> list[str]:
        last = T0 - away_days * DAY_S
        profile = Profile(
            visitor=VISITOR,
            created_at=last,
            level="verified",
            visits=5,
            session=Session(started_at=T0, last_at=T0),
            previous_visit_at=last,
            orders=orders,
            revenue=revenue,
            last_order_at=last,
            first_order_at=last - 100 * DAY_S,
        )
        return [d.campaign for d in decide(profile, CTX, demo, T0).items]

    assert "winback-high-value" in shown(6, 900.0)  # m = 4
    assert "winback-high-value" in shown(3, 420.5)  # m = 3: 300 EUR or more
    small = shown(1, 250.0)  # m = 2
    assert "winback" in small and "winback-high-value" not in small
    assert not {"winback", "winback-high-value"} & set(shown(6, 900.0, away_days=30))


# --- personal data with a verified identity ---------------------------------------------


def verified(seq: int, **personal: Any) -> Event:
    ts = int(T0)
    sig = sign_token(SECRET, "shop", "cust-42", ts)
    return event(seq, "identify", customer_id="cust-42", ts=ts, sig=sig, **personal)


@pytest.mark.parametrize(
    "personal",
    [{"first_name": "Ann"}, {"birthday": "03-14"}, {"tier": "gold"}],
)
def test_personal_fields_are_refused_on_a_claimed_identify(personal: dict[str, str]) -> None:
    with pytest.raises(InvalidMessage, match="need a verified identify"):
        event(1, "identify", email="ann@example.com", **personal)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "A" * 101),
        ("first_name", ""),
        ("tier", "t" * 33),
        ("birthday", "14-03"),
        ("birthday", "02-30"),
        ("birthday", "1990-02-29"),
        ("birthday", "03/14"),
    ],
)
def test_bad_personal_values_are_refused(field: str, value: str) -> None:
    with pytest.raises(InvalidMessage):
        verified(1, **{field: value})


def test_verified_personal_data_is_stored_and_targetable() -> None:
    ev = verified(2, first_name="Ann", birthday="1988-11-20", tier="gold")
    check_event(ev, SITE, T0)
    profile = run([(T0, event(1, "page_view", url=f"{SHOP}/")), (T0, ev)])
    assert (profile.first_name, profile.birthday, profile.tier) == ("Ann", "1988-11-20", "gold")
    assert decode_profile(encode_profile(profile)) == profile
    visitor = attrs(profile, T0)["visitor"]  # 2023-11-14 in UTC
    assert (visitor["first_name"], visitor["tier"], visitor["days_to_birthday"]) == (
        "Ann",
        "gold",
        6,
    )
    # a later verified identify without the fields keeps them; another customer's clears them
    kept = apply(profile, verified(3), CTX, SITE, T0 + 1)
    assert (kept.first_name, kept.tier) == ("Ann", "gold")
    ts = int(T0)
    other = event(
        4, "identify", customer_id="cust-7", ts=ts, sig=sign_token(SECRET, "shop", "cust-7", ts)
    )
    cleared = apply(kept, other, CTX, SITE, T0 + 2)
    assert (cleared.first_name, cleared.birthday, cleared.tier) == (None, None, None)
    for name in ("first_name", "tier", "days_to_birthday"):
        assert unknown_attribute(f"visitor.{name}") is None


@pytest.mark.parametrize(
    ("birthday", "today", "days"),
    [
        ("11-20", date(2025, 11, 20), 0),
        ("1990-11-20", date(2025, 11, 20), 0),
        ("11-21", date(2025, 11, 20), 1),
        ("11-19", date(2025, 11, 20), 364),
        ("01-01", date(2025, 12, 31), 1),
        ("02-29", date(2024, 2, 29), 0),  # a leap year
        ("02-29", date(2025, 2, 28), 0),  # celebrated on 28 February otherwise
        ("02-29", date(2025, 3, 1), 364),  # next: 2026-02-28
        ("02-29", date(2027, 3, 1), 365),  # next: 2028-02-29
        ("03-01", date(2024, 2, 28), 2),
        (None, date(2025, 1, 1), None),
        ("13-01", date(2025, 1, 1), None),  # an invalid stored value is no birthday
    ],
)
def test_days_to_birthday(birthday: str | None, today: date, days: int | None) -> None:
    assert days_to_birthday(birthday, today) == days


def test_days_to_birthday_uses_the_sites_time_zone() -> None:
    profile = Profile(visitor=VISITOR, created_at=T0, birthday="01-01")
    now = 1_735_684_200.0  # 2024-12-31 22:30 UTC = 2025-01-01 07:30 in Tokyo
    assert attrs(profile, now)["visitor"]["days_to_birthday"] == 1
    tokyo = make_site(timezone="Asia/Tokyo")
    assert tokyo.timezone == ZoneInfo("Asia/Tokyo")
    assert attrs(profile, now, tokyo)["visitor"]["days_to_birthday"] == 0


# --- the namespace and the wire ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "rfm.r",
        "rfm.f",
        "rfm.m",
        "rfm.segment",
        "score.value",
        "score.hot",
        "interests.top",
        "interests.scores.lamps",
        "lifecycle.stage",
        "lifecycle.churn_risk",
        "lifecycle.winback",
    ],
)
def test_the_attributes_are_known(path: str) -> None:
    assert unknown_attribute(path) is None


def test_a_typo_in_the_new_namespaces_is_caught() -> None:
    assert (
        unknown_attribute("rfm.segmnt")
        == "unknown attribute 'rfm.segmnt' (did you mean rfm.segment?)"
    )


def test_new_fields_survive_the_wire() -> None:
    profile = Profile(
        visitor=VISITOR,
        created_at=T0,
        first_name="Ann",
        birthday="02-29",
        tier="gold",
        interests=(Interest("lamps", 4.5, T0),),
        score=12.5,
        score_at=T0,
        score_crossed_at=T0 - 5,
        first_order_at=T0 - 100,
    )
    decoded = decode_profile(encode_profile(profile))
    assert decoded == profile
    assert isinstance(decoded.interests[0], Interest)
