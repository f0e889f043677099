"""edge serve's own HTTP and WebSocket protocols: uvicorn's (httptools and
websockets-sansio), with what a client must not be able to do to the server
(docs/protocol.md, "Limits"), enforced where bytes and frames arrive:

- edge.tracker.http_protocol: the request deadline, the header size limit,
  and the open-files budget (edge.tracker.openfiles), before any handshake;
- edge.tracker.ws_protocol: frame limits counted on arrival (pings too), and
  refusals (1008, and 1007 for text that is not UTF-8) that close only after
  the messages before the refused frame are answered;
- edge.tracker.eventloop: uvloop with listening sockets accepted in batches,
  so that a saturated loop still takes new connections in.

This module holds what they share in one worker process: the settings, the
budget, the counters, and the watch that tells when the event loop stood
still. A refusal is written, the sending side shut, and what the client still
sends is read and dropped for ``LINGER_S`` before the close: closing a socket
with unread data resets it, and the client could lose the answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edge.config.settings import Settings
from edge.tracker.limits import WARN_INTERVAL_S, LoopStalls
from edge.tracker.openfiles import Budget, open_files_limit

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

# What uvicorn is given (edge serve): import paths, so that worker processes
# import the classes themselves.
HTTP_PROTOCOL = "edge.tracker.http_protocol:HttpProtocol"
WS_PROTOCOL = "edge.tracker.ws_protocol:WebSocketProtocol"
EVENT_LOOP = "edge.tracker.eventloop:new_loop"  # uvloop, accepting in batches

LINGER_S = 1.0  # after a refusal, the client's bytes are dropped this long before the close
TICK_S = 0.1  # the loop-stall watch ticks this often ...
STALL_S = 0.25  # ... and a tick this late means the loop stood still

# The ASGI scope extension through which ws.py reaches the connection's
# counters: scope["extensions"][ARRIVALS]["protocol"] is an ``Arrivals``.
ARRIVALS = "edge.arrivals"


class Spare(Protocol):
    """A connection waiting for its request that may be evicted
    (``edge.tracker.http_protocol.HttpProtocol``, which imports this module:
    a protocol here instead of an import back)."""

    done: bool

    @property
    def transport(self) -> asyncio.BaseTransport: ...

    def leave_spares(self) -> None: ...


class Arrivals(Protocol):
    """What ws.py may set on the protocol of its connection: the per-address
    check, ``(now, stalled_s) -> may pass`` (AddressLimits.message bound to
    the address), or None."""

    address_allows: Callable[[float, float], bool] | None


@dataclass(slots=True)
class TransportCounters:
    """Refusals by the transport, per process (for /metrics)."""

    request_timeouts: int = 0  # closed by the request deadline (408, or silently when idle)
    headers_too_large: int = 0  # 431
    over_budget: int = 0  # 503: a connection over the open-files budget
    dropped: int = 0  # closed unanswered: over the budget and the spare connections


class _Process:
    """What every connection of this worker process shares."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()  # edge serve put every setting in the environment
        self.budget = Budget.of(open_files_limit(), self.settings)
        self.counters = TransportCounters()
        # Spare connections still waiting for their request, oldest first.
        self.waiting_spares: dict[Spare, None] = {}
        self._stalls: LoopStalls | None = None
        self._warned_at: float | None = None

    def stalls(self, loop: asyncio.AbstractEventLoop) -> LoopStalls:
        """The loop-stall watch, started with the first WebSocket."""
        if self._stalls is None:
            stalls = self._stalls = LoopStalls(time.monotonic(), STALL_S)

            def tick() -> None:
                stalls.tick(time.monotonic())
                loop.call_later(TICK_S, tick)

            loop.call_later(TICK_S, tick)
        return self._stalls

    def evict_spare(self) -> bool:
        """Close the spare connection that has waited longest for its request
        (to let a new one ask for /healthz); False when there is none."""
        if not self.waiting_spares:
            return False
        oldest = next(iter(self.waiting_spares))
        oldest.leave_spares()
        oldest.done = True
        oldest.transport.close()
        self.counters.dropped += 1
        return True

    def refused_over_budget(self, open_now: int) -> None:
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_INTERVAL_S:
            self._warned_at = now
            log.warning(
                "%d connections open, over the open-files budget (%s): new connections get "
                "HTTP 503 but for /healthz, /readyz and /metrics (EDGE_MAX_OPEN_FILES, "
                "EDGE_OPEN_FILES_RESERVE); logged at most once per %.0f s",
                open_now,
                self.budget.describe(),
                WARN_INTERVAL_S,
            )


@functools.cache
def shared() -> _Process:
    """This process's, made by its first connection."""
    return _Process()
