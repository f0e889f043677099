"""The load generator against a stand-in server: a hello refused ``busy``
(then closed 1013) is opened again after the server's retry, as the tracker
does (static/js/edge.js), and its event delivered, not counted lost; an
event is timed from its admitted send too; an event that finds every
visitor busy brings a spare one. Behaviour only: no figure is asserted, the
one latency bound is read off the instants the stand-in saw."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from benchmarks.load import Config, LoadGenerator, Phase, Visitor


@asynccontextmanager
async def generator_for(
    server: Callable[[ServerConnection], Awaitable[None]], **cfg: Any
) -> AsyncIterator[LoadGenerator]:
    """A generator of one visitor (``cfg`` over it) against ``server`` on a
    free port, in a phase that measures everything from now on."""
    async with serve(server, "127.0.0.1", 0) as running:
        port = running.sockets[0].getsockname()[1]
        values: dict[str, Any] = {"visitors": 1, "seed": 1, "progress": False} | cfg
        gen = LoadGenerator(Config(f"ws://127.0.0.1:{port}", **values))
        gen.phase = fresh_phase()
        yield gen


def fresh_phase() -> Phase:
    now = time.perf_counter()
    return Phase(now, now, now + 60)


async def test_a_session_refused_busy_at_its_hello_is_opened_again_and_its_event_kept() -> None:
    hellos = 0

    async def server(ws: ServerConnection) -> None:
        nonlocal hellos
        assert json.loads(await ws.recv())["type"] == "hello"
        hellos += 1
        if hellos == 1:  # what edge sends a hello it cannot admit
            await ws.send(json.dumps({"type": "error", "code": "busy", "retry_ms": 50}))
            await ws.close(1013, "try again later; retry in 50 ms")
            return
        await ws.send(json.dumps({"type": "welcome", "ack": 0}))
        [event] = json.loads(await ws.recv())["events"]
        await ws.send(json.dumps({"type": "ack", "ack": event["seq"]}))
        await ws.wait_closed()

    async with generator_for(server) as gen:
        visitor = Visitor(gen)
        await visitor.deliver(time.perf_counter())
        phase = gen.phase
        assert hellos == 2
        assert (phase.lost, phase.refused, phase.acked) == (0, 1, 1)
        assert phase.errors["connect:hello:busy"] == 1
        assert phase.retried_hist.get_total_count() == 1  # its latency, the wait included
        assert visitor.transport is not None
        await visitor.transport.close()


async def test_an_event_refused_busy_is_timed_from_its_admitted_send_as_well() -> None:
    """``hist``/``retried_hist`` run from the scheduled time, the retry wait
    included; ``sent_hist`` from the send the server admitted, so it holds
    neither the wait nor the first, refused exchange."""
    arrivals: list[float] = []

    async def server(ws: ServerConnection) -> None:
        await ws.recv()  # the hello
        await ws.send(json.dumps({"type": "welcome", "ack": 0}))
        async for message in ws:
            arrivals.append(time.perf_counter())
            [event] = json.loads(message)["events"]
            if len(arrivals) == 2:  # what edge answers a message over its admission bound
                await ws.send(json.dumps({"type": "error", "code": "busy", "retry_ms": 200}))
            else:
                await ws.send(json.dumps({"type": "ack", "ack": event["seq"]}))

    async with generator_for(server) as gen:
        visitor = Visitor(gen)
        await visitor.deliver(time.perf_counter())  # opens the session: its first event
        gen.phase = phase = fresh_phase()
        scheduled = time.perf_counter()
        await visitor.deliver(scheduled)  # refused once, resent after 200 ms, acknowledged
        done = time.perf_counter()
        assert len(arrivals) == 3 and (phase.refused, phase.acked) == (1, 1)
        assert phase.retried_hist.get_total_count() == phase.sent_hist.get_total_count() == 1
        early_s = 0.005  # a loop's timer may fire a little before its time
        assert phase.retried_hist.get_min_value() >= (0.2 - early_s) * 1e6  # the wait included
        # the admitted send came after the refusal and its wait: neither is in
        assert phase.sent_hist.get_max_value() <= (done - arrivals[1] - 0.2 + early_s) * 1e6 * 1.001
        assert visitor.transport is not None
        await visitor.transport.close()


async def test_an_event_that_finds_every_visitor_busy_brings_a_spare_visitor_up_to_the_cap() -> (
    None
):
    """An open system: with ``spare_visitors`` an event that finds no idle
    visitor is a new shopper's (a new session), not one waiting in the
    backlog; beyond the cap it waits there, as with a fixed pool."""
    hellos = 0

    async def server(ws: ServerConnection) -> None:
        nonlocal hellos
        assert json.loads(await ws.recv())["type"] == "hello"
        hellos += 1
        await ws.send(json.dumps({"type": "welcome", "ack": 0}))
        async for message in ws:
            [event] = json.loads(message)["events"]
            await ws.send(json.dumps({"type": "ack", "ack": event["seq"]}))

    async with generator_for(server, spare_visitors=2) as gen:
        phase = gen.phase
        for _ in range(3):  # no visitor is idle: the pool has not started
            gen.assign(time.perf_counter())
        assert (len(gen.visitors), len(gen.backlog), phase.visitors_added) == (2, 1, 2)
        for _ in range(500):
            if phase.acked == 3:
                break
            await asyncio.sleep(0.01)
        assert (phase.acked, phase.lost, hellos, len(gen.backlog)) == (3, 0, 2, 0)
        assert len(gen.idle) == 2  # both wait for the next event
        await gen.stop()
