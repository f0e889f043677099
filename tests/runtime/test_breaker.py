"""The stall watch's timers (edge.runtime.breaker). Its verdicts (hung, busy,
slow, a late loop) are tested against stores in tests/faults/test_deadlines.py."""

from __future__ import annotations

import asyncio

import pytest

from edge.runtime.breaker import CircuitBreaker, StallWatch


async def test_calls_that_return_soon_set_no_timer_of_their_own() -> None:
    """A write that returns within a quarter of ``after_s`` is two dict
    operations: the loop holds one ticker, not two timers per call."""

    async def ping() -> None:
        pytest.fail("a call that returned at once was probed")

    watch = StallWatch(0.2, CircuitBreaker(), ping)
    loop = asyncio.get_running_loop()
    scheduled = len(loop._scheduled)  # type: ignore[attr-defined]  # asyncio's timer heap
    for _ in range(100):
        watch.start(lambda: pytest.fail("a call that returned at once stalled")).cancel()
    assert len(loop._scheduled) - scheduled == 1  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)  # the ticker finds nothing out, and stops
    assert watch.stalls == watch.probes == 0


async def test_a_call_out_past_the_first_tick_is_armed_and_caught() -> None:
    """Short calls around a hung one do not keep it from being caught."""
    watch = StallWatch(0.05)
    stalled = asyncio.Event()
    for _ in range(10):
        watch.start(lambda: pytest.fail("a short call stalled")).cancel()
    hung = watch.start(stalled.set)
    for _ in range(10):
        watch.start(lambda: pytest.fail("a short call stalled")).cancel()
        await asyncio.sleep(0.005)
    await asyncio.wait_for(stalled.wait(), 1.0)
    assert watch.stalls == 1
    hung.cancel()


def test_a_watch_outlives_its_event_loop() -> None:
    """The ticker belongs to a loop: a watch left out when its loop closed
    must not keep a later loop's calls from being watched."""
    watch = StallWatch(0.05)

    async def left_out() -> None:
        watch.start(lambda: None)  # the loop ends with the ticker pending

    async def hung() -> None:
        stalled = asyncio.Event()
        watch.start(stalled.set)
        await asyncio.wait_for(stalled.wait(), 1.0)

    asyncio.run(left_out())
    asyncio.run(hung())
    assert watch.stalls == 1
