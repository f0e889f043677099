"""edge serve's HTTP protocol: uvicorn's httptools one, with limits on what a
client may do before its request is answered (edge.tracker.transport).

``HttpProtocol`` (every connection starts here, WebSocket handshakes too):

- a request (line, headers, body) must have arrived within
  ``request_timeout_s`` of the connection opening or of the previous response
  on it: a connection that sends nothing, or half a request, or one byte a
  second, is closed (HTTP 408 when part of a request came);
- the request line and headers must fit in ``max_header_bytes``: counted on
  the bytes as they come, so a header line that never ends is cut as well
  (HTTP 431 and close); the parser is never fed past the limit;
- the open-files budget (edge.tracker.openfiles): a connection over
  ``Budget.connections`` may only ask for ``/healthz``, ``/readyz`` or
  ``/metrics``; anything else (a WebSocket handshake included) gets HTTP 503
  with ``Retry-After``. When the spare connections are all taken, the one
  that has waited longest for its request is closed to make room (so a probe
  gets through a flood of idle connections); when none waits, the new one is
  closed at once.

Refusals are answered as edge.tracker.transport says (``LINGER_S``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from edge.tracker.limits import RETRY_AFTER_S
from edge.tracker.openfiles import SPARE_TIMEOUT_S
from edge.tracker.transport import LINGER_S, shared

OPERATOR_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that is refused."""


def _response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


REQUEST_TIMEOUT = _response(408, b"Request Timeout\n")
HEADERS_TOO_LARGE = _response(431, b"Request Header Fields Too Large\n")
BUSY = _response(503, b"Service Unavailable\n", b"retry-after: %d\r\n" % RETRY_AFTER_S)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request deadline, a header size
    limit and the open-files budget (see the module docstring).

    State: ``reading_head`` from the end of one request (or the connection's
    start) until the next one's headers are complete, with ``head_bytes``
    received meanwhile; ``deadline`` armed while the connection waits for a
    request it needs, i.e. from the start or the previous response until the
    request has fully arrived; ``done`` once a refusal was written (what
    follows is dropped).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.process = shared()
        settings = self.process.settings
        self.request_timeout_s = settings.request_timeout_s
        self.max_head_bytes = settings.max_header_bytes
        self.deadline: asyncio.TimerHandle | None = None
        self.reading_head = True
        self.head_bytes = 0
        self.spare = False  # over the budget: operator paths only
        self.busy = False  # a spare connection asked for something else: 503
        self.done = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_now = len(self.connections)
        budget = self.process.budget
        if open_now <= budget.connections:
            self._arm(self.request_timeout_s)
            return
        self.process.refused_over_budget(open_now)
        if open_now > budget.connections + budget.spare and not self.process.evict_spare():
            self.process.counters.dropped += 1
            self.done = True
            transport.close()
            return
        self.spare = True
        self.process.waiting_spares[self] = None
        self._arm(SPARE_TIMEOUT_S)

    def leave_spares(self) -> None:
        self.process.waiting_spares.pop(self, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.leave_spares()
        super().connection_lost(exc)

    # -- the deadline

    def _arm(self, delay_s: float) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(delay_s, self._too_slow)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        self.process.counters.request_timeouts += 1
        started = self.head_bytes > 0 or not self.reading_head
        if not started or (self._answering() and self.cycle.response_started):
            self.transport.close()  # nothing came (an idle connection), or too late to answer
            return
        if self.cycle is not None and not self.reading_head:  # the app waits for the body
            self.cycle.disconnected = True  # it sees the client gone; its answer is dropped
            self.cycle.message_event.set()
        self._answer(REQUEST_TIMEOUT)

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    # -- bytes in

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self._unset_keepalive_if_required()
        if self.reading_head:
            room = self.max_head_bytes - self.head_bytes
            if len(data) > room:  # feed only what may still be head, then look
                self.head_bytes = self.max_head_bytes
                if not self._feed(data[:room]):
                    return
                if self.reading_head:
                    self.process.counters.headers_too_large += 1
                    self._refuse(HEADERS_TOO_LARGE)
                    return
                data = data[room:]
            else:
                self.head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        """uvicorn's ``data_received``; False when the connection left this
        protocol (an upgrade) or was answered with an error."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            if self.busy:  # on_headers_complete stopped the parser
                self.process.counters.over_budget += 1
                self._refuse(BUSY)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return False
        return True

    def _refuse(self, response: bytes) -> None:
        """Refuse the request being read (431, 503)."""
        if self._answering():  # an earlier (pipelined) request's answer is due: just close
            self.done = True
            self._disarm()
            self.transport.close()
            return
        self._answer(response)

    def _answer(self, response: bytes) -> None:
        """Answer, shut the sending side, drop what still comes, then close."""
        self.done = True
        self._disarm()
        self.transport.write(response)
        self.flow.resume_reading()  # to see the client's end, or drop what it sends
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    # -- parser callbacks

    def on_headers_complete(self) -> None:
        self.reading_head = False
        if self.spare:  # its request is in: answered at once, no longer evictable
            self.leave_spares()
            if self.url.partition(b"?")[0] not in OPERATOR_PATHS:
                self.busy = True
                raise _Refused()  # the parser stops, and feed_data raises a parser error
        super().on_headers_complete()
        if self.spare and self.cycle is not None:
            self.cycle.keep_alive = False  # a spare connection answers one probe

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0
        if self._answering():  # the app has it: no deadline until the answer is out
            self._disarm()
        else:  # answered before its body was in: the next request is due
            self._arm(self.request_timeout_s)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.reading_head and not self._answering() and not self.transport.is_closing():
            self._arm(self.request_timeout_s)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the transport now belongs to the WebSocket protocol
        super().handle_websocket_upgrade()
        # This protocol is done with, but its parser calls back into it: a
        # cycle, freed only by the collector's rare full passes (edge.app's
        # thresholds), that would keep this object, its parser and its scope
        # (2-3 KiB) for every WebSocket opened meanwhile. Broken here, it is
        # freed once the caller returns.
        self.parser = None  # type: ignore[assignment]  # as uvicorn does on connection_lost
