"""The delivery guarantees, proven against real processes sharing a real Redis:
one server, and a 3-master Redis Cluster (``--redis redis+cluster://...``).

* No lost updates: two server processes write one visitor's profile at once.
* Exactly-once applied: a whole session replayed three times counts once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from edge.core.profile import Profile, decode_profile
from edge.stores import keys
from tests.client import BROWSER_HEADERS, Visitor
from tests.cluster import RedisClusterServers, sync_client
from tests.helpers import EdgeServer, RedisServer, edge_server

FAST = {"EDGE_MAX_MESSAGES_PER_S": "100000"}
PAGE = "http://127.0.0.1/demo"


@pytest.fixture(scope="module", params=["redis", "cluster"])
def two_servers(request: pytest.FixtureRequest) -> Iterator[tuple[EdgeServer, EdgeServer, str]]:
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("cluster")
        url = cluster.url
    else:
        server: RedisServer = request.getfixturevalue("redis")
        url = server.url.replace("/0", "/3")
    with edge_server(redis_url=url, env=FAST) as a, edge_server(redis_url=url, env=FAST) as b:
        yield a, b, url


def stored_profile(redis_url: str, visitor: str) -> Profile:
    client = sync_client(redis_url)
    try:
        payload = client.hget(keys.profile("demo", visitor), "p")
    finally:
        client.close()
    assert isinstance(payload, bytes), "no profile stored"
    return decode_profile(payload)


async def page_views(tab: Visitor, count: int) -> None:
    await tab.connect()
    for _ in range(count):
        answers = await tab.track(tab.event("page_view", url=PAGE))
        assert "ack" in answers[-1]
    await tab.close()


async def test_two_processes_two_tabs_lose_no_update(
    two_servers: tuple[EdgeServer, EdgeServer, str],
) -> None:
    a, b, redis_url = two_servers
    first = Visitor(a.ws)
    second = Visitor(b.ws, visitor=first.visitor)
    await asyncio.gather(page_views(first, 1000), page_views(second, 1000))
    profile = stored_profile(redis_url, first.visitor)
    assert profile.pageviews == 2000
    assert profile.events == 2000
    assert {s.session: s.hwm for s in profile.streams} == {
        first.session: 1000,
        second.session: 1000,
    }


def shopping_session(tab: Visitor) -> list[dict[str, object]]:
    items = [{"sku": "LMP-01", "qty": 1, "price": 149.0}]
    return [
        tab.event("page_view", url=PAGE),
        tab.event(
            "product_view", url=f"{PAGE}/p/LMP-01", sku="LMP-01", category="lighting", price=149.0
        ),
        tab.event("cart", items=items, value=149.0, currency="EUR"),
        tab.event("identify", email="shopper@example.com"),
        tab.event("page_view", url=f"{PAGE}/cart"),
        tab.event("purchase", order_id="A-1001", items=items, value=149.0, currency="EUR"),
        tab.event("custom", name="review_written", props={"stars": 5}),
        *(tab.event("page_view", url=f"{PAGE}/c/lighting") for _ in range(13)),
    ]


async def test_a_session_replayed_three_times_counts_once(
    two_servers: tuple[EdgeServer, EdgeServer, str],
) -> None:
    a, b, redis_url = two_servers
    tab = Visitor(a.ws)
    events = shopping_session(tab)
    await tab.connect()
    for start in range(0, len(events), 4):
        await tab.track(*events[start : start + 4])
    await tab.close()
    before = stored_profile(redis_url, tab.visitor)
    assert (before.pageviews, before.orders, before.revenue, before.events) == (15, 1, 149.0, 20)

    # Replay 1 and 2: the same tab reconnects to each process and resends everything.
    for server in (a, b):
        again = Visitor(server.ws, visitor=tab.visitor, session=tab.session)
        assert (await again.connect())["ack"] == 20
        assert (await again.track(*events))[-1]["ack"] == 20
        await again.close()
    # Replay 3: the beacon, as a page unload would send it.
    async with httpx.AsyncClient(base_url=b.http, headers=BROWSER_HEADERS) as http:
        answer = await http.post(
            "/collect?site=demo",
            json={
                "type": "events",
                "visitor": tab.visitor,
                "session": tab.session,
                "events": events,
            },
        )
    assert answer.json() == {"type": "ack", "ack": 20}

    after = stored_profile(redis_url, tab.visitor)
    assert after == before


async def test_event_ids_catch_a_replay_under_a_new_session(
    two_servers: tuple[EdgeServer, EdgeServer, str],
) -> None:
    """Storage was wiped in the browser, so the outbox came back under a new session id."""
    a, _, redis_url = two_servers
    tab = Visitor(a.ws)
    events = shopping_session(tab)[:5]
    await tab.connect()
    await tab.track(*events)
    await tab.close()
    before = stored_profile(redis_url, tab.visitor)
    reborn = Visitor(a.ws, visitor=tab.visitor)
    await reborn.connect()
    await reborn.track(*events)
    await reborn.close()
    after = stored_profile(redis_url, tab.visitor)
    assert (after.pageviews, after.events, after.products) == (
        before.pageviews,
        before.events,
        before.products,
    )
