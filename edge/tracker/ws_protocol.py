"""edge serve's WebSocket protocol: uvicorn's websockets-sansio one, with its
frames counted as they arrive (edge.tracker.transport).

``WebSocketProtocol``, after the handshake:

- every frame (text, binary, continuation, ping, pong) takes a token from the
  connection's bucket (``max_messages_per_s``, bursts of twice that) and from
  its client address's (edge.tracker.limits, when ws.py registers it) as it
  is read from the socket, with the time it was read. Reading no longer
  pauses after each message until the app takes it (uvicorn does), so a busy
  app does not leave frames in the kernel to be read, and counted, as one
  burst later; the queue is bounded in bytes instead (``QUEUE_HIGH_BYTES``).
  When the whole loop stood still the frames did wait in the kernel: the
  buckets are credited for that time (``LoopStalls``);
- a frame over a bucket, or a text frame that is not UTF-8, is a refusal:
  nothing after it is parsed, and a marker queued after the messages before
  it closes the socket (1008 ``too many messages`` / ``too many messages from
  this address``, 1007 ``invalid UTF-8``) when the app asks for the message
  after them, i.e. once it has answered them all. The app sees the marker as
  a ``websocket.disconnect`` with that code. The close frame is followed by
  the end of the stream, and what the client still sends is dropped unread
  for ``LINGER_S``, as for HTTP refusals.

Frames over ``max_frame_bytes`` and broken framing are still closed at once
by websockets' parser (1009, 1002), as before: answers to messages being
handled then are lost, and those events, stored but unacknowledged, are
resent by the tracker and acknowledged as duplicates.

What an idle connection keeps is kept small (the ``connections`` benchmark):
its inbox and writable flag are ``edge.tracker.inbox``'s, not an
``asyncio.Queue`` and ``asyncio.Event``; the handshake's headers are cleared
once the scope has its copy and the answer is sent; and the HTTP protocol it
was upgraded from is freed at once (``edge.tracker.http_protocol``). A
closed connection is freed at once too: no cycle through its scope is left
for the collector's rare full passes.

Per frame this adds one bucket take (two with per-address limits), and per
read one clock read and a stall check: no allocation per frame beyond
uvicorn's own. Reads larger than ``SLICE_BYTES`` are parsed a slice at a
time, so a flood of small frames is cut after its first slice, not after the
whole read was parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGIReceiveEvent, WebSocketDisconnectEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.http11 import Request

from edge.tracker.inbox import Flag, Inbox
from edge.tracker.limits import TokenBucket
from edge.tracker.transport import ARRIVALS, LINGER_S, shared

SLICE_BYTES = 16 * 1024  # a WebSocket read is parsed this much at a time
# The messages read but not yet taken by the app, in characters or bytes:
# reading pauses above the high mark and resumes below the low one. An honest
# tracker's messages are a few hundred bytes: a hundred or more fit, seconds
# of a stalled app. Per connection this holds no more than uvicorn's pause
# after each message did (one frame of up to max_frame_bytes, 64 KiB).
QUEUE_HIGH_BYTES = 64 * 1024
QUEUE_LOW_BYTES = 16 * 1024
TICK_S = 0.1  # the loop-stall watch ticks this often ...
STALL_S = 0.25  # ... and a tick this late means the loop stood still

CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
TOO_MANY = "too many messages"
TOO_MANY_FROM_ADDRESS = "too many messages from this address"
INVALID_UTF8 = "invalid UTF-8"


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    """The log of websockets' protocol object, with its INFO lines
    ("connection open" for every connection; "connection closed", which
    uvicorn's use of it seldom reaches) at DEBUG.

    They name no client and no path, and uvicorn's own line for the same
    event (``"WebSocket /ws?site=..." [accepted]``, with the address) stays at
    INFO: "connection open" was half of ``edge serve``'s log under load (a
    line per visitor session) and about 1% of its CPU. Everything else (the
    parser's errors, the frame trace at DEBUG) passes unchanged.
    """

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)


SESSION_LOG = SessionLog(logging.getLogger("uvicorn.error"))


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with limits counted on arrival and
    refusals that answer first (see the module docstring).

    ``refusal``: the marker queued after the last message accepted; from then
    on nothing is read until the app reaches it and the close frame is sent.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn.logger = SESSION_LOG
        # uvicorn's asyncio.Queue and asyncio.Event come to 4 KiB a connection;
        # these do the same for one consumer in about 200 bytes (edge.tracker.inbox)
        self.queue: Inbox[ASGIReceiveEvent] = Inbox()  # type: ignore[assignment]
        self.writable = Flag(True)  # type: ignore[assignment]
        process = shared()
        rate = process.settings.max_messages_per_s
        now = time.monotonic()
        self.bucket = TokenBucket(rate, 2 * rate, now)
        self.address_allows: Callable[[float, float], bool] | None = None
        self.stalls = process.stalls(self.loop)
        self.read_at = now  # when this read came (every frame of one read shares it)
        self.stalled_s = 0.0  # how long the loop stood still since the read before
        self.queued = 0  # characters or bytes of messages read, not yet taken by the app
        self.refusal: WebSocketDisconnectEvent | None = None
        self.refusal_timer: asyncio.TimerHandle | None = None
        # The scope's way to this protocol (ARRIVALS), emptied when the socket
        # closes: scope -> extension -> protocol -> scope is a cycle that would
        # keep the whole connection (about 30 objects) until a full collection.
        self.arrivals_extension: dict[object, object] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope has a copy of the headers; websockets' parser keeps the
        # request for the connection's life, its headers (2-3 KiB) need not.
        event.headers.clear()
        if not self.close_sent:  # accepted by websockets: the app gets this scope
            self.arrivals_extension = {"protocol": self}
            self.scope.setdefault("extensions", {})[ARRIVALS] = self.arrivals_extension

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after the handshake's answer went out:
        # the answer's headers, kept by uvicorn, are no longer read. (Here, not
        # in an override of ``send``, which would add a layer to every message.)
        self.response.headers.clear()
        super().start_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refusal_timer is not None:
            self.refusal_timer.cancel()
            self.refusal_timer = None
        if self.arrivals_extension is not None:
            self.arrivals_extension.clear()
        super().connection_lost(exc)

    # -- frames in

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return  # refused: nothing after the refused frame is parsed (and, once the
            # close frame is out, what still comes is read only to be dropped)
        now = time.monotonic()
        self.stalled_s = self.stalls.within(self.read_at, now)
        self.read_at = now
        if len(data) <= SLICE_BYTES:
            super().data_received(data)
            return
        for start in range(0, len(data), SLICE_BYTES):
            super().data_received(data[start : start + SLICE_BYTES])
            if self.refusal is not None or self.transport.is_closing():
                return

    def _admit(self) -> bool:
        """A frame arrived: may it pass both buckets? Else refuse the connection
        (or, still sending after the app's close frame went out, drop it)."""
        if self.refusal is not None:
            return False  # the rest of the read that held the refused frame
        if self.bucket.take(self.read_at, self.stalled_s):
            allows = self.address_allows
            if allows is None or allows(self.read_at, self.stalled_s):
                return True
            reason = TOO_MANY_FROM_ADDRESS
        else:
            reason = TOO_MANY
        if self.close_sent:
            self.transport.close()
        else:
            self._refuse(CLOSE_POLICY, reason)
        return False

    def handle_text(self, event: Frame) -> None:
        if self._admit():
            super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        if self._admit():
            super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        if self._admit():
            super().handle_cont(event)

    def handle_ping(self) -> None:
        if self._admit():
            super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        if self._admit():
            super().handle_pong(event)

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, without its pause after every message (the queue is
        bounded in bytes instead), and invalid UTF-8 as a refusal."""
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent or self.refusal is not None:
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self._refuse(CLOSE_INVALID_DATA, INVALID_UTF8)
                return
            # "arrived": when it was read (edge.tracker.admission); ASGI apps
            # ignore keys they do not know
            event: Any = {"type": "websocket.receive", "text": text, "arrived": self.read_at}
            self.queue.put_nowait(event)
            self.queued += len(text)
        else:
            event = {"type": "websocket.receive", "bytes": data, "arrived": self.read_at}
            self.queue.put_nowait(event)
            self.queued += len(data)
        if self.queued > QUEUE_HIGH_BYTES and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    # -- the app takes them

    async def receive(self) -> ASGIReceiveEvent:
        message = await self.queue.get()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            self.queued -= len(text) if text is not None else len(message.get("bytes") or b"")
            if self.read_paused and self.queued <= QUEUE_LOW_BYTES and self.refusal is None:
                self.read_paused = False
                self.transport.resume_reading()
        elif message is self.refusal:
            self._close_refused(message)
        return message

    # -- refusals

    def _refuse(self, code: int, reason: str) -> None:
        self.refusal = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self.queue.put_nowait(self.refusal)
        self.frames = []
        if not self.read_paused and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()
        # The app answers what came before within this, or the socket goes anyway.
        self.refusal_timer = self.loop.call_later(self.close_timeout, self._refusal_overdue)

    def _close_refused(self, refusal: WebSocketDisconnectEvent) -> None:
        """The app has answered everything before the refused frame: close."""
        if self.refusal_timer is not None:
            self.refusal_timer.cancel()
            self.refusal_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        with contextlib.suppress(InvalidState):  # the client's own close came first
            self.conn.send_close(refusal["code"], refusal.get("reason") or "")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            # The close frame, then the end of the stream; what the client
            # still sends (its closing frame, or more of its flood) is read
            # and dropped unparsed until it closes too or LINGER_S has passed:
            # closing with unread data would reset the connection, and the
            # client could lose the close frame.
            if self.transport.can_write_eof():
                self.transport.write_eof()
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self.close_timer = self.loop.call_later(LINGER_S, self.transport.close)

    def _refusal_overdue(self) -> None:
        self.refusal_timer = None
        if self.refusal is not None and not self.close_sent:
            self._close_refused(self.refusal)
            self.transport.close()
