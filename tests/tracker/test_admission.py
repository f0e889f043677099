"""Admission control (edge.tracker.admission): what cannot be answered in
time is refused at once with ``busy``, never silently queued, and a refusal
never lets an acknowledgement cover an event that was not stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from edge.tracker import ws
from edge.tracker.admission import RESEND_PATIENCE_S, RESEND_RETRY_MAX_S, Admission, LoopLag
from tests.client import Visitor
from tests.helpers import EdgeServer, edge_server, redis_server


async def test_the_loop_lag_is_seen_while_it_lasts() -> None:
    lag = LoopLag()
    assert lag.lag_s() == 0.0  # not started
    lag.start()
    await asyncio.sleep(0.05)
    assert lag.lag_s() < 0.02
    time.sleep(0.1)  # noqa: ASYNC251 - the loop is blocked: a saturated process
    assert lag.lag_s() >= 0.08  # seen at once, before the late tick has run
    await asyncio.sleep(0.01)
    assert 0.01 < lag.lag_s() < 0.05  # one slow step: the average moved a little
    for _ in range(20):  # late tick after tick: saturated
        time.sleep(0.08)  # noqa: ASYNC251
        await asyncio.sleep(0)
    assert lag.lag_s() >= 0.05
    await asyncio.sleep(0.6)  # on time again
    assert lag.lag_s() < 0.02
    lag.stop()


async def test_admission_by_wait_and_by_lag() -> None:
    admission = Admission(0.05, 1.0)
    admission.start()
    assert admission.admits(0.01)
    assert not admission.admits(0.2)  # waited too long to be answered in time
    time.sleep(0.1)  # noqa: ASYNC251 - the loop is blocked
    assert not admission.admits(0.0)  # the process itself runs late
    assert admission.refused == 2
    assert 1000 <= admission.retry_ms() <= 1500
    admission.lag.stop()
    assert Admission(0.0, 1.0).admits(10.0)  # 0: off


class SteadyLag(LoopLag):
    """A loop that runs ``late_s`` late, without running one."""

    def __init__(self, late_s: float) -> None:
        super().__init__()
        self.late_s = late_s

    def lag_s(self) -> float:
        return self.late_s


def test_a_busy_process_takes_fresh_messages_before_resends() -> None:
    busy = Admission(0.05, 1.0, lag=SteadyLag(0.01), max_in_flight=64, resend_burst=2)
    assert busy.admits(0.0, refused_for_s=1.5)  # the share kept while the load was normal
    assert busy.admits(0.0, refused_for_s=1.5)
    assert not busy.admits(0.0, refused_for_s=1.5)  # none left, and no room to spare
    assert (busy.refused, busy.refused_resends) == (1, 1)
    assert busy.admits(0.0)  # fresh messages are taken ...
    assert busy.admits(0.0)  # ... and each earns half a resend
    assert busy.admits(0.0, refused_for_s=1.5)
    assert not busy.admits(0.0, refused_for_s=1.5)
    assert busy.admits(0.0, refused_for_s=RESEND_PATIENCE_S)  # refused long enough: fresh
    assert not busy.admits(0.2, refused_for_s=1.5)  # as a fresh one would be: waited too long
    assert busy.refused_resends == 2
    calm = Admission(0.05, 1.0, lag=SteadyLag(0.0), max_in_flight=64, resend_burst=0)
    assert calm.admits(0.0, refused_for_s=1.5)  # no share, but on time and nothing in flight
    calm.in_flight = 1  # a resend would wait behind it, and so would the fresh ones behind it
    assert not calm.admits(0.0, refused_for_s=1.5)
    assert calm.admits(0.0)  # a fresh one is taken
    assert calm.refused_resends == 1
    assert Admission(0.0, 1.0, resend_burst=0).admits(9.0, refused_for_s=1.5)  # 0: off


def test_a_resend_refused_again_is_told_to_wait_longer_each_time() -> None:
    """Exponential backoff through the hint: as long as the message has been
    refused already (at least twice the retry, at most RESEND_RETRY_MAX_S),
    jittered by up to half."""
    admission = Admission(0.05, 1.0)

    def hints(refused_for_s: float | None) -> list[int]:
        return [admission.retry_ms(refused_for_s) for _ in range(200)]

    fresh = hints(None)
    assert min(fresh) >= 1000 and max(fresh) <= 1500
    for refused_for_s, low_ms in ((1.2, 2000), (2.0, 2000), (5.0, 5000), (12.0, 12000)):
        again = hints(refused_for_s)
        assert low_ms <= min(again) and max(again) <= 1.5 * low_ms, refused_for_s
        assert max(again) - min(again) > 0.2 * low_ms  # jittered: not all back together
    capped = hints(RESEND_PATIENCE_S - 1)
    assert (
        min(capped) >= RESEND_RETRY_MAX_S * 1000 and max(capped) <= 1.5 * RESEND_RETRY_MAX_S * 1000
    )
    assert 1.5 * RESEND_RETRY_MAX_S < RESEND_PATIENCE_S  # the last wait ends within the patience


async def test_a_connection_counts_a_resends_patience_from_its_first_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Connection.admit``: a message refused, its resend refused again while
    the process is busy (and told to wait longer), and 60 s after the first
    refusal, not after the last, the resend competes as a fresh message."""
    now = [100.0]
    monkeypatch.setattr(ws.time, "monotonic", lambda: now[0])
    admission = Admission(0.05, 1.0, lag=SteadyLag(0.01), max_in_flight=64, resend_burst=0)
    socket = SimpleNamespace(scope={"extensions": {ws.ARRIVALS: {"protocol": None}}})
    conn = ws.Connection(SimpleNamespace(admission=admission), socket, None)  # type: ignore[arg-type]
    conn.ctx = SimpleNamespace()  # type: ignore[assignment]  # past the hello
    message = {"type": "events", "events": [{"seq": 7}]}
    conn.arrived = 99.0  # waited a second: refused
    assert not conn.admit(message)
    assert (conn.refused_from, conn.refused_at, conn.resend_refused_for_s) == (7, 100.0, None)
    for at in (101.5, 140.0, 159.0):  # resent, within the patience: refused again
        now[0] = conn.arrived = at
        assert not conn.admit(message)
        assert (conn.refused_at, conn.resend_refused_for_s) == (100.0, at - 100.0)
    now[0] = conn.arrived = 100.0 + RESEND_PATIENCE_S
    assert conn.admit(message)  # as a fresh one: waited nothing, the loop not too late
    assert conn.refused_from is None
    assert admission.refused_resends == 3


