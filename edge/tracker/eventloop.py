"""edge serve's event loop: uvloop, with TCP servers that accept connections
in batches.

libuv, under uvloop, accepts one connection per turn of the event loop (since
libuv 1.45: one ``accept`` per poll, then back to level-triggered polling).
That is cheap when the loop turns often, and a trap when it is saturated: at
3x capacity (issue 13) a turn took tens of milliseconds, the server accepted
a few dozen connections a second while shoppers opened two hundred, the
kernel's accept queue filled (2,048) and new connections waited in SYN
retries for up to 18 s, while the visitors already connected were served.
That is the silent queueing admission control is there to prevent: a
connection must reach the server to be welcomed, or refused explicitly
(``busy``, close 1013, with a retry hint).

So a listening socket is watched here (``add_reader``) and each time it is
readable several connections are accepted, as asyncio's own loop does, and
handed to uvloop (``connect_accepted_socket``), whose transports are
unchanged. A connection's protocol is made a turn after the accept, and its
``connection_made`` is where the open-files budget (edge.tracker.openfiles)
counts it and turns away what is over the budget; so no more than
``ACCEPT_BATCH``, and no more than half of the budget's spare share, wait
for their protocol at any time. If ``accept`` fails all the same (out of
descriptors), accepting pauses for ``ACCEPT_RETRY_S`` rather than failing
again on every turn.

TLS listeners and Unix sockets are left to uvloop: edge serve has neither
(TLS ends at the proxy in front of it).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from edge.tracker.transport import shared

log = logging.getLogger(__name__)

# Accepted and not yet made, at most: enough to keep up with a flood when each
# turn of a saturated loop takes tens of milliseconds, few enough that one
# turn is not spent on accepting alone, and that worker processes sharing the
# socket each get some.
ACCEPT_BATCH = 64
ACCEPT_RETRY_S = 1.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def new_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory (``loop="edge.tracker.eventloop:new_loop"``)."""
    try:
        import uvloop
    except ImportError:  # asyncio's own loop already accepts in batches
        return asyncio.new_event_loop()

    class Loop(uvloop.Loop):
        async def create_server(  # type: ignore[override]
            self,
            protocol_factory: ProtocolFactory,
            host: str | None = None,
            port: int | None = None,
            *,
            sock: socket.socket | None = None,
            backlog: int = 100,
            ssl: Any = None,
            **kwargs: Any,
        ) -> asyncio.AbstractServer:
            if ssl is not None or (sock is None and port is None):
                uv: Any = super()  # its overloads do not take this signature's unions
                return await uv.create_server(  # type: ignore[no-any-return]
                    protocol_factory, host, port, sock=sock, backlog=backlog, ssl=ssl, **kwargs
                )
            if sock is not None:  # worker processes: bound by uvicorn, listened to here
                sock.listen(backlog)
            sockets = [sock] if sock is not None else listen(host, port, backlog)
            return BatchServer(self, protocol_factory, sockets)

    return Loop()


def listen(host: str | None, port: int | None, backlog: int) -> list[socket.socket]:
    """Listening sockets for ``host`` and ``port`` as asyncio binds them: one
    per address, ``SO_REUSEADDR``, IPv6 sockets for IPv6 only."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class BatchServer(asyncio.AbstractServer):
    """An ``asyncio.AbstractServer`` (uvicorn uses ``sockets``, ``close`` and
    ``wait_closed``) that accepts in batches; connections already accepted
    are uvicorn's to close, as with asyncio's servers. Serving from the
    start, as ``create_server`` does by default."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: ProtocolFactory,
        sockets: Iterable[socket.socket],
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self.sockets = list(sockets)
        self._serving = False
        self._closed = asyncio.Event()
        self._handing: set[asyncio.Task[Any]] = set()  # connections being set up
        # Accepted, their protocol not yet made: the protocol's connection_made
        # follows within a turn, so at most twice this are unknown to the budget.
        self._unmade = 0
        self._limit = min(ACCEPT_BATCH, max(1, shared().budget.spare // 2))
        for sock in self.sockets:
            sock.setblocking(False)
        self._start()

    def _start(self) -> None:
        self._serving = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(self._limit - self._unmade):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing more waiting; or the client gave up first
            except OSError as exc:  # out of descriptors, or worse: not in a loop
                log.error("accepting paused for %g s: %s", ACCEPT_RETRY_S, exc)
                self._pause(sock)
                return
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
            self._unmade += 1
            task = self._loop.create_task(self._hand_over(conn))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)

    def _pause(self, sock: socket.socket) -> None:
        self._loop.remove_reader(sock.fileno())

        def resume() -> None:
            if self._serving:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

        self._loop.call_later(ACCEPT_RETRY_S, resume)

    async def _hand_over(self, conn: socket.socket) -> None:
        made = False

        def make() -> asyncio.BaseProtocol:
            nonlocal made
            made = True
            self._unmade -= 1
            return self._factory()

        try:
            await self._loop.connect_accepted_socket(make, conn)
        except OSError as exc:  # reset before it was set up: nothing to answer
            log.debug("accepted connection lost before its transport: %r", exc)
            conn.close()
        except Exception:  # a task of its own: logged here, or never
            log.exception("setting up an accepted connection failed")
            conn.close()
        finally:
            if not made:
                self._unmade -= 1

    # -- asyncio.AbstractServer

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._serving = False
        self._closed.set()
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()
        if self._handing:
            await asyncio.gather(*self._handing, return_exceptions=True)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if not self._serving and not self._closed.is_set():
            self._start()

    async def serve_forever(self) -> None:
        await self.start_serving()
        await self._closed.wait()
