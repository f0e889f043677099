"""The demo's uses of issue 14's targeting (profiles/demo/campaigns.yaml) do
what their comments say: a country bar, a purchase-history banner and a live
A/B test of the win-back headline."""

from __future__ import annotations

import pytest

from edge.config.sites import Site, load_site
from edge.core.context import VisitContext
from tests.decisioning.test_engine import DAY, DEMO, TAB, Browser, visitor_ids

HOME = "http://127.0.0.1:8000/demo"


@pytest.fixture(scope="module")
def demo() -> Site:
    return load_site(DEMO)


def browser(demo: Site, visitor: str, *, country: str | None = None) -> Browser:
    tab = Browser(demo, visitor=visitor)
    tab.ctx = VisitContext(visitor=visitor, session=TAB, url=HOME, country=country)
    return tab


def bought(tab: Browser, sku: str, price: float) -> None:
    item = {"sku": sku, "qty": 1, "price": price}
    tab.send("purchase", order_id=f"D-{sku}", items=[item], value=price, currency="EUR")


def test_the_free_shipping_bar_is_for_visitors_from_poland_only(demo: Site) -> None:
    polish = browser(demo, visitor_ids(1)[0], country="PL")
    polish.view(HOME)
    assert "free-shipping-pl" in polish.shown()
    german = browser(demo, visitor_ids(2)[1], country="DE")
    german.view(HOME)
    assert "free-shipping-pl" not in german.shown()
    unknown = browser(demo, visitor_ids(3)[2])  # the plain demo: no GeoIP, no header
    unknown.view(HOME)
    assert unknown.why_not("free-shipping-pl") == (
        "audience failed at geo.country ($in ['PL'], was missing)"
    )


@pytest.mark.parametrize(("days", "shown"), [(350, True), (200, False), (450, False)])
def test_a_lamp_bought_about_a_year_ago_brings_the_bulbs_banner(
    demo: Site, days: int, shown: bool
) -> None:
    tab = browser(demo, visitor_ids(4)[3])
    tab.view(HOME)
    bought(tab, "LMP-02", 79.0)  # the brass desk lamp, category lighting
    tab.later(days * DAY).view(HOME)
    assert ("lamp-bulbs" in tab.shown()) is shown
    mugs = browser(demo, visitor_ids(5)[4])  # a kitchen order as old: no bulbs
    mugs.view(HOME)
    bought(mugs, "KIT-01", 34.0)
    mugs.later(days * DAY).view(HOME)
    assert "lamp-bulbs" not in mugs.shown()


def test_the_winback_popup_is_a_live_ab_test_of_two_headlines(demo: Site) -> None:
    headlines: dict[str, str] = {}
    for visitor in visitor_ids(40):
        tab = browser(demo, visitor)
        tab.view(HOME)
        bought(tab, "TXT-02", 29.0)  # a small order: the plain win-back, not the 20 % one
        tab.later(100 * DAY).view(HOME)
        decision = tab.get("winback")  # live: decided for real visitors
        assert decision is not None and decision.widget is not None
        headlines[decision.variant] = decision.widget["headline"]
    assert set(headlines) == {"a", "b"}
    assert headlines["a"] != headlines["b"]
