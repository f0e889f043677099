"""Campaign statistics: derived from applied events, added up in the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest

from edge.config.sites import Site, load_site
from edge.core import offers
from edge.core.context import VisitContext
from edge.core.profile import CampaignState, Profile, evolve
from edge.core.stats import StatUpdate, stat_updates
from edge.core.updates import apply, new_profile
from edge.errors import StoreError
from edge.stores import keys
from edge.stores.redis import RedisStore
from edge.stores.stats import MemoryStats, RedisStats, StatsStore
from edge.tracker import protocol as p
from tests.client import new_id
from tests.helpers import PROFILES, RedisServer

TZ = ZoneInfo("Europe/Warsaw")
NOW = 1_790_000_000.0  # 2026-09-21 in Warsaw
DAY = "2026-09-21"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(PROFILES / "demo")


def run(
    site: Site,
    events: list[dict[str, object]],
    offered: tuple[str, str] | None = None,
    at: list[float] | None = None,
) -> list[StatUpdate]:
    """The statistics of ``events``; ``offered``: the (campaign, arm) the
    server showed this visitor first (widget events count only for that);
    ``at``: each event's time after NOW (default: a second apart)."""
    ctx = VisitContext(new_id(), new_id())
    profile: Profile | None = None
    if offered is not None:
        profile = offers.record(new_profile(ctx.visitor, NOW), [(*offered, 0)], NOW, 20)
    out = []
    for seq, raw in enumerate(events, 1):
        event = p.parse_event({"seq": seq, "id": f"ev{seq:08d}", **raw})
        now = NOW + (at[seq - 1] if at is not None else seq)
        after = apply(profile, event, ctx, site, now)
        out += stat_updates(profile, after, event, TZ, now, site.decisioning.by_id)
        profile = after
    return out


def widget(action: str, variant: str = "a", campaign: str = "cart-reminder") -> dict[str, object]:
    return {"type": "widget", "campaign": campaign, "variant": variant, "action": action}


def purchase(order: str, value: float) -> dict[str, object]:
    return {"type": "purchase", "order_id": order, "items": [], "value": value, "currency": "EUR"}


def test_first_impression_counts_a_visitor_and_purchases_go_to_the_arm(site: Site) -> None:
    updates = run(
        site,
        [
            widget("impression"),
            widget("impression"),
            widget("click"),
            widget("click"),
            purchase("A1", 80.0),
            purchase("A1", 80.0),  # the same order again: nothing
            purchase("A2", 20.0),  # a second order: an order, not a second buyer
        ],
        offered=("cart-reminder", "a"),
    )
    got = [(u.arm, u.field, u.amount) for u in updates]
    assert got == [
        ("a", "impressions", 1.0),
        ("a", "visitors", 1.0),
        ("a", "impressions", 1.0),
        ("a", "clicks", 1.0),
        ("a", "clicked", 1.0),
        ("a", "clicks", 1.0),
        ("a", "orders", 1.0),
        ("a", "revenue", 80.0),
        ("a", "purchased", 1.0),
        ("a", "orders", 1.0),
        ("a", "revenue", 20.0),
    ]
    assert {u.day for u in updates} == {DAY}


HOUR = 3600.0


def test_outcomes_count_within_the_window_on_the_day_of_exposure(site: Site) -> None:
    """Issue 14, item 2: every later order went to every campaign ever seen.
    The demo's cart reminder has a 3-day window (campaigns.yaml)."""
    assert site.decisioning.by_id["cart-reminder"].attribution_days == 3
    updates = run(
        site,
        [widget("impression"), widget("click"), purchase("W1", 50.0), widget("convert")],
        offered=("cart-reminder", "a"),
        at=[0, 30 * HOUR, 71 * HOUR, 73 * HOUR],  # the convert is past 72 hours
    )
    got = [(u.field, u.day) for u in updates]
    assert got == [
        ("impressions", DAY),
        ("visitors", DAY),
        ("clicks", "2026-09-22"),  # activity: its own day
        ("clicked", DAY),  # the outcome: the day of exposure
        ("orders", DAY),
        ("revenue", DAY),
        ("purchased", DAY),
        ("conversions", "2026-09-24"),  # done, but after the window: no "converted"
    ]


def test_late_outcomes_and_the_default_window(site: Site) -> None:
    newsletter = ("newsletter", "a")  # no experiment: the 7-day default
    assert site.decisioning.by_id["newsletter"].attribution_days == 7
    seen = widget("impression", campaign="newsletter")
    late = run(site, [seen, purchase("L1", 9.0)], offered=newsletter, at=[0, 7 * 24 * HOUR + 1])
    assert [u.field for u in late] == ["impressions", "visitors"]
    in_time = run(site, [seen, purchase("L2", 9.0)], offered=newsletter, at=[0, 7 * 24 * HOUR])
    counted = ["impressions", "visitors", "orders", "revenue", "purchased"]
    assert [u.field for u in in_time] == counted


