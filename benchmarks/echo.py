"""The transport ceiling: a bare echo WebSocket app on edge's own stack.

Starlette + uvicorn with the settings ``edge serve`` uses (websockets-sansio,
uvloop, httptools, per-message-deflate off, the same frame limit and pings).
Every frame is sent back unchanged: no decoding, and no store unless
``--redis`` (below) asks for one. The load generator
reads an echoed ``events`` message as acknowledging its own sequence numbers.

    python -m benchmarks.echo --port 8100
    python -m benchmarks.echo --port 8100 --gc off   # diagnostic: no collector

``--gc off`` (or ``BENCH_ECHO_GC=off``) turns the collector off after
start-up instead of tuning it as ``edge serve`` does: not a reference for
edge, a diagnostic that tells the collector's pauses from the transport's
own (memory grows; fine for a short ladder).

``--redis URL`` (or ``BENCH_ECHO_REDIS``) writes every frame to Redis before
sending it back (``SET benchmarks:echo:<connection> <frame>``, on edge's own
kept connection, ``edge.stores.lane``; frames of concurrent connections are
pipelined, not gathered): the floor of any design that stores each event
before acknowledging it, as edge does (at-least-once in), at rates where a
write holds about one event (edge's ledger gathers more under heavy load).
What edge spends above it is its own work: parsing, the profile,
decisions, widgets.

    python -m benchmarks.echo --port 8100 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
from collections.abc import Awaitable, Callable

from redis.asyncio import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from edge.app import tune_gc
from edge.config.settings import Settings
from edge.stores.lane import Lane
from edge.tracker.transport import EVENT_LOOP

KEY_PREFIX = "benchmarks:echo:"

Store = Callable[[str, "str | bytes"], Awaitable[object]]


async def echo(ws: WebSocket, store: Store | None = None, key: str = "") -> None:
    await ws.accept()
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            data: str | bytes = text if text is not None else frame.get("bytes") or b""
            if store is not None:  # stored before it is answered, as edge's events are
                await store(key, data)
            if isinstance(data, str):
                await ws.send_text(data)
            else:
                await ws.send_bytes(data)
    except WebSocketDisconnect:
        return


class Storing:
    """The echo endpoint that writes each frame to Redis at ``url`` first."""

    def __init__(self, url: str) -> None:
        self.pool = ConnectionPool.from_url(url)
        self.lane = Lane(self.pool)
        self.numbers = itertools.count()

    async def store(self, key: str, data: str | bytes) -> object:
        (reply,) = await self.lane.run([("SET", key, data)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def serve(self, ws: WebSocket) -> None:
        await echo(ws, self.store, f"{KEY_PREFIX}{next(self.numbers)}")

    async def close(self) -> None:
        await self.lane.reset()
        await self.pool.disconnect()


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "app": "echo"})


def create_app() -> Starlette:
    # The collector tuned as edge serve tunes it (edge.app.tune_gc): without it,
    # a full collection over 1,000 connections stalls the echo every few
    # seconds (p99 14-65 ms at 1,500 messages/s), and the reference would be
    # held down by a setting, not by its transport.
    if os.environ.get("BENCH_ECHO_GC") == "off":
        gc.collect()
        gc.freeze()
        gc.disable()
    else:
        tune_gc()
    url = os.environ.get("BENCH_ECHO_REDIS")
    storing = Storing(url) if url else None
    endpoint = storing.serve if storing is not None else echo
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint), Route("/healthz", healthz)])
    app.state.storing = storing  # (its connection lives as long as the process)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.echo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--gc",
        choices=["edge", "off"],
        default="edge",
        help="the collector: tuned as edge serve tunes it (default), or off (diagnostic)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="write every frame to this Redis before sending it back (the store's floor)",
    )
    args = parser.parse_args(argv)
    if args.redis:
        os.environ["BENCH_ECHO_REDIS"] = args.redis  # read by create_app, in every worker
    if args.gc == "off":
        os.environ["BENCH_ECHO_GC"] = "off"  # read by create_app, in every worker
    settings = Settings.from_env()
    import uvicorn

    uvicorn.run(
        "benchmarks.echo:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        loop=EVENT_LOOP,  # edge serve's: uvloop, accepting in batches
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        ws_per_message_deflate=settings.ws_deflate,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
