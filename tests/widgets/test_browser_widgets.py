"""What a shopper sees: the demo shop's widgets in a real headless Chromium
against a real edge server on the Redis store (issue 4, "Real-browser tests").

Each test watches the ``decisions`` messages the tracker receives (recorded by
an init script through the ``edge('on', 'decisions', ...)`` API), so it waits
for the server's answer instead of sleeping, and a widget that must *not*
appear is checked after the decision for that page has arrived. The docs'
screenshots (``docs/images/``) are taken on the way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis as redis_py
from playwright.async_api import Browser, BrowserContext, Dialog, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from edge.config.sites import load_site
from edge.core.profile import Profile, decode_profile
from edge.decisioning.engine import frequency_cap
from edge.stores import keys
from tests.browser import TIMEOUT_MS, poll, tracker_state, wait_acked
from tests.helpers import PROFILES as DEMO_PROFILES
from tests.helpers import ROOT, EdgeServer, RedisServer, edge_server, free_port

pytest_plugins = ["tests.browser"]  # browser, page_errors, poll
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# HeadlessChrome's own user agent is classified as a bot; shoppers use Chrome.
DESKTOP_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
VIEWPORT = {"width": 1200, "height": 800}
# Screenshots for the docs are refreshed on request (EDGE_SCREENSHOTS=1), so
# that a test run does not rewrite tracked files; otherwise they go to a temp dir.
IMAGES = (
    ROOT / "docs" / "images"
    if os.environ.get("EDGE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "edge-screenshots"
)
CROCKFORD = "[0-9A-HJKMNP-TV-Z]"
WELCOME_CODE = re.compile(rf"WELCOME-{CROCKFORD}{{6}}-{CROCKFORD}{{4}}")
XSS = "<img src=x onerror=alert(1)>"

# Runs before the page's own scripts: queues a subscription the tracker picks
# up from the command queue, recording every decisions message it gets.
RECORD_DECISIONS = """
window.__decisions = [];
window.edge = window.edge || function () { (edge.q = edge.q || []).push(arguments) };
edge('on', 'decisions', items => window.__decisions.push(items.map(i => i.campaign)));
"""


CONSOLE: list[str] = []  # the pages' console messages, for failure reports


@pytest.fixture(autouse=True)
def _console() -> None:
    CONSOLE.clear()


def host(campaign: str) -> str:
    """The selector of a widget's Shadow DOM host (Playwright's CSS pierces open roots)."""
    return f'[data-edge-campaign="{campaign}"]'


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    return redis.url.replace("/0", "/10")


@pytest.fixture(scope="module")
def shop(redis_url: str) -> Iterator[EdgeServer]:
    with edge_server(redis_url=redis_url) as running:
        yield running


async def desktop(browser: Browser) -> BrowserContext:
    """A fresh visitor: a desktop Chrome with its own storage."""
    ctx = await browser.new_context(user_agent=DESKTOP_CHROME, viewport=VIEWPORT)
    ctx.set_default_timeout(TIMEOUT_MS)
    await ctx.add_init_script(RECORD_DECISIONS)
    ctx.on("page", lambda tab: tab.on("console", lambda m: CONSOLE.append(f"{tab.url}: {m.text}")))
    return ctx


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """Overrides tests.browser's ``context``: desktop Chrome, decisions recorded."""
    ctx = await desktop(browser)
    yield ctx
    await ctx.close()


async def visit(page: Page, url: str, **goto: str) -> list[str]:
    """Open ``url`` and return the campaigns of the page view's decision."""
    await page.goto(url, **goto)  # type: ignore[arg-type]
    try:
        await page.wait_for_function("window.__decisions && __decisions.length > 0")
    except PlaywrightTimeout:
        state = await page.evaluate("window.edge && edge.state && edge.state()")
        raise AssertionError(f"no decision for {url}: tracker {state}; page: {CONSOLE}") from None
    await wait_acked(page)
    first: list[str] = await page.evaluate("__decisions[0]")
    return first


async def exit_intent(page: Page) -> None:
    """The pointer leaves the window through the top edge, as on a desktop."""
    await page.mouse.move(600, 300)
    await page.mouse.move(600, 2, steps=3)
    await page.evaluate(
        "document.documentElement.dispatchEvent(new MouseEvent('mouseout',"
        " {bubbles: true, clientX: 600, clientY: -1, relatedTarget: null}))"
    )


async def shadow_text(page: Page, selector: str) -> str:
    text: str = await page.eval_on_selector(selector, "h => h.shadowRoot.textContent")
    return " ".join(text.split())


