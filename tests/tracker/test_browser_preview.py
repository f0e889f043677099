"""Preview links in a real headless Chromium against a real edge server on the
Redis store: a tab opened with ``?edge_preview=<token>`` keeps the token for
the tab, is shown the draft at once, and gets the overlay (``/edge-preview.js``,
loaded by edge.js only in a preview) listing what was decided and why; no
other tab sees the draft, nothing the preview tab does is stored, its
``pagehide`` sends no beacon, and "end preview" makes it an ordinary visit.
A refused link shows the refusal and nothing else.

Every wait is for something the page or the server did (a decisions message,
an element, an acknowledged outbox); a widget that must not appear is checked
once the decision for that page has arrived.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis as redis_py
from playwright.async_api import Browser, BrowserContext, Page

from edge.config.sites import load_site
from edge.core import preview
from tests.browser import DESKTOP_CHROME, TIMEOUT_MS, storage, wait_acked
from tests.helpers import EdgeServer, RedisServer, demo_without_campaigns, edge_server

pytest_plugins = ["tests.browser"]  # browser, page, page_errors
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TOKEN = "admin-token-for-preview-tests-01"

CAMPAIGNS = """
campaigns:
  - id: spring
    name: Spring sale (not live yet)
    status: draft
    priority: 10
    placement: popup
    trigger: {exit_intent: true}
    audience: {visitor.identified: true}
    preview_page: /demo
    experiment:
      variants:
        - {id: a}
        - {id: b, widget: {kind: popup, headline: {en: "Spring, variant B"}}}
    widget: {kind: popup, headline: {en: "Spring, variant A"}}
  - id: free-shipping
    placement: bar
    widget: {kind: bar, headline: {en: "Free shipping over 50 EUR"}}
"""

# Before the page's scripts: record every decisions message, and every beacon.
RECORD = """
window.__decisions = [];
window.__beacons = 0;
const realBeacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (...a) => { window.__beacons++; return realBeacon(...a) };
window.edge = window.edge || function () { (edge.q = edge.q || []).push(arguments) };
edge('on', 'decisions', items => window.__decisions.push(items.map(i => i.campaign)));
"""

# In one task: an event goes into the outbox, then the page is left.
LEAVE_WITH_AN_EVENT = """
edge('track', 'custom', {name: 'leaving'});
dispatchEvent(new PageTransitionEvent('pagehide'));
"""

OVERLAY = "[data-edge-preview]"
SPRING = '[data-edge-campaign="spring"]'
BAR = '[data-edge-campaign="free-shipping"]'


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_without_campaigns(tmp_path_factory.mktemp("profiles"), CAMPAIGNS)


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    url = redis.url.replace("/0", "/15")
    redis_py.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def shop(redis_url: str, profiles: Path) -> Iterator[EdgeServer]:
    with edge_server(
        redis_url=redis_url, profiles=profiles, env={"EDGE_ADMIN_TOKEN": TOKEN}
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser, shop: EdgeServer) -> AsyncIterator[BrowserContext]:
    """Overrides tests.browser's ``context``: decisions and beacons recorded."""
    ctx = await browser.new_context(user_agent=DESKTOP_CHROME)
    ctx.set_default_timeout(TIMEOUT_MS)
    await ctx.add_init_script(RECORD)
    yield ctx
    await ctx.close()


def link(profiles: Path, shop: EdgeServer, variant: str | None = None) -> str:
    """A preview link of the draft, as ``edge preview`` prints it, on the test's server."""
    site = load_site(profiles / "demo")
    _, token = preview.mint(TOKEN.encode(), site, "spring", now=time.time(), variant=variant)
    url = preview.link(preview.page_for(site.decisioning.by_id["spring"], site), token)
    return url.replace("http://127.0.0.1:8000", shop.http)  # the site's first allowed origin


def snapshot(url: str) -> dict[bytes, bytes | None]:
    client = redis_py.Redis.from_url(url)
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


async def decided(page: Page, url: str) -> list[str]:
    """Open ``url``; the campaigns of its first decision, once everything is acknowledged."""
    await page.goto(url)
    await page.wait_for_function("window.__decisions && __decisions.length > 0")
    await wait_acked(page)
    first: list[str] = await page.evaluate("__decisions[0]")
    return first


async def overlay_lines(page: Page, which: str) -> list[str]:
    lines: list[str] = await page.eval_on_selector(
        OVERLAY,
        f"h => [...h.shadowRoot.querySelectorAll('[data-{which}] li')].map(li => li.textContent)",
    )
    return lines