def test_a_buyer_before_exposure_still_counts_as_a_buyer_after_it(site: Site) -> None:
    updates = run(
        site,
        [purchase("B0", 5.0), widget("impression"), purchase("B1", 7.0)],
        offered=("cart-reminder", "a"),
    )
    assert [(u.field, u.amount) for u in updates] == [
        ("impressions", 1.0),
        ("visitors", 1.0),
        ("orders", 1.0),
        ("revenue", 7.0),
        ("purchased", 1.0),
    ]


def test_a_state_from_before_first_at_adds_no_outcomes(site: Site) -> None:
    """A visitor counted before ``first_at`` existed has no known exposure:
    counting their outcomes now would add buyers to no visitor."""
    ctx = VisitContext(new_id(), new_id())
    profile = offers.record(new_profile(ctx.visitor, NOW), [("cart-reminder", "a", 0)], NOW, 20)
    old = CampaignState("cart-reminder", impressions=3, variant="a", last_at=NOW)
    profile = evolve(profile, {"campaigns": (old,)})
    seq = iter(range(1, 10))
    for raw, fields in [
        (widget("impression"), ["impressions"]),  # not a new visitor either
        (widget("click"), ["clicks"]),
        (purchase("O1", 3.0), []),
    ]:
        n = next(seq)
        event = p.parse_event({"seq": n, "id": f"ev{n:08d}", **raw})
        after = apply(profile, event, ctx, site, NOW + n)
        got = stat_updates(profile, after, event, TZ, NOW + n, site.decisioning.by_id)
        assert [u.field for u in got] == fields
        profile = after
    state = profile.campaign("cart-reminder")
    assert state is not None and state.first_at == 0.0


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
        ("holdout", "purchased"),
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


@pytest.fixture(params=["embedded", "redis", "redis on the lane"])
async def stats(request: pytest.FixtureRequest) -> AsyncIterator[StatsStore]:
    if request.param == "embedded":
        yield MemoryStats()
        return
    server: RedisServer = request.getfixturevalue("redis")
    store = RedisStore.from_url(server.url.replace("/0", "/9"))
    await store.client.flushdb()
    lane = store.lane if request.param == "redis on the lane" else None
    yield RedisStats(store.client, lane)
    await store.close()


@pytest.mark.parametrize("on_lane", [False, True])
async def test_a_refused_increment_is_an_error_and_the_others_count(
    redis: RedisServer, on_lane: bool
) -> None:
    store = RedisStore.from_url(redis.url.replace("/0", "/9"))
    try:
        await store.client.flushdb()
        stats = RedisStats(store.client, store.lane if on_lane else None)
        # a key of the layout holding what the layout does not expect
        await store.client.set(keys.campaign_stats("demo", "c", "2026-09-20"), "not a hash")
        updates = [
            StatUpdate("c", "a", "impressions", "2026-09-20"),
            StatUpdate("c", "a", "impressions", DAY),
        ]
        with pytest.raises(StoreError, match="WRONGTYPE"):
            await stats.record("demo", updates)
        assert (await stats.read("demo", "c", [DAY]))[DAY]["a"]["impressions"] == 1
    finally:
        await store.close()


async def test_stores_add_up(stats: StatsStore) -> None:
    await stats.record(
        "demo",
        [StatUpdate("c", "a", "impressions", DAY), StatUpdate("c", "holdout", "visitors", DAY)],
    )
    await stats.record(
        "demo",
        [
            StatUpdate("c", "a", "impressions", DAY),
            StatUpdate("c", "a", "revenue", DAY, 12.5),
            StatUpdate("c", "a", "purchased", DAY),
        ],
    )
    table = await stats.read("demo", "c", [DAY, "2026-09-20"])
    assert table["2026-09-20"] == {}
    assert table[DAY]["a"]["impressions"] == 2 and table[DAY]["a"]["revenue"] == 12.5
    assert table[DAY]["a"]["orders"] == 0
    assert table[DAY]["holdout"]["visitors"] == 1
    assert table[DAY]["a"]["purchased"] == 1 and table[DAY]["holdout"]["purchased"] == 0


def test_a_visitor_converting_twice_counts_once_per_step(site: Site) -> None:
    """Issue 16: one visitor converting in two tabs counted two conversions."""
    events: list[dict[str, object]] = [
        widget("impression"),
        widget("convert"),
        widget("impression"),
        widget("convert"),  # the second tab's form: the same step
    ]
    updates = run(site, events, offered=("cart-reminder", "a"))
    fields = [u.field for u in updates]
    assert fields == ["impressions", "visitors", "conversions", "converted", "impressions"]


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