async def screenshot(page: Page, name: str, below: str | None = None) -> None:
    """The viewport, or the top of the page down to just below ``below``."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    if below is None:
        await page.screenshot(path=IMAGES / name)
        return
    await page.evaluate("window.scrollTo(0, 0)")
    box = await page.locator(below).bounding_box()
    assert box is not None, below
    bottom = min(box["y"] + box["height"] + 24, VIEWPORT["height"])
    await page.screenshot(
        path=IMAGES / name, clip={"x": 0, "y": 0, "width": 1200, "height": bottom}
    )


# --- 1. the first-order coupon ---------------------------------------------------


async def consented(redis_url: str, page: Page) -> Profile | None:
    """The page's visitor as stored, once a form's consent box is recorded."""
    visitor = (await tracker_state(page))["visitor"]
    client = redis_py.Redis.from_url(redis_url)
    try:
        data = client.hget(keys.profile("demo", str(visitor)), "p")
    finally:
        client.close()
    profile = decode_profile(data) if isinstance(data, bytes) else None
    return profile if profile is not None and profile.marketing_consent is not None else None


async def test_coupon_popup_on_exit_intent_reveals_a_code_once(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    for url in ("/demo", "/demo/c/lighting"):
        assert "welcome-coupon" not in await visit(page, shop.http + url)  # fewer than 3 views
        await exit_intent(page)
    assert await page.locator(host("welcome-coupon")).count() == 0
    assert "welcome-coupon" in await visit(page, f"{shop.http}/demo/p/LMP-01")
    assert await page.locator(host("welcome-coupon")).count() == 0  # only on exit intent
    await exit_intent(page)
    popup = page.locator(host("welcome-coupon"))
    await popup.locator("form").wait_for()
    assert await popup.get_attribute("data-edge-variant")
    assert "10% off your first order" in await shadow_text(page, host("welcome-coupon"))
    await screenshot(page, "coupon-popup.png")

    await popup.locator("input[type=email]").fill("ada@example.com")
    await popup.locator("button[type=submit]").click()  # the consent box is required
    await page.wait_for_timeout(300)
    assert await popup.locator("[data-edge-code]").count() == 0
    assert (await tracker_state(page))["outbox"] == 0  # nothing was sent
    await popup.locator("input[name=consent]").check()
    await popup.locator("button[type=submit]").click()
    code = popup.locator("[data-edge-code]")
    await code.wait_for()
    assert WELCOME_CODE.fullmatch((await code.text_content() or "").strip())
    await screenshot(page, "coupon-code.png")
    stored = await poll(lambda: consented(redis_url, page), what="the form's identify stored")
    assert stored.marketing_consent is True and stored.level == "claimed"

    await page.reload()
    assert "welcome-coupon" not in await visit(page, f"{shop.http}/demo/c/textiles")
    await exit_intent(page)
    await page.wait_for_timeout(300)
    assert await page.locator(host("welcome-coupon")).count() == 0


# --- 2. banners by traffic source ------------------------------------------------


async def banner_for(browser: Browser, url: str, referer: str | None = None) -> tuple[str, str]:
    """A fresh visitor lands on ``url``: the hero slot's campaign and text."""
    ctx = await desktop(browser)
    try:
        page = await ctx.new_page()
        decided = await visit(page, url, **({"referer": referer} if referer else {}))
        banner = page.locator('[data-edge-slot="hero-banner"] > [data-edge-campaign]')
        await banner.wait_for()
        assert await page.locator('[data-edge-slot="hero-banner"] h1').count() == 0  # replaced
        campaign = await banner.get_attribute("data-edge-campaign") or ""
        assert campaign in decided and await banner.get_attribute("data-edge-variant")
        text = await shadow_text(page, f'[data-edge-slot="hero-banner"] {host(campaign)}')
        if campaign == "hero-social":
            await screenshot(page, "hero-banner.png", '[data-edge-slot="hero-banner"]')
        return campaign, text
    finally:
        await ctx.close()


async def test_banner_depends_on_the_traffic_source(shop: EdgeServer, browser: Browser) -> None:
    social = await banner_for(browser, f"{shop.http}/demo?utm_source=facebook")
    search = await banner_for(
        browser, f"{shop.http}/demo", referer="https://www.google.com/search?q=linen"
    )
    assert social[0] == "hero-social" and "Welcome, friend" in social[1]
    assert search[0] == "hero-search" and "Found us on search?" in search[1]
    assert social[1] != search[1]


# --- 3. recently viewed products -------------------------------------------------

