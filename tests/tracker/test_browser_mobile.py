"""Exit intent and impressions on a phone (issue 16, item 2): the tracker in a
real headless Chromium with a 390x844 touch viewport, against a real edge server
on the Redis store.

Leaving a page by an in-shop link hides it; that must not show the exit-intent
pop-up nor count its impression (which would use up ``per_session: 1``). A
genuine exit signal (a fast swipe up, or coming back after a tab switch) shows
it and counts exactly one impression; a widget counts only once it is on
screen. The shop's pages here are served by the test (``PAGE``) on the
server's origin, so their length and links do not depend on the demo shop's
templates; ``/edge.js`` and the socket are the server's.

Headless Chromium cannot put a tab in the background (every page stays
``visible``), so the tab switch is played by overriding ``document.hidden``
and dispatching ``visibilitychange``; the navigation in the first test and all
touch swipes are real (``Input.dispatchTouchEvent``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis as redis_py
from playwright.async_api import Browser, BrowserContext, Page, Route, ViewportSize

from edge.config.sites import load_site
from edge.core.profile import CampaignState, decode_profile
from edge.stores import keys
from tests.browser import TIMEOUT_MS, poll, tracker_state, wait_acked
from tests.helpers import EdgeServer, RedisServer, demo_without_campaigns, edge_server

pytest_plugins = ["tests.browser"]  # browser, page, page_errors
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

PHONE_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36"
)
PHONE: ViewportSize = {"width": 390, "height": 844}

CAMPAIGNS = """
campaigns:
  - id: leave-coupon
    name: Coupon on exit intent
    priority: 100
    placement: popup
    trigger: {exit_intent: true}
    audience:
      visitor.identified: false
    frequency: {per_session: 1}
    widget:
      kind: coupon
      headline: {en: "10% off your first order"}
      coupon: {source: generated, prefix: WELCOME}
  - id: below-banner
    name: A banner below the fold
    priority: 50
    placement: below
    audience:
      page.path: /demo/t/long
    widget:
      kind: banner
      headline: {en: "Found down here"}
      url: /demo
  - id: held-banner
    name: The same, with a holdout group
    priority: 50
    placement: below
    audience:
      page.path: /demo/t/held
    experiment: {holdout: 0.99}
    widget:
      kind: banner
      headline: {en: "Found down here"}
      url: /demo
"""

# A long page with an in-shop link at the top and an inline slot below the fold.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}</title>
<script>window.edge=window.edge||function(){{(edge.q=edge.q||[]).push(arguments)}};</script>
<script async src="/edge.js" data-site="demo"></script>
</head><body style="margin:0;font:16px/1.5 system-ui,sans-serif">
<header style="padding:16px"><a id="next" href="/demo/t/{next}">Lamps</a></header>
<main style="height:3000px;padding:16px">Page {name}</main>
<div data-edge-slot="below" style="min-height:160px">Default content</div>
</body></html>"""

# Before the page's scripts: record the campaigns of every decisions message.
RECORD_DECISIONS = """
window.__decisions = [];
window.edge = window.edge || function () { (edge.q = edge.q || []).push(arguments) };
edge('on', 'decisions', items => window.__decisions.push(items.map(i => i.campaign)));
"""

POPUP = '[data-edge-campaign="leave-coupon"]'
BANNER = '[data-edge-slot="below"] > [data-edge-campaign="below-banner"]'


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    return redis.url.replace("/0", "/13")


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_without_campaigns(tmp_path_factory.mktemp("profiles"), CAMPAIGNS)


