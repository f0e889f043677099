"""What clients cannot do (issue 12), over real sockets against real servers.

Each test is a repro from the attacker-minded review, now refused or harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.client import Visitor
from tests.helpers import EdgeServer, RedisServer, edge_server


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
