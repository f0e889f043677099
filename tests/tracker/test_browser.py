"""The tracker (static/js/edge.js) in a real headless Chromium against a real
edge server on the Redis store, reading what it stored straight from Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_py
from playwright.async_api import Browser, BrowserContext, Page

from edge.core.profile import Profile, decode_profile
from edge.stores import keys
from tests.browser import DESKTOP_CHROME, new_page, poll, storage, tracker_state, wait_acked
from tests.helpers import EdgeServer, RedisServer, demo_without_campaigns, edge_server, free_port

pytest_plugins = ["tests.browser"]  # browser, context, page, page_errors
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SITE = "demo"
HEX32 = re.compile(r"[0-9a-f]{32}")
PROFILES = keys.profile(SITE, "*")  # a SCAN pattern for every profile of the site

# Drops every `events` message the page's WebSockets would send: the events stay
# in the tracker's outbox, so only the pagehide beacon (or a later resend) can deliver them.
DROP_WS_EVENTS = """() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (!String(data).includes('"type":"events"')) return send.call(this, data);
  };
}"""


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    return redis.url.replace("/0", "/4")


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo shop without its campaigns: these tests watch the tracker's
    own events, and widgets would add impressions of their own."""
    return demo_without_campaigns(tmp_path_factory.mktemp("profiles"))


@pytest.fixture(scope="module")
def shop(redis_url: str, profiles: Path) -> Iterator[EdgeServer]:
    with edge_server(redis_url=redis_url, profiles=profiles) as running:
        yield running


@pytest.fixture(scope="module")
def store(redis_url: str) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis.from_url(redis_url)
    yield client
    client.close()


def stored(store: redis_py.Redis, visitor: str) -> Profile | None:
    data = store.hget(keys.profile(SITE, visitor), "p")
    return decode_profile(data) if data else None


async def profile_where(
    store: redis_py.Redis,
    visitor: str,
    check: Callable[[Profile], object],
    what: str,
    timeout_s: float = 10,
) -> Profile:
    """Poll Redis until the visitor's profile satisfies ``check(profile)``."""

    def ready() -> Profile | None:
        profile = stored(store, visitor)
        return profile if profile is not None and check(profile) else None

    return await poll(ready, timeout_s, what)


def custom_total(profile: Profile, name: str) -> int:
    return next((c.total for c in profile.custom if c.name == name), 0)


async def visit(page: Page, url: str) -> dict[str, object]:
    await page.goto(url)
    return await wait_acked(page)


async def track(page: Page, type_: str, props: dict[str, object]) -> None:
    await page.evaluate("([t, p]) => edge('track', t, p)", [type_, props])


# --- tests ---------------------------------------------------------------------


async def test_page_and_product_views_are_stored(
    shop: EdgeServer, page: Page, store: redis_py.Redis
) -> None:
    await visit(page, f"{shop.http}/demo")
    state = await visit(page, f"{shop.http}/demo/p/LMP-01")
    assert state["outbox"] == 0 and state["seq"] == 3  # page_view, page_view, product_view
    visitor = (await storage(page))["edge_vid"]
    assert HEX32.fullmatch(visitor) and state["visitor"] == visitor
    profile = stored(store, visitor)  # acknowledged means stored: no polling
    assert profile is not None and profile.visitor == visitor
    assert profile.pageviews == 2
    assert [p.sku for p in profile.products] == ["LMP-01"]
    assert profile.products[0].category == "lighting" and profile.products[0].price == 149.0


