"""A circuit breaker: stop calling a store that is down instead of waiting on it.

States: *closed* (calls go through; ``failures`` consecutive failures open
it), *open* (calls fail at once, without touching the network, until
``cooldown_s`` has passed), *half-open* (one call, the probe, goes through:
its success closes the breaker, its failure opens it for another cool-down;
the other calls keep failing at once while the probe is out).

It holds no lock and needs none: the event loop runs one step at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]

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
        self.opened = 0  # how many times it opened (metrics)
        self.rejected = 0  # calls failed at once while open (metrics)
        self.on_open: Callable[[], None] = lambda: None  # e.g. drop pooled connections

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

    def success(self) -> None:
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
            self.on_open()
