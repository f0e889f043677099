"""Merging a device's profile into a customer's: the pure steps."""

from __future__ import annotations

from typing import Any

from edge.config.sites import Site, load_site
from edge.core import offers
from edge.core.context import VisitContext
from edge.core.identity import customer_visitor, sign_token
from edge.core.merge import MERGED_FROM_BOUND, compact, merge, seal
from edge.core.profile import Profile
from edge.core.updates import apply, is_duplicate, new_profile
from edge.ids import is_valid_id
from edge.tracker.protocol import Event, parse_event
from tests.client import new_id
from tests.helpers import PROFILES

SITE: Site = load_site(PROFILES / "demo")
T0 = 1_700_000_000.0
SHOP = "http://127.0.0.1"
CUSTOMER = customer_visitor("demo", "cust-1")


def event(seq: int, session: str, kind: str, **fields: Any) -> Event:
    return parse_event({"seq": seq, "id": f"{session[:8]}{seq:08d}", "type": kind, **fields})


def browse(
    visitor: str, session: str, skus: list[str], start: float, first_seq: int = 1
) -> Profile:
    """A device that landed and viewed ``skus``, one a minute."""
    ctx = VisitContext(visitor=visitor, session=session, url=f"{SHOP}/demo")
    profile = apply(
        None, event(first_seq, session, "page_view", url=f"{SHOP}/demo"), ctx, SITE, start
    )
    for i, sku in enumerate(skus, start=1):
        ev = event(first_seq + i, session, "product_view", sku=sku, category="lamps", price=10.0)
        profile = apply(profile, ev, ctx, SITE, start + 60 * i)
    return profile


def test_customer_ids_can_never_be_sent_as_visitor_ids() -> None:
    assert len(CUSTOMER) == 33 and CUSTOMER.startswith("c")
    assert not is_valid_id(CUSTOMER)
    assert customer_visitor("demo", "cust-1") == CUSTOMER  # stable: every device finds it
    assert customer_visitor("other", "cust-1") != CUSTOMER  # per site


def test_seal_compact_life_of_a_device_profile() -> None:
    device, session = new_id(), new_id()
    live = browse(device, session, ["a"], T0)
    sealed = seal(live, device, CUSTOMER, T0 + 1)
    assert sealed.merged_into == CUSTOMER and sealed.merge_pending and sealed.sealed
    assert sealed.products == live.products  # the snapshot keeps the data until merged
    assert seal(sealed, device, CUSTOMER, T0 + 2) is sealed  # idempotent
    stub = compact(sealed, CUSTOMER)
    assert stub is not None
    assert (stub.visitor, stub.merged_into, stub.merge_pending) == (device, CUSTOMER, False)
    assert stub.products == () and stub.pageviews == 0
    assert compact(stub, CUSTOMER) is stub
    other = customer_visitor("demo", "cust-2")
    repointed = seal(stub, device, other, T0 + 3)  # another customer signs in on this device
    assert repointed.merged_into == other and not repointed.merge_pending
    fresh = seal(None, device, CUSTOMER, T0)  # nothing stored yet: a stub at once
    assert fresh.merged_into == CUSTOMER and not fresh.merge_pending
    # an unfinished merge is never re-pointed: the caller finishes it first
    assert seal(sealed, device, other, T0 + 4) is sealed


def test_first_device_becomes_the_customer_profile() -> None:
    device, session = new_id(), new_id()
    sealed = seal(browse(device, session, ["a", "b"], T0), device, CUSTOMER, T0 + 300)
    customer = merge(None, sealed, CUSTOMER, SITE, T0 + 300)
    assert customer.visitor == CUSTOMER
    assert customer.merged_from == (device,)
    assert not customer.sealed and not customer.merge_pending
    assert [p.sku for p in customer.products] == ["b", "a"]
    assert customer.pageviews == 1 and customer.events == 3


def test_second_device_adds_up_and_merging_twice_changes_nothing() -> None:
    phone, laptop = new_id(), new_id()
    phone_tab, laptop_tab = new_id(), new_id()
    first = seal(browse(phone, phone_tab, ["a", "b"], T0), phone, CUSTOMER, T0 + 300)
    customer = merge(None, first, CUSTOMER, SITE, T0 + 300)
    second = seal(browse(laptop, laptop_tab, ["b", "c"], T0 + 1000), laptop, CUSTOMER, T0 + 2000)
    both = merge(customer, second, CUSTOMER, SITE, T0 + 2000)
    assert merge(both, second, CUSTOMER, SITE, T0 + 3000) is both
    assert merge(both, first, CUSTOMER, SITE, T0 + 3000) is both
    assert both.merged_from == (laptop, phone)
    assert both.visits == 2 and both.pageviews == 2 and both.events == 6
    views = {p.sku: p.views for p in both.products}
    assert views == {"a": 1, "b": 2, "c": 1}
    assert both.products[0].sku == "c"  # most recent first
    assert both.first_seen == T0 and both.last_seen == second.last_seen
    assert both.first_touch == first.first_touch
    [lamps] = both.categories
    assert lamps.views == 4


