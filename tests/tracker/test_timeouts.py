"""Hello and idle deadlines, on a server with short ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.client import Visitor, open_socket
from tests.helpers import EdgeServer, edge_server

PAGE = "http://127.0.0.1/demo"


@pytest.fixture(scope="module")
def hasty() -> Iterator[EdgeServer]:
    with edge_server(env={"EDGE_HELLO_TIMEOUT_S": "0.5", "EDGE_IDLE_TIMEOUT_S": "1.0"}) as server:
        yield server


async def close_code(visitor: Visitor) -> int:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await visitor.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def test_no_hello_in_time_closes_1008(hasty: EdgeServer) -> None:
    visitor = Visitor(hasty.ws)
    visitor.ws = await open_socket(visitor.url)
    started = time.monotonic()
    assert await close_code(visitor) == 1008
    assert 0.4 < time.monotonic() - started < 3


async def test_an_idle_connection_closes_1001_and_activity_keeps_it(hasty: EdgeServer) -> None:
    visitor = Visitor(hasty.ws)
    await visitor.connect()
    for _ in range(4):  # 2 s of activity, each gap shorter than the 1 s deadline
        await asyncio.sleep(0.5)
        await visitor.track(visitor.event("page_view", url=PAGE))
    last_message = time.monotonic()
    assert await close_code(visitor) == 1001
    assert 0.8 < time.monotonic() - last_message < 3
