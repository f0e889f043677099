"""Playwright fixtures and helpers for tests that drive a real headless Chromium.

Register them from a test module with ``pytest_plugins = ["tests.browser"]`` (a
plugin is registered once, so all modules share the session fixtures) and mark
its tests ``pytest.mark.asyncio(loop_scope="session")``: one browser for the
whole run (``browser``), a fresh context per test (``context``: its own
localStorage, sessionStorage and cookies) and a page in it (``page``). Uncaught
page errors are collected in ``page_errors``; the ``page`` fixture fails the
test at teardown if any occurred and the test did not clear the list.

The async API on one session-scoped loop: the sync API keeps its loop marked
as running between calls, which breaks every pytest-asyncio test that runs
while the session's browser is alive.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest loads
it as a plugin, too late to rewrite its asserts (pytest would warn, an error here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 15_000  # default for every Playwright wait and action

T = TypeVar("T")

# The tracker has loaded, its socket is up and every event it holds is acknowledged.
ACKED = "() => !!(window.edge && edge.state && edge.state().connected && !edge.state().outbox)"


# Headless Chromium says "HeadlessChrome", which edge (rightly) counts as a bot:
# bots get no profile and no widgets. The tests are shoppers, so they say so.
DESKTOP_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36"
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Also on the command line: a beacon sent while a page unloads does
            # not carry the context's override, and would count as a robot's.
            args=[*LAUNCH_ARGS, f"--user-agent={DESKTOP_CHROME}"],
        )
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(user_agent=DESKTOP_CHROME)
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page_errors() -> list[str]:
    return []


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext, page_errors: list[str]) -> AsyncIterator[Page]:
    tab = await new_page(context, page_errors)
    yield tab
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


async def new_page(context: BrowserContext, errors: list[str] | None = None) -> Page:
    """A page of ``context`` that records uncaught page errors into ``errors``."""
    tab = await context.new_page()
    if errors is not None:
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
    return tab


async def poll(
    fn: Callable[[], Awaitable[T | None] | T | None],
    timeout_s: float = 10.0,
    what: str = "condition",
) -> T:
    """Call ``fn`` (sync or async) until it returns something truthy; return it,
    or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout_s}s (last: {value!r})")
        await asyncio.sleep(0.05)


async def wait_acked(page: Page, timeout_ms: float = TIMEOUT_MS) -> dict[str, Any]:
    """Wait until the tracker is connected with an empty outbox; return ``edge.state()``."""
    await page.wait_for_function(ACKED, timeout=timeout_ms)
    return await tracker_state(page)


async def tracker_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate("edge.state()")
    return state


async def storage(page: Page, area: str = "localStorage") -> dict[str, str]:
    """Every key of the page's ``localStorage`` or ``sessionStorage``."""
    items: dict[str, str] = await page.evaluate(f"Object.assign({{}}, {area})")
    return items
