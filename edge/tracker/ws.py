"""The WebSocket endpoint ``/ws?site=<id>``: a thin shell around the protocol
(``protocol``), the profile ledger (``edge.stores.ledger``) and the decision hook.

Per connection: refuse a bad site or Origin before accepting (HTTP 403), and
a client address over its limits (HTTP 429, edge.tracker.limits), wait for a
valid ``hello`` (anything else: an error, then close 1008), then answer each
``events`` message after its events are stored. Messages of one connection
are handled in order, one at a time, so answers come back in order and a
slow store pushes back on that client only.

The frame rate limits, per connection and per client address, are counted
where frames arrive, by edge serve's WebSocket protocol
(edge.tracker.ws_protocol); so are text frames that are not UTF-8. Its refusal
reaches this endpoint as a ``websocket.disconnect`` (1008 or 1007) after
every message that came before the refused frame, so those are answered
first. Here, the endpoint hands the protocol the per-address check once the
address is admitted.

While the store is down (docs/protocol.md, "Store outages") a ``hello`` is
still welcomed (``ack`` 0; the profile is loaded by a later message), and an
``events`` message gets the fallback answer at once: ``error``
``store_unavailable`` and, when it asked for decisions, an empty
``decisions`` without ``ack``. The tracker keeps those events and resends them.
So does a message still waiting for the store ``answer_deadline_s`` after it
arrived while the store is not answering (a hung store: a write in flight
that long, or known down): the store work goes on, the visitor does not wait
for it. A ``hello`` waits for its profile no longer than that at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from edge.core.context import VisitContext
from edge.core.site import Site
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
from edge.runtime.breaker import by_deadline
from edge.stores.base import StoreUnavailable
from edge.stores.ledger import Hot
from edge.tracker import preview
from edge.tracker import protocol as p
from edge.tracker.geo import UNKNOWN, Location
from edge.tracker.ingest import Ingest, may_store, next_page, triggers
from edge.tracker.limits import (
    FORWARDED,
    REFUSALS,
    RETRY_AFTER_S,
    AddressLimits,
    Limit,
    refusal_warning,
)
from edge.tracker.socket import Socket
from edge.tracker.transport import ARRIVALS, Arrivals
from edge.tracker.useragent import classify
from edge.widgets.service import Shown

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
DENIAL_RESPONSE = "websocket.http.response"  # the ASGI extension for HTTP answers to handshakes


class Close(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason


class Connection:
    """One visitor's socket after the handshake."""

    def __init__(self, ingest: Ingest, ws: Socket, site: Site) -> None:
        self.ingest = ingest
        self.ws = ws
        self.site = site
        self.binary = False
        self.ctx: VisitContext | None = None
        self.page = Page()
        self.bot = False
        self.hot: Hot | None = None
        # Admission (edge.tracker.admission): when the message being handled
        # arrived, and when this connection finished the one before it.
        self.arrived = 0.0
        self.done_at = 0.0
        # The lowest seq refused "busy" on this connection and not resent
        # since: until it is, later messages are refused too, so no event is
        # stored ahead of a refused one and no ack covers a refused event.
        self.refused_from: int | None = None
        self.refused_at = 0.0  # when its first refusal was (monotonic)
        # The last refusal was of a resend, refused this long since the first
        # refusal of its message (None: a fresh message's): its retry hint.
        self.resend_refused_for_s: float | None = None
        # The widgets sent with their html on the page this connection is on
        # (edge.widgets.service.render): later decisions omit the html.
        self.sent: set[Shown] = set()
        # The profile's load, while it outlives a message's answer deadline:
        # the next message takes it up; ``close`` releases what it holds.
        self.opening: asyncio.Task[Hot] | None = None
        self.loop = asyncio.get_running_loop()
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = 0  # the close code sent when the deadline passed
        # edge serve's protocol of this socket, which counts its frames.
        self.arrivals = _arrivals(ws)
        # A preview link's tab (edge.tracker.preview): set by its hello, for
        # the connection's life; its messages go there and nothing is stored.
        self.preview: preview.PreviewSession | None = None

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
        if frame["type"] == "websocket.disconnect":  # a refusal of the protocol too
            raise WebSocketDisconnect(self.timed_out or frame.get("code", 1000))
        self.arrived = frame.get("arrived") or time.monotonic()
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
                if not self.admit(message):
                    await self.busy()
                    continue
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
                if self.ctx is None:  # the first message must be a valid hello, or 1008
                    raise Close(CLOSE_POLICY, _hello_refused(exc)) from None
            finally:
                self.done_at = time.monotonic()

    def admit(self, message: dict[str, Any]) -> bool:
        """Can this process answer the message in time? Its wait counts from
        when it arrived, or from when this connection finished the message
        before it, whichever is later (edge.tracker.admission). After a
        refusal, only the tracker's resend (from the refused event on) is
        considered again, and it waits for the process to have room to
        spare (fresh messages first)."""
        seq = p.lowest_seq(message) if self.ctx is not None else None
        now = time.monotonic()
        refused_for_s = None
        if self.refused_from is not None:
            if seq is None or seq > self.refused_from:
                return False  # not the resend yet: keep the order
            self.refused_from = None
            refused_for_s = now - self.refused_at
        waited_s = now - max(self.arrived, self.done_at)
        if self.ingest.admission.admits(waited_s, refused_for_s):
            return True
        self.resend_refused_for_s = refused_for_s
        if seq is not None:
            self.refused_from = seq
            if refused_for_s is None:  # a first refusal; a resend keeps the first's time
                self.refused_at = now
        return False

    async def busy(self) -> None:
        """Refused by admission: ``busy`` and no ack (the tracker resends after
        ``retry_ms``); a connection refused at its ``hello`` closes 1013."""
        admission = self.ingest.admission
        self.ingest.counters.refuse("busy")
        retry_ms = admission.retry_ms(self.resend_refused_for_s)
        await self.send(p.error("busy", "server busy; resend later", retry_ms=retry_ms))
        if self.ctx is None:
            raise Close(CLOSE_TRY_AGAIN, f"try again later; retry in {retry_ms} ms")

    async def on_hello(self, message: dict[str, Any]) -> None:
        hello = p.parse_first(message)
        visitor = hello.visitor or new_id()
        self.page = Page(url=hello.url)
        self.bot = classify(self.ws.headers.get("user-agent", "")).is_bot
        if self.bot:
            self.ingest.counters.bots += 1
        location = self.locate()
        self.ctx = VisitContext(
            visitor=visitor,
            session=hello.session,
            user_agent=self.ws.headers.get("user-agent", "")[:512],
            lang=hello.lang,
            page_lang=hello.page_lang,
            screen=(hello.screen[0], hello.screen[1])
            if hello.screen and len(hello.screen) == 2
            else None,
            consent=hello.consent,
            url=hello.url,
            referrer=hello.referrer,
            country=location.country,
            region=location.region,
        )
        if hello.preview is not None:
            await preview.start(self, hello)  # sets self.preview
            return
        acked = 0  # also when the store is down: unknown, so the tracker resends all
        deadline = self.loop.time() + self.ingest.settings.answer_deadline_s
        if self.may_store() and await self.load(deadline):
            assert self.hot is not None
            if self.hot.base is not None:  # what is *stored*, never what is pending
                acked = self.hot.base.acked(hello.session)
        show = self.site.decisioning.campaigns and not self.bot
        css = self.site.renderer.stylesheet() if show else None
        await self.send(p.welcome(visitor, hello.session, acked, self.site.version, css))
        if hello.events:  # the page view came with the hello: answer it now
            await self.on_events({"type": "events", "events": hello.events})

    def locate(self) -> Location:
        geo = self.ingest.geo
        if not geo.enabled:
            return UNKNOWN
        headers = self.ws.headers
        return geo.locate(self.ws.client_host, headers, headers.getlist(FORWARDED))

    async def load(self, deadline: float, *, patient: bool = False) -> bool:
        """Make the visitor's profile hot; False while the store is down or
        has not answered by ``deadline`` (loop time; ``patient``: and is not
        answering anything either): the load then goes on, and the next
        message takes it up, or tries again after a failure."""
        assert self.ctx is not None
        opening = self.opening
        if opening is None:
            opening = self.opening = self.loop.create_task(
                self.ingest.open(self.site, self.ctx.visitor)
            )
        try:
            self.hot = await by_deadline(
                opening,
                deadline,
                patience=self.ingest.store_answering if patient else None,
                limit=deadline + self.ingest.settings.ack_timeout_s,
            )
        except (TimeoutError, StoreError) as exc:  # late, or failed (its own timeout included)
            log.debug("profile not loaded: %r", exc)
            return False
        finally:
            if opening.done():  # taken up, or failed: a later message starts afresh
                self.opening = None
        return True

    def may_store(self) -> bool:
        """Consent given (or not required), and not a robot: robots get no
        profile, no widgets and no coupons; they are only counted."""
        assert self.ctx is not None
        return may_store(self.site, self.ctx.consent) and not self.bot

    async def on_events(self, message: dict[str, Any]) -> None:
        assert self.ctx is not None
        if self.preview is not None:
            await preview.answer(self, self.preview, message)
            return
        started = time.perf_counter()
        deadline = self.loop.time() + self.ingest.settings.answer_deadline_s
        batch = p.parse_events(message)
        self.page = next_page(self.page, batch.events)
        if any(isinstance(e, p.PageView) for e in batch.events):
            self.sent = set()  # a new page: its widgets are sent with their html again
        try:
            loaded = self.hot is not None or not self.may_store()
            if not loaded and not await self.load(deadline, patient=True):
                raise StoreUnavailable("profile store unavailable")
            # In flight while stored and decided; not while the answer is
            # sent, at the pace of a client that may not read it.
            with self.ingest.admission.holding():
                errors, answer = await self.ingest.process(
                    self,
                    batch,
                    self.ctx,
                    self.site,
                    page=None if self.bot else self.page,
                    deadline=deadline,
                    sent=self.sent,
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

    def count_address(self, allows: Callable[[float, float], bool]) -> None:
        """Count this socket's frames against its address's bucket too."""
        if self.arrivals is not None:
            self.arrivals.address_allows = allows

    def close(self) -> None:
        if self.arrivals is not None:  # the address's entry goes once the socket is closed
            self.arrivals.address_allows = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.hot is not None:
            self.ingest.ledger.release(self.hot)
            self.hot = None
        if self.opening is not None:  # a load that outlived its deadline: release it when done
            self.opening.add_done_callback(self._release_late)
            self.opening = None

    def _release_late(self, opening: asyncio.Task[Hot]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            self.ingest.ledger.release(opening.result())


def _arrivals(ws: Socket) -> Arrivals | None:
    extension = ws.scope.get("extensions", {}).get(ARRIVALS)
    if extension is None:
        _warn_unguarded()
        return None
    arrivals: Arrivals | None = extension.get("protocol")  # None: closed already
    return arrivals


@functools.cache
def _warn_unguarded() -> None:
    log.warning(
        "WebSocket frames are not rate-limited: this server does not run edge serve's "
        "protocol (edge.tracker.ws_protocol); start edge with `edge serve`"
    )


def _hello_refused(exc: ProtocolError) -> str:
    """The close reason when the first message is not a valid hello."""
    if isinstance(exc, HelloRequired):
        return "hello required"
    return "bad visitor id" if isinstance(exc, BadVisitorId) else "bad hello"


async def websocket_app(scope: Scope, receive: Receive, send: Send, state: Any) -> None:
    """``/ws`` as a plain ASGI app (``state``: the app's services); see
    ``edge.tracker.socket`` for why no framework sits in between."""
    await websocket_endpoint(Socket(scope, receive, send, state))


async def websocket_endpoint(ws: Socket) -> None:
    ingest: Ingest = ws.state.ingest
    site = ingest.registry.get(ws.query_params.get("site"))
    if site is None or not ingest.origin_allowed(
        site, ws.headers.get("origin"), ws.headers.get("host")
    ):
        await ws.close(CLOSE_POLICY)  # before accept: the server answers HTTP 403
        return
    limits: AddressLimits = ws.state.limits
    key = None
    if limits.enabled:  # admitted before accept, counted until the socket ends
        key = limits.key(ws.client_host, ws.headers.getlist(FORWARDED))
        refused = limits.connect(key, time.monotonic())
        if refused is not None:
            await _deny(ws, limits, key, refused)
            return
    try:
        await _serve(ws, ingest, site, key, limits)
    finally:
        if key is not None:
            limits.disconnect(key, time.monotonic())


async def _deny(ws: Socket, limits: AddressLimits, key: str, refused: Limit) -> None:
    """Refuse a handshake over a per-address limit: HTTP 429 where the server
    can answer a handshake with a response (uvicorn can), else close 1008
    before accept (which the server turns into HTTP 403)."""
    warning = refusal_warning(limits, key, refused, time.monotonic())
    if warning:
        log.warning(warning)
    message = p.error("rate_limited", REFUSALS[refused])
    with contextlib.suppress(RuntimeError, OSError):  # the peer went away first
        if DENIAL_RESPONSE in ws.scope.get("extensions", {}):
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            await ws.send_denial_response(JSONResponse(message, 429, headers=headers))
            _denied.set(True)
        else:
            await ws.close(CLOSE_POLICY, REFUSALS[refused])


async def _serve(
    ws: Socket, ingest: Ingest, site: Site, key: str | None, limits: AddressLimits
) -> None:
    await ws.accept()
    ingest.counters.connections += 1
    connection = Connection(ingest, ws, site)
    if key is not None and limits.rate_per_s > 0:
        connection.count_address(functools.partial(limits.message, key))
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


async def _close(ws: Socket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError):  # the peer went away first
        await ws.close(code, reason)


# An ERROR record of uvicorn's websockets-sansio protocol (under edge serve's
# ``ws=``) that is no server error, and a cheap way to flood the log: after a
# handshake answered with a response (the 429 of ``_deny``) it still reports
# "returned without completing handshake" (uvicorn pull request 3138):
# dropped, but only in the task that sent that response. (Text frames that
# are not UTF-8 no longer reach uvicorn's traceback: edge.tracker.ws_protocol
# refuses them itself.)
INCOMPLETE_HANDSHAKE = "ASGI callable returned without completing handshake."
# True in the task of a handshake that ``_deny`` answered (uvicorn logs the
# record above from that same task, once the endpoint has returned).
_denied: contextvars.ContextVar[bool] = contextvars.ContextVar("edge_ws_denied", default=False)


class _UvicornNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != INCOMPLETE_HANDSHAKE or not _denied.get()


def quiet_uvicorn_noise() -> None:
    """Install the filter on uvicorn's error logger (once per process)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _UvicornNoise) for f in logger.filters):
        logger.addFilter(_UvicornNoise())
