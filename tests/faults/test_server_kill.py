"""The edge server SIGKILLed under a real browser, then started again on the
same port: the tracker (static/js/edge.js) in headless Chromium reconnects
with jittered backoff and resends what was not acknowledged.

The first server talks to Redis through a proxy (``tests/faults/proxy.py``)
that turns slow right before the kill, from the write that holds a burst of
events on: the burst is stored in Redis but its acknowledgement never
reaches the page, so the resend after the restart holds events that are
already stored, as a kill at the wrong moment leaves them. (The proxy slows
down on seeing the burst's bytes, not when the test says so: a write of the
stream sent between the test's word and the burst would time out, and a few
of those open the store's breaker, so the burst would never be sent.)

Checked from the stored profile (read with ``RedisStore``):

* right after the kill: every event the page saw acknowledged is stored (an
  ``ack`` is only sent after the write returned), and so is the burst that
  was not acknowledged;
* after the restart and the resend: every event the page made is stored
  exactly once (pageviews, custom events and the applied-event count equal
  what the page sent; the resent ones were recognised as duplicates);
* the reconnect attempts while the server was down were spaced by the
  tracker's backoff (random, at most 0.5 s times 2^attempt).

Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page

from edge.core.profile import Profile
from edge.stores.redis import RedisStore
from tests.browser import poll, tracker_state, wait_acked
from tests.faults.proxy import delay_proxy
from tests.helpers import RedisServer, demo_without_campaigns, edge_server, redis_server

pytest_plugins = ["tests.browser"]  # browser, context, page, page_errors
pytestmark = [
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(60),
]

SITE = "demo"
TICK_MS = 100  # one message (a page view and a custom event) per tick: 10 messages/s
TICKS = 60  # 120 events, plus a burst of 40 right before the kill: under the
BURST = 40  # tracker's 200-event outbox even if none were acknowledged

# Records every message with an ``ack`` the page received and every socket the
# tracker opens from now on (time, for the backoff), through its public API.
RECORDER = """() => {
  window.__acks = [];
  window.__sockets = [];
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    window.__sockets.push(performance.now());
    return new Native(...args);
  };
  window.WebSocket.prototype = Native.prototype;
  const note = m => typeof m.ack == 'number' && window.__acks.push(m.ack);
  edge('on', 'ack', note);
  edge('on', 'decisions', (items, m) => note(m));
  edge('on', 'welcome', note);
}"""

STREAM = """([tickMs, ticks]) => {
  window.__made = {page_view: 0, custom: 0, burst: 0};
  window.__ticks = 0;
  window.__streaming = setInterval(() => {
    if (window.__ticks >= ticks) return clearInterval(window.__streaming);
    const n = ++window.__ticks;
    edge('track', 'page_view', {title: 'page ' + n});
    edge('track', 'custom', {name: 'tick', props: {n}});
    window.__made.page_view += 1;
    window.__made.custom += 1;
  }, tickMs);
}"""

# One message of ``n`` events: stored, never acknowledged (see the docstring).
BURST_JS = """n => {
  for (let i = 0; i < n; i++) edge('track', 'custom', {name: 'burst', props: {i}});
  window.__made.burst += n;
}"""


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo shop without campaigns: widget reports would add events of
    their own, and this test counts the page's."""
    return demo_without_campaigns(tmp_path_factory.mktemp("profiles"))


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def store(redis: RedisServer) -> AsyncIterator[RedisStore]:
    the_store = RedisStore.from_url(redis.url, socket_timeout_s=5, connect_timeout_s=5)
    yield the_store
    await the_store.close()


def custom_total(profile: Profile, name: str) -> int:
    return next((c.total for c in profile.custom if c.name == name), 0)


async def stored(store: RedisStore, visitor: str) -> Profile:
    found = await store.load(SITE, visitor)
    assert found is not None, f"no profile stored for {visitor}"
    return found.profile


async def page_value(page: Page, expression: str) -> Any:
    return await page.evaluate(expression)


class SlowFromBurst:
    """The proxy's delay: none until a chunk on its way to Redis holds the
    burst's event name, 2 s per chunk from that chunk on, both ways (the burst
    is stored; its reply comes back long after the server's deadline)."""

    NAME = b"burst"

    def __init__(self) -> None:
        self.delay_s = 0.0
        self._tail = b""  # the name may straddle two chunks

    def sees(self, data: bytes) -> None:
        if self.NAME in self._tail + data:
            self.delay_s = 2.0
        self._tail = data[-len(self.NAME) :]