async def test_visitor_id_persists_across_pages_and_reloads(
    shop: EdgeServer, page: Page, browser: Browser, store: redis_py.Redis
) -> None:
    first = await visit(page, f"{shop.http}/demo")
    visitor, session = first["visitor"], first["session"]
    assert isinstance(visitor, str) and HEX32.fullmatch(visitor)
    for url in (f"{shop.http}/demo/c/lighting", f"{shop.http}/demo/cart"):
        state = await visit(page, url)
        assert (state["visitor"], state["session"]) == (visitor, session)
    await page.reload()
    state = await wait_acked(page)
    assert (state["visitor"], state["session"]) == (visitor, session)  # a reload keeps the tab
    assert (await storage(page))["edge_vid"] == visitor
    profile = stored(store, visitor)
    assert profile is not None and profile.pageviews == 4
    assert [s.session for s in profile.streams] == [session]

    other = await browser.new_context(user_agent=DESKTOP_CHROME)
    try:
        stranger = await visit(await other.new_page(), f"{shop.http}/demo")
        assert HEX32.fullmatch(str(stranger["visitor"])) and stranger["visitor"] != visitor
        assert stranger["session"] != session
    finally:
        await other.close()


async def test_events_tracked_during_an_outage_arrive_exactly_once(
    redis_url: str, profiles: Path, page: Page, store: redis_py.Redis
) -> None:
    port = free_port()
    with edge_server(redis_url=redis_url, port=port, profiles=profiles) as first:
        state = await visit(page, f"{first.http}/demo")
        first.process.kill()  # a crash: no close handshake
        first.process.wait(10)
        await page.wait_for_function("!edge.state().connected")
        for n in range(3):
            await track(page, "custom", {"name": "outage", "props": {"n": n}})
        state = await tracker_state(page)
        assert state["outbox"] == 3 and not state["connected"]
    visitor = str(state["visitor"])
    profile = stored(store, visitor)
    assert profile is not None and custom_total(profile, "outage") == 0
    with edge_server(redis_url=redis_url, port=port, profiles=profiles):
        # full-jitter backoff: the reconnect may take a while after a few failures
        await wait_acked(page, timeout_ms=60_000)
        await track(page, "custom", {"name": "outage", "props": {"n": 3}})
        await wait_acked(page)
    profile = stored(store, visitor)
    assert profile is not None
    assert custom_total(profile, "outage") == 4 and profile.pageviews == 1


@pytest.mark.parametrize("leave", ["navigate", "close"])
async def test_pagehide_beacon_delivers_unacknowledged_events_once(
    shop: EdgeServer, context: BrowserContext, page: Page, store: redis_py.Redis, leave: str
) -> None:
    state = await visit(page, f"{shop.http}/demo")
    visitor = str(state["visitor"])
    await page.evaluate(DROP_WS_EVENTS)
    await track(page, "custom", {"name": "leaving"})
    assert (await tracker_state(page))["outbox"] == 1
    if leave == "close":
        await page.close(run_before_unload=True)
    else:
        await page.goto("about:blank")  # off the site: nothing on the next page resends it
    profile = await profile_where(
        store, visitor, lambda p: custom_total(p, "leaving"), "beaconed event stored"
    )
    assert custom_total(profile, "leaving") == 1
    if leave == "navigate":
        # Back on the site in the same tab: the outbox still holds the event and is resent.
        state = await visit(page, f"{shop.http}/demo/cart")
        assert state["visitor"] == visitor and state["seq"] == 3
    else:
        await visit(await new_page(context), f"{shop.http}/demo/cart")  # new tab: new session
    profile = stored(store, visitor)
    assert profile is not None
    assert custom_total(profile, "leaving") == 1 and profile.pageviews == 2


