"""Recommendation strategies: each strategy, every exclusion, fallbacks, purity."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.catalog import Catalog, Product, load_catalog
from edge.core.profile import (
    Cart,
    CartLine,
    CategoryView,
    Profile,
    Purchased,
    Session,
    ViewedProduct,
)
from edge.errors import ConfigError
from edge.widgets.recommend import (
    HISTORY,
    SIGNALS_NEEDED,
    STRATEGIES,
    anchor_sku,
    history_is_empty,
    recommend,
    signal_queries,
)

T0 = 1_764_000_000.0


def product(pid: str, category: str, price: float = 10.0, **kw: Any) -> Product:
    name = kw.pop("name", pid)
    return Product(id=pid, name=name, url=f"/p/{pid}", category=category, price=price, **kw)


CATALOG = Catalog(
    products=[
        product("L1", "lamps", 100.0, name="Arc floor lamp"),
        product("L2", "lamps", 90.0, name="Brass desk lamp", old_price=100.0),
        product("L3", "lamps", 20.0, name="Paper pendant"),
        product("L4", "lamps", 95.0, name="Wall sconce", in_stock=False),
        product("T1", "textiles", 30.0, name="Wool throw", old_price=60.0),
        product("T2", "textiles", 105.0, name="Floor cushion"),
        product("K1", "kitchen", 8.0, name="Coffee beans", old_price=10.0),
        product("K2", "kitchen", 500.0, name="Espresso machine"),
    ]
)
EMPTY: dict[str, list[tuple[str, float]]] = {}


def ids(products: list[Product]) -> list[str]:
    return [p.id for p in products]


def visitor(
    viewed: Sequence[tuple[str, float]] = (),
    *,
    started: float = T0,
    cart: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> Profile:
    """A profile that viewed ``viewed`` (sku, at), most recent first."""
    return Profile(
        visitor="v",
        created_at=T0 - 86400,
        session=Session(started_at=started, last_at=started),
        products=tuple(ViewedProduct(sku, at=at) for sku, at in viewed),
        cart=Cart(lines=tuple(CartLine(sku) for sku in cart)),
        categories=tuple(CategoryView(c, 1) for c in categories),
    )


def rec(
    strategy: str, profile: Profile | None = None, signals: Any = EMPTY, **kw: Any
) -> list[str]:
    kw.setdefault("limit", 3)
    return ids(recommend(strategy, profile, CATALOG, signals, **kw))


# --- the strategies -------------------------------------------------------------


def test_last_visit_viewed_shows_what_the_previous_visit_viewed() -> None:
    profile = visitor([("K1", T0 + 5), ("T1", T0 - 100), ("L2", T0 - 200)], started=T0)
    assert rec("last_visit_viewed", profile, limit=2) == ["T1", "L2"]


def test_last_visit_viewed_on_a_first_visit_shows_this_visits_views() -> None:
    profile = visitor([("K1", T0 + 5), ("T1", T0 + 3)], started=T0)
    assert rec("last_visit_viewed", profile, limit=2, current_sku="K1") == ["T1"]


def test_ever_viewed_is_most_recent_first() -> None:
    profile = visitor([("K1", T0 + 5), ("T1", T0 - 100), ("L2", T0 - 200)])
    assert rec("ever_viewed", profile) == ["K1", "T1", "L2"]


def test_purchased_replenishes_from_the_purchased_signal() -> None:
    signals = {"purchased": [("K1", 1.0), ("T1", 3.0)]}
    assert rec("purchased", None, signals, limit=2) == ["T1", "K1"]


def test_similar_ranks_same_category_then_shared_attributes() -> None:
    # L1 "Arc floor lamp" at 100: L2 (word "lamp", price within 25 %) beats L3
    # (neither); then T2 "Floor cushion" (word "floor", price 105) from elsewhere.
    assert rec("similar", None, current_sku="L1", limit=3) == ["L2", "L3", "T2"]


def test_similar_uses_the_last_viewed_product_or_category() -> None:
    assert rec("similar", visitor([("K2", T0)]), limit=1) == ["K1"]
    unknown = visitor([("GONE", T0)], categories=("textiles",))
    assert rec("similar", unknown, limit=2) == ["T1", "T2"]


@pytest.mark.parametrize("kind", ["viewed_together", "bought_together"])
def test_pair_strategies_read_partners_of_the_anchor(kind: str) -> None:
    signals = {kind: [("K2", 1.0), ("T1", 4.0), ("L2", 4.0)]}
    # ties by catalog order: L2 before T1
    assert rec(kind, None, signals, current_sku="L1") == ["L2", "T1", "K2"]
    assert rec(kind, visitor([("L1", T0)]), signals) == ["L2", "T1", "K2"]


def test_pair_strategies_without_an_anchor_fall_back() -> None:
    signals = {"viewed_together": [("K2", 1.0)], "bestsellers": [("T2", 1.0)]}
    assert rec("viewed_together", None, signals, limit=1) == ["T2"]


def test_recently_discounted_orders_by_relative_discount() -> None:
    # T1 -50 %, K1 -20 %, L2 -10 %
    assert rec("recently_discounted") == ["T1", "K1", "L2"]


@pytest.mark.parametrize("kind", ["bestsellers", "trending"])
def test_rankings(kind: str) -> None:
    assert rec(kind, None, {kind: [("K2", 9.0), ("L3", 5.0)]}, limit=2) == ["K2", "L3"]


# --- exclusions -----------------------------------------------------------------


def test_cart_lines_are_excluded() -> None:
    profile = visitor([("K1", T0 - 5), ("T1", T0 - 6)], cart=("K1",))
    assert "K1" not in rec("ever_viewed", profile, limit=8)


def test_already_bought_is_excluded_except_for_replenishment() -> None:
    signals = {"purchased": [("T1", 1.0)]}
    assert "T1" not in rec("recently_discounted", None, signals, limit=8)
    assert rec("purchased", None, signals, limit=1) == ["T1"]


def test_out_of_stock_and_unknown_skus_are_excluded() -> None:
    signals = {"bestsellers": [("L4", 9.0), ("GONE", 8.0), ("K2", 1.0)]}
    assert rec("bestsellers", None, signals, limit=1) == ["K2"]
    assert "L4" not in rec("similar", None, current_sku="L1", limit=8)


def test_the_current_product_is_never_recommended() -> None:
    signals = {"bestsellers": [("L1", 9.0)], "viewed_together": [("L1", 1.0)]}
    for strategy in STRATEGIES:
        out = rec(strategy, visitor([("L1", T0 - 9)]), signals, limit=8, current_sku="L1")
        assert "L1" not in out, strategy


def test_results_are_deduplicated() -> None:
    signals = {"bestsellers": [("T1", 2.0)], "trending": [("T1", 5.0)]}
    out = rec("recently_discounted", None, signals, limit=8)
    assert len(out) == len(set(out)) == 7  # every in-stock product, once


# --- fallbacks, limit, determinism, purity --------------------------------------


def test_falls_back_to_bestsellers_then_trending_then_catalog_order() -> None:
    signals = {"bestsellers": [("K2", 1.0)], "trending": [("T2", 1.0)]}
    assert rec("viewed_together", None, signals, limit=4) == ["K2", "T2", "L1", "L2"]


@pytest.mark.parametrize("strategy", sorted(HISTORY))
def test_history_is_never_topped_up_with_what_the_shopper_did_not_see(strategy: str) -> None:
    """Issue 16: "Recently viewed" was filled up with bestsellers the shopper
    never saw. A history block is left short, or empty."""
    signals = {"bestsellers": [("K2", 1.0)], "trending": [("T2", 1.0)], "purchased": []}
    profile = visitor([("L2", T0 - 100), ("T1", T0 - 200)], cart=("T1",))
    bought = {**signals, "purchased": [("L2", 1.0)]}
    shown = rec(strategy, profile, bought if strategy == "purchased" else signals, limit=4)
    assert shown == ["L2"]  # T1 is in the cart; nothing else was seen (or bought)
    assert rec(strategy, visitor([("L3", T0 - 5)]), signals, current_sku="L3") == []
    assert rec(strategy, None, signals, limit=4) == []
    assert signal_queries(strategy, profile) == []  # no rankings read for it


# The history check before every decision (``history_is_empty``) must give
# ``recommend``'s answer. Skus of the catalog (one out of stock) and one it
# does not have; visits before and after the session's start.
_SKUS = st.sampled_from(["L1", "L2", "L4", "T1", "K1", "X9"])
_AT = st.sampled_from([T0 - 200, T0 - 1, T0, T0 + 5])


@st.composite
def _shoppers(draw: st.DrawFn) -> Profile | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    viewed = draw(st.lists(st.tuples(_SKUS, _AT), max_size=4))
    started = draw(st.sampled_from([T0, T0 - 300]))
    profile = visitor(viewed, started=started, cart=tuple(draw(st.lists(_SKUS, max_size=2))))
    bought = draw(st.lists(st.tuples(_SKUS, _AT), max_size=2))
    session = profile.session if draw(st.booleans()) else None  # None: no visit under way
    purchased = tuple(Purchased(sku, at=at) for sku, at in bought)
    return replace(profile, purchased=purchased, session=session)


@settings(max_examples=400, deadline=None)
@given(
    strategy=st.sampled_from(sorted(HISTORY)),
    profile=_shoppers(),
    current=st.one_of(st.none(), st.just(""), _SKUS),
)
def test_history_is_empty_answers_as_recommend_does(
    strategy: str, profile: Profile | None, current: str | None
) -> None:
    bought = [(b.sku, b.at) for b in profile.purchased] if profile is not None else []
    shown = recommend(
        strategy, profile, CATALOG, {"purchased": bought}, limit=1, current_sku=current
    )
    widget = {"kind": "recommendations", "strategy": strategy}
    assert history_is_empty(widget, profile, CATALOG, current) is (not shown)


def test_history_is_empty_only_for_history_blocks_with_a_catalog() -> None:
    profile = visitor([("L1", T0 - 100)])
    history = {"kind": "recommendations", "strategy": "ever_viewed"}
    assert history_is_empty(history, profile, CATALOG) is False
    assert history_is_empty(history, profile, None) is True
    assert history_is_empty(history, profile, CATALOG, current_sku="L1") is True
    assert (
        history_is_empty({"kind": "recommendations", "strategy": "trending"}, None, CATALOG)
        is False
    )
    assert history_is_empty({"kind": "banner"}, None, CATALOG) is False


def test_cold_start_for_an_anonymous_first_visit() -> None:
    for strategy in STRATEGIES:
        assert (rec(strategy, None, limit=2) == []) is (strategy in HISTORY), strategy


def test_limit() -> None:
    assert len(rec("trending", None, limit=5)) == 5
    assert rec("trending", None, limit=0) == []
    assert len(rec("trending", None, limit=100)) == 7  # all in-stock products
    profile = visitor([(sku, T0 - i) for i, sku in enumerate(("L1", "L2", "L3", "T1"))])
    assert rec("ever_viewed", profile, limit=2) == ["L1", "L2"]


def test_same_inputs_same_answer() -> None:
    signals = {"trending": [(s, 1.0) for s in ("K2", "T2", "L3", "K1")]}
    first = rec("trending", None, signals, limit=4)
    shuffled = {"trending": list(reversed(signals["trending"]))}
    assert rec("trending", None, shuffled, limit=4) == first == ["L3", "T2", "K1", "K2"]


def test_inputs_are_not_mutated() -> None:
    profile = visitor([("K1", T0 + 5), ("T1", T0 - 100)], cart=("L2",))
    signals = {name: [("L3", 1.0), ("T2", 2.0)] for name in SIGNALS_NEEDED["viewed_together"]}
    saved = (copy.deepcopy(profile), CATALOG.model_copy(deep=True), copy.deepcopy(signals))
    for strategy in STRATEGIES:
        recommend(strategy, profile, CATALOG, signals, limit=4, current_sku="K1")
    assert (profile, CATALOG, signals) == saved


class PerAnchor:
    """A ``SignalsView`` holding partner lists of several skus."""

    def scores(self, kind: str, sku: str | None) -> list[tuple[str, float]]:
        lists: dict[tuple[str, str | None], list[tuple[str, float]]] = {
            ("viewed_together", "K2"): [("T2", 1.0)]
        }
        return lists.get((kind, sku), [])


def test_a_signals_view_is_asked_for_the_anchor() -> None:
    assert rec("viewed_together", None, PerAnchor(), current_sku="K2", limit=1) == ["T2"]


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: last_visit_viewed, ever_viewed"):
        rec("nope")


def test_signal_queries_fetch_only_what_the_strategy_needs() -> None:
    assert signal_queries("recently_discounted", None) == [
        ("bestsellers", None),
        ("trending", None),
    ]
    assert signal_queries("bought_together", visitor([("L1", T0)])) == [
        ("bought_together", "L1"),
        ("bestsellers", None),
        ("trending", None),
    ]
    assert anchor_sku(visitor([("L1", T0)]), "K1") == "K1"
    assert set(SIGNALS_NEEDED) == set(STRATEGIES)


# --- catalog feeds ----------------------------------------------------------------


HEADER = "id,name,url,image,price,old_price,category,in_stock\n"


def test_csv_catalog_loads_with_indexes(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_text(
        HEADER + 'A,Lamp,/p/A,,10,20,lamps,true\nB,"Rug, wool",/p/B,/i/b.png,5,,rugs,0\n'
    )
    catalog = load_catalog(tmp_path)
    assert catalog is not None
    assert catalog.by_id("B") == Product(
        id="B",
        name="Rug, wool",
        url="/p/B",
        image="/i/b.png",
        price=5.0,
        category="rugs",
        in_stock=False,
    )
    assert ids(list(catalog.in_category("lamps"))) == ["A"]
    assert ids(list(catalog.recently_discounted)) == ["A"]
    assert catalog.categories() == ["lamps", "rugs"]


def test_csv_problems_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_text(
        HEADER
        + "A,Lamp,/p/A,,10,,lamps,true\n"
        + "B,Rug,javascript:alert(1),,5,,rugs,true\n"
        + "C,Mug,/p/C,,cheap,,kitchen,true\n"
        + "A,Again,/p/A2,,1,,lamps,true\n"
        + "D,Cup,/p/D,,1,,kitchen,maybe\n"
        + "E,short\n"
    )
    with pytest.raises(ConfigError) as err:
        load_catalog(tmp_path)
    problems = err.value.problems
    path = tmp_path / "catalog.csv"
    assert [p.split(": ")[0] for p in problems] == [f"{path}:{n}" for n in (3, 4, 5, 6, 7)]
    assert "url" in problems[0] and "price" in problems[1] and "duplicate" in problems[2]


def test_csv_header_must_match(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_text("sku,name\nA,Lamp\n")
    with pytest.raises(ConfigError, match="header"):
        load_catalog(tmp_path)


def test_one_feed_per_site(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_text(HEADER)
    (tmp_path / "catalog.json").write_text('{"products": []}')
    with pytest.raises(ConfigError, match="both"):
        load_catalog(tmp_path)


def test_json_catalog_refuses_duplicate_ids(tmp_path: Path) -> None:
    item = {"id": "A", "name": "A", "url": "/a", "price": 1, "category": "c"}
    (tmp_path / "catalog.json").write_text(f'{{"products": [{item}, {item}]}}'.replace("'", '"'))
    with pytest.raises(ConfigError, match="duplicate product ids: A"):
        load_catalog(tmp_path)
