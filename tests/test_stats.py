"""Campaign statistics: derived from applied events, added up in the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest

from edge import offers
from edge.profile import Profile
from edge.sites import Site, load_site
from edge.stats import MemoryStats, RedisStats, StatsStore, StatUpdate, stat_updates
from edge.stores.redis import RedisStore
from edge.tracker import protocol as p
from edge.tracker.context import VisitContext
from edge.updates import apply, new_profile
from tests.client import new_id
from tests.helpers import PROFILES, RedisServer

TZ = ZoneInfo("Europe/Warsaw")
NOW = 1_790_000_000.0  # 2026-09-21 in Warsaw
DAY = "2026-09-21"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(PROFILES / "demo")


def run(
    site: Site, events: list[dict[str, object]], offered: tuple[str, str] | None = None
) -> list[StatUpdate]:
    """The statistics of ``events``; ``offered``: the (campaign, arm) the
    server showed this visitor first (widget events count only for that)."""
    ctx = VisitContext(new_id(), new_id())
    profile: Profile | None = None
    if offered is not None:
        profile = offers.record(new_profile(ctx.visitor, NOW), [(*offered, 0)], NOW, 20)
    out = []
    for seq, raw in enumerate(events, 1):
        event = p.parse_event({"seq": seq, "id": f"ev{seq:08d}", **raw})
        after = apply(profile, event, ctx, site, NOW + seq)
        out += stat_updates(profile, after, event, TZ, NOW + seq)
        profile = after
    return out


def widget(action: str, variant: str = "a") -> dict[str, object]:
    return {"type": "widget", "campaign": "cart-reminder", "variant": variant, "action": action}


def purchase(order: str, value: float) -> dict[str, object]:
    return {"type": "purchase", "order_id": order, "items": [], "value": value, "currency": "EUR"}


def test_first_impression_counts_a_visitor_and_purchases_go_to_the_arm(site: Site) -> None:
    updates = run(
        site,
        [
            widget("impression"),
            widget("impression"),
            widget("click"),
            purchase("A1", 80.0),
            purchase("A1", 80.0),
        ],
        offered=("cart-reminder", "a"),
    )
    got = [(u.arm, u.field, u.amount) for u in updates]
    assert got == [
        ("a", "impressions", 1.0),
        ("a", "visitors", 1.0),
        ("a", "impressions", 1.0),
        ("a", "clicks", 1.0),
        ("a", "orders", 1.0),
        ("a", "revenue", 80.0),
    ]
    assert {u.day for u in updates} == {DAY}


def test_holdout_visitors_are_counted_separately(site: Site) -> None:
    updates = run(
        site,
        [widget("impression", "holdout"), purchase("B1", 20.0)],
        offered=("cart-reminder", "holdout"),
    )
    assert {(u.arm, u.field) for u in updates} == {
        ("holdout", "impressions"),
        ("holdout", "visitors"),
        ("holdout", "orders"),
        ("holdout", "revenue"),
    }


def test_purchases_without_a_campaign_count_nowhere(site: Site) -> None:
    assert run(site, [purchase("C1", 10.0)]) == []


def test_widget_events_of_campaigns_not_shown_count_nowhere(site: Site) -> None:
    """Issue 12, item 2: made-up campaigns and arms no longer fill the report."""
    shown = ("cart-reminder", "a")
    assert run(site, [widget("impression")]) == []  # nothing was shown
    assert run(site, [widget("impression", "<img src=x>")], offered=shown) == []
    made_up = {**widget("convert"), "campaign": "random-1234"}
    assert run(site, [made_up], offered=shown) == []
    assert run(site, [widget("click", "holdout")], offered=("cart-reminder", "holdout")) == []


@pytest.fixture(params=["embedded", "redis"])
async def stats(request: pytest.FixtureRequest) -> AsyncIterator[StatsStore]:
    if request.param == "embedded":
        yield MemoryStats()
        return
    server: RedisServer = request.getfixturevalue("redis")
    store = RedisStore.from_url(server.url.replace("/0", "/9"))
    await store.client.flushdb()
    yield RedisStats(store.client)
    await store.close()


async def test_stores_add_up(stats: StatsStore) -> None:
    await stats.record(
        "demo",
        [StatUpdate("c", "a", "impressions", DAY), StatUpdate("c", "holdout", "visitors", DAY)],
    )
    await stats.record(
        "demo",
        [StatUpdate("c", "a", "impressions", DAY), StatUpdate("c", "a", "revenue", DAY, 12.5)],
    )
    table = await stats.read("demo", "c", [DAY, "2026-09-20"])
    assert table["2026-09-20"] == {}
    assert table[DAY]["a"]["impressions"] == 2 and table[DAY]["a"]["revenue"] == 12.5
    assert table[DAY]["a"]["orders"] == 0
    assert table[DAY]["holdout"]["visitors"] == 1


def test_a_visitor_converting_twice_counts_once_per_step(site: Site) -> None:
    """Issue 16: one visitor converting in two tabs counted two conversions."""
    events: list[dict[str, object]] = [
        widget("impression"),
        widget("convert"),
        widget("impression"),
        widget("convert"),  # the second tab's form: the same step
    ]
    updates = run(site, events, offered=("cart-reminder", "a"))
    assert [u.field for u in updates] == ["impressions", "visitors", "conversions", "impressions"]


def test_a_progressive_campaigns_next_step_converts_again(site: Site) -> None:
    ctx = VisitContext(new_id(), new_id())
    profile: Profile | None = offers.record(
        new_profile(ctx.visitor, NOW), [("newsletter", "a", 1)], NOW, 20
    )
    fields = []
    for seq, step in enumerate((0, 0, 1, 1, 0), 1):
        raw = {"type": "widget", "campaign": "newsletter", "variant": "a", "action": "convert"}
        event = p.parse_event({"seq": seq, "id": f"ev{seq:08d}", "step": step, **raw})
        after = apply(profile, event, ctx, site, NOW + seq)
        fields += [(u.field, step) for u in stat_updates(profile, after, event, TZ, NOW + seq)]
        profile = after
    assert fields == [("conversions", 0), ("conversions", 1)]
    assert profile is not None and profile.campaign("newsletter") is not None
    state = profile.campaign("newsletter")
    assert state is not None and (state.conversions, state.converted_step) == (2, 1)
