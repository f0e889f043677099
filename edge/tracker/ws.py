"""The WebSocket endpoint ``/ws?site=<id>``: a thin shell around the protocol
(``protocol``), the profile ledger (``edge.ledger``) and the decision hook.

Per connection: refuse a bad site or Origin before accepting (HTTP 403), wait
for ``hello``, then answer each ``events`` message after its events are
stored. Messages of one connection are handled in order, one at a time, so
answers come back in order and a slow store pushes back on that client only.

While the store is down (docs/protocol.md, "Store outages") a ``hello`` is
still welcomed (``ack`` 0; the profile is loaded by a later message), and an
``events`` message gets the fallback answer at once: ``error``
``store_unavailable`` and, when it asked for decisions, an empty
``decisions`` without ``ack``. The tracker keeps those events and resends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from edge.decisioning.attributes import Page
from edge.errors import (
    BadVisitorId,
    HelloRequired,
    InvalidMessage,
    MalformedFrame,
    ProtocolError,
    StoreError,
)
from edge.ids import new_id
from edge.ledger import Hot
from edge.sites import Site
from edge.stores.base import StoreUnavailable
from edge.tracker import protocol as p
from edge.tracker.context import VisitContext
from edge.tracker.ingest import Ingest, may_store, next_page, triggers
from edge.tracker.limits import TokenBucket
from edge.tracker.useragent import classify

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011


class Close(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason


class Connection:
    """One visitor's socket after the handshake."""

    def __init__(self, ingest: Ingest, ws: WebSocket, site: Site) -> None:
        self.ingest = ingest
        self.ws = ws
        self.site = site
        self.binary = False
        self.ctx: VisitContext | None = None
        self.page = Page()
        self.bot = False
        self.hot: Hot | None = None
        settings = ingest.settings
        self.bucket = TokenBucket(
            settings.max_messages_per_s, 2 * settings.max_messages_per_s, time.monotonic()
        )
        self.loop = asyncio.get_running_loop()
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = 0  # the close code sent when the deadline passed

    # Hello and idle timeouts: one timer per connection, moved forward by each
    # message, instead of wrapping every receive in wait_for (a task per
    # message, the largest asyncio cost on this path).

    def _expect_within(self, timeout_s: float) -> None:
        self.deadline = self.loop.time() + timeout_s
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._expired)
            return
        self.timed_out = CLOSE_GOING_AWAY if self.ctx else CLOSE_POLICY
        self.closer = self.loop.create_task(_close(self.ws, self.timed_out, "timeout"))

    async def send(self, message: dict[str, Any]) -> None:
        data = p.encode(message, binary=self.binary)
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_text(data)

    async def receive(self, timeout_s: float) -> dict[str, Any]:
        self._expect_within(timeout_s)
        frame = await self.ws.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(self.timed_out or frame.get("code", 1000))
        if not self.bucket.take(time.monotonic()):
            raise Close(CLOSE_POLICY, "too many messages")
        data = frame.get("text")
        self.binary = data is None
        if data is None:
            data = frame.get("bytes") or b""
        try:
            return p.decode_frame(data)
        except MalformedFrame as exc:
            raise Close(CLOSE_INVALID_DATA, exc.message[:120]) from None

    async def run(self) -> None:
        settings = self.ingest.settings
        while True:
            timeout_s = settings.idle_timeout_s if self.ctx else settings.hello_timeout_s
            try:
                message = await self.receive(timeout_s)
                if self.ctx is None:
                    await self.on_hello(message)
                    continue
                kind = p.message_type(message)
                if kind == "events":
                    await self.on_events(message)
                elif kind == "hello":
                    raise InvalidMessage("hello was already sent on this connection")
                else:
                    raise InvalidMessage(f"unknown message type {kind!r:.40}")
            except ProtocolError as exc:
                await self.send(p.error(exc.code, exc.message, seq=exc.seq))

    async def on_hello(self, message: dict[str, Any]) -> None:
        try:
            if p.message_type(message) != "hello":
                raise HelloRequired("send hello first")
            hello = p.parse_hello(message)
        except BadVisitorId as exc:
            await self.send(p.error(exc.code, exc.message))
            raise Close(CLOSE_POLICY, "bad visitor id") from None
        except ProtocolError as exc:
            await self.send(p.error(exc.code, exc.message))
            if exc.code == "hello_required":
                return
            raise Close(CLOSE_POLICY, "bad hello") from None
        visitor = hello.visitor or new_id()
        self.page = Page(url=hello.url)
        self.bot = classify(self.ws.headers.get("user-agent", "")).is_bot
        if self.bot:
            self.ingest.counters.bots += 1
        self.ctx = VisitContext(
            visitor=visitor,
            session=hello.session,
            user_agent=self.ws.headers.get("user-agent", "")[:512],
            lang=hello.lang,
            screen=(hello.screen[0], hello.screen[1])
            if hello.screen and len(hello.screen) == 2
            else None,
            consent=hello.consent,
            url=hello.url,
            referrer=hello.referrer,
        )
        acked = 0  # also when the store is down: unknown, so the tracker resends all
        if self.may_store() and await self.load():
            assert self.hot is not None
            if self.hot.base is not None:  # what is *stored*, never what is pending
                acked = self.hot.base.acked(hello.session)
        show = self.site.decisioning.campaigns and not self.bot
        css = self.site.renderer.stylesheet() if show else None
        await self.send(p.welcome(visitor, hello.session, acked, self.site.version, css))

    async def load(self) -> bool:
        """Make the visitor's profile hot; False while the store is down (the
        next message tries again)."""
        assert self.ctx is not None
        try:
            self.hot = await self.ingest.ledger.open(self.site.id, self.ctx.visitor)
        except StoreError as exc:
            log.debug("cannot load profile: %s", exc)
            return False
        return True

    def may_store(self) -> bool:
        """Consent given (or not required), and not a robot: robots get no
        profile, no widgets and no coupons; they are only counted."""
        assert self.ctx is not None
        return may_store(self.site, self.ctx.consent) and not self.bot

    async def on_events(self, message: dict[str, Any]) -> None:
        assert self.ctx is not None
        started = time.perf_counter()
        batch = p.parse_events(message)
        self.page = next_page(self.page, batch.events)
        try:
            if self.hot is None and self.may_store() and not await self.load():
                raise StoreUnavailable("profile store unavailable")
            errors, answer = await self.ingest.process(
                self.hot, batch, self.ctx, self.site, page=None if self.bot else self.page
            )
        except (TimeoutError, StoreError):
            await self.fallback(batch)
            self.ingest.latency(self.site.id, time.perf_counter() - started)
            return
        for error in errors:
            await self.send(error)
        await self.send(answer)
        self.ingest.latency(self.site.id, time.perf_counter() - started)

    async def fallback(self, batch: p.Batch) -> None:
        """The answer when the events could not be stored (in time): no ``ack``,
        so the tracker keeps and resends them, and no widgets (showing them
        needs the profile, coupons and signals that live in the store)."""
        await self.send(p.error("store_unavailable", "events not stored yet; resend later"))
        if not self.bot and triggers(batch.events):
            await self.send(p.decisions([], seq=None))

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.hot is not None:
            self.ingest.ledger.release(self.hot)
            self.hot = None


async def websocket_endpoint(ws: WebSocket) -> None:
    ingest: Ingest = ws.app.state.ingest
    site = ingest.registry.get(ws.query_params.get("site"))
    if site is None or not ingest.origin_allowed(
        site, ws.headers.get("origin"), ws.headers.get("host")
    ):
        await ws.close(CLOSE_POLICY)  # before accept: the server answers HTTP 403
        return
    await ws.accept()
    ingest.counters.connections += 1
    connection = Connection(ingest, ws, site)
    code = 1000
    try:
        await connection.run()
    except Close as exc:
        code = exc.code
        await _close(ws, exc.code, exc.reason)
    except WebSocketDisconnect as exc:
        code = exc.code
    except Exception:  # a bug must cost one connection, never the process; logged in full
        log.exception("connection failed")
        code = CLOSE_INTERNAL
        await _close(ws, CLOSE_INTERNAL, "internal error")
    finally:
        connection.close()
        ingest.counters.connections -= 1
        ingest.counters.close_codes[code] = ingest.counters.close_codes.get(code, 0) + 1


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError):  # the peer went away first
        await ws.close(code, reason)
