"""Unit tests for edge/core/updates.py: folding events into profiles."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from edge.config.sites import Site, SiteFile, compile_site, load_site
from edge.core.context import VisitContext
from edge.core.identity import hash_email, sign_token
from edge.core.profile import (
    Cart,
    CartLine,
    CategoryView,
    CustomCount,
    Profile,
    Session,
    Stream,
    Touch,
    ViewedProduct,
    evolve,
)
from edge.core.updates import apply, check_event, new_profile
from edge.errors import IdentityRejected
from edge.tracker.protocol import Event, parse_event

VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
TAB = "f00d0a9b2d3e4f5061728394a5b6c717"
OTHER_TAB = "beef0a9b2d3e4f5061728394a5b6c717"
SECRET = b"s3cret-for-tests"
T0 = 1_700_000_000.0
SHOP = "https://shop.example"
DEMO = Path(__file__).resolve().parents[2] / "profiles" / "demo"
BOOKKEEPING = {"streams", "event_ids", "last_seen", "events", "session"}


def make_site(**changes: Any) -> Site:
    parsed = SiteFile.model_validate({"site": {"id": "shop", "allowed_origins": [SHOP]}})
    site = compile_site(parsed, Path("profiles/shop"), "test")
    return dataclasses.replace(site, secret=SECRET, **changes)


SITE = make_site()
CTX = VisitContext(visitor=VISITOR, session=TAB, url=f"{SHOP}/", referrer=None)


def event(seq: int, kind: str, *, id: str | None = None, **fields: Any) -> Event:
    return parse_event({"seq": seq, "id": id or f"ev-{seq:06d}", "type": kind, **fields})


def page_view(seq: int, path: str = "/", *, referrer: str | None = None, **kw: Any) -> Event:
    return event(seq, "page_view", url=f"{SHOP}{path}", referrer=referrer, **kw)


def changed(before: Profile, after: Profile) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(Profile)
        if getattr(before, f.name) != getattr(after, f.name)
    }


def landed() -> Profile:
    """A profile after one direct landing page view at T0."""
    return apply(None, page_view(1, "/c/lamps"), CTX, SITE, T0)


# --- the first event ------------------------------------------------------------


def test_first_page_view_builds_the_whole_profile() -> None:
    profile = landed()
    assert profile == Profile(
        visitor=VISITOR,
        created_at=T0,
        first_seen=T0,
        last_seen=T0,
        visits=1,
        pageviews=1,
        events=1,
        session=Session(
            started_at=T0,
            last_at=T0,
            landing=f"{SHOP}/c/lamps",
            referrer=None,
            source="direct",
            medium="none",
            pageviews=1,
            pages=("/c/lamps",),
        ),
        streams=(Stream(TAB, 1, 0b1, T0),),
        event_ids=("ev-000001",),
        first_touch=Touch(landing=f"{SHOP}/c/lamps", at=T0),
        last_touch=Touch(landing=f"{SHOP}/c/lamps", at=T0),
    )


def test_first_and_last_touch_follow_the_last_non_direct_rule() -> None:
    social = "/?utm_source=facebook&utm_medium=social&utm_campaign=spring"
    profile = apply(landed(), page_view(2, social), CTX, SITE, T0 + 60)
    assert profile.first_touch == Touch(landing=f"{SHOP}/c/lamps", at=T0)
    assert profile.last_touch == Touch(
        "facebook", "social", "spring", None, None, f"{SHOP}{social}", T0 + 60
    )
    # a later direct visit (after the session timed out) starts a visit but
    # leaves the last touch where it was
    later = T0 + SITE.session_timeout_s + 3600
    direct = apply(profile, page_view(3, "/"), CTX, SITE, later)
    assert direct.session is not None and direct.session.source == "direct"
    assert direct.visits == profile.visits + 1
    assert direct.last_touch == profile.last_touch
    assert direct.first_touch == profile.first_touch
    search = apply(
        direct,
        page_view(4, "/x", referrer="https://www.google.com/search?q=floor+lamp"),
        CTX,
        SITE,
        later + 5,
    )
    assert search.last_touch is not None
    assert (search.last_touch.source, search.last_touch.medium, search.last_touch.term) == (
        "google",
        "search",
        "floor lamp",
    )
    assert search.first_touch == profile.first_touch


def test_new_profile() -> None:
    assert new_profile(VISITOR, 3.0) == Profile(
        visitor=VISITOR, created_at=3.0, first_seen=3.0, last_seen=3.0
    )


def test_consent_from_the_context_is_recorded() -> None:
    ctx = dataclasses.replace(CTX, consent=True)
    profile = apply(landed(), page_view(2, "/a", referrer=f"{SHOP}/"), ctx, SITE, T0 + 1)
    assert profile.consent is True


# --- each event type changes exactly what it should ---------------------------


def test_internal_page_view() -> None:
    before = landed()
    after = apply(before, page_view(2, "/p/lamp", referrer=f"{SHOP}/c/lamps"), CTX, SITE, T0 + 10)
    assert changed(before, after) == BOOKKEEPING | {"pageviews"}
    assert after.pageviews == 2
    assert after.events == 2
    assert after.last_seen == T0 + 10
    assert after.streams == (Stream(TAB, 2, 0b11, T0 + 10),)
    assert after.event_ids == ("ev-000002", "ev-000001")
    assert before.session is not None
    assert after.session == evolve(
        before.session, {"last_at": T0 + 10, "pageviews": 2, "pages": ("/p/lamp", "/c/lamps")}
    )
    assert after.visits == 1


def test_product_view() -> None:
    before = landed()
    ev = event(2, "product_view", sku="LMP-01", name="Lamp", category="lamps", price=49.0)
    after = apply(before, ev, CTX, SITE, T0 + 10)
    assert changed(before, after) == BOOKKEEPING | {"products", "categories", "interests"}
    assert after.products == (ViewedProduct("LMP-01", "Lamp", "lamps", 49.0, T0 + 10, 1),)
    assert after.categories == (CategoryView("lamps", 1, T0 + 10),)
    assert before.session is not None
    assert after.session == evolve(before.session, {"last_at": T0 + 10})
    assert after.pageviews == 1


def test_product_viewed_again_keeps_known_fields_and_counts() -> None:
    first = event(2, "product_view", sku="LMP-01", name="Lamp", category="lamps", price=49.0)
    other = event(3, "product_view", sku="MUG-07", category="mugs")
    again = event(4, "product_view", sku="LMP-01")
    profile = landed()
    for seq, ev in enumerate((first, other, again), start=2):
        profile = apply(profile, ev, CTX, SITE, T0 + seq)
    assert profile.products == (
        ViewedProduct("LMP-01", "Lamp", "lamps", 49.0, T0 + 4, 2),
        ViewedProduct("MUG-07", None, "mugs", None, T0 + 3, 1),
    )
    assert profile.categories == (
        CategoryView("lamps", 2, T0 + 4),
        CategoryView("mugs", 1, T0 + 3),
    )


def test_cart_replaces_the_cart() -> None:
    before = landed()
    items = [
        {"sku": "LMP-01", "qty": 2, "price": 49.0, "name": "Lamp", "category": "lamps"},
        {"sku": "MUG-07"},
    ]
    ev = event(2, "cart", items=items, value=98.0, currency="EUR")
    after = apply(before, ev, CTX, SITE, T0 + 10)
    assert changed(before, after) == BOOKKEEPING | {"cart", "interests"}
    assert after.cart == Cart(
        lines=(CartLine("LMP-01", 2, 49.0, "Lamp", "lamps"), CartLine("MUG-07", 1)),
        value=98.0,
        currency="EUR",
        updated_at=T0 + 10,
    )
    emptied = apply(after, event(3, "cart", items=[], value=0, currency="EUR"), CTX, SITE, T0 + 20)
    assert emptied.cart == Cart((), 0.0, "EUR", T0 + 20)


def test_purchase_counts_the_order_and_clears_the_cart() -> None:
    items = [{"sku": "LMP-01", "qty": 2, "price": 49.0}]
    before = apply(
        landed(), event(2, "cart", items=items, value=98.0, currency="EUR"), CTX, SITE, T0 + 5
    )
    ev = event(3, "purchase", order_id="A-1", items=items, value=98.1, currency="EUR")
    after = apply(before, ev, CTX, SITE, T0 + 10)
    assert changed(before, after) == BOOKKEEPING | {
        "orders",
        "revenue",
        "last_order_at",
        "first_order_at",
        "order_ids",
        "cart",
        "purchased",
    }
    assert [(b.sku, b.qty, b.at) for b in after.purchased] == [
        (i["sku"], i.get("qty", 1), T0 + 10) for i in items
    ]
    assert (after.orders, after.revenue, after.last_order_at) == (1, 98.1, T0 + 10)
    assert after.order_ids == ("A-1",)
    assert after.cart == Cart(updated_at=T0 + 10)
    assert after.cart.lines == ()


def test_purchase_with_a_known_order_id_is_not_counted_twice() -> None:
    ev = event(2, "purchase", order_id="A-1", items=[], value=10.0, currency="EUR")
    once = apply(landed(), ev, CTX, SITE, T0 + 10)
    # the shop reports the same order again, as a new event (new seq, new id)
    again = event(3, "purchase", order_id="A-1", items=[], value=10.0, currency="EUR")
    twice = apply(once, again, CTX, SITE, T0 + 20)
    assert twice is not once  # the event itself is applied ...
    assert twice.events == 3
    assert changed(once, twice) == BOOKKEEPING  # ... but the order is not counted
    assert (twice.orders, twice.revenue, twice.order_ids) == (1, 10.0, ("A-1",))
    third = event(4, "purchase", order_id="A-2", items=[], value=5.55, currency="EUR")
    assert apply(twice, third, CTX, SITE, T0 + 30).revenue == 15.55


def test_claimed_identify_stores_a_salted_hash_never_the_email() -> None:
    before = landed()
    after = apply(before, event(2, "identify", email=" Ann@Example.com "), CTX, SITE, T0 + 10)
    assert changed(before, after) == BOOKKEEPING | {"level", "contact"}
    assert after.level == "claimed"
    assert after.identified
    assert after.customer_id is None
    assert after.contact == hash_email("ann@example.com", SITE.salt)
    assert after.contact is not None
    assert after.contact.startswith("h1:")
    assert len(after.contact) == 3 + 64
    assert "ann" not in after.contact.lower()
    assert "example" not in after.contact.lower()
    # the hash is salted: another salt gives another value
    assert after.contact != hash_email("ann@example.com", b"another salt")


def test_a_forms_name_and_consent_box_are_recorded_with_the_email() -> None:
    before = landed()
    typed = event(2, "identify", email="ann@example.com", name="Ann", marketing_consent=True)
    after = apply(before, typed, CTX, SITE, T0 + 10)
    assert changed(before, after) == BOOKKEEPING | {
        "level",
        "contact",
        "claimed_name",
        "marketing_consent",
        "marketing_consent_at",
    }
    assert (after.claimed_name, after.marketing_consent, after.marketing_consent_at) == (
        "Ann",
        True,
        T0 + 10,
    )
    assert after.first_name is None  # a typed name is not the shop's verified data
    untick = event(3, "identify", email="ann@example.com", marketing_consent=False)
    unticked = apply(after, untick, CTX, SITE, T0 + 20)
    assert (unticked.marketing_consent, unticked.claimed_name) == (False, "Ann")


def test_verified_identify() -> None:
    before = landed()
    ts = int(T0)
    sig = sign_token(SECRET, "shop", "cust-42", ts)
    ev = event(2, "identify", customer_id="cust-42", ts=ts, sig=sig)
    check_event(ev, SITE, T0 + 10)
    after = apply(before, ev, CTX, SITE, T0 + 10)
    assert changed(before, after) == BOOKKEEPING | {"level", "customer_id"}
    assert (after.level, after.customer_id, after.contact) == ("verified", "cust-42", None)


def test_a_later_claim_does_not_downgrade_a_verified_profile() -> None:
    ts = int(T0)
    sig = sign_token(SECRET, "shop", "cust-42", ts)
    verified = apply(
        landed(), event(2, "identify", customer_id="cust-42", ts=ts, sig=sig), CTX, SITE, T0 + 1
    )
    claimed = apply(verified, event(3, "identify", email="ann@example.com"), CTX, SITE, T0 + 2)
    assert (claimed.level, claimed.customer_id) == ("verified", "cust-42")
    assert claimed.contact == hash_email("ann@example.com", SITE.salt)
    other = apply(claimed, event(4, "identify", email="bob@example.com"), CTX, SITE, T0 + 3)
    assert (other.level, other.customer_id) == ("verified", "cust-42")
    assert other.contact == hash_email("ann@example.com", SITE.salt)


def test_custom_event_counts_by_name() -> None:
    before = landed()
    after = apply(
        before, event(2, "custom", name="newsletter:open", props={"a": 1}), CTX, SITE, T0 + 10
    )
    assert changed(before, after) == BOOKKEEPING | {"custom"}
    assert after.custom == (CustomCount("newsletter:open", 1, T0 + 10),)
    after = apply(after, event(3, "custom", name="video.play"), CTX, SITE, T0 + 11)
    after = apply(after, event(4, "custom", name="newsletter:open"), CTX, SITE, T0 + 12)
    assert after.custom == (
        CustomCount("newsletter:open", 2, T0 + 12),
        CustomCount("video.play", 1, T0 + 11),
    )


# --- purity and exactly-once -------------------------------------------------


EVENTS = [
    page_view(2, "/p/lamp", referrer=f"{SHOP}/"),
    page_view(2, "/?utm_source=facebook&utm_medium=social"),
    event(2, "product_view", sku="LMP-01", name="Lamp", category="lamps", price=49.0),
    event(2, "cart", items=[{"sku": "LMP-01"}], value=1.0, currency="EUR"),
    event(2, "purchase", order_id="A-9", items=[{"sku": "LMP-01"}], value=1.0, currency="EUR"),
    event(2, "identify", email="ann@example.com"),
    event(2, "custom", name="x"),
]


@pytest.mark.parametrize("ev", EVENTS, ids=lambda e: str(e.type))
def test_apply_never_mutates_its_inputs(ev: Event) -> None:
    profile = apply(
        landed(),
        event(9, "product_view", sku="VAS-02", category="vases", id="setup-001"),
        CTX,
        SITE,
        T0 + 1,
    )
    snapshot = copy.deepcopy(profile)
    event_before, ctx_before, site_before = copy.deepcopy(ev), copy.deepcopy(CTX), SITE
    fields_before = {f.name: getattr(profile, f.name) for f in dataclasses.fields(Profile)}
    after = apply(profile, ev, CTX, SITE, T0 + 60)
    assert after is not profile
    assert profile == snapshot
    assert all(getattr(profile, k) is v for k, v in fields_before.items())
    assert ev == event_before
    assert ctx_before == CTX
    assert SITE is site_before


def test_replayed_same_session_and_seq_returns_the_same_object() -> None:
    profile = landed()
    replay = page_view(1, "/c/lamps", id="another-id-1")  # same seq, even with a new id
    assert apply(profile, replay, CTX, SITE, T0 + 5) is profile
    ev = event(2, "purchase", order_id="A-1", items=[], value=10.0, currency="EUR")
    once = apply(profile, ev, CTX, SITE, T0 + 10)
    assert apply(once, ev, CTX, SITE, T0 + 20) is once
    assert once.orders == 1


def test_replayed_event_id_under_another_session_returns_the_same_object() -> None:
    profile = landed()
    other_tab = dataclasses.replace(CTX, session=OTHER_TAB)
    replay = page_view(7, "/c/lamps", id="ev-000001")
    assert apply(profile, replay, other_tab, SITE, T0 + 5) is profile
    fresh = page_view(7, "/c/lamps", id="fresh-0001")
    applied = apply(profile, fresh, other_tab, SITE, T0 + 5)
    assert applied.streams == (Stream(OTHER_TAB, 7, 1, T0 + 5), Stream(TAB, 1, 1, T0))


def test_out_of_order_event_within_the_window_is_applied_once() -> None:
    profile = landed()
    profile = apply(profile, page_view(3, "/b", referrer=f"{SHOP}/"), CTX, SITE, T0 + 1)
    late = page_view(2, "/a", referrer=f"{SHOP}/")
    applied = apply(profile, late, CTX, SITE, T0 + 2)
    assert applied.pageviews == 3
    assert applied.streams == (Stream(TAB, 3, 0b111, T0 + 2),)
    assert apply(applied, late, CTX, SITE, T0 + 3) is applied


# --- bounds --------------------------------------------------------------------


def test_sixty_products_keep_the_fifty_most_recent() -> None:
    profile = landed()
    for n in range(60):
        ev = event(n + 2, "product_view", sku=f"SKU-{n:02d}", category=f"cat-{n:02d}")
        profile = apply(profile, ev, CTX, SITE, T0 + n)
    assert [p.sku for p in profile.products] == [f"SKU-{n:02d}" for n in range(59, 9, -1)]
    assert len(profile.categories) == 30
    assert profile.categories[0].name == "cat-59"
    assert profile.categories[-1].name == "cat-30"
    assert len(profile.event_ids) == 61
    assert profile.event_ids[0] == "ev-000061"


def test_bookkeeping_lists_stay_bounded() -> None:
    profile = landed()
    for n in range(80):
        ctx = dataclasses.replace(CTX, session=f"{n:030x}ab")
        ev = event(1, "custom", name=f"c{n}", id=f"tab-ev-{n:04d}")
        profile = apply(profile, ev, ctx, SITE, T0 + n)
    assert len(profile.event_ids) == 64
    assert profile.event_ids[0] == "tab-ev-0079"
    assert profile.event_ids[-1] == "tab-ev-0016"
    assert len(profile.streams) == 16
    assert profile.streams[0].session == f"{79:030x}ab"
    assert len(profile.custom) == 30
    assert profile.custom[0].name == "c79"


def test_session_pages_and_order_ids_stay_bounded() -> None:
    profile = landed()
    for n in range(40):
        profile = apply(
            profile, page_view(n + 2, f"/p/{n}", referrer=f"{SHOP}/"), CTX, SITE, T0 + n
        )
    assert profile.session is not None
    assert profile.session.pages == tuple(f"/p/{n}" for n in range(39, 9, -1))
    assert profile.session.pageviews == 41
    for n in range(25):
        ev = event(n + 100, "purchase", order_id=f"O-{n}", items=[], value=1.0, currency="EUR")
        profile = apply(profile, ev, CTX, SITE, T0 + 100 + n)
    assert profile.order_ids == tuple(f"O-{n}" for n in range(24, 4, -1))
    assert profile.orders == 25


# --- visits ------------------------------------------------------------------------


def test_inactivity_longer_than_the_timeout_starts_a_new_visit() -> None:
    assert SITE.session_timeout_s == 1800.0
    profile = landed()
    profile = apply(profile, page_view(2, "/a", referrer=f"{SHOP}/"), CTX, SITE, T0 + 100)
    same = apply(profile, page_view(3, "/b", referrer=f"{SHOP}/a"), CTX, SITE, T0 + 100 + 1800)
    assert (same.visits, same.previous_visit_at) == (1, None)
    assert same.session is not None
    assert same.session.started_at == T0
    new = apply(profile, event(3, "custom", name="back"), CTX, SITE, T0 + 100 + 1801)
    assert new.visits == 2
    assert new.previous_visit_at == T0 + 100
    assert new.session == Session(
        started_at=T0 + 1901, last_at=T0 + 1901, landing=f"{SHOP}/", source="direct"
    )


def test_page_view_from_another_traffic_source_starts_a_new_visit() -> None:
    profile = apply(landed(), page_view(2, "/a", referrer=f"{SHOP}/"), CTX, SITE, T0 + 60)
    url = "/?utm_source=facebook&utm_medium=social&utm_campaign=spring"
    arrived = apply(profile, page_view(3, url), CTX, SITE, T0 + 120)
    assert arrived.visits == 2
    assert arrived.previous_visit_at == T0 + 60
    assert arrived.pageviews == 3
    assert arrived.session == Session(
        started_at=T0 + 120,
        last_at=T0 + 120,
        landing=f"{SHOP}{url}",
        referrer=None,
        source="facebook",
        medium="social",
        campaign="spring",
        pageviews=1,
        pages=("/",),
    )
    # internal navigation afterwards stays in that visit
    inside = apply(arrived, page_view(4, "/p/lamp", referrer=f"{SHOP}{url}"), CTX, SITE, T0 + 130)
    assert inside.visits == 2
    assert inside.session is not None
    assert (inside.session.source, inside.session.started_at) == ("facebook", T0 + 120)
    assert inside.session.pages == ("/p/lamp", "/")
    # the same campaign link again (a reload) does not start another one
    reload = apply(inside, page_view(5, url), CTX, SITE, T0 + 140)
    assert reload.visits == 2


def test_referral_from_another_site_starts_a_new_visit() -> None:
    profile = landed()
    ev = page_view(2, "/p/lamp", referrer="https://blog.other.org/lamps")
    arrived = apply(profile, ev, CTX, SITE, T0 + 60)
    assert arrived.visits == 2
    assert arrived.session is not None
    assert (arrived.session.source, arrived.session.medium) == ("blog.other.org", "referral")
    assert arrived.session.referrer_domain == "blog.other.org"
    assert arrived.session.referrer == "https://blog.other.org/lamps"


@pytest.mark.parametrize(
    ("path", "referrer"),
    [
        ("/c/lamps?page=2", f"{SHOP}/c/lamps"),  # internal, with a query string
        ("/c/lamps?page=2", None),  # a query string but no source in it
        ("/p/lamp", "https://www.shop.example/"),  # a subdomain of the site
        ("/p/lamp", None),  # no referrer at all
    ],
)
def test_internal_navigation_does_not_start_a_new_visit(path: str, referrer: str | None) -> None:
    profile = landed()
    after = apply(profile, page_view(2, path, referrer=referrer), CTX, SITE, T0 + 60)
    assert after.visits == 1
    assert after.previous_visit_at is None
    assert after.session is not None
    assert after.session.started_at == T0
    assert after.session.pageviews == 2


def test_first_event_takes_its_source_from_the_landing_page() -> None:
    ev = page_view(1, "/?gclid=abc123")
    profile = apply(None, ev, CTX, SITE, T0)
    assert profile.session is not None
    assert (profile.session.source, profile.session.medium) == ("google", "paid")
    ctx = dataclasses.replace(CTX, referrer="https://www.bing.com/search?q=oak+lamp")
    profile = apply(None, event(1, "product_view", sku="LMP-01"), ctx, SITE, T0)
    assert profile.session is not None
    assert (profile.session.source, profile.session.medium) == ("bing", "search")
    assert profile.session.term == "oak lamp"
    assert profile.session.referrer == "https://www.bing.com/search?q=oak+lamp"


# --- check_event: identity tokens -------------------------------------------------


def verified_event(
    *, site: str = "shop", ts: int = int(T0), secret: bytes = SECRET, sig: str | None = None
) -> Event:
    signature = sig if sig is not None else sign_token(secret, site, "cust-42", ts)
    return event(5, "identify", customer_id="cust-42", ts=ts, sig=signature)


def test_check_event_accepts_a_good_token() -> None:
    check_event(verified_event(), SITE, T0 + 60)  # accepted: no exception
    # the oldest token still good, and one from slightly in the future (clock skew)
    check_event(verified_event(ts=int(T0) - 86400), SITE, T0)  # accepted: no exception
    check_event(verified_event(ts=int(T0) + 300), SITE, T0)  # accepted: no exception


def test_check_event_ignores_everything_but_verified_identify() -> None:
    no_secret = dataclasses.replace(SITE, secret=None)
    for ev in EVENTS:
        check_event(ev, no_secret, T0)  # accepted: no exception


@pytest.mark.parametrize(
    ("ev", "site", "message"),
    [
        (verified_event(sig="0" * 64), SITE, "signature does not match"),
        (verified_event(secret=b"guessed"), SITE, "signature does not match"),
        (verified_event(ts=int(T0) - 86401), SITE, "expired"),
        (verified_event(ts=int(T0) + 301), SITE, "future"),
        (verified_event(site="other-shop"), SITE, "signature does not match"),
        (verified_event(), dataclasses.replace(SITE, secret=None), "no identity secret"),
    ],
    ids=["forged", "wrong-secret", "expired", "future", "other-site", "no-secret"],
)
def test_check_event_refuses_bad_tokens(ev: Event, site: Site, message: str) -> None:
    with pytest.raises(IdentityRejected, match=message) as caught:
        check_event(ev, site, T0)
    assert caught.value.code == "identity_rejected"


def test_token_max_age_follows_the_site() -> None:
    short = make_site(token_max_age_s=60)
    check_event(verified_event(ts=int(T0) - 60), short, T0)  # accepted: no exception
    with pytest.raises(IdentityRejected, match="expired"):
        check_event(verified_event(ts=int(T0) - 61), short, T0)


def test_demo_site_with_a_secret_checks_tokens() -> None:
    demo = dataclasses.replace(load_site(DEMO), secret=b"demo")
    ts = int(T0)
    good = event(1, "identify", customer_id="c1", ts=ts, sig=sign_token(b"demo", "demo", "c1", ts))
    check_event(good, demo, T0)  # accepted: no exception
    foreign = event(
        1, "identify", customer_id="c1", ts=ts, sig=sign_token(b"demo", "shop", "c1", ts)
    )
    with pytest.raises(IdentityRejected):
        check_event(foreign, demo, T0)