async def test_a_preview_tab_sees_the_draft_and_why_and_stores_nothing(
    page: Page, shop: EdgeServer, profiles: Path, redis_url: str
) -> None:
    before = snapshot(redis_url)
    url = link(profiles, shop, variant="b")
    token = url.split("edge_preview=")[1]
    assert await decided(page, url) == ["spring", "free-shipping"]
    # The draft, at once (its live trigger is exit intent), in the arm the link names.
    await page.locator(f"{SPRING} >> text=Spring, variant B").wait_for()
    await page.locator(f"{BAR} >> text=Free shipping").wait_for()
    # The overlay: what was shown, and every campaign's reason.
    grant = page.locator(f"{OVERLAY} [data-grant]")
    await grant.wait_for()
    assert "campaign spring, variant b" in await grant.inner_text()
    assert await overlay_lines(page, "shown") == [
        "spring in popup (variant b)",
        "free-shipping in bar (variant a)",
    ]
    trace = await overlay_lines(page, "trace")
    assert trace[0].startswith("preview: campaign spring shown in popup (preview of variant b)")
    assert "campaign spring: status draft: shown to no one else" in trace
    assert (
        "campaign spring, if it were live: audience failed at visitor.identified "
        "(= True, was False)" in trace
    )
    assert "campaign free-shipping: shown in bar (audience matched)" in trace
    assert (await storage(page, "sessionStorage"))["edge_preview"] == token

    # The next page of the tab, without the parameter: still a preview.
    await page.goto(f"{shop.http}/demo/c/lighting")
    await page.wait_for_function("window.__decisions && __decisions.length > 0")
    await page.locator(f"{SPRING} >> text=Spring, variant B").wait_for()
    await page.locator(f"{OVERLAY} [data-trace] li").first.wait_for()
    await wait_acked(page)
    # Leaving it sends no beacon (a preview's events are never stored), though
    # its outbox holds an event not acknowledged yet (sent on the next turn).
    await page.evaluate(LEAVE_WITH_AN_EVENT)
    assert await page.evaluate("__beacons") == 0
    assert snapshot(redis_url) == before


async def test_another_tab_never_sees_the_draft_and_an_ordinary_one_beacons(
    page: Page, shop: EdgeServer
) -> None:
    assert await decided(page, f"{shop.http}/demo") == ["free-shipping"]
    assert await page.locator(SPRING).count() == 0
    assert await page.locator(OVERLAY).count() == 0
    # The beacon check of the test above, as a control: an ordinary tab does send one.
    await page.evaluate(LEAVE_WITH_AN_EVENT)
    assert await page.evaluate("__beacons") == 1


async def test_end_preview_makes_the_tab_an_ordinary_visit(
    page: Page, shop: EdgeServer, profiles: Path
) -> None:
    url = link(profiles, shop)
    assert await decided(page, url) == ["spring", "free-shipping"]
    await page.locator(f"{SPRING} >> text=Spring, variant A").wait_for()
    await page.locator(f"{OVERLAY} [data-end]").click()
    await page.wait_for_url(f"{shop.http}/demo")
    await page.wait_for_function("window.__decisions && __decisions.length > 0")
    await wait_acked(page)
    assert await page.evaluate("__decisions[0]") == ["free-shipping"]
    assert await page.locator(SPRING).count() == 0
    assert await page.locator(OVERLAY).count() == 0
    assert "edge_preview" not in await storage(page, "sessionStorage")


async def test_a_refused_link_shows_why_and_nothing_else(
    page: Page, shop: EdgeServer, redis_url: str
) -> None:
    before = snapshot(redis_url)
    await page.goto(f"{shop.http}/demo?edge_preview=demo.spring.-.-.1.{'0' * 64}")
    refused = page.locator(f"{OVERLAY} [data-grant].refused")
    await refused.wait_for()
    assert "preview refused: preview token signature does not match" in await refused.inner_text()
    await page.wait_for_function("window.__decisions && __decisions.length > 0")
    await wait_acked(page)
    assert await page.evaluate("__decisions[0]") == []  # nothing shown, not even live campaigns
    assert await page.locator(BAR).count() == 0
    assert "edge_preview" not in await storage(page, "sessionStorage")
    assert snapshot(redis_url) == before
    # The tab's next page is an ordinary visit.
    assert await decided(page, f"{shop.http}/demo/c/lighting") == ["free-shipping"]
