"""Admission control: refuse what this process cannot take in time, explicitly.

Offered more messages than it can handle, a server that queues them all
answers every one late, and trackers that resend unanswered events make the
overload worse (issue 13: at 3x capacity edge acknowledged nothing at all).
Instead a message is **admitted** only if it can still be answered in time;
the others get an ``error`` ``busy`` at once, with ``retry_ms`` (how long the
tracker waits before resending them, jittered so that they do not all come
back together) and no ``ack``; a ``hello`` gets ``busy`` and close 1013 ("try
again later"), a beacon HTTP 503 with ``Retry-After``. A refusal costs a few
microseconds, an admitted message a few hundred, so the process keeps
handling what it admits at full speed: goodput stays near capacity.

"In time" is measured, not guessed (a CoDel-like rule on queueing delay):

* ``waited_s``: how long the message sat between arriving on its socket (the
  transport stamps each message, ``edge.tracker.ws_protocol``) and being
  handled, not counting time its own connection spent on the message before
  it (that is the store's or the visitor's pace, not this process's);
* ``lag_s``: how late the event loop runs its timers, now or on average
  lately (``LoopLag``). When the process is saturated, data waits in the
  kernel before it is even read, so a message's own stamp can look fresh.

Either over ``max_wait_s`` (``EDGE_ADMISSION_WAIT_S``, 50 ms) refuses. The
loop-lag monitor is one timer every ``TICK_S``.

Neither bounds what happens *after* admission: with thousands of connections
each allowed one message in hand, a saturated process held thousands at once,
every turn of its loop did a little of each, and admitted messages took 250 to
500 ms (issue 13, ``edge_message_seconds`` at 4x capacity). So at most
``max_in_flight`` (``EDGE_MAX_IN_FLIGHT``, 128) are handled at once; one more
is refused like the others. By Little's law that bounds an admitted message's
time to about ``max_in_flight`` times the CPU of one message. The default is
about what one worker answers in 100 ms at full speed: 64 held that bound at
4x capacity, but also refused messages at 800 events/s while a store write
was slow, since a message waiting for the store is in flight too (and it is
answered by the answer deadline anyway). A message is in
flight while it is stored and decided, not while its answer is sent: a client
that does not read could otherwise hold its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator

TICK_S = 0.02
SMOOTHING = 0.2  # weight of the newest tick in the average lateness


class LoopLag:
    """How late this event loop runs its timers, from a ticker of its own:
    the lateness now (a tick overdue) or its recent average (an exponential
    moving average over ticks, ``SMOOTHING``), whichever is larger. One slow
    step (a garbage collection, a configuration reload holding the GIL) moves
    the average a little; a saturated loop, late tick after tick, moves it
    all the way."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._average = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._due = self._clock() + TICK_S
            self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._clock()
        late = max(0.0, now - self._due)
        self._average += SMOOTHING * (late - self._average)
        self._due = now + TICK_S
        self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def lag_s(self) -> float:
        """0 before ``start``."""
        if self._handle is None:
            return 0.0
        return max(self._average, self._clock() - self._due)


class Admission:
    """Whether this process admits a message now (see the module docstring)."""

    def __init__(
        self,
        max_wait_s: float,
        retry_s: float,
        lag: LoopLag | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_in_flight: int = 0,
    ) -> None:
        self.max_wait_s = max_wait_s  # 0: admission control off
        self.retry_s = retry_s
        self.lag = lag or LoopLag(clock)
        self.clock = clock
        self.max_in_flight = max_in_flight  # 0: no bound
        self.in_flight = 0  # admitted, not yet answered (``holding``)
        self.refused = 0

    def start(self) -> None:
        if self.max_wait_s > 0:
            self.lag.start()

    def admits(self, waited_s: float) -> bool:
        """Whether to handle a message now; its work is then done inside
        ``holding()``."""
        if self.max_in_flight > 0 and self.in_flight >= self.max_in_flight:
            self.refused += 1
            return False
        if self.max_wait_s <= 0:
            return True
        if waited_s <= self.max_wait_s and self.lag.lag_s() <= self.max_wait_s:
            return True
        self.refused += 1
        return False

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """An admitted message, counted in flight until it is answered."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def retry_ms(self) -> int:
        """When to try again: ``retry_s``, jittered by up to half of it."""
        return int(self.retry_s * 1000 * (1 + random.random() / 2))