def test_replay_windows_survive_the_merge() -> None:
    """Events resent by either device after the merge are duplicates on the
    customer's profile: exactly-once holds across the alias."""
    phone, tab = new_id(), new_id()
    sealed = seal(browse(phone, tab, ["a", "b"], T0), phone, CUSTOMER, T0 + 300)
    customer = merge(None, sealed, CUSTOMER, SITE, T0 + 300)
    laptop, laptop_tab = new_id(), new_id()
    other = seal(browse(laptop, laptop_tab, ["c"], T0), laptop, CUSTOMER, T0 + 400)
    both = merge(customer, other, CUSTOMER, SITE, T0 + 400)
    for seq in (1, 2, 3):
        assert is_duplicate(both, event(seq, tab, "page_view", url=SHOP), tab)
    for seq in (1, 2):
        assert is_duplicate(both, event(seq, laptop_tab, "page_view", url=SHOP), laptop_tab)
    assert not is_duplicate(both, event(4, tab, "page_view", url=SHOP), tab)


def test_frequency_caps_count_both_devices() -> None:
    phone, laptop = new_id(), new_id()
    campaign = next(c.id for c in SITE.decisioning.campaigns)

    def shown(visitor: str, at: float) -> Profile:
        tab = new_id()
        ctx = VisitContext(visitor=visitor, session=tab, url=f"{SHOP}/demo")
        ev = event(1, tab, "widget", campaign=campaign, action="impression", variant="a")
        offered = offers.record(new_profile(visitor, T0), [(campaign, "a", 0)], T0, 20)
        return apply(offered, ev, ctx, SITE, at)

    later, earlier = shown(phone, T0 + 50), shown(laptop, T0 + 10)
    customer = merge(None, seal(later, phone, CUSTOMER, T0), CUSTOMER, SITE, T0)
    both = merge(customer, seal(earlier, laptop, CUSTOMER, T0), CUSTOMER, SITE, T0)
    state = both.campaign(campaign)
    assert state is not None and state.impressions == 2 and len(state.recent) == 2
    assert state.first_at == T0 + 10  # the customer's exposure began on the laptop
    # a widget offered on either device can still be reported after sign-in
    assert [o.campaign for o in both.offers] == [campaign]


def test_offers_keep_the_latest_per_campaign() -> None:
    a = offers.record(new_profile("a" * 32, T0), [("x", "a", 0), ("y", "b", 1)], T0, 20)
    b = offers.record(new_profile("b" * 32, T0), [("x", "holdout", 0)], T0 + 60, 20)
    merged = offers.merged(a.offers, b.offers, 20)
    assert [(o.campaign, o.variant) for o in merged] == [("x", "holdout"), ("y", "b")]


def test_orders_and_revenue_add_up_and_one_order_counts_once() -> None:
    phone, laptop = new_id(), new_id()

    def bought(visitor: str, order: str, value: float) -> Profile:
        tab = new_id()
        ctx = VisitContext(visitor=visitor, session=tab, url=f"{SHOP}/demo")
        ev = event(
            1,
            tab,
            "purchase",
            order_id=order,
            value=value,
            currency="EUR",
            items=[{"sku": "a", "qty": 1, "price": value}],
        )
        return apply(None, ev, ctx, SITE, T0)

    customer = merge(
        None, seal(bought(phone, "o-1", 30.0), phone, CUSTOMER, T0), CUSTOMER, SITE, T0
    )
    both = merge(
        customer, seal(bought(laptop, "o-2", 20.0), laptop, CUSTOMER, T0), CUSTOMER, SITE, T0
    )
    assert (both.orders, both.revenue, set(both.order_ids)) == (2, 50.0, {"o-1", "o-2"})
    assert [(p.sku, p.qty) for p in both.purchased] == [("a", 2)]
    tablet = new_id()
    again = merge(both, seal(bought(tablet, "o-1", 30.0), tablet, CUSTOMER, T0), CUSTOMER, SITE, T0)
    assert again.orders == 2  # the same order reported twice counts once


def test_the_customers_own_identity_wins() -> None:
    phone, tab = new_id(), new_id()
    ts = int(T0)
    ctx = VisitContext(visitor=CUSTOMER, session=tab, url=f"{SHOP}/demo")
    identify = event(
        1,
        tab,
        "identify",
        customer_id="cust-1",
        ts=ts,
        sig=sign_token(b"x", "demo", "cust-1", ts),
        first_name="Ada",
    )
    customer = apply(None, identify, ctx, SITE, T0)
    claimed_device = apply(
        None,
        event(1, new_id(), "identify", email="someone@example.com"),
        VisitContext(visitor=phone, session=tab, url=SHOP),
        SITE,
        T0,
    )
    both = merge(customer, seal(claimed_device, phone, CUSTOMER, T0), CUSTOMER, SITE, T0)
    assert (both.level, both.customer_id, both.first_name) == ("verified", "cust-1", "Ada")
    assert both.contact == claimed_device.contact  # what the customer lacked is added


def test_merged_from_is_bounded() -> None:
    customer: Profile | None = None
    for _ in range(MERGED_FROM_BOUND + 5):
        device = new_id()
        customer = merge(
            customer,
            seal(browse(device, new_id(), [], T0), device, CUSTOMER, T0),
            CUSTOMER,
            SITE,
            T0,
        )
    assert customer is not None and len(customer.merged_from) == MERGED_FROM_BOUND
