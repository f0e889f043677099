"""The echo references (benchmarks/echo.py): the bare echo answers every frame
unchanged; with ``--redis`` each frame is in Redis before its answer. Driven
as ASGI, over the app's own WebSocket route."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis as redis_py

from benchmarks import echo
from tests.helpers import RedisServer

FRAME = '{"type":"events","events":[{"type":"page_view","seq":1}]}'


@pytest.fixture(autouse=True)
def _collector_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    # create_app tunes the collector as edge serve does: not in the test process
    monkeypatch.setattr(echo, "tune_gc", lambda: None)


def emptied(url: str) -> str:
    client = redis_py.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


def stored(url: str) -> dict[bytes, bytes]:
    client = redis_py.Redis.from_url(url)
    try:
        return {key: client.get(key) or b"" for key in client.keys(f"{echo.KEY_PREFIX}*")}
    finally:
        client.close()


class Socket:
    """One WebSocket connection to an ASGI app, as the server would drive it."""

    def __init__(self, app: Any) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(app(scope, self.inbox.get, self.outbox.put))

    async def open(self) -> None:
        assert (await asyncio.wait_for(self.outbox.get(), 5))["type"] == "websocket.accept"

    async def exchange(self, frame: dict[str, Any]) -> dict[str, Any]:
        await self.inbox.put({"type": "websocket.receive", **frame})
        return await asyncio.wait_for(self.outbox.get(), 5)

    async def close(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 5)


def test_the_bare_echo_answers_each_frame_and_stores_nothing(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = emptied(redis.url.replace("/0", "/5"))
    monkeypatch.delenv("BENCH_ECHO_REDIS", raising=False)

    async def talk() -> None:
        ws = Socket(echo.create_app())
        await ws.open()
        assert (await ws.exchange({"text": FRAME}))["text"] == FRAME
        assert (await ws.exchange({"bytes": b"\x81\x01"}))["bytes"] == b"\x81\x01"
        await ws.close()

    asyncio.run(talk())
    assert stored(url) == {}


def test_the_storing_echo_has_each_frame_in_redis_before_its_answer(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = emptied(redis.url.replace("/0", "/5"))
    monkeypatch.setenv("BENCH_ECHO_REDIS", url)

    async def talk() -> None:
        app = echo.create_app()
        first, second = Socket(app), Socket(app)
        await first.open()
        await second.open()
        assert (await first.exchange({"text": FRAME}))["text"] == FRAME
        assert list(stored(url).values()) == [FRAME.encode()]  # there when answered
        assert (await second.exchange({"bytes": b"\x00binary"}))["bytes"] == b"\x00binary"
        await first.close()
        await second.close()
        await app.state.storing.close()

    asyncio.run(talk())
    assert sorted(stored(url).values()) == sorted([FRAME.encode(), b"\x00binary"])
