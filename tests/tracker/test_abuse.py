"""What clients cannot do (issue 12), over real sockets against real servers.

Each test is a repro from the attacker-minded review, now refused or harmless.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from edge.core.profile import decode_profile
from edge.stores import keys
from tests.client import Visitor, new_id
from tests.helpers import PROFILES, EdgeServer, RedisServer, edge_server


@pytest.fixture(scope="module")
def on_redis(redis: RedisServer) -> Iterator[EdgeServer]:
    env = {"EDGE_MAX_MESSAGES_PER_S": "1000"}  # these tests send fast on purpose
    with edge_server(redis_url=redis.url.replace("/0", "/3"), env=env) as running:
        yield running


async def test_duplicates_during_a_write_do_not_stop_storing(on_redis: EdgeServer) -> None:
    """Item 0: one tab sends new events while another resends one already
    stored; a resent event arriving while the profile's write was in flight
    killed the store writer, and from then on no visitor's event was stored."""
    a = Visitor(on_redis.ws)
    b = Visitor(on_redis.ws, visitor=a.visitor)
    await a.connect()
    await b.connect()
    stored = b.event("page_view", url="http://127.0.0.1/demo")
    await b.track(stored)

    async def new_events() -> None:
        for _ in range(80):
            event = a.event("custom", name="tick")
            answers = await a.track(event)
            assert answers[-1]["ack"] == event["seq"], answers

    async def resends() -> None:
        for _ in range(80):
            answers = await b.track(stored)  # a duplicate, acknowledged again
            assert answers[-1]["ack"] == stored["seq"], answers

    await asyncio.wait_for(asyncio.gather(new_events(), resends()), 60)
    fresh = Visitor(on_redis.ws)  # and the server still stores for everybody
    await fresh.connect()
    answers = await asyncio.wait_for(fresh.track(fresh.event("identify", email="a@b.example")), 5)
    assert answers[-1]["ack"] == 1, answers
    for tab in (a, b, fresh):
        await tab.close()


SHOP = "http://127.0.0.1/demo"
CONVERT = {"variant": "a", "action": "convert"}
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def errors(answers: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(a["code"], a.get("seq")) for a in answers if a["type"] == "error"]


def coupons(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in answers if a["type"] == "coupon"]


async def test_a_coupon_needs_its_widget_shown_first(on_redis: EdgeServer) -> None:
    """Item 1: a brand-new visitor converting the win-back coupon (audience:
    identified, lapsed, high value) got a BACK20 code."""
    tab = Visitor(on_redis.ws)
    await tab.connect()
    convert = tab.event("widget", campaign="winback-high-value", **CONVERT)
    answers = await tab.track(convert)
    assert errors(answers) == [("not_offered", convert["seq"])]
    assert coupons(answers) == []
    assert answers[-1]["ack"] == convert["seq"]  # refused, and acknowledged: no resend
    await tab.close()


async def test_a_pool_cannot_be_drained_by_fresh_visitor_ids(on_redis: EdgeServer) -> None:
    """Item 1: 7 fresh visitor ids emptied a 5-code pool meant for others."""
    for _ in range(7):
        tab = Visitor(on_redis.ws)
        await tab.connect()
        answers = await tab.track(tab.event("widget", campaign="welcome-coupon", **CONVERT))
        assert coupons(answers) == [] and errors(answers)[0][0] == "not_offered"
        await tab.close()


async def test_robots_get_no_coupons(on_redis: EdgeServer) -> None:
    ws = await connect(
        f"{on_redis.ws}/ws?site=demo", compression=None, user_agent_header=GOOGLEBOT
    )
    hello = {"type": "hello", "v": 1, "visitor": new_id(), "session": new_id(), "url": SHOP}
    await ws.send(json.dumps(hello))
    assert json.loads(await ws.recv())["type"] == "welcome"
    event = {"seq": 1, "id": "robot0000001", "type": "widget", "campaign": "welcome-coupon"}
    event.update(CONVERT)
    await ws.send(json.dumps({"type": "events", "events": [event]}))
    answers = [json.loads(await ws.recv()), json.loads(await ws.recv())]
    assert [a["type"] for a in answers] == ["error", "ack"]
    assert answers[0]["code"] == "robot"
    await ws.close()


async def test_the_audience_is_checked_again_when_the_code_is_revealed(
    on_redis: EdgeServer,
) -> None:
    """Shown the first-order coupon while unknown, the visitor signs in with
    another message first: by the time of the form they are known, and a
    first-order coupon is not for them any more."""
    tab = Visitor(on_redis.ws)
    await tab.connect()
    for _ in range(3):
        answers = await tab.track(tab.event("page_view", url=SHOP))
    assert "welcome-coupon" in [i["campaign"] for i in answers[-1]["items"]]
    await tab.track(tab.event("identify", email="known@example.com", marketing_consent=True))
    convert = tab.event("widget", campaign="welcome-coupon", **CONVERT)
    answers = await tab.track(convert)
    assert errors(answers) == [("not_eligible", convert["seq"])]
    assert "visitor.identified" in next(a for a in answers if a["type"] == "error")["message"]
    await tab.close()


