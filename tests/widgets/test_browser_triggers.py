"""Widgets behave as configured, on a phone (issue 14, item 8): every trigger,
the cart bar, a ``device.*`` audience and a site with ``require_consent:
true``, in real headless Chromium with a 390x844 touch viewport against a
real edge server on the Redis store.

What a later event does to a widget already armed: a custom event
(``edge('track', 'custom', ...)``, answered by a decision with no items)
leaves it armed, and a cart change (a new decision for the page that still
has it) does not restart its timer. Timers run on Playwright's fake clock
(``page.clock``): the test moves time, so "not before 5 s, and not restarted"
is checked to the millisecond without sleeping. The pages are served by the
test on the server's origin (``PAGE``); ``/edge.js`` and the socket are the
server's.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis as redis_py
from playwright.async_api import Browser, BrowserContext, Page, Route, ViewportSize

from edge.core.profile import CampaignState, decode_profile
from edge.stores import keys
from tests.browser import DESKTOP_CHROME, TIMEOUT_MS, new_page, poll
from tests.helpers import EdgeServer, RedisServer, demo_without_campaigns, edge_server

pytest_plugins = ["tests.browser"]  # browser, page_errors
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

PHONE_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36"
)
PHONE: ViewportSize = {"width": 390, "height": 844}


def popup(cid: str, path: str, trigger: str) -> str:
    return f"""
  - id: {cid}
    placement: popup
    trigger: {trigger}
    audience: {{page.path: /demo/t/{path}}}
    widget: {{kind: popup, headline: {{en: "{cid}"}}, cta: {{en: Go}}, url: /demo/t/a}}"""


CAMPAIGNS = (
    "campaigns:"
    + popup("late", "delay", "{delay_s: 5}")
    + popup("idle", "idle", "{inactivity_s: 5}")
    + popup("deep", "scroll", "{scroll_pct: 60}")
    + """
  - id: leave-coupon
    placement: popup
    trigger: {exit_intent: true}
    audience: {page.path: /demo/t/leave}
    widget:
      kind: coupon
      headline: {en: "10% off your first order, if you stay a little longer"}
      body: {en: "Leave your email address and we will send your personal code at once."}
      consent: {en: "I want the newsletter"}
      coupon: {source: generated, prefix: WELCOME}
  - id: cart-bar
    placement: bar-bottom
    audience: {page.path: /demo/t/cart, cart.items: {$gte: 1}}
    widget:
      kind: bar
      headline: {en: "Free shipping on your cart today"}
      cta: {en: "Checkout"}
      url: /demo/t/a
      convert_on: click
  - id: phone-only
    placement: bar-top
    audience: {page.path: /demo/t/device, device.type: mobile}
    widget: {kind: bar, headline: {en: "Get the app"}}
"""
)

SITE_WITH_CONSENT = "    require_consent: true\n"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}</title>
<script>window.edge=window.edge||function(){{(edge.q=edge.q||[]).push(arguments)}};</script>
<script async src="/edge.js" data-site="demo"{attrs}></script>
</head><body style="margin:0;font:16px/1.5 system-ui,sans-serif">
<main style="height:3000px;padding:16px">Page {name}</main>
</body></html>"""

RECORD_DECISIONS = """
window.__decisions = [];
window.edge = window.edge || function () { (edge.q = edge.q || []).push(arguments) };
edge('on', 'decisions', items => window.__decisions.push(items.map(i => i.campaign)));
"""

SET_HIDDEN = """hidden => {
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
  Object.defineProperty(document, 'visibilityState',
    { configurable: true, get: () => hidden ? 'hidden' : 'visible' });
  document.dispatchEvent(new Event('visibilitychange'));
}"""

CART = (
    "edge('track', 'cart', {items: [{sku: 'LMP-01', qty: 1, price: 149, name: 'Lamp',"
    " category: 'lighting'}], value: 149, currency: 'EUR'})"
)
WISHLIST = "edge('track', 'custom', {name: 'wishlist_add'})"
ACKED = "!!(window.edge && edge.state && edge.state().connected && !edge.state().outbox)"


