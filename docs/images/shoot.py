"""Take the README's phone screenshots (docs/images/phone-*.png).

    .venv/bin/python docs/images/shoot.py

Starts an edge server (embedded store) on a copy of the demo profile whose
campaigns show at once (the setup of tests/widgets/test_browser_phone.py),
opens the demo shop in headless Chromium (/usr/bin/chromium) as a 390x844
touch phone, and saves:

- phone-home.png: the home page from a social link, the coupon closed: the
  newsletter bar above the header, the hero banner for social traffic, the
  cart reminder at the bottom;
- phone-coupon.png: the first-order coupon pop-up over the same page.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository, for tests.*

from tests.browser import CHROMIUM, LAUNCH_ARGS  # noqa: E402
from tests.helpers import edge_server  # noqa: E402
from tests.widgets.test_browser_phone import (  # noqa: E402
    PHONE_CHROME,
    host,
    phone,
    phone_profiles,
    visit,
)

WIDTH, HEIGHT = 390, 844


async def shoot(base: str) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*LAUNCH_ARGS, f"--user-agent={PHONE_CHROME}"]
        )
        try:
            ctx = await phone(browser, WIDTH, HEIGHT)
            page = await ctx.new_page()
            await visit(page, f"{base}/demo?utm_source=instagram")
            popup = page.locator(host("welcome-coupon"))
            await popup.locator("form").wait_for()
            await page.locator(f"{host('bestsellers')} .item").first.wait_for()
            await page.screenshot(path=HERE / "phone-coupon.png")
            await popup.locator("button.close").tap()
            await popup.wait_for(state="detached")
            await page.screenshot(path=HERE / "phone-home.png")
            await ctx.close()
        finally:
            await browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        profiles = phone_profiles(Path(folder))
        with edge_server(profiles=profiles) as server:
            asyncio.run(shoot(server.http))
    for name in ("phone-home.png", "phone-coupon.png"):
        print(f"{HERE / name}: {(HERE / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