async def test_server_killed_mid_stream_loses_and_doubles_nothing(
    page: Page, redis: RedisServer, store: RedisStore, profiles: Path
) -> None:
    slow = SlowFromBurst()
    async with delay_proxy(redis.port, lambda: slow.delay_s, slow.sees) as proxy:
        await _kill_and_restart(page, redis, store, profiles, proxy.port)
        assert slow.delay_s > 0, "the burst's write never reached the proxy"


async def _kill_and_restart(
    page: Page, redis: RedisServer, store: RedisStore, profiles: Path, proxy_port: int
) -> None:
    proxied = f"redis://127.0.0.1:{proxy_port}/0"
    with edge_server(redis_url=proxied, profiles=profiles) as first:
        await page.goto(f"{first.http}/demo")
        await wait_acked(page)
        await page.evaluate(RECORDER)
        await page.evaluate(STREAM, [TICK_MS, TICKS])
        await poll(lambda: page_value(page, "window.__ticks >= 15"), 10, "streaming")

        acked = max(await page_value(page, "window.__acks"))
        state = await tracker_state(page)
        visitor, session = state["visitor"], state["session"]
        await page.evaluate(BURST_JS, BURST)  # Redis turns slow with its write
        await poll(lambda: _stored_burst(store, visitor), 10, "the burst stored")
        first.process.kill()  # SIGKILL: no drain, no goodbye
        first.process.wait(5)
        killed = time.monotonic()
        await poll(lambda: _disconnected(page), 5, "the tracker noticed the server was gone")
        acked = max(await page_value(page, "window.__acks"))

        # Acknowledged means stored: all of it is in Redis, written by the dead server.
        snapshot = await stored(store, visitor)
        assert snapshot.acked(session) >= acked
        assert snapshot.events >= acked  # events 1..acked, each applied once
        assert custom_total(snapshot, "burst") == BURST  # stored ...
        assert acked < snapshot.acked(session)  # ... and not acknowledged
        made_at_kill = 1 + await page_value(
            page, "window.__made.page_view + window.__made.custom + window.__made.burst"
        )

        await asyncio.sleep(1.5)  # down for a while: the tracker retries and backs off
        with edge_server(redis_url=redis.url, profiles=profiles, port=first.port):
            restarted = time.monotonic()
            await poll(lambda: page_value(page, f"window.__ticks >= {TICKS}"), 30, "all ticks")
            final = await wait_acked(page, timeout_ms=30_000)
            recovered = time.monotonic()
            made = await page_value(page, "window.__made")
            sockets = await page_value(page, "window.__sockets")
            profile = await stored(store, visitor)

    total = 1 + made["page_view"] + made["custom"] + made["burst"]  # 1: the automatic view
    gaps = [b - a for a, b in itertools.pairwise(sockets)]
    print(
        f"\nserver killed: {made_at_kill} events made by the disconnect ({acked} acked, "
        f"{snapshot.events} stored at the kill, hwm {snapshot.acked(session)}); "
        f"down {restarted - killed:.2f} s "
        f"(restart included); {len(sockets)} socket attempts, gaps "
        f"{', '.join(f'{g:.0f}' for g in gaps)} ms; all acked "
        f"{recovered - restarted:.2f} s after the restart; stored events {profile.events} "
        f"of {total}, pageviews {profile.pageviews}, custom {custom_total(profile, 'tick')}"
        f" + {custom_total(profile, 'burst')}"
    )
    assert final["seq"] == total and final["outbox"] == 0
    assert final["session"] == session and final["visitor"] == visitor
    # Exactly once: nothing lost (acked before the kill or resent after it), nothing twice.
    assert profile.events == total
    assert profile.pageviews == 1 + made["page_view"]
    assert custom_total(profile, "tick") == made["custom"]
    assert custom_total(profile, "burst") == made["burst"] == BURST
    assert [(s.session, s.hwm) for s in profile.streams] == [(session, total)]
    # Reconnected: at least one failed attempt while down, then one that held,
    # each retry after a random delay of at most 0.5 s * 2^(failures so far).
    assert len(sockets) >= 2
    for failures, gap_ms in enumerate(gaps, start=1):
        assert gap_ms <= 500 * 2**failures + 250, (failures, gaps)  # + timer slack


async def _stored_burst(store: RedisStore, visitor: str) -> bool:
    found = await store.load(SITE, visitor)
    return found is not None and custom_total(found.profile, "burst") > 0


async def _disconnected(page: Page) -> dict[str, Any] | None:
    state = await tracker_state(page)
    return None if state["connected"] else state
