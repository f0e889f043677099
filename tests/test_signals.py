"""Shared signals: what events add (pure), and one store contract on both backends."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.config.sites import SiteFile, compile_site
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.signals import SignalUpdate, signal_updates
from edge.core.updates import apply
from edge.errors import StoreError
from edge.stores import keys
from edge.stores.redis import RedisStore
from edge.stores.signals import MemorySignalStore, RedisSignalStore, SignalStore
from edge.tracker.protocol import Event, parse_event
from tests.helpers import RedisServer

SHOP = "https://shop.example"
SITE = dataclasses.replace(
    compile_site(
        SiteFile.model_validate({"site": {"id": "shop", "allowed_origins": [SHOP]}}),
        Path("profiles/shop"),
        "test",
    ),
    secret=b"s3cret-for-tests",
)
CTX = VisitContext(
    visitor="8c1f0a9b2d3e4f5061728394a5b6c7d8",
    session="f00d0a9b2d3e4f5061728394a5b6c717",
    url=f"{SHOP}/",
    referrer=None,
)
T0 = 1_764_000_000.0


class Visitor:
    """Feeds events through the real ``apply`` and collects the signal updates."""

    def __init__(self) -> None:
        self.profile: Profile | None = None
        self.seq = 0

    def send(self, kind: str, now: float, **fields: Any) -> list[SignalUpdate]:
        self.seq += 1
        ev = parse_event({"seq": self.seq, "id": f"ev-{self.seq:06d}", "type": kind, **fields})
        return self.replay(ev, now)

    def replay(self, ev: Event, now: float) -> list[SignalUpdate]:
        before = self.profile
        self.profile = apply(before, ev, CTX, SITE, now)
        return signal_updates(before, self.profile, ev)

    def view(self, sku: str, now: float) -> list[SignalUpdate]:
        return self.send("product_view", now, sku=sku)


def pairs(updates: list[SignalUpdate], kind: str) -> set[tuple[str, str | None]]:
    return {(u.sku, u.partner) for u in updates if u.kind == kind}


# --- signal_updates ----------------------------------------------------------


def test_a_first_view_only_counts_as_trending() -> None:
    assert Visitor().view("A", T0) == [SignalUpdate("trending", "A")]


def test_a_view_pairs_both_ways_with_the_last_five_views_of_the_visit() -> None:
    v = Visitor()
    for i, sku in enumerate("ABCDEF"):
        v.view(sku, T0 + i)
    updates = v.view("G", T0 + 10)
    assert [u for u in updates if u.kind == "trending"] == [SignalUpdate("trending", "G")]
    partners = {"F", "E", "D", "C", "B"}  # A is the sixth most recent: left out
    assert pairs(updates, "viewed_together") == {("G", s) for s in partners} | {
        (s, "G") for s in partners
    }


def test_views_of_an_earlier_visit_do_not_pair() -> None:
    v = Visitor()
    v.view("A", T0)
    later = T0 + SITE.session_timeout_s + 1  # a new visit
    assert v.view("B", later) == [SignalUpdate("trending", "B")]


def test_viewing_a_product_again_in_the_visit_counts_no_new_pairs() -> None:
    v = Visitor()
    v.view("A", T0)
    v.view("B", T0 + 1)
    assert v.view("A", T0 + 2) == [SignalUpdate("trending", "A")]


def test_a_replayed_event_adds_nothing() -> None:
    v = Visitor()
    v.view("A", T0)
    ev = parse_event({"seq": 5, "id": "ev-replayed", "type": "product_view", "sku": "B"})
    assert v.replay(ev, T0 + 1) != []
    assert v.replay(ev, T0 + 2) == []


def test_a_purchase_counts_units_and_pairs_within_the_order() -> None:
    v = Visitor()
    items = [{"sku": "A", "qty": 2}, {"sku": "B"}, {"sku": "A", "qty": 1}]
    updates = v.send("purchase", T0, order_id="O-1", items=items, value=10.0, currency="EUR")
    assert [u for u in updates if u.kind == "bestsellers"] == [
        SignalUpdate("bestsellers", "A", None, 3.0),
        SignalUpdate("bestsellers", "B", None, 1.0),
    ]
    assert pairs(updates, "bought_together") == {("A", "B"), ("B", "A")}
    again = v.send("purchase", T0 + 1, order_id="O-1", items=items, value=10.0, currency="EUR")
    assert again == []  # the shop reported the same order twice


def test_other_events_add_nothing() -> None:
    v = Visitor()
    assert v.send("page_view", T0, url=f"{SHOP}/") == []
    assert v.send("cart", T0 + 1, items=[{"sku": "A"}], value=1.0, currency="EUR") == []


# --- the store contract ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["embedded", "redis", "redis on the lane"])
async def store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[SignalStore, Clock]]:
    clock = Clock()
    if request.param == "embedded":
        yield MemorySignalStore(clock, max_partners=5, max_ranked=5), clock
        return
    server: RedisServer = request.getfixturevalue("redis")
    url = server.url.replace("/0", "/6")
    profiles = RedisStore.from_url(url)  # whose lane the recorder may share
    redis_store = RedisSignalStore.from_url(
        url,
        lane=profiles.lane if request.param == "redis on the lane" else None,
        clock=clock,
        max_partners=5,
        max_ranked=5,
        trim_probability=1.0,  # trim on every write, so both stores trim alike
        trending_cache_s=0,
    )
    await redis_store.client.flushdb()
    yield redis_store, clock
    await redis_store.close()
    await profiles.close()


def vt(sku: str, partner: str, amount: float = 1.0) -> SignalUpdate:
    return SignalUpdate("viewed_together", sku, partner, amount)


async def test_pair_counts_add_up_best_first(store: tuple[SignalStore, Clock]) -> None:
    s, _ = store
    await s.record("shop", [vt("A", "B"), vt("A", "C"), vt("A", "B")])
    await s.record("shop", [vt("A", "D", 5)])
    assert await s.top("shop", "viewed_together", "A", 10) == [("D", 5.0), ("B", 2.0), ("C", 1.0)]
    assert await s.top("shop", "viewed_together", "A", 1) == [("D", 5.0)]
    assert await s.top("shop", "viewed_together", "B", 10) == []
    assert await s.top("shop", "bought_together", "A", 10) == []


async def test_sites_do_not_share_signals(store: tuple[SignalStore, Clock]) -> None:
    s, _ = store
    await s.record("shop", [vt("A", "B"), SignalUpdate("bestsellers", "A", None, 2)])
    assert await s.top("other", "viewed_together", "A", 10) == []
    assert await s.top("other", "bestsellers", None, 10) == []


async def test_ties_are_ordered_alike_on_both_stores(store: tuple[SignalStore, Clock]) -> None:
    s, _ = store
    await s.record("shop", [vt("A", x) for x in "CBD"])
    assert await s.top("shop", "viewed_together", "A", 10) == [
        ("D", 1.0),
        ("C", 1.0),
        ("B", 1.0),
    ]


async def test_partner_lists_are_bounded_to_the_best(store: tuple[SignalStore, Clock]) -> None:
    s, _ = store
    await s.record("shop", [vt("A", f"P{i}", float(i)) for i in range(1, 9)])
    for i in range(1, 4):
        await s.record("shop", [vt("A", f"Q{i}")])
    top = await s.top("shop", "viewed_together", "A", 100)
    assert [sku for sku, _ in top] == ["P8", "P7", "P6", "P5", "P4"]


async def test_bestsellers_count_units(store: tuple[SignalStore, Clock]) -> None:
    s, _ = store
    await s.record("shop", [SignalUpdate("bestsellers", "A", None, 3)])
    await s.record("shop", [SignalUpdate("bestsellers", "B", None, 2)] * 2)
    assert await s.top("shop", "bestsellers", None, 10) == [("B", 4.0), ("A", 3.0)]


async def test_trending_counts_the_last_24_hours(store: tuple[SignalStore, Clock]) -> None:
    s, clock = store
    old, new = SignalUpdate("trending", "OLD"), SignalUpdate("trending", "NEW")
    await s.record("shop", [old, old, old])
    clock.now += 10 * 3600
    await s.record("shop", [new, new])
    assert await s.top("shop", "trending", None, 10) == [("OLD", 3.0), ("NEW", 2.0)]
    clock.now += 15 * 3600  # OLD's hour has left the window, NEW's has not
    assert await s.top("shop", "trending", None, 10) == [("NEW", 2.0)]
    clock.now += 24 * 3600
    assert await s.top("shop", "trending", None, 10) == []


async def test_top_many_answers_each_query_in_order(store: tuple[SignalStore, Clock]) -> None:
    s, _ = store
    await s.record(
        "shop",
        [
            vt("A", "B"),
            SignalUpdate("bought_together", "A", "C"),
            SignalUpdate("bestsellers", "D"),
            SignalUpdate("trending", "E"),
        ],
    )
    answers = await s.top_many(
        "shop",
        [
            ("viewed_together", "A"),
            ("bought_together", "A"),
            ("bestsellers", None),
            ("trending", None),
        ],
        3,
    )
    assert answers == [[("B", 1.0)], [("C", 1.0)], [("D", 1.0)], [("E", 1.0)]]
    assert await s.top_many("shop", [], 3) == []
    assert await s.top("shop", "bestsellers", None, 0) == []


async def test_misuse_is_refused(store: tuple[SignalStore, Clock]) -> None:
    s, _ = store
    with pytest.raises(ValueError, match="takes a sku"):
        await s.top("shop", "viewed_together", None, 3)
    with pytest.raises(ValueError, match="takes no sku"):
        await s.top("shop", "bestsellers", "A", 3)
    with pytest.raises(ValueError, match="unknown signal"):
        await s.top("shop", "nope", None, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await s.record("shop", [SignalUpdate("viewed_together", "A")])


async def test_redis_layout_and_hour_bucket_ttl(redis: RedisServer) -> None:
    clock = Clock()
    s = RedisSignalStore.from_url(redis.url.replace("/0", "/6"), clock=clock)
    await s.client.flushdb()
    try:
        await s.record("shop", [vt("A", "B"), SignalUpdate("trending", "A")])
        stored = sorted(k.decode() for k in await s.client.keys("*") if isinstance(k, bytes))
        bucket = keys.trending_bucket("shop", int(T0 // 3600))
        assert stored == sorted([keys.viewed_together("shop", "A"), bucket])
        assert 24 * 3600 < await s.client.ttl(bucket) <= 25 * 3600
        assert keys.viewed_together("shop", "A").startswith("edge:sig:{sig:shop}:")
        # a cached trending sum is reused until it expires
        assert await s.top("shop", "trending", None, 5) == [("A", 1.0)]
        await s.record("shop", [SignalUpdate("trending", "A")])
        assert await s.top("shop", "trending", None, 5) == [("A", 1.0)]
        await s.client.delete(keys.trending("shop"))
        assert await s.top("shop", "trending", None, 5) == [("A", 2.0)]
    finally:
        await s.close()


@pytest.mark.parametrize("on_lane", [False, True])
async def test_a_refused_increment_is_an_error_and_the_others_count(
    redis: RedisServer, on_lane: bool
) -> None:
    url = redis.url.replace("/0", "/6")
    profiles = RedisStore.from_url(url)
    s = RedisSignalStore.from_url(url, lane=profiles.lane if on_lane else None, clock=Clock())
    await s.client.flushdb()
    try:
        # a key of the layout holding what the layout does not expect
        await s.client.set(keys.viewed_together("shop", "A"), "not a sorted set")
        with pytest.raises(StoreError, match="WRONGTYPE"):
            await s.record("shop", [vt("A", "B"), vt("C", "D")])
        assert await s.top("shop", "viewed_together", "C", 5) == [("D", 1.0)]
    finally:
        await s.close()
        await profiles.close()
