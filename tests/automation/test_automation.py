"""Automation events out: derivation, the Redis stream, abandoned carts
claimed exactly once, signed webhooks against a real local receiver."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from edge.automation.config import automation_of
from edge.automation.service import AutomationService
from edge.automation.store import MemoryAutomation, RedisAutomation
from edge.automation.tail import tail
from edge.automation.webhooks import verify
from edge.config.sites import Site, load_site
from edge.core import offers
from edge.core.automation import AutomationEvent, abandoned, deadline, derive
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.updates import apply, new_profile
from edge.decisioning.attributes import Page, build
from edge.decisioning.engine import decide
from edge.errors import StoreError
from edge.tracker import protocol as p
from tests.automation.conftest import RedisAutomations
from tests.client import new_id
from tests.helpers import PROFILES

NOW = 1_790_000_000.0
DAY = 86400.0
SECRET = "whsec-test-0123456789"
Applied = list[tuple[Profile | None, Profile, p.Event]]


@dataclass
class Visit:
    site: Site
    visitor: str = field(default_factory=new_id)
    profile: Profile | None = None
    seq: int = 0

    def __post_init__(self) -> None:
        self.ctx = VisitContext(self.visitor, new_id())

    def send(self, raw: dict[str, Any], at: float, *, resend: bool = False) -> Applied:
        """Apply the next event, or (``resend``) the last one again."""
        self.seq += 0 if resend else 1
        event = p.parse_event({"seq": self.seq, "id": f"ev{self.seq:08d}", **raw})
        if isinstance(event, p.Widget):  # the server showed that widget first (edge.core.offers)
            shown = self.profile or new_profile(self.visitor, at)
            self.profile = offers.record(shown, [(event.campaign, event.variant, 0)], at, 20)
        after = apply(self.profile, event, self.ctx, self.site, at)
        applied: Applied = [(self.profile, after, event)]
        self.profile = after
        return applied

    def derived(self, raw: dict[str, Any], at: float) -> list[AutomationEvent]:
        cfg = automation_of(self.site)
        return [
            e
            for before, after, event in self.send(raw, at)
            for e in derive(self.site.id, before, after, event, cfg, self.site.intelligence, at)
        ]


def page(path: str) -> dict[str, Any]:
    return {"type": "page_view", "url": f"http://127.0.0.1:8000{path}"}


CART = {
    "type": "cart",
    "items": [{"sku": "LAMP-1", "qty": 2, "price": 40.0, "name": "Lamp"}],
    "value": 80.0,
    "currency": "EUR",
}
EMPTY_CART = {"type": "cart", "items": [], "value": 0, "currency": "EUR"}


def purchase(order: str) -> dict[str, Any]:
    return {
        "type": "purchase",
        "order_id": order,
        "items": [{"sku": "LAMP-1", "qty": 2, "price": 40.0}],
        "value": 80.0,
        "currency": "EUR",
    }


CONVERT = {"type": "widget", "campaign": "welcome-coupon", "variant": "a", "action": "convert"}


# --- pure derivation ---------------------------------------------------------------


def test_each_event_type_is_derived_once(site: Site) -> None:
    v = Visit(site)
    out: list[AutomationEvent] = []
    out += v.derived(page("/demo"), NOW)
    out += v.derived(page("/demo/c/lighting"), NOW + 1)  # watched (site.yaml)
    out += v.derived({"type": "identify", "email": "ann@example.com"}, NOW + 2)
    out += v.derived({"type": "identify", "email": "ann@example.com"}, NOW + 3)
    for i in range(3):  # 20 points each; the threshold is 50
        out += v.derived({"type": "custom", "name": "newsletter_signup"}, NOW + 4 + i)
    out += v.derived(CART, NOW + 10)
    out += v.derived(purchase("A1"), NOW + 11)
    out += v.derived(purchase("A1"), NOW + 12)  # the same order again
    out += v.derived(CONVERT, NOW + 13)
    out += v.derived(page("/demo"), NOW + 100 * DAY)  # back after 100 days (winback_days 90)
    out += v.derived(page("/demo/p/x"), NOW + 100 * DAY + 5)
    types = [e.type for e in out]
    assert sorted(types) == sorted(
        [
            "watched_page_visited",
            "identified",
            "score_threshold",
            "purchase",
            "widget_converted",
            "winback_returned",
            "segment_entered",  # lapsed-customers (membership: true), on the visit back
        ]
    )
    by = {e.type: e for e in out}
    assert by["segment_entered"].payload == {"segment": "lapsed-customers"}
    assert by["watched_page_visited"].payload == {"path": "/demo/c/lighting"}
    assert by["purchase"].payload["order_id"] == "A1"
    assert by["purchase"].payload["value"] == 80.0
    assert by["winback_returned"].payload["days_away"] >= 90
    assert by["identified"].payload == {"level": "claimed"}
    assert all(e.visitor == v.visitor and e.customer is None for e in out)
    assert "ann@example.com" not in json.dumps([e.to_fields() for e in out])


def test_deadlines_scheduled_by_cart_changes_cancelled_by_purchase(site: Site) -> None:
    cfg = automation_of(site)
    v = Visit(site)
    [(b, a, e)] = v.send(page("/demo"), NOW)
    assert deadline(b, a, e, cfg) is None
    [(b, a, e)] = v.send(CART, NOW + 10)
    assert deadline(b, a, e, cfg) == ("schedule", NOW + 10 + 30 * 60)
    assert v.profile is not None
    assert not abandoned(v.profile, cfg, NOW + 10 + 29 * 60)
    assert abandoned(v.profile, cfg, NOW + 10 + 30 * 60)
    [(b, a, e)] = v.send(purchase("B1"), NOW + 20)
    assert deadline(b, a, e, cfg) == ("cancel", None)
    [(b, a, e)] = v.send(purchase("B1"), NOW + 21)  # replayed order: nothing
    assert deadline(b, a, e, cfg) is None
    [(b, a, e)] = v.send(CART, NOW + 30)
    [(b, a, e)] = v.send(EMPTY_CART, NOW + 40)
    assert deadline(b, a, e, cfg) == ("cancel", None)


def test_cart_abandoned_is_targetable_and_the_demo_reminder_uses_it(site: Site) -> None:
    v = Visit(site)
    v.send(page("/demo"), NOW)
    v.send(CART, NOW + 10)
    assert v.profile is not None
    shop = Page(url="http://127.0.0.1:8000/demo/c/lighting")
    later = NOW + 10 + 31 * 60
    attrs = build(v.profile, v.ctx, site, later, shop, {})
    assert attrs["cart"]["abandoned"] is True
    assert build(v.profile, v.ctx, site, NOW + 60, shop, {})["cart"]["abandoned"] is False

    def shown(at: float) -> bool:
        decisions = decide(v.profile, v.ctx, site, at, page=shop).items
        return any(d.campaign == "cart-reminder" for d in decisions)

    # the holdout may hide it from this visitor: try a few visitors
    seen = False
    for _ in range(20):
        v = Visit(site)
        v.send(page("/demo"), NOW)
        v.send(CART, NOW + 10)
        assert not shown(NOW + 60)
        seen = seen or shown(later)
    assert seen


# --- the stream and the deadlines in Redis ----------------------------------------------


async def test_service_publishes_each_type_once_to_the_stream(
    site: Site, client: aioredis.Redis, redis_automation: RedisAutomations
) -> None:
    service = AutomationService(redis_automation(maxlen=1000), claim_interval_s=0)
    v = Visit(site)
    service.observe(site, v.send(page("/demo/c/lighting"), NOW), NOW)
    service.observe(site, v.send(CART, NOW + 1), NOW + 1)
    service.observe(site, v.send(CONVERT, NOW + 2), NOW + 2)
    service.coupon_issued(site, "welcome-coupon", v.visitor, "EDGE-1234")
    service.coupon_issued(site, "welcome-coupon", v.visitor, "EDGE-1234")  # resent form
    service.observe(site, v.send(CONVERT, NOW + 3, resend=True), NOW + 3)  # replayed
    await service.drain()
    assert await client.zscore(f"edge:au:{{au:{site.id}}}:due", v.visitor) == NOW + 1 + 1800
    claimed = await service.claim([site], NOW + 1 + 1800)
    assert [e.type for e in claimed] == ["cart_abandoned"]
    assert claimed[0].payload["items"][0]["sku"] == "LAMP-1"
    assert await service.claim([site], NOW + 10_000) == []  # claimed once
    entries = await service.store.read(site.id, 100)
    assert sorted(e.type for _, e in entries) == [
        "cart_abandoned",
        "coupon_issued",
        "watched_page_visited",
        "widget_converted",
    ]
    abandoned_event = next(e for _, e in entries if e.type == "cart_abandoned")
    assert abandoned_event.payload["items"] == [
        {"sku": "LAMP-1", "qty": 2, "price": 40.0, "name": "Lamp"}
    ]
    assert abandoned_event.at == NOW + 1 + 1800
    coupon = next(e for _, e in entries if e.type == "coupon_issued")
    assert coupon.payload == {"campaign": "welcome-coupon", "code": "EDGE-1234"}
    await service.close()


async def test_purchase_cancels_the_deadline(
    site: Site, client: aioredis.Redis, redis_automation: RedisAutomations
) -> None:
    service = AutomationService(redis_automation(), claim_interval_s=0)
    v = Visit(site)
    service.observe(site, v.send(CART, NOW), NOW)
    await service.drain()
    assert await client.zcard(f"edge:au:{{au:{site.id}}}:due") == 1
    service.observe(site, v.send(purchase("C1"), NOW + 60), NOW + 60)
    await service.drain()
    due = f"edge:au:{{au:{site.id}}}:due"
    assert await client.zscore(due, v.visitor) is None  # the cart's deadline is gone
    assert await client.hget(f"edge:au:{{au:{site.id}}}:carts", v.visitor) is None
    # the order made them a customer: the timed kinds (test_timed.py) took its place
    names = {n.decode() for n in await client.zrange(due, 0, -1)}
    assert names == {f"customer_away|{v.visitor}", f"churn_risk|{v.visitor}"}
    assert await service.claim([site], NOW + DAY) == []
    types = [e.type for _, e in await service.store.read(site.id, 100)]
    assert types == ["purchase"]
    await service.close()


async def test_a_later_cart_change_moves_the_deadline(site: Site) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    v = Visit(site)
    service.observe(site, v.send(CART, NOW), NOW)
    service.observe(site, v.send({**CART, "value": 90.0}, NOW + 600), NOW + 600)
    await service.drain()
    assert await service.claim([site], NOW + 1800) == []
    [event] = await service.claim([site], NOW + 2400)
    assert event.payload["value"] == 90.0
    assert [e.type for _, e in await service.store.read(site.id, 10)] == ["cart_abandoned"]


async def test_abandoned_carts_are_emitted_exactly_once_by_competing_claimers(
    site: Site, automation_url: str, client: aioredis.Redis
) -> None:
    a = RedisAutomation(aioredis.Redis.from_url(automation_url), owns_client=True)
    b = RedisAutomation(aioredis.Redis.from_url(automation_url), owns_client=True)
    visitors = [new_id() for _ in range(300)]
    await a.schedule(
        site.id,
        [(v, NOW + i % 7, {"customer": None, "payload": {"n": i}}) for i, v in enumerate(visitors)],
    )
    claimed: list[AutomationEvent] = []

    async def claimer(store: RedisAutomation) -> None:
        for step in range(20):
            claimed.extend(await store.claim_due(site.id, NOW + step * 0.5, limit=7))
            await asyncio.sleep(0)

    await asyncio.gather(claimer(a), claimer(b), claimer(a), claimer(b))
    assert sorted(e.visitor for e in claimed) == sorted(visitors)
    stream = await a.read(site.id, 1000)
    assert sorted(e.visitor for _, e in stream) == sorted(visitors)
    assert {e.type for _, e in stream} == {"cart_abandoned"}
    await a.close()
    await b.close()


async def test_deadlines_are_scheduled_after_redis_forgot_the_script(
    site: Site, client: aioredis.Redis, redis_automation: RedisAutomations
) -> None:
    """A restarted or flushed Redis answers NOSCRIPT: the script is loaded
    and the deadlines still recorded, on a lane as through the pool."""
    store = redis_automation()
    await store.schedule(site.id, [("v1", NOW, {"payload": {"n": 1}})])
    await client.script_flush()
    await store.schedule(site.id, [("v2", NOW + 5, {"payload": {"n": 2}})])
    due = f"edge:au:{{au:{site.id}}}:due"
    assert await client.zrange(due, 0, -1, withscores=True) == [(b"v1", NOW), (b"v2", NOW + 5)]
    [first, second] = await store.claim_due(site.id, NOW + 5)
    assert (first.visitor, first.payload, second.payload) == ("v1", {"n": 1}, {"n": 2})


async def test_an_error_reply_is_a_store_error(
    site: Site, client: aioredis.Redis, redis_automation: RedisAutomations
) -> None:
    """A key of the wrong type (an operator's mistake): the stream append and
    the schedule fail with a StoreError naming what failed, not silently."""
    await client.set(f"edge:au:{{au:{site.id}}}:events", "not a stream")
    await client.set(f"edge:au:{{au:{site.id}}}:due", "not a sorted set")
    store = redis_automation()
    with pytest.raises(StoreError, match="publishing automation events failed: WRONGTYPE"):
        await store.publish(site.id, [AutomationEvent("purchase", site.id, "v1", NOW)])
    with pytest.raises(StoreError, match="recording automation deadlines failed"):
        await store.schedule(site.id, [("v1", NOW, None)])


async def test_stream_is_bounded_and_tail_prints_it(
    site: Site, automation_url: str, client: aioredis.Redis, redis_automation: RedisAutomations
) -> None:
    store = redis_automation(maxlen=100)
    events = [AutomationEvent("purchase", site.id, f"v{i}", NOW + i) for i in range(1000)]
    for i in range(0, 1000, 50):
        await store.publish(site.id, events[i : i + 50])
    assert await client.xlen(f"edge:au:{{au:{site.id}}}:events") < 300  # MAXLEN ~ 100
    lines: list[str] = []

    assert await tail(automation_url, site.id, 3, follow=False, out=lines.append) == 3
    assert [json.loads(line)["visitor"] for line in lines] == ["v997", "v998", "v999"]

    async def later() -> None:
        await asyncio.sleep(0.2)
        await store.publish(site.id, [AutomationEvent("identified", site.id, "new", NOW)])

    followed: list[str] = []
    task = asyncio.create_task(later())
    await tail(automation_url, site.id, 0, follow=True, out=followed.append, block_ms=2000, polls=1)
    await task
    assert [json.loads(line)["visitor"] for line in followed] == ["new"]


# --- webhooks against a real HTTP receiver -----------------------------------------------


@dataclass
class Receiver:
    status: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readline()
        assert request_line.startswith(b"POST ")
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        reason = b"OK" if self.status == 200 else b"Error"
        writer.write(
            b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            % (self.status, reason)
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
    r.port = server.sockets[0].getsockname()[1]
    async with server:
        yield r


@pytest.fixture
def hooked_site(tmp_path: Path, receiver: Receiver) -> Iterator[Site]:
    folder = tmp_path / "demo"
    shutil.copytree(PROFILES / "demo", folder)
    text = (folder / "site.yaml").read_text()
    text = text.replace(
        "  # webhooks:\n",
        "  webhooks:\n"
        f"    - url: http://127.0.0.1:{receiver.port}/hook\n"
        "      events: [purchase, cart_abandoned]\n"
        "      secret_env: EDGE_TEST_WEBHOOK_SECRET\n",
    )
    (folder / "site.yaml").write_text(text)
    yield load_site(folder)


async def test_webhook_is_signed_and_verified_by_the_receiver(
    hooked_site: Site, receiver: Receiver
) -> None:
    service = AutomationService(
        MemoryAutomation(), claim_interval_s=0, env={"EDGE_TEST_WEBHOOK_SECRET": SECRET}
    )
    v = Visit(hooked_site)
    service.observe(hooked_site, v.send(page("/demo/c/lighting"), NOW), NOW)  # not subscribed
    service.observe(hooked_site, v.send(CART, NOW + 1), NOW + 1)
    service.observe(hooked_site, v.send(purchase("W1"), NOW + 2), NOW + 2)
    await service.drain()
    [(headers, body)] = receiver.requests
    assert verify(SECRET.encode(), headers, body)
    assert not verify(b"another secret", headers, body)
    assert not verify(SECRET.encode(), headers, body.replace(b"W1", b"W2"))
    assert not verify(SECRET.encode(), headers, body, now=int(headers["x-edge-timestamp"]) + 3600)
    assert headers["x-edge-event"] == "purchase"
    sent = json.loads(body)
    assert sent["type"] == "purchase" and sent["payload"]["order_id"] == "W1"
    assert sent["visitor"] == v.visitor and sent["site"] == "demo"
    assert await service.store.dead_letters(hooked_site.id) == []


async def test_failing_receiver_gets_retries_then_a_dead_letter(
    hooked_site: Site, receiver: Receiver, client: aioredis.Redis
) -> None:
    receiver.status = 500
    service = AutomationService(
        RedisAutomation(client),
        claim_interval_s=0,
        webhook_attempts=3,
        webhook_backoff_s=0.05,
        env={"EDGE_TEST_WEBHOOK_SECRET": SECRET},
    )
    v = Visit(hooked_site)
    service.observe(hooked_site, v.send(CART, NOW), NOW)
    await service.drain()
    await service.claim([hooked_site], NOW + 1800)
    await service.drain()
    assert len(receiver.requests) == 3
    deliveries = {h["x-edge-delivery"] for h, _ in receiver.requests}
    assert len(deliveries) == 1  # one delivery, three tries
    assert all(verify(SECRET.encode(), h, b) for h, b in receiver.requests)
    [dead] = await service.store.dead_letters(hooked_site.id)
    assert dead["tries"] == 3 and dead["error"] == "HTTP 500"
    assert dead["event"]["type"] == "cart_abandoned"
    assert dead["event"]["payload"]["items"][0]["sku"] == "LAMP-1"


async def test_missing_secret_dead_letters_without_sending(
    hooked_site: Site, receiver: Receiver
) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0, env={})
    v = Visit(hooked_site)
    service.observe(hooked_site, v.send(purchase("X1"), NOW), NOW)
    await service.drain()
    assert receiver.requests == []
    [dead] = await service.store.dead_letters(hooked_site.id)
    assert "EDGE_TEST_WEBHOOK_SECRET" in dead["error"]
