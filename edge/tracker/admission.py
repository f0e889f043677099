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
about what one worker answers in 100 ms at full speed on the machine it was
measured on: 64 held that bound at 4x capacity, but also refused messages at
800 events/s while a store write was slow, since a message waiting for the
store is in flight too (and it is answered by the answer deadline anyway). A
message is in flight while it is stored and decided, not while its answer is
sent: a client that does not read could otherwise hold its place.

That ceiling is a number of messages, and what they cost depends on the
machine (on one 1.5x slower, 128 in flight took 100-250 ms). So while the
process is busy (its loop runs at least ``BUSY_LAG_S`` late) the bound is
tightened to what fits ``budget_s`` (``EDGE_IN_FLIGHT_BUDGET_S``, 50 ms) at
the CPU one answered message costs this process, measured: its CPU time over
the messages it answered, every ``WINDOW_S`` in which it answered at least
``MIN_ANSWERED`` (refusals and connections included, so it errs on the
small side), never under ``MIN_IN_FLIGHT``.
While the loop is on time the ceiling alone applies: messages piling up
behind a slow store write are the store's delay, which the answer deadline
handles, not this process's overload.

Fresh messages first. A refused message comes back (the tracker resends
from the refused event on, after ``retry_ms``), and at the end of an
overload the refused come back together: in the issue-13 runs, about 1,700
resends within a second, more than two seconds of this process's work, so
the visitors arriving after the load dropped waited behind them (p99 85-180
ms where the normal is 10). So resends get a share: every fresh message
admitted earns ``RESEND_SHARE`` of a resend, kept up to ``resend_burst``
(``EDGE_RESEND_BURST``); a resend takes one if there is one, and otherwise
is admitted only while the process has room to spare (its loop on time and
nothing else in flight, ``RESEND_ROOM``), or else refused again and told to
wait longer: as long as it has been refused already, at least
``RESEND_RETRY_FACTOR`` times ``retry_s`` and at most ``RESEND_RETRY_MAX_S``,
jittered by up to half. So each refusal of one message about doubles its
next wait (exponential backoff, driven by the server's hint, which the
tracker honours). With a fixed 2-3x, an overload run whose load generator
let new visitors keep arriving (2026-12-07) answered 125,000 ``busy`` in
30 s, about seven per refused event: every waiting visitor came back every
few seconds, for as long as the overload lasted. At a steady load near
capacity the few refused on a spike find the share full and are taken at
once, as fresh ones are (with room alone, a visitor refused at 93-96% of a
core was refused again and again: 2,700 to 5,300 busy answers in 30 s at
700 events/s; with the share, about as many as with neither rule); after an
overload the share drains within the first ``resend_burst`` and the resends
then take a third of what the process answers, the fresh messages the rest.
A resend refused for ``RESEND_PATIENCE_S`` since its first refusal is treated
as fresh again: no visitor waits on this for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator

TICK_S = 0.02
SMOOTHING = 0.2  # weight of the newest tick in the average lateness
BUSY_LAG_S = 0.005  # a loop this late is busy: the in-flight bound is tightened
WINDOW_S = 1.0  # the CPU per answered message is measured over this much time ...
MIN_ANSWERED = 200  # ... when at least this many were answered in it: a process
# answering fewer a second is not saturated by its messages, and a few
# messages beside other work (start-up, a reload) would measure them dear
MIN_IN_FLIGHT = 16  # the tightened bound never goes below this
RESEND_SHARE = 0.5  # of a resend, earned by each fresh message admitted
RESEND_ROOM = 1  # with no share left, a resend only while fewer than this are in flight
RESEND_RETRY_FACTOR = 2.0  # a resend refused again waits at least 2x retry_s ...
RESEND_RETRY_MAX_S = 20.0  # ... and at most this (both jittered by up to half)
RESEND_PATIENCE_S = 60.0  # refused this long, a resend is treated as fresh again


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
        budget_s: float = 0.0,
        cpu_clock: Callable[[], float] = time.process_time,
        resend_burst: int = 32,
    ) -> None:
        self.max_wait_s = max_wait_s  # 0: admission control off
        self.retry_s = retry_s
        self.lag = lag or LoopLag(clock)
        self.clock = clock
        self.max_in_flight = max_in_flight  # 0: no bound
        self.budget_s = budget_s  # 0: the ceiling alone, busy or not
        self.cpu_clock = cpu_clock
        self.in_flight = 0  # admitted, not yet answered (``holding``)
        self.refused = 0
        self.refused_resends = 0  # of ``refused``: resends refused for want of room
        self.resend_burst = resend_burst
        self.resend_tokens = float(resend_burst)  # resends that may be taken now
        self.answered = 0  # admitted and answered, ever
        self.busy_limit = max_in_flight  # the bound while busy (``in_flight_limit``)
        self.cpu_per_message_s = 0.0  # the last measure; 0 before the first
        self._window = (clock(), cpu_clock(), 0)  # (started, CPU then, answered then)

    def start(self) -> None:
        if self.max_wait_s > 0:
            self.lag.start()

    def admits(self, waited_s: float, refused_for_s: float | None = None) -> bool:
        """Whether to handle a message now; its work is then done inside
        ``holding()``. A resend (``refused_for_s``: since its first refusal)
        within its share or with room to spare, for ``RESEND_PATIENCE_S``
        (the module docstring)."""
        if self.max_in_flight > 0 and self.in_flight >= self.in_flight_limit():
            self.refused += 1
            return False
        if self.max_wait_s <= 0:
            return True
        if waited_s > self.max_wait_s or self.lag.lag_s() > self.max_wait_s:
            self.refused += 1
            return False
        if refused_for_s is None or refused_for_s >= RESEND_PATIENCE_S:
            self.resend_tokens = min(self.resend_burst, self.resend_tokens + RESEND_SHARE)
            return True
        if self.resend_tokens >= 1:
            self.resend_tokens -= 1
            return True
        if self._room_to_spare():
            return True
        self.refused += 1
        self.refused_resends += 1
        return False

    def _room_to_spare(self) -> bool:
        return self.lag.lag_s() < BUSY_LAG_S and self.in_flight < RESEND_ROOM

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """An admitted message, counted in flight until it is answered."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.answered += 1

    def in_flight_limit(self) -> int:
        """The bound on messages in flight now: ``max_in_flight``, or while
        the loop is busy, what fits ``budget_s`` (the module docstring)."""
        if self.budget_s <= 0:
            return self.max_in_flight
        self._measure()
        if self.lag.lag_s() < BUSY_LAG_S:
            return self.max_in_flight
        return self.busy_limit

    def _measure(self) -> None:
        started, cpu_then, answered_then = self._window
        now = self.clock()
        if now - started < WINDOW_S:
            return
        cpu = self.cpu_clock()
        answered = self.answered - answered_then
        if answered >= MIN_ANSWERED:
            per_message_s = self.cpu_per_message_s = max(cpu - cpu_then, 1e-9) / answered
            fits = round(self.budget_s / per_message_s)
            self.busy_limit = max(MIN_IN_FLIGHT, min(self.max_in_flight, fits))
        self._window = (now, cpu, self.answered)

    def retry_ms(self, refused_for_s: float | None = None) -> int:
        """When to try again: ``retry_s``, jittered by up to half of it; for
        a resend refused again (``refused_for_s`` since its first refusal),
        as long as it has waited, between ``RESEND_RETRY_FACTOR`` times
        ``retry_s`` and ``RESEND_RETRY_MAX_S``, jittered by up to half."""
        if refused_for_s is None:
            return int(self.retry_s * 1000 * (1 + random.random() / 2))
        wait_s = max(RESEND_RETRY_FACTOR * self.retry_s, refused_for_s)
        return int(min(wait_s, RESEND_RETRY_MAX_S) * 1000 * (1 + random.random() / 2))
