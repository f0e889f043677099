"""The automation path end to end: events posted to ``POST /collect`` (the
beacon path) of a real edge server on a real Redis come out of the site's
Redis Stream, once each, even when the beacon is sent again."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from edge.core.automation import AutomationEvent
from edge.stores import keys
from tests.client import BROWSER_HEADERS, new_id
from tests.helpers import PROFILES, EdgeServer, RedisServer, edge_server

SHOP = "http://127.0.0.1:8000"
DB = 6  # a Redis database of its own


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo site, with a cart abandoned after 3 seconds instead of 30 minutes."""
    folder = tmp_path_factory.mktemp("profiles")
    shutil.copytree(PROFILES / "demo", folder / "demo")
    site = folder / "demo" / "site.yaml"
    text = site.read_text()
    assert "cart_abandon_min: 30 " in text
    site.write_text(text.replace("cart_abandon_min: 30 ", "cart_abandon_min: 0.05 "))
    return folder


@pytest.fixture(scope="module")
def server(redis: RedisServer, profiles: Path) -> Iterator[EdgeServer]:
    url = redis.url.replace("/0", f"/{DB}")
    env = {"EDGE_AUTOMATION_CLAIM_INTERVAL_S": "0.2"}
    with edge_server(redis_url=url, profiles=profiles, env=env) as running:
        yield running


@pytest.fixture
async def stream(redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis.url.replace("/0", f"/{DB}"))
    yield client
    await client.aclose()


async def post(server: EdgeServer, visitor: str, session: str, events: list[dict[str, Any]]) -> int:
    """One beacon; returns the acknowledged sequence number."""
    body = {"type": "events", "visitor": visitor, "session": session, "events": events}
    async with httpx.AsyncClient(base_url=server.http, headers=BROWSER_HEADERS) as http:
        answer = await http.post(
            "/collect?site=demo",
            content=json.dumps(body),
            headers={"content-type": "text/plain"},  # as navigator.sendBeacon sends it
        )
    assert answer.status_code == 200, answer.text
    ack: int = answer.json()["ack"]
    return ack


async def events_of(client: aioredis.Redis, visitor: str) -> list[AutomationEvent]:
    entries = await client.xrange(keys.automation_stream("demo"))
    found = [AutomationEvent.from_fields(fields) for _, fields in entries]
    return [e for e in found if e.visitor == visitor]


async def wait_for(
    client: aioredis.Redis, visitor: str, types: set[str], timeout_s: float = 30
) -> list[AutomationEvent]:
    """The visitor's events once every type in ``types`` is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await events_of(client, visitor)
        if types <= {e.type for e in found}:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {types - {e.type for e in found}} in {found}")
        await asyncio.sleep(0.1)


def page_view(seq: int, path: str, **more: Any) -> dict[str, Any]:
    return {"seq": seq, "id": f"pv-{seq:06d}", "type": "page_view", "url": SHOP + path, **more}


async def test_a_beacon_purchase_and_watched_page_reach_the_stream_once(
    server: EdgeServer, stream: aioredis.Redis
) -> None:
    visitor, session = new_id(), new_id()
    items = [{"sku": "LMP-01", "qty": 1, "price": 49.0, "name": "Oak lamp"}]
    events = [
        page_view(1, "/demo", referrer="https://www.google.com/search?q=oak+lamp"),
        page_view(2, "/demo/c/lighting"),  # a watched page of the demo (site.yaml)
        {"seq": 3, "id": "order-000003", "type": "purchase", "order_id": "D-1001"}
        | {"items": items, "value": 49.0, "currency": "EUR", "url": SHOP + "/demo/thanks"},
    ]
    assert await post(server, visitor, session, events) == 3
    found = await wait_for(stream, visitor, {"watched_page_visited", "purchase"})
    watched = [e for e in found if e.type == "watched_page_visited"]
    [purchase] = [e for e in found if e.type == "purchase"]
    assert [e.payload for e in watched] == [{"path": "/demo/c/lighting"}]
    assert purchase.site == "demo"
    assert purchase.customer is None  # anonymous: no customer id, never an email
    assert purchase.payload == {
        "order_id": "D-1001",
        "value": 49.0,
        "currency": "EUR",
        "items": [{"sku": "LMP-01", "qty": 1, "price": 49.0}],
    }
    # The tracker resends its outbox when unsure: acknowledged, not emitted again.
    assert await post(server, visitor, session, events) == 3
    assert await post(server, visitor, session, [page_view(4, "/demo/p/lamp-1")]) == 4
    await asyncio.sleep(0.5)  # anything the resend wrongly caused would be published by now
    again = await events_of(stream, visitor)
    assert sorted(e.type for e in again) == ["purchase", "watched_page_visited"]


async def test_a_beacon_cart_left_alone_becomes_cart_abandoned_once(
    server: EdgeServer, stream: aioredis.Redis
) -> None:
    visitor, session = new_id(), new_id()
    items = [{"sku": "MUG-02", "qty": 2, "price": 18.0, "name": "Stoneware mug"}]
    cart = {"seq": 2, "id": "cart-000002", "type": "cart", "items": items}
    cart |= {"value": 36.0, "currency": "EUR", "url": SHOP + "/demo/cart"}
    assert await post(server, visitor, session, [page_view(1, "/demo/p/mug-2"), cart]) == 2
    found = await wait_for(stream, visitor, {"cart_abandoned"})
    [abandoned] = [e for e in found if e.type == "cart_abandoned"]
    assert abandoned.payload["items"] == [
        {"sku": "MUG-02", "qty": 2, "price": 18.0, "name": "Stoneware mug"}
    ]
    assert abandoned.payload["value"] == 36.0
    await asyncio.sleep(1.0)  # several claim intervals: the deadline was claimed once
    assert [e.type for e in await events_of(stream, visitor)].count("cart_abandoned") == 1
