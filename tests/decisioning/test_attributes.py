"""Attributes from the profile: purchase history (``orders.skus``,
``orders.categories``, ``orders.items``) for "bought X" and "bought a
product of a category around a year ago"."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config.sites import Site, load_site
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.updates import apply
from edge.decisioning.attributes import Later, Page, build
from edge.decisioning.conditions import compile_condition
from edge.tracker import protocol as p
from tests.helpers import PROFILES

NOW = 1_790_000_000.0
DAY = 86400.0


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(PROFILES / "demo")


def bought(site: Site, orders: list[tuple[float, list[str]]]) -> Profile:
    ctx = VisitContext("8c1f0a9b2d3e4f5061728394a5b6c7d8", "f00d0a9b2d3e4f5061728394a5b6c717")
    profile: Profile | None = None
    for n, (at, skus) in enumerate(orders, 1):
        items = [{"sku": sku, "qty": 1, "price": 10.0} for sku in skus]
        raw = {"type": "purchase", "order_id": f"O{n}", "items": items, "value": 10.0 * len(skus)}
        event = p.parse_event({"seq": n, "id": f"ev{n:08d}", "currency": "EUR", **raw})
        profile = apply(profile, event, ctx, site, at)
    assert profile is not None
    return profile


def attrs(site: Site, profile: Profile | None, now: float = NOW) -> dict[str, Any]:
    ctx = VisitContext("8c1f0a9b2d3e4f5061728394a5b6c7d8", "f00d0a9b2d3e4f5061728394a5b6c717")
    return build(profile, ctx, site, now, Page(url="http://127.0.0.1:8000/demo"), {})


def test_purchase_history_is_listed_newest_first_with_catalog_categories(site: Site) -> None:
    profile = bought(site, [(NOW - 365 * DAY, ["LMP-01", "TXT-02"]), (NOW - 10 * DAY, ["LMP-02"])])
    orders = attrs(site, profile)["orders"]
    assert orders["skus"] == ["LMP-02", "LMP-01", "TXT-02"]
    assert orders["categories"] == ["lighting", "textiles"]
    assert orders["items"][0] == {"sku": "LMP-02", "category": "lighting", "qty": 1, "days_ago": 10}
    assert orders["items"][2]["days_ago"] == 365


def test_a_stranger_has_empty_history(site: Site) -> None:
    orders = attrs(site, None)["orders"]
    assert (orders["skus"], orders["categories"], orders["items"]) == ([], [], [])


@pytest.mark.parametrize(
    ("condition", "matches"),
    [
        ({"orders.skus": {"$in": ["LMP-01"]}}, True),  # bought X: any member of the list
        ({"orders.skus": {"$in": ["LMP-03"]}}, False),
        ({"orders.skus": {"$elemMatch": {"$eq": "TXT-02"}}}, True),
        ({"orders.categories": {"$in": ["textiles"]}}, True),
        (  # a textile product bought 330 to 400 days ago: the yearly reminder
            {
                "orders.items": {
                    "$elemMatch": {"category": "textiles", "days_ago": {"$gte": 330, "$lte": 400}}
                }
            },
            True,
        ),
        (  # lighting, but the one from a year ago is not within the last 30 days
            {"orders.items": {"$elemMatch": {"sku": "LMP-01", "days_ago": {"$lte": 30}}}},
            False,
        ),
    ],
)
def test_conditions_target_purchase_history(
    site: Site, condition: dict[str, Any], matches: bool
) -> None:
    profile = bought(site, [(NOW - 365 * DAY, ["LMP-01", "TXT-02"]), (NOW - 10 * DAY, ["LMP-02"])])
    assert compile_condition(condition)(attrs(site, profile)) is matches


def test_a_product_no_longer_in_the_catalog_keeps_its_sku_without_a_category(site: Site) -> None:
    profile = bought(site, [(NOW - DAY, ["GONE-1"])])
    orders = attrs(site, profile)["orders"]
    assert orders["skus"] == ["GONE-1"] and orders["categories"] == []
    assert orders["items"][0]["category"] is None


def test_page_lang_is_the_pages_own_language_not_the_browsers(site: Site) -> None:
    def lang(page_lang: str | None) -> Any:
        ctx = VisitContext(
            "8c1f0a9b2d3e4f5061728394a5b6c7d8",
            "f00d0a9b2d3e4f5061728394a5b6c717",
            lang="en-US",
            page_lang=page_lang,
        )
        return build(None, ctx, site, NOW, Page(url="http://127.0.0.1:8000/demo"), {})["page"]

    assert lang("pl-PL")["lang"] == "pl"
    assert lang("DE")["lang"] == "de"
    assert lang(None)["lang"] is None and lang("")["lang"] is None
    matches = compile_condition({"page.lang": "pl"})
    assert matches({"page": lang("pl")}) and not matches({"page": lang("en")})


def later_attrs(site: Site, profile: Profile | None, now: float = NOW) -> dict[str, Any]:
    ctx = VisitContext("8c1f0a9b2d3e4f5061728394a5b6c7d8", "f00d0a9b2d3e4f5061728394a5b6c717")
    page = Page(url="http://127.0.0.1:8000/demo")
    return build(profile, ctx, site, now, page, {}, later=True)


def viewed_and_bought(site: Site) -> Profile:
    profile = bought(site, [(NOW - 400 * DAY, ["LMP-01", "TXT-02"]), (NOW - 120 * DAY, ["LMP-02"])])
    ctx = VisitContext("8c1f0a9b2d3e4f5061728394a5b6c7d8", "f00d0a9b2d3e4f5061728394a5b6c717")
    for n, sku in enumerate(["LMP-01", "LMP-02", "TXT-02", "LMP-01"], 10):
        event = p.parse_event({"type": "product_view", "seq": n, "id": f"ev{n:08d}", "sku": sku})
        profile = apply(profile, event, ctx, site, NOW - DAY + n)
    return profile


SCORED: list[dict[str, Any]] = [
    {"rfm.segment": "champions"},
    {"rfm.r": {"$gte": 3}},
    {"score.value": {"$gt": 0}},
    {"score.hot": True},
    {"interests.top": {"$in": ["lighting"]}},
    {"interests.top": {"$in": ["garden"]}},
    {"interests.scores.lighting": {"$gt": 0}},
    {"interests.scores.garden": {"$exists": True}},
    {"interests": {"$exists": True}},
    {"lifecycle.stage": {"$in": ["lapsed", "at_risk", "active", "new"]}},
    {"lifecycle.churn_risk": {"$gte": 0}},
    {"lifecycle.winback": True},
    {"$or": [{"lifecycle.winback": True}, {"rfm.f": {"$gte": 2}}]},
]


@pytest.mark.parametrize("condition", SCORED)
@pytest.mark.parametrize("who", ["stranger", "customer"])
def test_scored_namespaces_built_when_read_answer_as_built_at_once(
    site: Site, condition: dict[str, Any], who: str
) -> None:
    profile = viewed_and_bought(site) if who == "customer" else None
    test = compile_condition(condition)
    assert test(later_attrs(site, profile)) is test(attrs(site, profile))


def test_the_scored_conditions_above_tell_shoppers_apart(site: Site) -> None:
    # (so that the comparison above compares answers, not two Falses)
    answers = {
        compile_condition(c)(attrs(site, who))
        for c in SCORED
        for who in (None, viewed_and_bought(site))
    }
    assert answers == {True, False}


def test_a_scored_namespace_is_built_only_if_a_condition_reads_it(site: Site) -> None:
    test = compile_condition({"orders.count": {"$gte": 1}, "lifecycle.winback": True})
    stranger = later_attrs(site, None)
    assert isinstance(stranger["lifecycle"], Later) and not stranger["lifecycle"].built
    assert test(stranger) is False  # no order: the lifecycle was not needed
    assert not stranger["lifecycle"].built
    customer = later_attrs(site, viewed_and_bought(site))
    test(customer)
    assert customer["lifecycle"].built
    assert dict(customer["lifecycle"]) == attrs(site, viewed_and_bought(site))["lifecycle"]
    assert not customer["rfm"].built and not customer["interests"].built


def test_an_explanation_shows_the_scored_namespaces_built(site: Site) -> None:
    built = attrs(site, viewed_and_bought(site))
    assert all(type(built[name]) is dict for name in ("rfm", "score", "interests", "lifecycle"))