async def test_made_up_campaigns_arms_and_products_leave_no_trace(
    on_redis: EdgeServer, redis: RedisServer
) -> None:
    """Item 2: arms named like markup appeared in the report, and random
    campaign ids and SKUs created Redis keys kept 400 days."""
    tab = Visitor(on_redis.ws)
    await tab.connect()
    answers = await tab.track(tab.event("page_view", url=SHOP))
    shown = {i["campaign"] for i in answers[-1]["items"]}
    assert "bestsellers" in shown
    made_up = [
        tab.event("widget", campaign=f"random-{n}", variant="a", action="impression")
        for n in range(20)
    ]
    markup = "<img src=x onerror=alert(1)>"
    made_up.append(tab.event("widget", campaign="bestsellers", variant=markup, action="click"))
    answers = await tab.track(*made_up)
    assert [code for code, _ in errors(answers)] == ["not_offered"] * 21
    skus = [
        tab.event("product_view", url=f"{SHOP}/p/x", sku=f"NOPE-{n}", name="x", category="x")
        for n in range(20)
    ]
    await tab.track(*skus)
    await asyncio.sleep(0.3)  # the statistics and signals recorder runs in the background
    db = redis.url.rsplit("/", 1)[0] + "/3"
    client = aioredis.Redis.from_url(db)
    try:
        stats = [k async for k in client.scan_iter(match="edge:st:*random-*")]
        arms = [
            field
            async for key in client.scan_iter(match="edge:st:*bestsellers*")
            for field in await client.hkeys(key)
        ]
        signal_keys = [k async for k in client.scan_iter(match="edge:sig:*NOPE-*")]
        ranked = [
            m
            async for key in client.scan_iter(match="edge:sig:*:tr:*")
            for m in await client.zrange(key, 0, -1)
        ]
    finally:
        await client.aclose()
    assert stats == [] and signal_keys == []
    assert not any(b"img" in f for f in arms)
    assert not any(m.startswith(b"NOPE-") for m in ranked)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{on_redis.http}/metrics")).text
    assert 'edge_refusals_total{code="not_offered"' in metrics
    assert "edge_signals_dropped_total" in metrics
    await tab.close()


async def test_decisions_carry_only_what_the_protocol_lists(on_redis: EdgeServer) -> None:
    """Item 6: every decision carried the raw widget configuration (coupon
    source and prefix, pool files, template names)."""
    tab = Visitor(on_redis.ws)
    await tab.connect()
    for _ in range(3):
        answers = await tab.track(tab.event("page_view", url=SHOP))
    items = answers[-1]["items"]
    assert items
    listed = {"campaign", "variant", "placement", "trigger", "step", "why", "html", "holdout"}
    for item in items:
        assert set(item) <= listed, item
        assert "WELCOME" not in json.dumps(item)  # the coupon prefix stays on the server
    await tab.close()


@pytest.fixture(scope="module")
def consent_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    """The demo shop with ``tracking.require_consent: true``."""
    profiles = tmp_path_factory.mktemp("profiles")
    shutil.copytree(PROFILES / "demo", profiles / "demo")
    site = profiles / "demo" / "site.yaml"
    site.write_text(
        site.read_text().replace("  tracking:\n", "  tracking:\n    require_consent: true\n")
    )
    with edge_server(profiles=profiles) as running:
        yield running


async def test_no_coupon_without_consent_where_the_site_requires_it(
    consent_site: EdgeServer,
) -> None:
    tab = Visitor(consent_site.ws)
    await tab.connect(consent=None)  # consent not given (yet)
    convert = tab.event("widget", campaign="welcome-coupon", **CONVERT)
    answers = await tab.track(convert)
    assert errors(answers) == [("consent_required", convert["seq"])] and coupons(answers) == []
    await tab.close()


async def test_a_consent_box_must_be_ticked_and_is_recorded(
    on_redis: EdgeServer, redis: RedisServer
) -> None:
    """Item 10: the demo's first-order coupon has a required consent box; the
    form once went through without it, and nothing of it was recorded."""
    tab = Visitor(on_redis.ws)
    await tab.connect()
    for _ in range(3):
        await tab.track(tab.event("page_view", url=SHOP))
    unticked = [
        tab.event("identify", email="ada@example.com", name="Ada", marketing_consent=False),
        tab.event("widget", campaign="welcome-coupon", **CONVERT),
    ]
    answers = await tab.track(*unticked)
    assert errors(answers) == [("consent_required", unticked[1]["seq"])]
    ticked = [
        tab.event("identify", email="ada@example.com", name="Ada", marketing_consent=True),
        tab.event("widget", campaign="welcome-coupon", **CONVERT),
    ]
    answers = await tab.track(*ticked)
    assert len(coupons(answers)) == 1 and errors(answers) == []
    client = aioredis.Redis.from_url(redis.url.rsplit("/", 1)[0] + "/3")
    try:
        data = await client.hget(keys.profile("demo", tab.visitor), "p")
    finally:
        await client.aclose()
    assert isinstance(data, bytes)
    profile = decode_profile(data)
    assert (profile.claimed_name, profile.marketing_consent) == ("Ada", True)
    assert profile.marketing_consent_at is not None
    await tab.close()