@pytest.fixture(scope="module")
def shop(redis_url: str, profiles: Path) -> Iterator[EdgeServer]:
    with edge_server(redis_url=redis_url, profiles=profiles) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser, shop: EdgeServer) -> AsyncIterator[BrowserContext]:
    """Overrides tests.browser's ``context``: a touch phone, decisions recorded,
    the test's pages served on the shop's origin."""
    ctx = await browser.new_context(
        user_agent=PHONE_CHROME, viewport=PHONE, has_touch=True, is_mobile=True
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    await ctx.add_init_script(RECORD_DECISIONS)
    # A page the test serves has no address, so Chromium takes it for a public
    # site and blocks its socket to 127.0.0.1 (Local Network Access) unless allowed.
    await ctx.grant_permissions(["local-network-access"])

    async def serve(route: Route) -> None:
        name = route.request.url.rsplit("/", 1)[-1]
        nxt = "b" if name == "a" else "a"
        await route.fulfill(body=PAGE.format(name=name, next=nxt), content_type="text/html")

    await ctx.route(re.compile(re.escape(shop.http) + r"/demo/t/\w+$"), serve)
    yield ctx
    await ctx.close()


async def decided(page: Page) -> list[str]:
    """The campaigns of this page's first decision, once the tracker has stored everything."""
    await page.wait_for_function("window.__decisions && __decisions.length > 0")
    await wait_acked(page)
    first: list[str] = await page.evaluate("__decisions[0]")
    return first


async def visit(page: Page, url: str) -> list[str]:
    await page.goto(url)
    return await decided(page)


def campaign_state(redis_url: str, visitor: str, campaign: str) -> CampaignState | None:
    client = redis_py.Redis.from_url(redis_url)
    try:
        data = client.hget(keys.profile("demo", visitor), "p")
    finally:
        client.close()
    assert isinstance(data, bytes), "the visitor is stored"
    return decode_profile(data).campaign(campaign)


def impressions(redis_url: str, visitor: str, campaign: str) -> int:
    state = campaign_state(redis_url, visitor, campaign)
    return state.impressions if state is not None else 0


async def visitor(page: Page) -> str:
    return str((await tracker_state(page))["visitor"])


async def frames(page: Page, n: int = 3) -> None:
    """Let the page render ``n`` frames (IntersectionObserver reports after a rendering)."""
    await page.evaluate(
        "n => new Promise(r => { const f = k => k ? requestAnimationFrame(() => f(k - 1)) : r();"
        " f(n) })",
        n,
    )


async def swipe(page: Page, dy: int, steps: int, pause_s: float = 0.0) -> None:
    """A real touch swipe: the finger moves ``dy`` px down (the page scrolls up)."""
    cdp = await page.context.new_cdp_session(page)

    async def touch(kind: str, *points: dict[str, int]) -> None:
        await cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": list(points)})

    try:
        y0 = 200 if dy > 0 else 700
        await touch("touchStart", {"x": 195, "y": y0})
        for i in range(1, steps + 1):
            await touch("touchMove", {"x": 195, "y": y0 + dy * i // steps})
            await asyncio.sleep(pause_s)
        await touch("touchEnd")
    finally:
        await cdp.detach()
    await page.evaluate(  # until the fling has come to rest
        "new Promise(r => { let y = scrollY; const t = setInterval(() =>"
        " { if (scrollY == y) { clearInterval(t); r(true) } y = scrollY }, 100) })"
    )


async def scroll_down(page: Page) -> None:
    await page.evaluate("scrollTo(0, 1500)")
    await page.wait_for_function("scrollY >= 1500")


# --- tests -----------------------------------------------------------------------


async def test_an_in_shop_link_is_not_exit_intent(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    assert "leave-coupon" in await visit(page, f"{shop.http}/demo/t/a")  # armed, not shown
    assert await page.locator(POPUP).count() == 0
    await page.tap("#next")  # a real tap on an in-shop link: the page is hidden and unloaded
    await page.wait_for_url(f"{shop.http}/demo/t/b")
    # Acknowledged on the next page means stored: page a's outbox (an impression
    # it had queued while unloading) travels with this page's hello.
    assert "leave-coupon" in await decided(page)  # per_session: 1 is not used up
    assert await page.locator(POPUP).count() == 0
    assert impressions(redis_url, await visitor(page), "leave-coupon") == 0


async def test_a_fast_swipe_up_shows_the_popup_with_one_impression(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    assert "leave-coupon" in await visit(page, f"{shop.http}/demo/t/a")
    me = await visitor(page)
    await scroll_down(page)
    await page.evaluate("scrollTo(0, 200)")  # the page's own scrolling, no finger: not exit intent
    await page.wait_for_function("scrollY <= 200")
    await scroll_down(page)
    await swipe(page, 120, steps=12, pause_s=0.05)  # reading back a little: not exit intent
    await frames(page)
    assert await page.locator(POPUP).count() == 0
    assert 1300 <= await page.evaluate("scrollY") < 1500  # the short swipe did scroll

    await swipe(page, 500, steps=5)  # a quick swipe up, towards the address bar
    await page.locator(POPUP).locator("form").wait_for()
    await poll(lambda: impressions(redis_url, me, "leave-coupon") == 1, what="one impression")
    state = campaign_state(redis_url, me, "leave-coupon")
    assert state is not None and state.session_impressions == 1

    await scroll_down(page)
    await swipe(page, 500, steps=5)  # again: the pop-up is already there
    assert await page.locator(POPUP).count() == 1
    assert "leave-coupon" not in await visit(page, f"{shop.http}/demo/t/b")  # per_session: 1
    assert impressions(redis_url, me, "leave-coupon") == 1


SET_HIDDEN = """hidden => {
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
  Object.defineProperty(document, 'visibilityState',
    { configurable: true, get: () => hidden ? 'hidden' : 'visible' });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


async def test_coming_back_after_a_tab_switch_shows_the_popup_with_one_impression(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    assert "leave-coupon" in await visit(page, f"{shop.http}/demo/t/a")
    me = await visitor(page)
    await page.evaluate(SET_HIDDEN, True)  # another tab or app in front: nobody sees this page
    await frames(page)
    await wait_acked(page)
    assert await page.locator(POPUP).count() == 0
    assert impressions(redis_url, me, "leave-coupon") == 0

    await page.evaluate(SET_HIDDEN, False)  # back to the shop
    await page.locator(POPUP).locator("form").wait_for()
    await poll(lambda: impressions(redis_url, me, "leave-coupon") == 1, what="one impression")
    await page.evaluate(SET_HIDDEN, True)
    await page.evaluate(SET_HIDDEN, False)
    assert await page.locator(POPUP).count() == 1
    await frames(page)
    await wait_acked(page)
    assert impressions(redis_url, me, "leave-coupon") == 1


async def test_a_widget_below_the_fold_counts_once_it_is_on_screen(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    assert "below-banner" in await visit(page, f"{shop.http}/demo/t/long")
    me = await visitor(page)
    banner = page.locator(BANNER)
    await banner.wait_for(state="attached")  # inserted, 2,000 px below the viewport
    await frames(page)
    await wait_acked(page)
    assert impressions(redis_url, me, "below-banner") == 0

    await swipe(page, -400, steps=8, pause_s=0.03)  # the shopper scrolls down, but not that far yet
    await frames(page)
    await wait_acked(page)
    assert not await banner.evaluate("h => h.getBoundingClientRect().top < innerHeight")
    assert impressions(redis_url, me, "below-banner") == 0

    await page.evaluate("scrollTo(0, document.body.scrollHeight)")  # now it is on screen
    await poll(lambda: impressions(redis_url, me, "below-banner") == 1, what="the impression")
    await page.evaluate("scrollTo(0, 0)")
    await frames(page)
    await page.evaluate("scrollTo(0, document.body.scrollHeight)")  # seen again: still one
    await frames(page)
    await wait_acked(page)
    assert impressions(redis_url, me, "below-banner") == 1


async def test_a_holdout_slot_counts_once_the_slot_is_on_screen(
    shop: EdgeServer, page: Page, redis_url: str, profiles: Path
) -> None:
    """The holdout group's impression is its would-have-seen moment: for an
    inline slot, the slot on screen, as for the visitors who get the widget."""
    campaign = load_site(profiles / "demo").decisioning.by_id["held-banner"]
    held = next(v for v in (f"{n:032x}" for n in range(1, 100)) if campaign.arm(v) is None)
    await page.add_init_script(f"localStorage.setItem('edge_vid', '{held}')")
    assert "held-banner" in await visit(page, f"{shop.http}/demo/t/held")
    assert await visitor(page) == held
    assert await page.evaluate("__decisions.length") == 1
    await frames(page)
    await wait_acked(page)
    assert impressions(redis_url, held, "held-banner") == 0
    await page.evaluate("scrollTo(0, document.body.scrollHeight)")
    await poll(lambda: impressions(redis_url, held, "held-banner") == 1, what="the impression")
    state = campaign_state(redis_url, held, "held-banner")
    assert state is not None and state.variant == "holdout"
    slot = page.locator('[data-edge-slot="below"]')
    assert await slot.text_content() == "Default content"  # the holdout sees the page as it is
