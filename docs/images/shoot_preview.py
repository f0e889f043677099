"""Take the preview overlay's screenshot (docs/images/preview-overlay.png).

    .venv/bin/python docs/images/shoot_preview.py

Starts an edge server (embedded store) on the demo profile with an admin
token, signs a preview link of the demo's draft ``spring-sale`` (variant b),
opens it in headless Chromium (/usr/bin/chromium) at 1200x800 and saves the
page with the draft's pop-up and the overlay listing every campaign's reason.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from playwright.async_api import async_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository, for tests.*

from edge.config.sites import load_site  # noqa: E402
from edge.core import preview  # noqa: E402
from tests.browser import CHROMIUM, DESKTOP_CHROME, LAUNCH_ARGS  # noqa: E402
from tests.helpers import PROFILES, edge_server  # noqa: E402

TOKEN = "admin-token-for-the-screenshot-0"


async def shoot(base: str) -> None:
    site = load_site(PROFILES / "demo")
    _, token = preview.mint(TOKEN.encode(), site, "spring-sale", now=time.time(), variant="b")
    page_url = preview.page_for(site.decisioning.by_id["spring-sale"], site)
    url = preview.link(page_url, token).replace("http://127.0.0.1:8000", base)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            ctx = await browser.new_context(
                user_agent=DESKTOP_CHROME, viewport={"width": 1200, "height": 800}
            )
            page = await ctx.new_page()
            await page.goto(url)
            await page.locator('[data-edge-campaign="spring-sale"] >> text=linen').wait_for()
            await page.locator('[data-edge-campaign="bestsellers"] .item').first.wait_for()
            await page.locator("[data-edge-preview] [data-trace] li").first.wait_for()
            await page.screenshot(path=HERE / "preview-overlay.png")
            await ctx.close()
        finally:
            await browser.close()


def main() -> None:
    with edge_server(env={"EDGE_ADMIN_TOKEN": TOKEN}) as server:
        asyncio.run(shoot(server.http))


if __name__ == "__main__":
    main()
