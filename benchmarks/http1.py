"""A lean HTTP/1.1 client for the ``beacon`` scenario's ``POST /collect``.

Why not httpx: at 1,000 beacons/s the generator's two processes, on httpx,
spent 160% of the machine's 200% and reached 385 requests/s, while the
server they measured used 35%: the comparison of beacons with WebSockets
measured the client (issue 13, "the full-size beacon comparison stalls").
As ``benchmarks.wire`` does for WebSockets, a request here costs one
``write`` and, on the way back, one parse in ``data_received`` and one
future resolved; a deadline is one timer handle.

What it does: keep-alive connections in a pool of at most ``size`` (a
request waits for a free one, as a browser's per-host limit makes it), one
request at a time on each (no pipelining), bodies sized by
``Content-Length`` (what uvicorn sends for Starlette's responses; a chunked
answer is refused as a protocol error), ``Connection: close`` honoured. A
connection that failed, timed out or was closed is dropped from the pool,
never reused half read.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple
from urllib.parse import urlsplit

from benchmarks.wire import open_tcp

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1 << 20


class ProtocolError(Exception):
    """The server's answer is not one this client reads."""


class Response(NamedTuple):
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request out on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.reusable = True  # False once it failed, was closed or said so

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._answer()
        except ProtocolError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def _answer(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("response head too long")
            return
        status, length, keep = _head(bytes(self.buffer[:end]))
        whole = end + 4 + length
        if len(self.buffer) < whole:
            return
        body = bytes(self.buffer[end + 4 : whole])
        del self.buffer[:whole]
        if self.buffer:
            raise ProtocolError("bytes after the response nobody asked for")
        self.reusable = self.reusable and keep
        waiter, self.waiter = self.waiter, None
        if waiter is None:
            raise ProtocolError("a response nobody asked for")
        if not waiter.done():
            waiter.set_result(Response(status, body))

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()


def _head(head: bytes) -> tuple[int, int, bool]:
    """(status, body length, keep-alive) from a response's head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length, keep = 0, parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                raise ProtocolError(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked answers are not read by this client")
        elif name == b"connection" and value in (b"close", b"keep-alive"):
            keep = value == b"keep-alive"
    return int(parts[1]), length, keep


def _expire(waiter: asyncio.Future[Response], connection: _Connection) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
        connection.abort()  # its answer may still come: never reuse it


class Pool:
    """Keep-alive connections to one ``http://host:port`` (loopback, checked
    by the caller), at most ``size`` open."""

    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.size = size
        self.open = 0
        self.idle: list[_Connection] = []
        self.queue: deque[asyncio.Future[_Connection | None]] = deque()

    async def post(
        self, target: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> Response:
        """``POST target`` (path and query) with ``body``; the whole exchange,
        the wait for a connection included, within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        connection = await self._acquire(timeout_s)
        head = [f"POST {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        waiter = connection.request(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        timer = loop.call_at(deadline, _expire, waiter, connection)
        try:
            response = await waiter
        except BaseException:
            connection.abort()
            self._release(None)
            raise
        finally:
            timer.cancel()
        self._release(connection if connection.reusable else None)
        return response

    async def _acquire(self, timeout_s: float) -> _Connection:
        while self.idle:
            connection = self.idle.pop()  # the most recently used: warm
            if connection.reusable:
                return connection
            self.open -= 1
        if self.open >= self.size:
            loop = asyncio.get_running_loop()
            ticket: asyncio.Future[_Connection | None] = loop.create_future()
            self.queue.append(ticket)
            timer = loop.call_later(timeout_s, _time_out, ticket)
            try:
                handed = await ticket
            finally:
                timer.cancel()
            if handed is not None and handed.reusable:
                return handed
            if handed is not None:  # closed by the server while handed over
                self.open -= 1
        self.open += 1  # a place given up by a dropped connection, or a free one
        try:
            return await open_tcp(self.host, self.port, _Connection, timeout_s)
        except BaseException:
            self.open -= 1
            raise

    def _release(self, connection: _Connection | None) -> None:
        """Give a connection back (None: it was dropped, its place is free)."""
        if connection is None:
            self.open -= 1
        while self.queue:
            ticket = self.queue.popleft()
            if not ticket.done():  # not timed out meanwhile
                ticket.set_result(connection)  # None: the waiter opens its own
                return
        if connection is not None:
            self.idle.append(connection)

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.abort()
        self.open -= len(idle)


def _time_out(ticket: asyncio.Future[_Connection | None]) -> None:
    if not ticket.done():
        ticket.set_exception(TimeoutError())