async def test_a_duplicated_tab_gets_its_own_session(
    shop: EdgeServer, context: BrowserContext, page: Page, store: redis_py.Redis
) -> None:
    first = await visit(page, f"{shop.http}/demo")
    # One event that was acknowledged and one that never left tab 1, both still in
    # the outbox when the tab is copied: the first is deduped by its id, the second arrives.
    outbox = json.loads(
        await page.evaluate("""() => {
          edge('track', 'custom', {name: 'acked'});
          return sessionStorage.getItem('edge_outbox');
        }""")
    )
    await wait_acked(page)
    outbox.append({**outbox[-1], "seq": outbox[-1]["seq"] + 1, "id": "copiedonly1", "name": "only"})
    copy = {**await storage(page, "sessionStorage"), "edge_outbox": json.dumps(outbox)}
    copy["edge_seq"] = str(outbox[-1]["seq"])

    twin = await new_page(context)
    # A duplicated tab starts with a copy of the sessionStorage, before any script runs.
    await twin.add_init_script(
        """(items => {
          try {
            if (sessionStorage.getItem('copied') || location.protocol !== 'http:') return;
            sessionStorage.setItem('copied', '1');
            for (const [k, v] of Object.entries(items)) sessionStorage.setItem(k, v);
          } catch (e) {}
        })(COPY)""".replace("COPY", json.dumps(copy))
    )
    second = await visit(twin, f"{shop.http}/demo/c/lighting")
    assert second["visitor"] == first["visitor"]

    # Both tabs keep browsing; every page view counts.
    for url in ("/demo/p/LMP-01", "/demo/cart"):
        await visit(page, shop.http + url)
        await visit(twin, shop.http + url)
    await twin.reload()
    assert (await wait_acked(twin))["session"] == second["session"]  # a reload is not a copy
    profile = stored(store, str(first["visitor"]))
    assert profile is not None
    assert profile.pageviews == 7  # tab 1: 3, tab 2: 4
    assert custom_total(profile, "acked") == 1 and custom_total(profile, "only") == 1
    assert second["session"] != first["session"]
    assert second["seq"] == 3  # the two copied events, renumbered, then its page view
    assert {s.session for s in profile.streams} == {first["session"], second["session"]}
    assert copy.get("edge_live")  # what told tab 2 it is a copy


async def test_global_privacy_control_stores_nothing_until_consent(
    shop: EdgeServer, context: BrowserContext, page: Page, store: redis_py.Redis
) -> None:
    await context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    )
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    before = set(store.scan_iter(match=PROFILES))
    await page.goto(f"{shop.http}/demo/p/LMP-01")
    await page.wait_for_function("window.edge && edge.state")
    assert await page.evaluate("navigator.globalPrivacyControl") is True
    await page.wait_for_timeout(500)  # room for a wrongly opened socket to show up
    state = await tracker_state(page)
    assert state["visitor"] is None and state["outbox"] == 0 and not state["connected"]
    assert sockets == []
    assert not any(k.startswith("edge_") for k in await storage(page))
    assert not any(k.startswith("edge_") for k in await storage(page, "sessionStorage"))
    assert set(store.scan_iter(match=PROFILES)) == before

    await page.evaluate("edge('consent', true)")
    state = await wait_acked(page)
    visitor = (await storage(page))["edge_vid"]
    assert state["visitor"] == visitor and len(sockets) == 1
    profile = stored(store, visitor)
    assert profile is not None
    assert profile.pageviews == 1  # the page view is tracked when consent comes
    assert profile.products == ()  # the product view before consent was dropped
    assert profile.consent is True


async def test_a_refused_event_reaches_error_subscribers_and_the_page_keeps_working(
    shop: EdgeServer, page: Page, store: redis_py.Redis
) -> None:
    state = await visit(page, f"{shop.http}/demo/p/LMP-01")
    await page.evaluate("""() => {
      window.errors = [];
      edge('on', 'error', () => { throw new Error('a broken subscriber'); });
      edge('on', 'error', m => errors.push(m));
      edge('track', 'nonsense-type', {});
    }""")
    await page.wait_for_function("errors.length > 0")
    errors = await page.evaluate("errors")
    assert len(errors) == 1 and errors[0]["code"] == "unknown_event_type"
    assert errors[0]["seq"] == 3  # page_view 1, product_view 2
    await wait_acked(page)  # the refused event is acknowledged: nothing stays in the outbox

    await page.click("#add-to-cart")
    assert await page.text_content("#add-to-cart") == "Added ✓"
    await wait_acked(page)
    profile = stored(store, str(state["visitor"]))
    assert profile is not None
    assert [line.sku for line in profile.cart.lines] == ["LMP-01"]
    assert await page.evaluate("edge.state().seq") == 4
