"""The demo shop and every built-in widget on a phone (issue 16, item 3): real
headless Chromium with a touch screen 320 and 390 CSS pixels wide.

What must hold from 320 px up: no page of the shop is wider than the screen;
every widget lies inside the screen, pop-ups and bars included, and its close
button is on screen, at least 44x44 px and the topmost element at its centre,
so a tap there closes it; the newsletter bar at the top never covers the
header's links. The widgets must not lean on the shop being responsive: on a
page wider than the screen they still fit the screen.

The server runs a copy of the demo profile whose campaigns show at once
(no triggers, open audiences, no holdout), so one page view brings a pop-up,
both bars, the hero banner and a recommendations block, and a ``kind: popup``
campaign takes the pop-up on ``/demo/c/decor``. The README's phone screenshots
are taken by ``docs/images/shoot.py`` on the same setup.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from playwright.async_api import Browser, BrowserContext, Page, Route

from tests.browser import TIMEOUT_MS, new_page, wait_acked
from tests.helpers import PROFILES, EdgeServer, edge_server

pytest_plugins = ["tests.browser"]
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

PHONE_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36"
)
PHONES = [pytest.param(320, 640, id="320x640"), pytest.param(390, 844, id="390x844")]
TOUCH_TARGET = 44  # px, the least a finger can hit reliably

# Runs before the page's scripts: records the campaigns of every decision.
RECORD_DECISIONS = """
window.__decisions = [];
window.edge = window.edge || function () { (edge.q = edge.q || []).push(arguments) };
edge('on', 'decisions', items => window.__decisions.push(items.map(i => i.campaign)));
"""

# The boxes of a widget (its host's shadow root): the widget's outer element
# (a pop-up's dialog, not its backdrop), its close button, and every rendered
# element inside the outer one.
GEOMETRY = """campaign => {
  const host = document.querySelector(`[data-edge-campaign="${campaign}"]`);
  if (!host) return null;
  const box = e => { const r = e.getBoundingClientRect();
    return {x: r.left, y: r.top, right: r.right, bottom: r.bottom,
            width: r.width, height: r.height} };
  const root = host.shadowRoot;
  const outer = root.querySelector('.dialog, .bar, .banner, .recs');
  const close = root.querySelector('[data-edge-close]');
  let top = null;
  if (close) {
    const b = box(close), hit = root.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
    top = !!hit && close.contains(hit);
  }
  const parts = [outer, ...outer.querySelectorAll('*')].filter(e => e.getClientRects().length);
  return {outer: box(outer), close: close && box(close), closeOnTop: top,
          parts: parts.map(e => Object.assign(box(e), {tag: e.tagName, cls: e.className}))};
}"""

# For each link of the shop's header: is it the topmost element at its centre?
HEADER_LINKS = """() => [...document.querySelectorAll('header a')].map(a => {
  const r = a.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  return {link: a.textContent.trim(), x, y, hit: hit === a || a.contains(hit),
          got: hit ? hit.outerHTML.slice(0, 80) : null};
})"""

OVERFLOW = "[document.documentElement.scrollWidth, window.innerWidth]"


def phone_profiles(folder: Path) -> Path:
    """A copy of the demo profile whose campaigns show on the first page view."""
    shutil.copytree(PROFILES / "demo", folder / "demo")
    path = folder / "demo" / "campaigns.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    campaigns: list[dict[str, Any]] = config["campaigns"]
    by_id = {c["id"]: c for c in campaigns}
    for key in ("trigger", "audience"):
        by_id["welcome-coupon"].pop(key)
        by_id["newsletter"].pop(key)
    by_id["cart-reminder"]["audience"] = {"page.path": {"$ne": "/demo/cart"}}
    by_id["cart-reminder"].pop("experiment")  # no holdout: every visitor sees it
    campaigns.append(
        {
            "id": "decor-popup",
            "name": "A plain pop-up (kind: popup) on the decor page",
            "priority": 200,
            "placement": "popup",
            "audience": {"page.path": "/demo/c/decor"},
            "widget": {
                "kind": "popup",
                "headline": {"en": "New in decor: hand-blown vases from Kraków"},
                "body": {"en": "Each one is different. Free shipping this week."},
                "cta": {"en": "See the vases"},
                "url": "/demo/p/DEC-02",
                "image": "/demo/static/img/vase.svg",
            },
        }
    )
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    return folder


@pytest.fixture(scope="module")
def phone_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    folder = phone_profiles(tmp_path_factory.mktemp("phone-profiles"))
    with edge_server(profiles=folder) as running:
        yield running


def patient(html: str) -> str:
    """The shop's page with a slot timeout long enough for a slow first
    decision (a cold server on a busy machine): this test is about layout,
    and a slot left with its default content would have nothing to measure."""
    assert 'data-site="demo"' in html
    return html.replace('data-site="demo"', 'data-site="demo" data-slot-timeout="60000"')


async def _patient_page(route: Route) -> None:
    response = await route.fetch()
    await route.fulfill(response=response, body=patient(await response.text()))


def _shop_page(url: str) -> bool:
    path = urlsplit(url).path
    return path.startswith("/demo") and not path.startswith("/demo/static/")


async def phone(browser: Browser, width: int, height: int) -> BrowserContext:
    """A fresh shopper on a touch phone (Chrome's mobile viewport rules)."""
    ctx = await browser.new_context(
        user_agent=PHONE_CHROME,
        viewport={"width": width, "height": height},
        is_mobile=True,
        has_touch=True,
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    await ctx.add_init_script(RECORD_DECISIONS)
    # A fulfilled page counts as public: let it reach 127.0.0.1 (Local Network Access).
    await ctx.grant_permissions(["local-network-access"])
    await ctx.route(_shop_page, _patient_page)
    return ctx


async def visit(page: Page, url: str) -> list[str]:
    """Open ``url``; the campaigns of its page view's decision, once all are acked."""
    await page.goto(url)
    await page.wait_for_function("window.__decisions && __decisions.length > 0")
    await wait_acked(page)
    decided: list[str] = await page.evaluate("__decisions[0]")
    return decided


def host(campaign: str) -> str:
    return f'[data-edge-campaign="{campaign}"]'


async def no_horizontal_overflow(page: Page, width: int) -> None:
    scroll_width, inner_width = await page.evaluate(OVERFLOW)
    assert scroll_width <= width and inner_width == width, (
        f"{page.url}: the page is {scroll_width} px wide on a {width} px screen"
    )


async def geometry(page: Page, campaign: str) -> dict[str, Any]:
    await page.locator(host(campaign)).wait_for(state="attached")
    found: dict[str, Any] | None = await page.evaluate(GEOMETRY, campaign)
    assert found is not None, campaign
    return found


def inside(box: dict[str, float], width: int, height: int | None = None) -> bool:
    """Within the screen (horizontally only, when ``height`` is None); half a
    pixel of slack for subpixel layout."""
    across = box["x"] >= -0.5 and box["right"] <= width + 0.5
    return across and (height is None or (box["y"] >= -0.5 and box["bottom"] <= height + 0.5))


async def fits_the_screen(
    page: Page, campaign: str, width: int, height: int, fixed: bool
) -> dict[str, Any]:
    """The widget and all its parts are within the screen's width; a fixed one
    (pop-up, bar) within its height too, with its close button on screen, big
    enough for a finger and not covered."""
    found = await geometry(page, campaign)
    assert inside(found["outer"], width, height if fixed else None), (campaign, found["outer"])
    wide = [p for p in found["parts"] if not inside(p, width)]
    assert not wide, f"{campaign}: parts outside the {width} px screen: {wide}"
    if fixed:
        close = found["close"]
        assert close is not None and inside(close, width, height), (campaign, close)
        assert close["width"] >= TOUCH_TARGET and close["height"] >= TOUCH_TARGET, (campaign, close)
        assert found["closeOnTop"], f"{campaign}: something covers the close button"
    return found


async def tap_close(page: Page, campaign: str, found: dict[str, Any]) -> None:
    """A finger on the centre of the close button closes the widget."""
    close = found["close"]
    await page.touchscreen.tap(close["x"] + close["width"] / 2, close["y"] + close["height"] / 2)
    await page.locator(host(campaign)).wait_for(state="detached")


async def header_links_uncovered(page: Page) -> None:
    links = await page.evaluate(HEADER_LINKS)
    assert len(links) >= 3
    covered = [link for link in links if not link["hit"]]
    assert not covered, f"covered header links: {covered}"


@pytest.mark.parametrize(("width", "height"), PHONES)
async def test_the_shop_and_its_widgets_fit_a_phone(
    phone_shop: EdgeServer, browser: Browser, page_errors: list[str], width: int, height: int
) -> None:
    ctx = await phone(browser, width, height)
    try:
        page = await new_page(ctx, page_errors)
        shown = await visit(page, f"{phone_shop.http}/demo?utm_source=facebook")
        everything = {"welcome-coupon", "hero-social", "bestsellers", "newsletter", "cart-reminder"}
        assert everything <= set(shown), shown
        await no_horizontal_overflow(page, width)

        # The coupon pop-up, its form, then the code.
        found = await fits_the_screen(page, "welcome-coupon", width, height, fixed=True)
        popup = page.locator(host("welcome-coupon"))
        await popup.locator("input[type=email]").fill("ada@example.com")
        await popup.locator("input[name=consent]").check()
        await popup.locator("button[type=submit]").tap()
        await popup.locator("[data-edge-code]").wait_for()
        found = await fits_the_screen(page, "welcome-coupon", width, height, fixed=True)
        await tap_close(page, "welcome-coupon", found)

        # The inline widgets, and the bars: the top one does not cover the header.
        await page.locator(f"{host('bestsellers')} .item").first.wait_for()
        await fits_the_screen(page, "hero-social", width, height, fixed=False)
        await fits_the_screen(page, "bestsellers", width, height, fixed=False)
        top = await fits_the_screen(page, "newsletter", width, height, fixed=True)
        bottom = await fits_the_screen(page, "cart-reminder", width, height, fixed=True)
        await header_links_uncovered(page)
        header = await page.locator("header").bounding_box()
        assert header is not None and top["outer"]["bottom"] <= header["y"] + 0.5
        # Scrolled down, the top bar stays in sight (the header has gone up).
        await page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        await page.wait_for_function("scrollY > 0")
        scrolled = await fits_the_screen(page, "newsletter", width, height, fixed=True)
        assert scrolled["outer"]["y"] == pytest.approx(0, abs=0.5)
        await no_horizontal_overflow(page, width)
        await tap_close(page, "newsletter", scrolled)
        await tap_close(page, "cart-reminder", bottom)
        await wait_acked(page)  # the closes are stored

        # Every other page of the shop, and a plain pop-up (kind: popup).
        assert "decor-popup" in await visit(page, f"{phone_shop.http}/demo/c/decor")
        await no_horizontal_overflow(page, width)
        found = await fits_the_screen(page, "decor-popup", width, height, fixed=True)
        await tap_close(page, "decor-popup", found)
        for path in ("/demo/p/LMP-01", "/demo/c/textiles", "/demo/cart", "/demo/thanks"):
            shown = await visit(page, f"{phone_shop.http}{path}")
            await no_horizontal_overflow(page, width)
            await header_links_uncovered(page)
            # the decision reaches every page; /demo/thanks has no slot for it
            if "recently-viewed" in shown and await page.locator(host("recently-viewed")).count():
                await page.locator(f"{host('recently-viewed')} .item").first.wait_for()
                await fits_the_screen(page, "recently-viewed", width, height, fixed=False)
    finally:
        await ctx.close()
    assert not page_errors, page_errors


WIDE_PAGE = '<div id="not-responsive" style="width: 1000px; height: 10px"></div>'


@pytest.mark.parametrize(("width", "height"), PHONES)
async def test_widgets_fit_the_screen_on_a_page_that_does_not(
    phone_shop: EdgeServer, browser: Browser, page_errors: list[str], width: int, height: int
) -> None:
    """A shop page 1000 px wide makes the layout viewport (where position:
    fixed lives) 1000 px wide; the pop-up and bars still fit the screen."""
    ctx = await phone(browser, width, height)
    try:
        page = await new_page(ctx, page_errors)
        url = f"{phone_shop.http}/demo/c/kitchen"
        html = patient(await (await page.request.get(url)).text())
        assert "<main>" in html
        await page.route(
            url,
            lambda route: route.fulfill(
                body=html.replace("<main>", f"<main>{WIDE_PAGE}"), content_type="text/html"
            ),
        )
        shown = await visit(page, url)
        assert {"welcome-coupon", "newsletter", "cart-reminder"} <= set(shown)
        assert await page.evaluate("window.innerWidth") > width  # the page is too wide
        found = await fits_the_screen(page, "welcome-coupon", width, height, fixed=True)
        await tap_close(page, "welcome-coupon", found)
        for campaign in ("newsletter", "cart-reminder"):
            found = await fits_the_screen(page, campaign, width, height, fixed=True)
            await tap_close(page, campaign, found)
    finally:
        await ctx.close()
    assert not page_errors, page_errors
