"""A lean WebSocket client for the load generator (RFC 6455, client side).

Why not the ``websockets`` client: on this 2-core machine the generator
shares the CPU with the server it measures, and a general-purpose client
(tasks, ``wait_for`` per message, a framing layer built for every case) spent
about as much CPU per message as a bare echo server, so the echo ceiling the
benchmark reported was the generator's (issue 13). This one is an
``asyncio.Protocol``: a message costs one ``write`` and, on the way back, one
parse in ``data_received`` and one future resolved; timeouts are one timer
handle, not a task.

What it does: the opening handshake (``Sec-WebSocket-Accept`` checked), text
and binary messages (client frames masked with a fresh key, as the RFC
requires; the C masking of ``websockets.speedups`` when present), fragmented
server messages, pings answered with pongs, close frames (the code is kept
and the close echoed). No extensions: the generator never asks for
compression, as browsers of ``edge.js`` users need not either.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TypeVar, cast
from urllib.parse import urlsplit

try:
    from websockets.speedups import apply_mask as _c_mask  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the C extension ships with websockets' wheels
    _c_mask = None

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE_BYTES = 1 << 20
Message = str | bytes


class Closed(Exception):
    """The connection ended; ``code`` is the close code received (1006: none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}".strip())
        self.code = code
        self.reason = reason


class HandshakeFailed(Exception):
    """The server answered the upgrade with ``status`` (e.g. 429, 503)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake answered HTTP {status}")
        self.status = status


def mask(data: bytes, key: bytes) -> bytes:
    if _c_mask is not None:
        out: bytes = _c_mask(data, key)
        return out
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


# Masking keys from a generator seeded by the OS, not ``os.urandom`` per
# frame (a system call a message, 7 µs here): the key only has to be
# unpredictable to the page's script, which a load generator has none of.
_keys = random.Random(os.urandom(16))


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame with FIN set."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = _keys.getrandbits(32).to_bytes(4, "big")
    return head + key + mask(payload, key)


class WireProtocol(asyncio.Protocol):
    """One client connection: handshake, then messages in arrival order."""

    def __init__(self, host: str, path: str, user_agent: str) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nUser-Agent: {user_agent}\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.messages: deque[Message] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.fragments: list[bytes] = []
        self.fragment_op = 0
        self.close_code: int | None = None
        self.close_reason = ""

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but are one)
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded and not self._handshake():
            return
        while self._one_frame():
            pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self.opened.done():
            self.opened.set_exception(Closed(self.close_code))
        self._wake()

    # --- receiving ------------------------------------------------------------------

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        if status != 101:
            self.opened.set_exception(HandshakeFailed(status))
            self._abort()
            return False
        want = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        if headers.get("sec-websocket-accept") != want:
            self.opened.set_exception(HandshakeFailed(status))
            self._abort()
            return False
        self.upgraded = True
        self.opened.set_result(None)
        return True

    def _one_frame(self) -> bool:
        buf = self.buffer
        if len(buf) < 2:
            return False
        first, second = buf[0], buf[1]
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return False
            length, offset = struct.unpack_from("!H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return False
            length, offset = struct.unpack_from("!Q", buf, 2)[0], 10
        if length > MAX_MESSAGE_BYTES:
            self._abort()
            return False
        if len(buf) < offset + length:
            return False
        payload = bytes(buf[offset : offset + length])
        del buf[: offset + length]
        self._on_frame(first & 0x80, first & 0x0F, payload)
        return True

    def _on_frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self._on_close(payload)
        elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if opcode != OP_CONT:
                self.fragment_op = opcode
            self.fragments.append(payload)
            if fin:
                data = b"".join(self.fragments)
                self.fragments = []
                self.messages.append(data.decode() if self.fragment_op == OP_TEXT else data)
                self._wake()

    def _on_close(self, payload: bytes) -> None:
        code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
        self.close_code = code
        self.close_reason = payload[2:].decode(errors="replace")
        self._write(OP_CLOSE, payload[:2])
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the client's side ------------------------------------------------------------

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(opcode, payload))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def send(self, message: Message) -> None:
        if self.close_code is not None:
            raise Closed(self.close_code, self.close_reason)
        if isinstance(message, str):
            self._write(OP_TEXT, message.encode())
        else:
            self._write(OP_BINARY, message)

    def send_text(self, data: bytes) -> None:
        """A text message already encoded as UTF-8 (``orjson.dumps``' output)."""
        if self.close_code is not None:
            raise Closed(self.close_code, self.close_reason)
        self._write(OP_TEXT, data)

    async def recv(self, timeout_s: float) -> Message:
        """The next message; ``TimeoutError`` after ``timeout_s``, ``Closed``
        once the connection has ended and every message before it was read."""
        if self.messages:
            return self.messages.popleft()
        if self.close_code is not None:
            raise Closed(self.close_code, self.close_reason)
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        if self.messages:
            return self.messages.popleft()
        raise Closed(self.close_code or 1006, self.close_reason)

    def close(self) -> None:
        if self.close_code is None and self.transport is not None:
            self._write(OP_CLOSE, struct.pack("!H", 1000))
            self.close_code = 1000
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def connect(url: str, user_agent: str, timeout_s: float) -> WireProtocol:
    """Open ``url`` (``ws://host:port/path?query``; loopback only, checked
    by the caller) and complete the handshake within ``timeout_s``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()

    def make() -> WireProtocol:
        return WireProtocol(f"{host}:{port}", path, user_agent)

    protocol = await open_tcp(host, port, make, timeout_s)
    timer = loop.call_later(timeout_s, _expire_opening, protocol)
    try:
        await protocol.opened
    except BaseException:
        protocol.close()
        raise
    finally:
        timer.cancel()
    return protocol


P = TypeVar("P", bound=asyncio.Protocol)


async def open_tcp(host: str, port: int, make: Callable[[], P], timeout_s: float) -> P:
    """A TCP connection to ``host:port`` (an IP address) handed to ``make()``'s
    protocol, within ``timeout_s``; Nagle off.

    A socket of our own: ``create_connection(host, port)`` resolves the
    address in the loop's thread pool even for a literal IP, and that hop
    showed as tens of milliseconds of connection time under load. One timer
    for the whole opening, not ``wait_for`` (a task and two more loop rounds
    per step, which showed as tens of milliseconds under load)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    timer = loop.call_later(timeout_s, sock.close)
    try:
        await loop.sock_connect(sock, (host, port))
        _, protocol = await loop.create_connection(make, sock=sock)
    except BaseException:
        sock.close()
        raise
    finally:
        timer.cancel()
    return protocol


def _expire_opening(protocol: WireProtocol) -> None:
    if not protocol.opened.done():
        protocol.opened.set_exception(TimeoutError())
        protocol.close()
