"""Fixtures of the automation tests: the demo site, and a Redis database of
their own (emptied before each test that asks for ``client``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from edge.config.sites import Site, load_site
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
