"""A decision builds only the attribute namespaces its site's conditions name
(``Decisioning.roots``, edge.decisioning.attributes.build): the campaigns'
audiences, and the segments' conditions when an audience names segments.
Explaining builds every namespace, so the two must always agree."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from edge.config.sites import load_site
from edge.core.context import VisitContext
from edge.core.site import Site
from edge.decisioning.attributes import ALL
from tests.decisioning.test_engine import DAY, DEMO, SHOP, Browser, campaigns, make_site, one

SEGMENTS = """\
segments:
  - id: big-cart
    condition: {cart.value: {$gte: 100}}
  - id: from-search
    condition: {session.source: google}
"""


def test_the_roots_are_what_the_audiences_name(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        campaigns(
            one("a", "audience: {cart.items: {$gte: 1}, page.path: /cart}"),
            one("b", "audience: {$or: [{rfm.segment: champions}, {time.hour: 9}]}", placement="x"),
        ),
        segments=SEGMENTS,
    )
    assert site.decisioning.roots == {"cart", "page", "rfm", "time"}


def test_an_audience_naming_segments_brings_the_segments_roots(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        campaigns(one("big", "audience: {segments: {$in: [big-cart]}}")),
        segments=SEGMENTS,
    )
    assert site.decisioning.roots == {"segments", "cart", "session"}
    tab = Browser(site)
    tab.view("/")
    assert [d.campaign for d in tab.decide(explain=False).items] == []
    tab.send("cart", items=[{"sku": "X", "qty": 1}], value=120.0, currency="EUR")
    # Only the segment's condition names cart.*: a decision that did not
    # build the cart would never show this campaign.
    assert [d.campaign for d in tab.decide(explain=False).items] == ["big"]


def test_a_site_that_names_no_segment_does_not_compute_them(tmp_path: Path) -> None:
    site = make_site(
        tmp_path, campaigns(one("a", "audience: {cart.items: {$gte: 1}}")), segments=SEGMENTS
    )
    tab = Browser(site)
    tab.view("/")
    assert "segments" not in site.decisioning.roots
    assert tab.decide(explain=True).attributes is not None
    assert tab.decide(explain=True).attributes["segments"] == []  # type: ignore[index]
    assert tab.decide(explain=False).attributes is None


def test_decisions_on_the_demo_match_those_built_from_every_namespace() -> None:
    """Random shoppers on the demo shop: at every step, the decision from the
    named roots equals the one from every namespace (explain mode), and
    equals it again with the roots forced to every namespace."""
    demo = load_site(DEMO)
    assert demo.decisioning.roots < ALL  # the demo leaves some out: the test compares
    full = _with_every_namespace(demo)
    rng = random.Random(13)
    skus = [p.id for p in demo.catalog.products][:12] if demo.catalog else ["X"]
    shown: set[str] = set()
    for n in range(60):
        visitor = f"{n:032x}"
        tab = Browser(demo, visitor=visitor)
        tab.ctx = VisitContext(
            visitor, f"{n + 1:032x}", url=f"{SHOP}/", country=rng.choice(["PL", "DE", None])
        )
        for _ in range(rng.randint(1, 14)):
            _step(tab, rng, skus)
            fast = tab.decide(explain=False).items
            assert fast == tab.decide(explain=True).items
            other = Browser(full, visitor=visitor)
            other.profile, other.ctx, other.now, other.url = tab.profile, tab.ctx, tab.now, tab.url
            assert fast == other.decide(explain=False).items
            shown.update(d.campaign for d in fast)
    assert len(shown) >= 4, shown  # the walk reaches several campaigns


def _with_every_namespace(site: Site) -> Site:
    return replace(site, decisioning=replace(site.decisioning, roots=ALL))


def _step(tab: Browser, rng: random.Random, skus: list[str]) -> None:
    roll = rng.random()
    if roll < 0.45:
        referrer = rng.choice([None, "https://www.google.com/", "https://facebook.com/"])
        path = rng.choice(["/", "/demo", "/cart", f"/product/{rng.choice(skus)}"])
        tab.view(path, referrer=referrer)
    elif roll < 0.65:
        tab.send("product_view", sku=rng.choice(skus), url=tab.url)
    elif roll < 0.85:
        value = rng.choice([0.0, 9.0, 49.0, 120.0])
        items = [{"sku": rng.choice(skus), "qty": 1}] if value else []
        tab.send("cart", items=items, value=value, currency="EUR")
    elif roll < 0.93:
        item = {"sku": rng.choice(skus), "qty": 1, "price": 30.0}
        order = f"O-{tab.seq}"
        tab.send("purchase", order_id=order, items=[item], value=30.0, currency="EUR")
    else:
        tab.later(rng.choice([1, 30, 200]) * DAY)