def host(campaign: str) -> str:
    return f'[data-edge-campaign="{campaign}"]'


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    return redis.url.replace("/0", "/12")


@pytest.fixture(scope="module")
def shop(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    folder = demo_without_campaigns(tmp_path_factory.mktemp("triggers"), CAMPAIGNS)
    with edge_server(redis_url=redis_url, profiles=folder) as running:
        yield running


@pytest.fixture(scope="module")
def consent_shop(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    folder = demo_without_campaigns(tmp_path_factory.mktemp("consent"), CAMPAIGNS)
    site = folder / "demo" / "site.yaml"
    text = site.read_text(encoding="utf-8")
    assert "\n  tracking:\n" in text and "require_consent" not in text
    site.write_text(text.replace("\n  tracking:\n", "\n  tracking:\n" + SITE_WITH_CONSENT))
    with edge_server(redis_url=redis_url, profiles=folder) as running:
        yield running


async def shopper(browser: Browser, server: EdgeServer, *, phone: bool = True) -> BrowserContext:
    """A fresh shopper (a touch phone, or a desktop); the test's pages on the server's origin."""
    if phone:
        ctx = await browser.new_context(
            user_agent=PHONE_CHROME, viewport=PHONE, has_touch=True, is_mobile=True
        )
    else:
        ctx = await browser.new_context(user_agent=DESKTOP_CHROME)
    ctx.set_default_timeout(TIMEOUT_MS)
    await ctx.add_init_script(RECORD_DECISIONS)
    await ctx.grant_permissions(["local-network-access"])

    async def serve(route: Route) -> None:
        name = route.request.url.rsplit("/", 1)[-1]
        attrs = ' data-consent="required"' if server is not None and "consent" in name else ""
        await route.fulfill(body=PAGE.format(name=name, attrs=attrs), content_type="text/html")

    await ctx.route(re.compile(re.escape(server.http) + r"/demo/t/\w+$"), serve)
    return ctx


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser, shop: EdgeServer) -> AsyncIterator[BrowserContext]:
    ctx = await shopper(browser, shop)
    yield ctx
    await ctx.close()


async def decisions(page: Page, n: int = 1) -> list[list[str]]:
    """The decisions messages so far, once there are ``n`` and everything is acked.
    Polled from here: in-page polling would wait on the page's (fake) clock."""

    async def ready() -> list[list[str]] | None:
        found: list[list[str]] = await page.evaluate("window.__decisions || []")
        return found if len(found) >= n and await page.evaluate(ACKED) else None

    return await poll(ready, what=f"{n} decisions, all acked")


async def track(page: Page, script: str, n: int) -> list[list[str]]:
    """Track an event (the tracker flushes on a zero timeout: run the clock for it)."""
    await page.evaluate(script)
    if await page.evaluate("!!window.__clock"):
        await page.clock.run_for(1)
    return await decisions(page, n)


async def fake_clock(page: Page) -> None:
    """The page's timers run only when the test runs the clock."""
    start = time.time()
    await page.clock.install(time=start)
    await page.clock.pause_at(start + 1)
    await page.add_init_script("window.__clock = 1")


def state(redis_url: str, visitor: str, campaign: str) -> CampaignState | None:
    client = redis_py.Redis.from_url(redis_url)
    try:
        data = client.hget(keys.profile("demo", visitor), "p")
    finally:
        client.close()
    return decode_profile(data).campaign(campaign) if isinstance(data, bytes) else None


async def visitor(page: Page) -> str:
    return str(await page.evaluate("edge.state().visitor"))


async def box(page: Page, selector: str) -> dict[str, Any]:
    found = await page.locator(selector).bounding_box()
    assert found is not None, selector
    return dict(found)


# --- timers ----------------------------------------------------------------------


async def test_delay_s_is_not_cancelled_by_a_custom_event_nor_restarted_by_a_cart_change(
    shop: EdgeServer,
    page: Page,
) -> None:
    await fake_clock(page)
    await page.goto(f"{shop.http}/demo/t/delay")
    assert (await decisions(page, 1))[0] == ["late"]
    await page.clock.run_for(2000)
    # a custom event: a decision with no items; a cart change: the page's again
    assert (await track(page, WISHLIST, 2))[1] == []
    assert (await track(page, CART, 3))[2] == ["late"]
    await page.clock.run_for(2990)  # 4,991 ms since the page view
    assert await page.locator(host("late")).count() == 0
    await page.clock.run_for(20)  # 5,011 ms: had the cart restarted it, 3 s to go
    await page.locator(host("late")).locator(".dialog").wait_for()
    dialog = await box(page, f"{host('late')} .dialog")
    assert dialog["x"] >= 0 and dialog["x"] + dialog["width"] <= PHONE["width"]


async def test_inactivity_s_counts_from_the_last_touch_or_key(shop: EdgeServer, page: Page) -> None:
    await fake_clock(page)
    await page.goto(f"{shop.http}/demo/t/idle")
    assert (await decisions(page, 1))[0] == ["idle"]
    await page.clock.run_for(4000)
    await page.keyboard.press("Shift")  # activity: 5 s from now
    assert (await track(page, WISHLIST, 2))[1] == []
    await page.clock.run_for(4000)  # 8 s since the page view, 4 s since the key
    assert await page.locator(host("idle")).count() == 0
    await page.clock.run_for(1100)
    await page.locator(host("idle")).locator(".dialog").wait_for()


async def test_scroll_pct_shows_the_popup_once_scrolled_that_far(
    shop: EdgeServer, page: Page
) -> None:
    await page.goto(f"{shop.http}/demo/t/scroll")
    assert (await decisions(page, 1))[0] == ["deep"]
    await page.evaluate("scrollTo(0, 600)")  # (600 + 844) / 3000 = 48 %
    await page.wait_for_function("scrollY >= 600")
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert await page.locator(host("deep")).count() == 0
    await page.evaluate("scrollTo(0, 1200)")  # 68 %
    await page.locator(host("deep")).locator(".dialog").wait_for()


# --- exit intent on a phone, after a custom event ------------------------------------


async def test_the_exit_intent_coupon_still_comes_after_a_custom_event(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    await page.goto(f"{shop.http}/demo/t/leave")
    assert (await decisions(page, 1))[0] == ["leave-coupon"]
    assert (await track(page, WISHLIST, 2))[1] == []  # the issue's `decisions []`
    await page.evaluate(SET_HIDDEN, True)  # another app in front
    await page.evaluate(SET_HIDDEN, False)  # back to the shop: exit intent on a phone
    coupon = page.locator(host("leave-coupon"))
    await coupon.locator("form").wait_for()
    # the whole pop-up, its text and its email field are on the 390 px screen
    for part in (".dialog", "h2", "p", "input[type=email]", "button[type=submit]"):
        found = await box(page, f"{host('leave-coupon')} {part}")
        assert found["x"] >= 0 and found["x"] + found["width"] <= PHONE["width"] + 0.5, part
    me = await visitor(page)
    await poll(lambda: (s := state(redis_url, me, "leave-coupon")) and s.impressions == 1)


# --- the cart bar, with convert_on: click ------------------------------------------------


async def test_the_cart_bar_comes_with_the_cart_and_its_click_converts(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    await page.goto(f"{shop.http}/demo/t/cart")
    assert (await decisions(page, 1))[0] == []
    assert (await track(page, CART, 2))[1] == ["cart-bar"]
    bar = await box(page, f"{host('cart-bar')} .bar")
    assert bar["x"] >= 0 and bar["x"] + bar["width"] <= PHONE["width"] + 0.5
    assert bar["y"] + bar["height"] <= PHONE["height"] + 0.5
    me = await visitor(page)
    await page.locator(f"{host('cart-bar')} a.cta").tap()  # to /demo/t/a
    await page.wait_for_url("**/demo/t/a")

    def converted() -> CampaignState | None:
        s = state(redis_url, me, "cart-bar")
        return s if s is not None and s.conversions else None

    found = await poll(converted, what="the click-through's conversion")
    assert (found.clicks, found.conversions, found.impressions) == (1, 1, 1)


# --- device.* audiences -------------------------------------------------------------------


async def test_a_device_audience_shows_on_the_phone_only(
    browser: Browser, shop: EdgeServer, page: Page, page_errors: list[str]
) -> None:
    await page.goto(f"{shop.http}/demo/t/device")
    assert (await decisions(page, 1))[0] == ["phone-only"]
    await page.locator(host("phone-only")).locator(".bar").wait_for()
    desktop = await shopper(browser, shop, phone=False)
    try:
        other = await new_page(desktop, page_errors)
        await other.goto(f"{shop.http}/demo/t/device")
        assert (await decisions(other, 1))[0] == []
        assert await other.locator(host("phone-only")).count() == 0
    finally:
        await desktop.close()


# --- a site with require_consent: true ----------------------------------------------------


async def test_a_site_requiring_consent_stores_and_shows_nothing_before_it(
    browser: Browser, consent_shop: EdgeServer, redis_url: str, page_errors: list[str]
) -> None:
    ctx = await shopper(browser, consent_shop)
    try:
        page = await new_page(ctx, page_errors)
        await page.goto(f"{consent_shop.http}/demo/t/consent")
        await page.wait_for_function("window.edge && edge.state")
        before = await page.evaluate("edge.state()")
        assert before["visitor"] is None and not before["connected"]
        assert await page.evaluate("Object.keys(localStorage).length") == 0
        await page.evaluate(CART)  # buffered in memory, sent only with consent
        await page.evaluate("edge('consent', true)")
        await decisions(page, 1)
        me = await visitor(page)
        client = redis_py.Redis.from_url(redis_url)
        try:
            stored = decode_profile(client.hget(keys.profile("demo", me), "p"))  # type: ignore[arg-type]
        finally:
            client.close()
        assert stored.pageviews == 1 and len(stored.cart.lines) == 1
    finally:
        await ctx.close()
    assert not page_errors, page_errors


async def test_a_site_requiring_consent_stores_nothing_from_a_page_that_does_not_ask_for_it(
    browser: Browser, consent_shop: EdgeServer, redis_url: str, page_errors: list[str]
) -> None:
    """The page does not say consent is required, so the tracker connects and
    tracks; the server's ``require_consent`` still stores nothing until the
    shopper consents, and then the tracker says so in a new hello."""
    ctx = await shopper(browser, consent_shop)
    client = redis_py.Redis.from_url(redis_url)
    try:
        page = await new_page(ctx, page_errors)
        await page.goto(f"{consent_shop.http}/demo/t/plain")
        await page.wait_for_function(ACKED)
        me = await visitor(page)
        await page.evaluate(CART)
        await page.wait_for_function(ACKED)  # acknowledged, and dropped: no consent
        assert not client.exists(keys.profile("demo", me))
        await page.evaluate("edge('consent', true)")
        await page.evaluate(CART.replace("qty: 1", "qty: 2"))
        await page.wait_for_function(ACKED)
        stored = decode_profile(client.hget(keys.profile("demo", me), "p"))  # type: ignore[arg-type]
        assert stored.pageviews == 0  # the page view before consent was not kept
        assert [(line.sku, line.qty) for line in stored.cart.lines] == [("LMP-01", 2)]
    finally:
        client.close()
        await ctx.close()
    assert not page_errors, page_errors
