"""What an open WebSocket keeps (edge/tracker/ws_protocol.py,
edge/tracker/http_protocol.py): the HTTP protocol it was upgraded from is
freed at once, not left to the collector, and the handshake's headers are not
kept. An in-process uvicorn with edge's protocols and a bare echo app, so the
objects can be counted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

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
async def served() -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        echo,
        host="127.0.0.1",
        port=port,
        http=HTTP_PROTOCOL,
        ws=WS_PROTOCOL,
        lifespan="off",
        log_level="warning",
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
    finally:
        gc.enable()