def test_admission_by_messages_in_flight() -> None:
    admission = Admission(0.0, 1.0, max_in_flight=2)  # the wait and lag rules off
    with admission.holding():
        assert admission.admits(0.0)
        with admission.holding():
            assert not admission.admits(0.0)  # two in hand: a third waits its turn
            assert admission.refused == 1
        assert admission.admits(0.0)
    assert admission.in_flight == 0
    with pytest.raises(RuntimeError), admission.holding():
        raise RuntimeError("a failed message leaves its place too")
    assert admission.in_flight == 0
    assert Admission(0.0, 1.0, max_in_flight=0).admits(0.0)  # 0: no bound


class SetLag(LoopLag):
    """A loop as late as the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.late_s = 0.0

    def lag_s(self) -> float:
        return self.late_s


class Clocks:
    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 10.0

    def wall(self) -> float:
        return self.now

    def process(self) -> float:
        return self.cpu


def answer(admission: Admission, count: int, cpu_s_each: float, clocks: Clocks) -> None:
    for _ in range(count):
        with admission.holding():
            clocks.cpu += cpu_s_each


def test_a_busy_process_bounds_messages_in_flight_by_their_measured_cpu() -> None:
    lag, clocks = SetLag(), Clocks()
    admission = Admission(
        0.05,
        1.0,
        lag=lag,
        clock=clocks.wall,
        cpu_clock=clocks.process,
        max_in_flight=128,
        budget_s=0.05,
    )
    answer(admission, 250, 0.002, clocks)  # 2 ms of CPU per answered message
    clocks.now += 1.0  # a window has passed
    assert admission.in_flight_limit() == 128  # on time: the ceiling alone
    lag.late_s = 0.02  # busy: 50 ms of work at 2 ms a message
    assert admission.in_flight_limit() == 25
    with contextlib.ExitStack() as held:
        for _ in range(25):
            held.enter_context(admission.holding())
        assert not admission.admits(0.0)  # the 26th waits: refused busy
        lag.late_s = 0.0
        assert admission.admits(0.0)  # on time again: a slow store is not our overload
    answer(admission, 250, 0.0001, clocks)  # cheap messages now ...
    clocks.now += 1.0
    lag.late_s = 0.02
    assert admission.in_flight_limit() == 128  # ... 500 would fit: the ceiling
    answer(admission, 250, 0.05, clocks)  # very dear ones ...
    clocks.now += 1.0
    assert admission.in_flight_limit() == 16  # ... never under the floor
    answer(admission, 150, 0.0001, clocks)  # too few answered to measure:
    clocks.now += 1.0
    assert admission.in_flight_limit() == 16  # the last measure stands


def test_the_busy_bound_is_off_with_no_budget() -> None:
    lag, clocks = SetLag(), Clocks()
    admission = Admission(
        0.05, 1.0, lag=lag, clock=clocks.wall, cpu_clock=clocks.process, max_in_flight=128
    )
    answer(admission, 250, 0.002, clocks)
    clocks.now += 1.0
    lag.late_s = 0.02
    assert admission.in_flight_limit() == 128


async def resend(tab: Visitor, events: list[dict[str, Any]], tries: int = 10) -> dict[str, Any]:
    """Send ``events`` as the tracker resends them, again after each ``busy``
    (a resend waits for the process to have room to spare, and a loaded test
    machine may need another try), and return the answer that took them."""
    for _ in range(tries):
        await tab.send({"type": "events", "events": events})
        answer = await asyncio.wait_for(tab.recv(), 5.0)
        if answer.get("code") != "busy":
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"the resend was refused {tries} times")


def held(max_in_flight: int) -> dict[str, str]:
    """A server whose messages stay in flight while Redis writes are paused:
    deadlines past the pause, so a message is answered once it is stored."""
    return {
        "EDGE_MAX_IN_FLIGHT": str(max_in_flight),
        "EDGE_ANSWER_DEADLINE_S": "5",
        "EDGE_REDIS_SOCKET_TIMEOUT_S": "5",
        "EDGE_MAX_MESSAGES_PER_S": "1000",
    }


async def test_a_message_over_the_in_flight_bound_is_refused_busy() -> None:
    """One message in flight (EDGE_MAX_IN_FLIGHT=1), waiting for a store whose
    writes are paused: another visitor's message is refused ``busy`` at once,
    not queued behind it, and is stored when resent."""
    with redis_server() as redis, edge_server(redis_url=redis.url, env=held(1)) as server:
        first, second = Visitor(server.ws), Visitor(server.ws)
        await first.connect()
        await second.connect()
        waiting, refused = first.event("custom", name="a"), second.event("custom", name="b")
        redis.cli("CLIENT", "PAUSE", "1500", "WRITE")  # reads and PING are still answered
        await first.send({"type": "events", "events": [waiting]})
        await asyncio.sleep(0.3)
        await second.send({"type": "events", "events": [refused]})
        answer = await asyncio.wait_for(second.recv(), 1.0)
        assert answer["code"] == "busy" and "ack" not in answer, answer
        stored = await asyncio.wait_for(first.recv(), 5.0)  # once writes resume
        assert stored["ack"] == 1, stored
        assert (await resend(second, [refused]))["ack"] == 1
        await first.close()
        await second.close()


async def test_a_resend_waits_for_room_while_fresh_messages_go_first() -> None:
    """A visitor refused while the process stood still resends; at that
    moment two other visitors' messages are in flight (their store writes
    paused): with no share of resends kept (``EDGE_RESEND_BURST=0``) and no
    room to spare, the resend is refused again while a fresh message is
    taken (a bound of 8). Once the writes go through, the resend is
    stored."""
    env = {**held(8), "EDGE_RESEND_BURST": "0"}
    with redis_server() as redis, edge_server(redis_url=redis.url, env=env) as server:
        waiting = [Visitor(server.ws), Visitor(server.ws)]
        refused, fresh = Visitor(server.ws), Visitor(server.ws)
        tabs = [*waiting, refused, fresh]
        for tab in tabs:
            await tab.connect()
        late = refused.event("custom", name="late")
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            await refused.send({"type": "events", "events": [late]})
            await asyncio.sleep(1.0)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert (await asyncio.wait_for(refused.recv(), 2.0))["code"] == "busy"
        await asyncio.sleep(0.6)  # the process keeps time again
        redis.cli("CLIENT", "PAUSE", "1500", "WRITE")
        for tab in waiting:
            await tab.send({"type": "events", "events": [tab.event("custom", name="a")]})
        await asyncio.sleep(0.3)  # in flight, waiting for their writes
        await refused.send({"type": "events", "events": [late]})  # the resend
        again = await asyncio.wait_for(refused.recv(), 1.0)
        assert again["code"] == "busy" and "ack" not in again, again
        assert 2000 <= again["retry_ms"] <= 3000  # refused again: told to wait longer
        await fresh.send({"type": "events", "events": [fresh.event("custom", name="b")]})
        assert (await asyncio.wait_for(fresh.recv(), 5.0))["ack"] == 1  # taken, stored
        for tab in waiting:
            assert (await asyncio.wait_for(tab.recv(), 5.0))["ack"] == 1
        assert (await resend(refused, [late]))["ack"] == 1  # room again
        for tab in tabs:
            await tab.close()


@pytest.fixture(scope="module")
def server() -> Iterator[EdgeServer]:
    with edge_server(env={"EDGE_MAX_MESSAGES_PER_S": "1000"}) as running:
        yield running


async def answers_for(tab: Visitor, seconds: float) -> list[dict[str, Any]]:
    got = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            got.append(await asyncio.wait_for(tab.recv(), left))
        except TimeoutError:
            break
    return got


async def test_a_stalled_server_says_busy_and_never_acks_past_a_refusal(
    server: EdgeServer,
) -> None:
    tab = Visitor(server.ws)
    await tab.connect()
    events = [tab.event("custom", name="tick") for _ in range(5)]
    os.kill(server.process.pid, signal.SIGSTOP)  # the process stands still ...
    try:
        for event in events:  # ... while the messages come
            await tab.send({"type": "events", "events": [event]})
        await asyncio.sleep(1.0)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    answers = await answers_for(tab, 0.5)
    busy = [a for a in answers if a.get("code") == "busy"]
    assert busy, answers
    assert all(1000 <= a["retry_ms"] <= 1500 and "seq" not in a for a in busy)
    # Refused from the first on: no answer acknowledges anything
    assert [a for a in answers if "ack" in a] == []
    await asyncio.sleep(busy[0]["retry_ms"] / 1000)
    assert (await resend(tab, events))["ack"] == 5
    await tab.close()
    again = Visitor(server.ws, visitor=tab.visitor, session=tab.session)
    assert (await again.connect())["ack"] == 5
    await again.close()


async def test_after_a_refusal_later_messages_wait_for_the_resend(
    server: EdgeServer,
) -> None:
    """The tracker pipelines its messages: one refused and the next admitted
    would store an event ahead of the refused one, and its ack would cover
    it. So once one is refused, the connection refuses until the resend."""
    tab = Visitor(server.ws)
    await tab.connect()
    first, second = tab.event("custom", name="a"), tab.event("custom", name="b")
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        await tab.send({"type": "events", "events": [first]})
        await asyncio.sleep(1.0)  # a stall long enough to count as saturation
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert (await tab.recv())["code"] == "busy"
    await asyncio.sleep(0.6)  # the process keeps time again
    await tab.send({"type": "events", "events": [second]})  # not the resend: refused
    assert (await tab.recv())["code"] == "busy"
    assert (await resend(tab, [first, second]))["ack"] == 2
    await tab.close()