RECS = '[data-edge-slot="recommendations"]'


async def test_recently_viewed_products_show_on_the_next_page(shop: EdgeServer, page: Page) -> None:
    await visit(page, f"{shop.http}/demo/p/TXT-01")
    await visit(page, f"{shop.http}/demo/p/KIT-01")
    assert "recently-viewed" in await visit(page, f"{shop.http}/demo/c/lighting")
    block = f"{RECS} {host('recently-viewed')}"
    await page.locator(block).wait_for()
    await page.locator(f"{block} .item").first.wait_for(timeout=2_000)
    text = await shadow_text(page, block)
    assert "Recently viewed" in text
    assert "Merino throw" in text and "Stoneware mug set" in text
    await page.locator(block).scroll_into_view_if_needed()
    await page.locator(block).screenshot(path=IMAGES / "recommendations.png")


async def test_a_filled_slot_keeps_its_widget(shop: EdgeServer, page: Page) -> None:
    """A later decision offering another campaign for the same slot (here:
    after an add-to-cart, once recently-viewed was shown on this page) does not
    swap the block under the shopper's eyes."""
    await visit(page, f"{shop.http}/demo/p/TXT-01")
    assert "recently-viewed" in await visit(page, f"{shop.http}/demo/p/KIT-01")
    block = page.locator(f"{RECS} > [data-edge-campaign]")
    await page.locator(f"{RECS} > {host('recently-viewed')}").wait_for()
    await page.click("#add-to-cart")
    later = await poll(
        lambda: page.evaluate("__decisions.length > 1 && __decisions[__decisions.length - 1]"),
        what="a decision after the add-to-cart",
    )
    assert "bestsellers" in later  # the slot was offered another campaign ...
    await wait_acked(page)
    assert await block.count() == 1  # ... and kept the first
    assert await block.get_attribute("data-edge-campaign") == "recently-viewed"


DEFAULT_RECS = '<p id="shop-default">Our favourites this week</p>'


async def page_copy(page: Page, url: str, endpoint: str | None) -> None:
    """Open a copy of the shop's ``url`` whose recommendations slot holds the
    shop's own default content and whose tracker talks to ``endpoint``."""
    response = await page.request.get(url)
    html = await response.text()
    html = html.replace(
        '<div class="slot" data-edge-slot="recommendations"></div>',
        f'<div class="slot" data-edge-slot="recommendations">{DEFAULT_RECS}</div>',
    )
    assert DEFAULT_RECS in html
    if endpoint is not None:
        html = html.replace('data-site="demo"', f'data-site="demo" data-endpoint="{endpoint}"')
        assert endpoint in html
    # Chromium treats a fulfilled page as public and blocks its sockets to
    # 127.0.0.1 (Local Network Access) unless allowed.
    await page.context.grant_permissions(["local-network-access"])
    await page.route(url, lambda route: route.fulfill(body=html, content_type="text/html"))
    await page.goto(url)


async def test_slot_keeps_default_content_when_the_server_is_unreachable(
    shop: EdgeServer, page: Page
) -> None:
    await visit(page, f"{shop.http}/demo/p/TXT-01")
    url = f"{shop.http}/demo/c/kitchen"
    # Reachable: the decision replaces the shop's default content.
    await page_copy(page, url, None)
    await page.locator(f"{RECS} > {host('recently-viewed')}").wait_for()
    assert await page.locator("#shop-default").count() == 0
    await page.unroute(url)
    # Unreachable: past the slot's timeout the tracker never touches the slot.
    dead = f"http://127.0.0.1:{free_port()}"
    await page_copy(page, url, dead)
    await page.wait_for_function("performance.now() > 1000 && !edge.state().connected")
    assert await page.locator(f"{RECS} #shop-default").text_content() == "Our favourites this week"
    assert await page.locator("[data-edge-campaign]").count() == 0


# --- 4. catalog data is text -----------------------------------------------------


