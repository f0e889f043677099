"""A TCP proxy that delays every chunk it forwards: a slow network (or a slow
Redis) between edge and a real redis-server, in the test's own event loop.

Each chunk read from one side is written to the other ``delay_s()`` seconds
after it arrived, never before the chunk ahead of it (TCP keeps order), so a
burst is delayed once, not once per chunk queued behind it: latency with
jitter, not a bandwidth cap.

``sees(data)``, when given, is called with every chunk a client sends, as it
arrives and before its delay is drawn: a test can change the delay on the
bytes themselves (from a given write on), not at a moment of its own clock
that races with what is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

CHUNK_BYTES = 64 * 1024


class DelayProxy:
    def __init__(
        self,
        upstream_port: int,
        delay_s: Callable[[], float],
        sees: Callable[[bytes], None] | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.sees = sees
        self.port = 0
        self.connections = 0  # accepted so far
        self.chunks = 0  # forwarded so far, both ways
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()  # one per proxied connection

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self.connections += 1
        try:
            await self._relay(client_r, client_w)
        except asyncio.CancelledError:
            pass  # closing; Python 3.11 would log a cancelled connection handler as an error
        finally:
            self._handlers.discard(handler)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        pumps = [
            asyncio.create_task(self._pump(client_r, upstream_w, self.sees)),
            asyncio.create_task(self._pump(upstream_r, client_w, None)),
        ]
        try:
            # Either side closing ends both directions, as a real connection would.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, upstream_w):
                writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sees: Callable[[bytes], None] | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._deliver(queue, writer))
        try:
            last_due = 0.0
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(CHUNK_BYTES):
                    if sees is not None:
                        sees(data)
                    last_due = max(last_due, loop.time() + self.delay_s())
                    queue.put_nowait((last_due, data))
            queue.put_nowait(None)  # the peer closed: deliver what it sent first, then end
            with contextlib.suppress(ConnectionError, OSError):
                await sender
        finally:
            sender.cancel()

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, data = item
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()
            self.chunks += 1


def uniform(low_s: float, high_s: float) -> Callable[[], float]:
    return lambda: random.uniform(low_s, high_s)


@contextlib.asynccontextmanager
async def delay_proxy(
    upstream_port: int,
    delay_s: Callable[[], float],
    sees: Callable[[bytes], None] | None = None,
) -> AsyncIterator[DelayProxy]:
    proxy = DelayProxy(upstream_port, delay_s, sees)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
