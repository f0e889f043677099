"""Time to the first decision in a real browser on a slow network.

``python -m benchmarks network [--rtt-ms 40,80,120,200] [--loads 10]``

A real headless Chromium (Debian's, at /usr/bin/chromium) opens the demo
shop's home page as a new visitor arriving from a Facebook ad, through a TCP
proxy that delays every chunk by half the round trip in each direction, so
the page, ``edge.js`` and the WebSocket all pay the round trip (loopback,
plain ``ws://``: a real ``wss://`` adds the TLS handshake's round trip).
For each round trip it reports ``edge.state().decidedMs`` (from the script
starting to the first ``decisions`` message) and how often the hero slot
showed the ad's banner instead of the shop's default hero (the slot timeout
is 1,000 ms; later fills happen only out of view).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from playwright.async_api import async_playwright

from tests.faults.proxy import DelayProxy
from tests.helpers import edge_server

CHROMIUM = "/usr/bin/chromium"
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36"
)
HERO = '[data-edge-slot="hero-banner"] > [data-edge-campaign="hero-social"]'


async def one_load(browser: Any, url: str) -> tuple[float, bool, float]:
    """(decidedMs, hero filled by the ad's banner, page load ms) of a fresh visitor."""
    context = await browser.new_context(user_agent=CHROME_UA)
    page = await context.new_page()
    started = time.perf_counter()
    await page.goto(url, wait_until="load")
    loaded_ms = (time.perf_counter() - started) * 1000
    await page.wait_for_function("() => window.edge && edge.state && edge.state().decidedMs > 0")
    decided = float(await page.evaluate("() => edge.state().decidedMs"))
    await page.wait_for_timeout(1200)  # past the slot timeout: did the hero get filled?
    filled = await page.locator(HERO).count() > 0
    await context.close()
    return decided, filled, loaded_ms


async def measure(rtts_ms: list[int], loads: int) -> list[dict[str, Any]]:
    rows = []
    with edge_server() as shop:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            for rtt in rtts_ms:
                proxy = DelayProxy(shop.port, lambda rtt=rtt: rtt / 2000)
                await proxy.start()
                url = f"http://127.0.0.1:{proxy.port}/demo?utm_source=facebook&utm_medium=paid"
                results = [await one_load(browser, url) for _ in range(loads)]
                await proxy.close()
                decided = sorted(r[0] for r in results)
                rows.append(
                    {
                        "rtt_ms": rtt,
                        "decided_median_ms": statistics.median(decided),
                        "decided_max_ms": decided[-1],
                        "filled": sum(r[1] for r in results),
                        "loads": loads,
                        "page_load_median_ms": statistics.median(r[2] for r in results),
                    }
                )
            await browser.close()
    return rows


def run(rtts_ms: list[int], loads: int) -> None:
    rows = asyncio.run(measure(rtts_ms, loads))
    print(
        "| round trip | first decision after the script started: median / max "
        "| hero filled | page load (median) |"
    )
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['rtt_ms']} ms | {r['decided_median_ms']:.0f} / {r['decided_max_ms']:.0f} ms | "
            f"{r['filled']}/{r['loads']} | {r['page_load_median_ms']:.0f} ms |"
        )
    sys.stdout.flush()
