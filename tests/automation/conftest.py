"""Fixtures of the automation tests: the demo site, and a Redis database of
their own (emptied before each test that asks for ``client``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from edge.automation.store import RedisAutomation
from edge.config.sites import Site, load_site
from edge.stores.lane import Lane
from tests.helpers import PROFILES, RedisServer


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(PROFILES / "demo")


@pytest.fixture
def automation_url(redis: RedisServer) -> str:
    return redis.url.replace("/0", "/12")


@pytest.fixture
async def client(automation_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(automation_url)
    await c.flushdb()
    yield c
    await c.aclose()


RedisAutomations = Callable[..., RedisAutomation]


@pytest.fixture(params=["pool", "lane"])
async def redis_automation(
    request: pytest.FixtureRequest, client: aioredis.Redis
) -> AsyncIterator[RedisAutomations]:
    """Makes a ``RedisAutomation`` on ``client``: through its pool, or on a
    lane of its own (as ``edge serve`` makes it, on the profile store's)."""
    lanes: list[Lane] = []

    def make(**options: Any) -> RedisAutomation:
        lane = None
        if request.param == "lane":
            lane = Lane(client.connection_pool)
            lanes.append(lane)
        return RedisAutomation(client, lane=lane, **options)

    yield make
    for lane in lanes:
        await lane.reset()
