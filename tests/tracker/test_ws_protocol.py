"""What a WebSocket keeps (edge/tracker/ws_protocol.py,
edge/tracker/http_protocol.py): the HTTP protocol it was upgraded from is
freed at once, not left to the collector, the handshake's headers are not
kept, and a closed one is freed at once too. An in-process uvicorn with
edge's protocols and a bare echo app, so the objects can be counted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from edge.tracker.http_protocol import HttpProtocol
from edge.tracker.inbox import Inbox
from edge.tracker.transport import HTTP_PROTOCOL, WS_PROTOCOL
from edge.tracker.ws_protocol import WebSocketProtocol
from tests.helpers import free_port

OPEN = 20


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message["text"]})


@contextlib.asynccontextmanager
async def served(log_level: str = "warning") -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        echo,
        host="127.0.0.1",
        port=port,
        http=HTTP_PROTOCOL,
        ws=WS_PROTOCOL,
        lifespan="off",
        log_level=log_level,
        log_config=None,  # uvicorn's records reach the root logger (and caplog)
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):  # uvicorn has no event for it: polled, up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the in-process server did not start within 10 s")
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def alive(kind: type) -> list[Any]:
    return [o for o in gc.get_objects() if type(o) is kind]


async def test_an_open_websocket_keeps_no_http_protocol_nor_handshake_headers() -> None:
    gc.collect()
    gc.disable()  # what is freed must be freed by reference counting alone
    try:
        async with served() as url, contextlib.AsyncExitStack() as stack:
            clients: list[ClientConnection] = []
            for i in range(OPEN):
                padded = connect(url, additional_headers={"X-Pad": "a" * 500})
                ws = await stack.enter_async_context(padded)
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
                clients.append(ws)
            sockets = alive(WebSocketProtocol)
            assert len(sockets) == OPEN  # the count sees live protocols
            assert alive(HttpProtocol) == []
            for protocol in sockets:
                assert isinstance(protocol.queue, Inbox)
                assert len(protocol.request.headers) == 0
                assert len(protocol.response.headers) == 0
                assert any(name == b"x-pad" for name, _ in protocol.scope["headers"])
            del sockets, protocol
    finally:
        gc.enable()


async def test_a_closed_websocket_is_freed_without_the_collector() -> None:
    """Its scope holds a way back to the protocol (edge.tracker.transport's
    ARRIVALS): emptied at close, or the whole connection waits for a full
    collection."""
    gc.collect()
    gc.disable()
    try:
        async with served() as url:
            for i in range(OPEN):
                async with connect(url) as ws:
                    await ws.send(f"m{i}")
                    assert await ws.recv() == f"m{i}"
            for _ in range(500):  # the server sees each close a moment later
                if not alive(WebSocketProtocol):
                    break
                await asyncio.sleep(0.01)
            assert alive(WebSocketProtocol) == []
    finally:
        gc.enable()


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_a_session_logs_one_line_at_info_and_the_protocol_line_at_debug(
    level: int, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's accepted line (with the address) at INFO; websockets' own
    "connection open" only at DEBUG."""
    caplog.set_level(level, logger="uvicorn.error")
    async with served(logging.getLevelName(level).lower()) as url, connect(url) as ws:
        await ws.send("m")
        assert await ws.recv() == "m"
    at_info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any('"WebSocket /ws" [accepted]' in m for m in at_info)
    assert not [m for m in at_info if m.startswith("connection ")]
    at_debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    expected = ["connection open"] if level == logging.DEBUG else []
    assert [m for m in at_debug if m == "connection open"] == expected