@pytest.fixture(scope="module")
def hostile_shop(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    """The demo shop whose first product is named like an injection."""
    folder = tmp_path_factory.mktemp("profiles")
    shutil.copytree(DEMO_PROFILES / "demo", folder / "demo")
    catalog_file = folder / "demo" / "catalog.json"
    catalog = json.loads(catalog_file.read_text(encoding="utf-8"))
    first = catalog["products"][0]
    assert first["id"] == "LMP-01"
    first["name"] = f"Arc lamp {XSS}"
    catalog_file.write_text(json.dumps(catalog), encoding="utf-8")
    with edge_server(redis_url=redis_url.replace("/10", "/11"), profiles=folder) as running:
        yield running


async def test_injected_product_name_renders_as_text(hostile_shop: EdgeServer, page: Page) -> None:
    dialogs: list[str] = []

    async def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", record)
    name = f"Arc lamp {XSS}"
    await visit(page, f"{hostile_shop.http}/demo/p/LMP-01")
    assert await page.text_content("#product-name") == name
    assert await page.title() == f"{name} · Lumen & Loom (demo shop)"
    # Viewed, so the next page's recently-viewed block (a widget) lists it.
    assert "recently-viewed" in await visit(page, f"{hostile_shop.http}/demo/c/textiles")
    block = f"{RECS} {host('recently-viewed')}"
    item = page.locator(f"{block} .item", has_text="Arc lamp").first
    await item.wait_for()
    assert (await item.locator("div").text_content() or "").strip() == name
    # The home page lists it in the catalog grid and the bestsellers fallback.
    await visit(page, f"{hostile_shop.http}/demo")
    await page.locator(f"{RECS} [data-edge-campaign] .item").first.wait_for()
    assert await page.locator("main .card", has_text=name).count() == 1
    assert await page.locator('img[src="x"]').count() == 0  # pierces the shadow roots too
    await page.wait_for_function("performance.now() > 1000")  # an onerror would have run
    assert dialogs == []


# --- 5. closed twice: paused --------------------------------------------------------


def a_visit(shop: EdgeServer, source: str) -> list[str]:
    """Three page views of one visit: arriving from another traffic source
    starts a new visit (docs/profile.md), so ``per_session`` starts over."""
    return [
        f"{shop.http}/demo?utm_source={source}",
        f"{shop.http}/demo/c/kitchen",
        f"{shop.http}/demo/p/KIT-01",
    ]


async def close_coupon(page: Page, shop: EdgeServer, source: str) -> None:
    """A visit of 3 pages gets the pop-up on exit intent; the visitor closes it with the x."""
    for url in a_visit(shop, source):
        decided = await visit(page, url)
    assert "welcome-coupon" in decided
    await exit_intent(page)
    popup = page.locator(host("welcome-coupon"))
    await popup.locator("button.close").click()
    await popup.wait_for(state="detached")
    await wait_acked(page)  # the close is stored


async def test_closing_the_popup_twice_pauses_it(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    await close_coupon(page, shop, "newsletter")
    # per_session: 1, so this visit does not see it again anyway
    assert "welcome-coupon" not in await visit(page, f"{shop.http}/demo/c/decor")
    await close_coupon(page, shop, "partner")

    for url in a_visit(shop, "blog"):
        assert "welcome-coupon" not in await visit(page, url)
    await exit_intent(page)
    assert await page.locator(host("welcome-coupon")).count() == 0

    # Paused for close_pause_days (7) after the second close, then allowed again.
    visitor = (await tracker_state(page))["visitor"]
    client = redis_py.Redis.from_url(redis_url)
    try:
        data = client.hget(keys.profile("demo", str(visitor)), "p")
    finally:
        client.close()
    assert data
    profile = decode_profile(data)
    assert profile.session is not None and profile.session.source == "blog"
    state = profile.campaign("welcome-coupon")
    assert state is not None and state.closes == 2
    campaign = load_site(DEMO_PROFILES / "demo").decisioning.by_id["welcome-coupon"]
    day = 86_400
    assert frequency_cap(campaign, state, profile, state.closed_at + 6.9 * day) == (
        "closed 2 times, paused for 7 days"
    )
    later = frequency_cap(campaign, state, profile, state.closed_at + 7.1 * day)
    assert not (later or "").startswith("closed")


# --- the shopper's language and prices (issue 16, item 4) ------------------------


async def test_a_polish_shopper_gets_every_coupon_text_and_the_prices_in_polish(
    shop: EdgeServer, browser: Browser
) -> None:
    ctx = await browser.new_context(user_agent=DESKTOP_CHROME, viewport=VIEWPORT, locale="pl-PL")
    ctx.set_default_timeout(TIMEOUT_MS)
    await ctx.add_init_script(RECORD_DECISIONS)
    page = await ctx.new_page()
    try:
        for url in ("/demo", "/demo/c/lighting"):
            await visit(page, shop.http + url)
        assert "welcome-coupon" in await visit(page, f"{shop.http}/demo/p/LMP-01")
        shop_price = (await page.locator(".price").first.text_content() or "").strip()
        assert "," in shop_price and "€" in shop_price  # Polish: "89,00 €", not "€89.00"
        await exit_intent(page)
        popup = page.locator(host("welcome-coupon"))
        await popup.locator("form").wait_for()
        text = await shadow_text(page, host("welcome-coupon"))
        assert "10% rabatu na pierwsze zamówienie" in text and "Pokaż kod" in text
        await popup.locator("input[type=email]").fill("ola@example.com")
        await popup.locator("input[name=consent]").check()
        await popup.locator("button[type=submit]").click()
        await popup.locator("[data-edge-code]").wait_for()
        revealed = await shadow_text(page, host("welcome-coupon"))
        assert "Oto Twój kod" in revealed  # the built-in text, in the shopper's language
        assert "Here is your code" not in revealed and "Close" not in revealed
    finally:
        await ctx.close()


# --- the newsletter bar converts (issue 14, item 7) ----------------------------------


async def newsletter_bar(page: Page, shop: EdgeServer, source: str) -> str:
    """A new visit (from ``source``) scrolled down: the newsletter bar's text."""
    await visit(page, f"{shop.http}/demo?utm_source={source}")
    await page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    await page.mouse.wheel(0, 400)  # a scroll event: scroll_pct 50
    bar = page.locator(host("newsletter"))
    await bar.locator("form[data-edge-form] input[type=email]").wait_for()
    return await shadow_text(page, host("newsletter"))


async def test_the_newsletter_bar_subscribes_in_the_bar_and_its_last_step_ends(
    shop: EdgeServer, page: Page, redis_url: str
) -> None:
    """The demo's newsletter: the invitation, closed, then the incentive,
    whose ``until: conversion`` ends when its own form is sent (it used to
    link to an anchor the page does not have, so it could never end)."""
    await visit(page, f"{shop.http}/demo")  # the first visit: not returning yet
    assert await page.locator(host("newsletter")).count() == 0
    text = await newsletter_bar(page, shop, "blog")
    assert "Stories from our workshops" in text
    bar = page.locator(host("newsletter"))
    await bar.locator("button.close").click()
    await bar.wait_for(state="detached")
    await wait_acked(page)

    text = await newsletter_bar(page, shop, "partner")
    assert "5% off" in text
    await bar.locator("input[type=email]").fill("grace@example.com")
    await bar.locator("button[type=submit]").click()
    visitor = str((await tracker_state(page))["visitor"])

    def converted() -> Profile | None:
        client = redis_py.Redis.from_url(redis_url)
        try:
            data = client.hget(keys.profile("demo", visitor), "p")
        finally:
            client.close()
        profile = decode_profile(data) if isinstance(data, bytes) else None
        state = profile.campaign("newsletter") if profile is not None else None
        return profile if state is not None and state.conversions == 1 else None

    profile = await poll(converted, what="the newsletter's conversion stored")
    state = profile.campaign("newsletter")
    assert state is not None and state.converted_step == 1 and state.step == 2  # past the last
    assert profile.level == "claimed"
    await visit(page, f"{shop.http}/demo?utm_source=later")
    await page.mouse.wheel(0, 2000)
    await wait_acked(page)
    assert await page.locator(host("newsletter")).count() == 0


# --- the page's language (issue 14, item 3: page.lang) -------------------------------


async def test_widget_texts_follow_the_pages_language_not_the_browsers(
    shop: EdgeServer, browser: Browser
) -> None:
    """A browser whose language is English (navigator.language en-US) on pages
    in Polish (the demo writes <html lang> from Accept-Language: pl): the
    tracker sends the page's language and the coupon speaks Polish, like the
    page, not English like the browser."""
    ctx = await browser.new_context(user_agent=DESKTOP_CHROME, viewport=VIEWPORT, locale="pl-PL")
    ctx.set_default_timeout(TIMEOUT_MS)
    await ctx.add_init_script(RECORD_DECISIONS)
    await ctx.add_init_script("Object.defineProperty(navigator, 'language', {get: () => 'en-US'})")
    page = await ctx.new_page()
    try:
        for url in ("/demo", "/demo/c/lighting"):
            await visit(page, shop.http + url)
        assert await page.evaluate("[navigator.language, document.documentElement.lang]") == [
            "en-US",
            "pl",
        ]
        assert "welcome-coupon" in await visit(page, f"{shop.http}/demo/p/LMP-01")
        await exit_intent(page)
        await page.locator(host("welcome-coupon")).locator("form").wait_for()
        text = await shadow_text(page, host("welcome-coupon"))
        assert "10% rabatu na pierwsze zamówienie" in text and "Pokaż kod" in text
    finally:
        await ctx.close()
