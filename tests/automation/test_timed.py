"""Timed automation beyond carts: browse abandonment, customers away, churn
risk. Each is a deadline that stored events set, move or cancel, claimed
into one event when it falls due (exactly once across claimers, on Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
import redis.asyncio as aioredis

from edge.automation.config import automation_of
from edge.automation.service import AutomationService
from edge.automation.store import MemoryAutomation, RedisAutomation, member
from edge.config.sites import Site
from edge.core.automation import AutomationEvent, compile_automation
from edge.core.context import VisitContext
from edge.core.intelligence import churn_risk
from edge.core.profile import Profile
from edge.core.updates import apply
from edge.decisioning.config import AutomationConfig
from edge.tracker import protocol as p
from tests.client import new_id

NOW = 1_790_000_000.0
DAY = 86400.0
HOUR = 3600.0


class Shopper:
    def __init__(self, site: Site, service: AutomationService) -> None:
        self.site = site
        self.service = service
        self.ctx = VisitContext(new_id(), new_id())
        self.profile: Profile | None = None
        self.seq = 0

    @property
    def visitor(self) -> str:
        return self.ctx.visitor

    def send(self, raw: dict[str, Any], at: float) -> None:
        self.seq += 1
        event = p.parse_event({"seq": self.seq, "id": f"ev{self.seq:08d}", **raw})
        before = self.profile
        self.profile = apply(before, event, self.ctx, self.site, at)
        self.service.observe(self.site, [(before, self.profile, event)], at)

    def view(self, sku: str, at: float) -> None:
        self.send({"type": "product_view", "sku": sku}, at)

    def page(self, path: str, at: float) -> None:
        self.send({"type": "page_view", "url": f"http://127.0.0.1:8000{path}"}, at)

    def buy(self, order: str, at: float) -> None:
        item = {"sku": "LAMP-1", "qty": 1, "price": 40.0}
        self.send(
            {
                "type": "purchase",
                "order_id": order,
                "items": [item],
                "value": 40.0,
                "currency": "EUR",
            },
            at,
        )


async def claimed(service: AutomationService, site: Site, at: float) -> list[AutomationEvent]:
    await service.drain()
    return await service.claim([site], at)


def kinds(events: list[AutomationEvent]) -> list[str]:
    return sorted(e.type for e in events)


async def test_browse_abandonment_fires_once_after_the_quiet_period(site: Site) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    s = Shopper(site, service)
    s.page("/demo", NOW)
    s.view("LAMP-1", NOW + 10)
    s.view("CHAIR-2", NOW + 20)
    s.page("/demo/c/lighting", NOW + 30)  # still browsing: the quiet period starts again
    window = 60 * 60  # the default, browse_abandon_min: 60
    assert await claimed(service, site, NOW + 20 + window) == []
    [event] = await claimed(service, site, NOW + 30 + window)
    assert event.type == "browse_abandoned" and event.visitor == s.visitor
    assert event.at == NOW + 30 + window
    assert event.payload == {"skus": ["CHAIR-2", "LAMP-1"], "visit_started_at": NOW}
    assert await claimed(service, site, NOW + 10 * DAY) == []  # once


@pytest.mark.parametrize("ends", ["cart", "purchase"])
async def test_a_cart_or_an_order_cancels_browse_abandonment(site: Site, ends: str) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    s = Shopper(site, service)
    s.view("LAMP-1", NOW)
    if ends == "cart":
        item = {"sku": "LAMP-1", "qty": 1, "price": 40.0}
        s.send({"type": "cart", "items": [item], "value": 40.0, "currency": "EUR"}, NOW + 5)
    else:
        s.buy("O1", NOW + 5)
    s.page("/demo", NOW + 6)  # a later page of the same visit does not bring it back
    events = await claimed(service, site, NOW + 2 * DAY)
    assert "browse_abandoned" not in kinds(events)


async def test_a_visitor_who_viewed_no_product_is_not_a_browse_abandoner(site: Site) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    s = Shopper(site, service)
    s.page("/demo", NOW)
    s.page("/demo/c/lighting", NOW + 5)
    assert await claimed(service, site, NOW + 400 * DAY) == []


async def test_a_customer_away_for_the_configured_days_is_reported_once(site: Site) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    s = Shopper(site, service)
    s.page("/demo", NOW)
    s.buy("O1", NOW + 60)
    s.page("/demo", NOW + 10 * DAY)  # a new visit moves the deadline
    started = NOW + 10 * DAY
    events = await claimed(service, site, started + 90 * DAY - 1)
    assert "customer_away" not in kinds(events)
    events = await claimed(service, site, started + 90 * DAY)
    [away] = [e for e in events if e.type == "customer_away"]
    assert away.payload == {
        "away_days": 90.0,
        "last_visit_at": started,
        "orders": 1,
        "last_order_at": NOW + 60,
    }
    later = await claimed(service, site, started + 900 * DAY)
    assert "customer_away" not in kinds(later)  # once


async def test_an_anonymous_visitor_without_orders_is_never_away(site: Site) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    s = Shopper(site, service)
    s.page("/demo", NOW)
    s.page("/demo", NOW + 5 * DAY)
    assert await claimed(service, site, NOW + 900 * DAY) == []


async def test_churn_risk_is_reported_when_the_risk_reaches_the_threshold(site: Site) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    s = Shopper(site, service)
    s.buy("O1", NOW)
    s.buy("O2", NOW + 30 * DAY)  # a 30-day rhythm
    events = await claimed(service, site, NOW + 3000 * DAY)
    [risk] = [e for e in events if e.type == "churn_risk"]
    assert risk.payload["expected_interval_days"] == 30.0
    assert risk.payload["last_order_at"] == NOW + 30 * DAY
    # the deadline is where edge.core.intelligence's own risk first reaches 0.5
    assert s.profile is not None
    intel = site.intelligence
    assert churn_risk(s.profile, intel, risk.at) == pytest.approx(0.5)
    assert churn_risk(s.profile, intel, risk.at - HOUR) < 0.5


async def test_a_new_order_moves_the_churn_deadline(site: Site) -> None:
    service = AutomationService(MemoryAutomation(), claim_interval_s=0)
    s = Shopper(site, service)
    s.buy("O1", NOW)
    s.buy("O2", NOW + 30 * DAY)
    first_due = NOW + 30 * DAY + 60 * DAY
    s.buy("O3", first_due - DAY)  # bought again just before: at risk no more
    events = await claimed(service, site, first_due)
    assert "churn_risk" not in kinds(events)


async def test_each_kind_can_be_switched_off(site: Site) -> None:
    off = compile_automation(
        AutomationConfig(browse_abandon_min=None, away_days=None, churn_risk_threshold=None)
    )
    assert (off.browse_window_s, off.away_s, off.churn_threshold) == (None, None, None)
    on = automation_of(site)
    assert on.browse_window_s == 3600 and on.away_s == 90 * DAY and on.churn_threshold == 0.5


async def test_timed_deadlines_are_claimed_exactly_once_by_competing_claimers_on_redis(
    site: Site, automation_url: str, client: aioredis.Redis
) -> None:
    a = RedisAutomation(aioredis.Redis.from_url(automation_url), owns_client=True)
    b = RedisAutomation(aioredis.Redis.from_url(automation_url), owns_client=True)
    visitors = [new_id() for _ in range(100)]
    kinds_ = ("cart_abandoned", "browse_abandoned", "customer_away", "churn_risk")
    changes = [
        (member(kind, v), NOW + i % 5, {"customer": None, "payload": {"n": i}})
        for i, v in enumerate(visitors)
        for kind in kinds_
    ]
    await a.schedule(site.id, changes)
    got: list[AutomationEvent] = []

    async def claimer(store: RedisAutomation) -> None:
        for step in range(12):  # the clock moves on while four claimers compete
            got.extend(await store.claim_due(site.id, NOW + step * 0.5, limit=9))
            await asyncio.sleep(0)
        while batch := await store.claim_due(site.id, NOW + 10, limit=9):  # then until none
            got.extend(batch)

    await asyncio.gather(claimer(a), claimer(b), claimer(a), claimer(b))
    expected = sorted((kind, v) for v in visitors for kind in kinds_)
    assert sorted((e.type, e.visitor) for e in got) == expected
    stream = await a.read(site.id, 1000)
    assert sorted((e.type, e.visitor) for _, e in stream) == expected
    await a.close()
    await b.close()


async def test_the_service_on_redis_emits_browse_abandonment_once(
    site: Site, client: aioredis.Redis
) -> None:
    service = AutomationService(RedisAutomation(client), claim_interval_s=0)
    s = Shopper(site, service)
    s.view("LAMP-1", NOW)
    await service.drain()
    name = f"browse_abandoned|{s.visitor}"
    assert await client.zscore(f"edge:au:{{au:{site.id}}}:due", name) == NOW + 3600
    [event] = await claimed(service, site, NOW + 3600)
    assert (event.type, event.payload["skus"]) == ("browse_abandoned", ["LAMP-1"])
    assert await claimed(service, site, NOW + 7200) == []
    entries = [e.type for _, e in await service.store.read(site.id, 10)]
    assert entries == ["browse_abandoned"]
    await service.close()


def test_a_site_file_can_set_the_timed_kinds(site: Site, tmp_path: Any) -> None:
    config = AutomationConfig.model_validate(
        {"browse_abandon_min": 15, "away_days": 30, "churn_risk_threshold": 0.8}
    )
    compiled = compile_automation(config)
    assert (compiled.browse_window_s, compiled.away_s, compiled.churn_threshold) == (
        900,
        30 * DAY,
        0.8,
    )
    with pytest.raises(ValueError, match="churn_risk_threshold"):
        AutomationConfig.model_validate({"churn_risk_threshold": 2})
    assert dataclasses.is_dataclass(compiled)
