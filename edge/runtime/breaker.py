"""A circuit breaker: stop calling a store that is down instead of waiting on it.

States: *closed* (calls go through; ``failures`` consecutive failures open
it), *open* (calls fail at once, without touching the network, until
``cooldown_s`` has passed), *half-open* (one call, the probe, goes through:
its success closes the breaker, its failure opens it for another cool-down;
the other calls keep failing at once while the probe is out).

It holds no lock and needs none: the event loop runs one step at a time.

``StallWatch`` and ``by_deadline`` bound the other half of an outage: a
store that accepts calls and never answers (a hung Redis) is only noticed by
the breaker after the calls' socket deadlines, and a visitor must be
answered sooner than that.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

State = Literal["closed", "open", "half_open"]
T = TypeVar("T")

PATIENCE_STEP_S = 0.01  # how often ``by_deadline`` asks whether to wait on

STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int = 3,
        cooldown_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._probing = False
        self.answered_at = -math.inf  # clock() of the last call the store answered
        self.opened = 0  # how many times it opened (metrics)
        self.rejected = 0  # calls failed at once while open (metrics)
        # called when it opens (the Redis store's kept connection becomes suspect)
        self.on_open: list[Callable[[], None]] = []

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return self._state

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def allow(self) -> bool:
        """May a call go out now? A True in half-open makes the caller the probe:
        it must report ``success`` or ``failure`` (or ``release``)."""
        if self._state == "closed":
            return True
        if self._probing or self.state != "half_open":
            self.rejected += 1
            return False
        self._probing = True
        return True

    def quiet_s(self) -> float:
        """Seconds since the store last answered a call (``success``)."""
        return self._clock() - self.answered_at

    def success(self) -> None:
        self.answered_at = self._clock()
        self._failures = 0
        self._probing = False
        self._state = "closed"

    def failure(self) -> None:
        self._probing = False
        if self._state == "closed":
            self._failures += 1
            if self._failures < self.threshold:
                return
        self._trip()

    def release(self) -> None:
        """The probe ended with neither verdict (cancelled): let another probe."""
        self._probing = False

    def _trip(self) -> None:
        was_closed = self._state == "closed"
        self._state = "open"
        self._opened_at = self._clock()
        self._failures = 0
        if was_closed:
            self.opened += 1
            for listener in self.on_open:
                listener()


class StallWatch:
    """Notices a store call that hangs: ``start(on_stall)`` before the call,
    ``cancel()`` the returned watch after it. ``on_stall`` runs once the call
    has been out ``after_s`` while the store answered nothing else in the
    last ``after_s`` (per ``breaker``; without one, any call that long).

    A busy store (a large batch, a loaded machine) keeps answering other
    calls, so it is not taken for a hung one; a hung store answers nothing.
    The check runs one loop turn after its timer, so a reply that arrived in
    the same turn resumes its call (and cancels the watch) first.

    Nor is a busy *process* taken for a hung store (issue 13: at overload the
    server answered with fallbacks while Redis answered a PING in 0.3 ms, and
    the resends made the overload worse). When the check itself runs late
    (the event loop was saturated, or the process paused), the reply may be
    sitting unread in the socket: the check is put off by another ``after_s``
    (``postponed``); late means by more than a quarter of ``after_s``. A
    store that is really hung is then still caught by its
    calls' socket deadlines, which fail them and open the breaker.

    Nor a slow one: a large batch of writes can take longer than ``after_s``
    on a loaded machine while the store is well. Halfway to the check, a
    store quiet since the call went out is asked itself: ``probe`` (a PING on
    another pooled connection, which the breaker records as an answer). An
    answer means slow, not hung, and the watch waits on; no answer by the
    check, and none after one more quarter of ``after_s`` (``graced``: a
    reply read in the check's own loop turn wakes its task only after the
    check), means hung: about 1.25 x ``after_s`` after the call went out.
    (A probe is a call of its own: it needs a breaker to be
    seen, as the Redis store has.)

    Most calls return within milliseconds, so a call's ``Watch`` sets no
    timer of its own at first: this object's one ticker, every quarter of
    ``after_s`` while calls are out, arms those out a quarter of ``after_s``
    or more, for the same moments (half-way, ``after_s``) as if they had
    been armed at the start. A call that returns sooner costs two dict
    operations, not two timers set and cancelled (issue 13: a start and a
    cancel took 6.7 µs, now 0.64).
    """

    def __init__(
        self,
        after_s: float,
        breaker: CircuitBreaker | None = None,
        probe: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.after_s = after_s
        self.breaker = breaker
        self.probe = probe
        self.probes = 0  # PINGs sent to a store quiet for half the deadline
        self.stalls = 0  # how many calls were found stalled (metrics, tests)
        self.postponed = 0  # checks put off because the event loop ran late
        self.graced = 0  # checks put off once more for a PING still out
        # Watches not armed yet, oldest first (a dict as an ordered set), and
        # the ticker that arms them; it runs only while this is not empty.
        self._unarmed: dict[Watch, None] = {}
        self._ticker: asyncio.TimerHandle | None = None
        self._ticker_loop: asyncio.AbstractEventLoop | None = None

    def start(self, on_stall: Callable[[], None]) -> Watch:
        watch = Watch(self, on_stall)
        if self._ticker_loop is not watch._loop:  # a new event loop (tests): start afresh
            self._unarmed.clear()
            self._ticker = None
            self._ticker_loop = watch._loop
        self._unarmed[watch] = None
        if self._ticker is None:
            self._ticker = watch._loop.call_later(self.after_s / 4, self._tick)
        return watch

    def _tick(self) -> None:
        """Arm the watches out for a quarter of ``after_s`` or more (they are
        oldest first); tick again while any is left."""
        loop = self._ticker_loop
        assert loop is not None
        self._ticker = None
        now = loop.time()
        while self._unarmed:
            watch = next(iter(self._unarmed))
            if now - watch._started < self.after_s / 4:
                break
            del self._unarmed[watch]
            watch._arm(now)
        if self._unarmed:
            self._ticker = loop.call_later(self.after_s / 4, self._tick)

    def _forget(self, watch: Watch) -> None:
        self._unarmed.pop(watch, None)


class Watch:
    __slots__ = (
        "_active",
        "_due",
        "_graced",
        "_half",
        "_loop",
        "_on_stall",
        "_probe",
        "_started",
        "_timer",
        "_watch",
    )

    def __init__(self, watch: StallWatch, on_stall: Callable[[], None]) -> None:
        self._watch = watch
        self._on_stall = on_stall
        self._active = True
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._probe: asyncio.Future[object] | None = None
        self._graced = False  # the grace for the PING now out was given
        self._half: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None  # None until armed (StallWatch._tick)
        self._due = self._started + watch.after_s

    def cancel(self) -> None:
        self._active = False
        if self._timer is None:
            self._watch._forget(self)
            return
        self._timer.cancel()
        if self._half is not None:
            self._half.cancel()

    def _arm(self, now: float) -> None:
        """Set the timers this watch would have set at its start: the check
        at ``after_s`` and, with a probe, the PING half-way (at once when
        that moment has passed)."""
        after_s = self._watch.after_s
        self._timer = self._loop.call_later(
            max(self._due - now, 0.0), self._loop.call_soon, self._check
        )
        if self._watch.probe is not None:
            half = self._started + after_s / 2
            self._half = self._loop.call_later(max(half - now, 0.0), self._ask)

    def _check(self) -> None:
        if not self._active:
            return
        after_s = self._watch.after_s
        now = self._loop.time()
        if now - self._due > after_s / 4:  # this process ran late, not (yet) the store
            self._watch.postponed += 1
            self._rearm(now, after_s)
            return
        breaker = self._watch.breaker
        quiet_s = breaker.quiet_s() if breaker is not None else math.inf
        if quiet_s < after_s:  # other calls (or the probe) are answered: busy, not hung
            self._rearm(now, after_s - quiet_s)
            return
        if self._probe is not None and not self._graced:
            # The probe's reply may be read in this very loop turn, after this
            # check (reader callbacks queue behind it, and the reply wakes its
            # task one turn later still): a short grace, once per PING, before "hung".
            self._graced = True
            self._watch.graced += 1
            self._rearm(now, after_s / 4)
            return
        self._active = False
        self._watch.stalls += 1
        self._on_stall()

    def _ask(self) -> None:
        """Halfway to the check, a store quiet since the call went out is
        asked to answer a PING: its answer (through the breaker) is what the
        check then sees."""
        self._half = None
        breaker = self._watch.breaker
        probe = self._watch.probe
        if not self._active or probe is None or self._probe is not None:
            return
        if breaker is not None and breaker.quiet_s() < self._watch.after_s / 2:
            return
        self._watch.probes += 1
        self._graced = False  # each PING may be waited for once past a check
        self._probe = asyncio.ensure_future(probe())
        self._probe.add_done_callback(self._asked)

    def _asked(self, probe: asyncio.Future[object]) -> None:
        self._probe = None
        if not probe.cancelled():
            probe.exception()  # a failed probe: the breaker counted it; nothing to log

    def _rearm(self, now: float, delay_s: float) -> None:
        self._due = now + delay_s
        self._timer = self._loop.call_later(delay_s, self._loop.call_soon, self._check)
        if self._watch.probe is not None:
            if self._half is not None:
                self._half.cancel()
            self._half = self._loop.call_later(delay_s / 2, self._ask)


async def by_deadline(
    work: Awaitable[T],
    deadline: float,
    *,
    patience: Callable[[], bool] | None = None,
    limit: float | None = None,
) -> T:
    """``work``'s result if it is ready by ``deadline`` (event-loop time, as
    ``loop.time()``), else ``TimeoutError`` at the deadline.

    With ``patience``, the wait goes on past ``deadline`` while ``patience()``
    says the store is answering (a busy server or a slow store, not a hung
    one), checked every ``PATIENCE_STEP_S``, until ``limit`` (loop time).

    ``work`` is not cancelled when the wait ends: it goes on in the background
    and its outcome is dropped (an exception is retrieved, not logged). A
    Redis call cancelled mid-reply costs its pooled connection (redis-py drops
    it), the store keeps its own deadlines (so the work ends), and some work
    should land anyway (a claimed coupon is the visitor's; a loaded profile
    is hot for the next message). Callers that want the late result keep
    ``work`` (a task) and await it again.
    """
    future = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    try:
        while not future.done():
            now = loop.time()
            timeout_s = deadline - now
            if timeout_s <= 0:
                if patience is None or not patience() or (limit is not None and now >= limit):
                    raise TimeoutError
                timeout_s = PATIENCE_STEP_S if limit is None else min(PATIENCE_STEP_S, limit - now)
            await asyncio.wait((future,), timeout=timeout_s)
        return future.result()
    finally:
        if not future.done():  # given up, or the caller was cancelled
            future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a late failure is expected, not "never retrieved"
