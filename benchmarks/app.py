"""``python -m benchmarks app``: what edge's app spends per event, in
process, with nothing else on the clock.

The load scenarios (``python -m benchmarks run ...``) measure the server as
a shopper's browser meets it, but on this 2-core machine the generator,
Redis and the server share the cores and the machine's speed drifts from
hour to hour: two runs of the same commit can differ by a fifth, more than
most single changes are worth. This benchmark drives the real ASGI app
(``edge.app.create_app``: ``/ws``, the ledger, decisions, widgets, the
signal and statistics recorders) through a fake WebSocket transport in the
same process, one message at a time, and reads the process's own CPU time
(``time.process_time``) per event: two runs of one commit agree within a
few percent, so a change can be measured against the one before it.

What it leaves out, on purpose: sockets, uvicorn's HTTP and WebSocket
protocols and frame parsing (the ``echo`` scenario measures those), and
Redis's own CPU (a private ``redis-server``, another process). Messages
go ``--in-flight`` at a time (2 by default, from different visitors), so
that the ledger's batches hold more than one event's writes, as under load
(the report prints how many; with one in flight, every write waits for
Redis alone and costs the loop a sleep and a wake-up).
What it keeps: the visitors of the load generator's ``World`` (real
User-Agents, sources, sessions of product and category views, carts,
purchases and identifications; about one event in eleven opens a session:
``hello``, its profile loaded), each session on its own ``Connection``.
The driver's own work (a queue per visitor, the answer spotted by its
``"ack":``) is on the clock too: a few microseconds per event.

``--by-type`` also prints, per message type, the process's CPU from sending
each message to its answer. Use it with ``--in-flight 1``: with more, the
messages overlap and each figure holds the others' work. Even then a figure
holds whatever else ran meanwhile (the signal and statistics recorders, a
collection), so the tail is that of the process, not of one code path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import uvloop

from benchmarks.load import Visit, World
from benchmarks.scenarios import redis_server
from edge.app import EdgeApp, create_app
from edge.config.settings import Settings
from edge.widgets import check

ORIGIN = "http://127.0.0.1:8000"
ANSWER_TIMEOUT_S = 10.0
SLOWDOWN = 50  # how much slower the app runs under valgrind (benchmarks/instructions.py)


class FakeSocket:
    """One visitor session's WebSocket, as the ASGI app sees it: ``receive``
    hands it the next message, ``send`` takes its answers."""

    def __init__(self, visit: Visit) -> None:
        self.visit = visit
        self.seq = 0
        self.inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
        self.arrived: asyncio.Future[None] | None = None
        self.answered: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def scope(self) -> dict[str, Any]:
        headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", self.visit.user_agent.encode())]
        return {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "path": "/ws",
            "query_string": b"site=demo",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "scheme": "ws",
            "extensions": {},
        }

    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            self.arrived = asyncio.get_running_loop().create_future()
            await self.arrived
        return self.inbox.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        # An events message's answer (ack, or decisions with their ack) and
        # the welcome carry "ack"; errors before them do not.
        answered = self.answered
        if text is not None and '"ack":' in text and answered is not None and not answered.done():
            answered.set_result(None)

    def put(self, message: dict[str, Any]) -> None:
        self.inbox.append(message)
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)

    async def exchange(self, message: dict[str, Any]) -> None:
        self.answered = asyncio.get_running_loop().create_future()
        self.put({"type": "websocket.receive", "text": orjson.dumps(message).decode()})
        try:
            await asyncio.wait_for(self.answered, ANSWER_TIMEOUT_S)
        except TimeoutError:
            raise SystemExit(f"no answer with an ack within {ANSWER_TIMEOUT_S} s") from None


class Driver:
    def __init__(self, app: EdgeApp, visitors: int, seed: int) -> None:
        self.app = app
        self.world = World(ORIGIN, seed=seed)
        self.rng = random.Random(seed + 1)
        self.visitors = visitors
        self.open: list[FakeSocket] = []
        # message type -> this process's CPU (s) from sending each to its
        # answer, while ``costs`` is set (``--by-type``)
        self.costs: dict[str, list[float]] | None = None

    async def start(self) -> None:
        self.open = [await self._session() for _ in range(self.visitors)]

    async def _session(self) -> FakeSocket:
        sock = FakeSocket(self.world.new_visit())
        sock.task = asyncio.get_running_loop().create_task(
            self.app(sock.scope(), sock.receive, sock.send)
        )
        await self._timed("hello", sock, sock.visit.hello)
        return sock

    async def _timed(self, kind: str, sock: FakeSocket, message: dict[str, Any]) -> None:
        if self.costs is None:
            await sock.exchange(message)
            return
        cpu = time.process_time()
        await sock.exchange(message)
        self.costs.setdefault(kind, []).append(time.process_time() - cpu)

    async def events(self, count: int, in_flight: int) -> None:
        """``count`` events, ``in_flight`` messages at a time (each from its own
        part of the visitors), each from a visitor picked at random; a visitor
        whose session is over opens the next."""
        share, extra = divmod(count, in_flight)
        await asyncio.gather(
            *(self._stream(part, in_flight, share + (part < extra)) for part in range(in_flight))
        )

    async def _stream(self, part: int, parts: int, count: int) -> None:
        mine = range(part, len(self.open), parts)
        sent = 0
        while sent < count:
            i = self.rng.choice(mine)
            sock = self.open[i]
            event = next(sock.visit.events, None)
            if event is None:
                await self._end(sock)
                self.open[i] = await self._session()
                continue
            sock.seq += 1
            event["seq"] = sock.seq
            event["id"] = f"{sock.visit.session[:8]}{sock.seq:08d}"
            event["at"] = int(time.time() * 1000)
            if event.get("referrer") is None:
                event.pop("referrer", None)
            await self._timed(str(event["type"]), sock, {"type": "events", "events": [event]})
            sent += 1

    async def _end(self, sock: FakeSocket) -> None:
        sock.put({"type": "websocket.disconnect", "code": 1000})
        if sock.task is not None:
            await sock.task

    async def stop(self) -> None:
        for sock in self.open:
            await self._end(sock)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _measure(
    redis_url: str | None,
    events: int,
    visitors: int,
    in_flight: int,
    repeat: int,
    seed: int,
    by_type: bool,
) -> list[float]:
    settings = Settings.from_env(redis_url=redis_url)
    app = create_app(settings)
    life = _Lifespan(app)
    await life.startup()
    try:
        driver = Driver(app, visitors, seed)
        await driver.start()
        await driver.events(max(events // 5, 500), in_flight)  # warm-up: caches, code paths
        ledger = app.state.ingest.ledger
        batches = ledger.batches
        runs = []
        driver.costs = {} if by_type else None
        for _ in range(repeat):
            cpu = time.process_time()
            await driver.events(events, in_flight)
            runs.append((time.process_time() - cpu) / events * 1e6)
        print(f"events per store batch: {events * repeat / max(1, ledger.batches - batches):.2f}")
        if driver.costs is not None:
            print_costs(driver.costs)
        await driver.stop()
    finally:
        await life.shutdown()
    return runs


class _Lifespan:
    """The app's startup and shutdown, driven as a server drives them."""

    def __init__(self, app: EdgeApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _expect(self, kind: str) -> None:
        await self.inbox.put({"type": f"lifespan.{kind}"})
        message = await self.outbox.get()
        if message["type"] != f"lifespan.{kind}.complete":
            raise SystemExit(f"the app's {kind} failed: {message.get('message', '')}")

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.get_running_loop().create_task(
            self.app(scope, self.inbox.get, self.outbox.put)
        )
        await self._expect("startup")

    async def shutdown(self) -> None:
        await self._expect("shutdown")
        if self.task is not None:
            await self.task


def print_costs(costs: dict[str, list[float]]) -> None:
    """Per message type: count, share of the CPU, mean and percentiles (µs)."""
    total = sum(sum(times) for times in costs.values()) or 1.0
    print("CPU from a message to its answer, by type (µs):")
    for kind, times in sorted(costs.items(), key=lambda item: -sum(item[1])):
        ranked = sorted(times)
        p50, p90, p99 = (_at(ranked, q) * 1e6 for q in (0.5, 0.9, 0.99))
        print(
            f"  {kind:<14} n={len(ranked):<7} {100 * sum(ranked) / total:5.1f}% of it  "
            f"mean {sum(ranked) / len(ranked) * 1e6:7.0f}  p50 {p50:7.0f}  "
            f"p90 {p90:7.0f}  p99 {p99:7.0f}  max {ranked[-1] * 1e6:7.0f}"
        )


def _at(ranked: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (the nearest rank at or below)."""
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))]


def _slower(factor: float) -> dict[str, str]:
    """Every duration of the settings (``..._s``, not a rate ``..._per_s``)
    ``factor`` times its default, as ``EDGE_...`` variables: under valgrind
    the answer deadline, the admission wait, Redis's socket deadline ... keep
    the proportions they have to the work, and the paths taken are those of
    a normal run (not fallbacks after a missed deadline)."""
    return {
        f"EDGE_{f.name.upper()}": str(f.default * factor)
        for f in dataclasses.fields(Settings)
        if f.name.endswith("_s")
        and not f.name.endswith("per_s")
        and isinstance(f.default, int | float)
        and f.default > 0
    }


def run(
    *,
    store: str,
    events: int,
    visitors: int,
    in_flight: int,
    repeat: int,
    seed: int = 1,
    by_type: bool = False,
    under_valgrind: bool = False,
) -> list[float]:
    global ANSWER_TIMEOUT_S
    # Every visitor is 127.0.0.1, and a simulated visitor sends faster than
    # a person: the per-address and per-connection limits would refuse them.
    limits = {
        "EDGE_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "EDGE_MAX_MESSAGES_PER_S_PER_ADDRESS": "0",
        "EDGE_MAX_MESSAGES_PER_S": "100000",
        "EDGE_DEMO_SECRET": os.environ.get("EDGE_DEMO_SECRET", "benchmark-secret"),
    }
    if under_valgrind:  # benchmarks/instructions.py: everything runs about 50x slower
        check.CHECK_RENDER_BUDGET_S = check.CHECK_BUDGET_S = ANSWER_TIMEOUT_S = 3600.0
        limits.update(_slower(SLOWDOWN))
    with _environment(limits):
        if store == "redis":
            with redis_server() as url:
                runs = uvloop.run(_measure(url, events, visitors, in_flight, repeat, seed, by_type))
        else:
            runs = uvloop.run(_measure(None, events, visitors, in_flight, repeat, seed, by_type))
    median = statistics.median(runs)
    print(
        f"app in process, {store} store, {visitors} visitors, {in_flight} message(s) in flight, "
        f"{events} events x {repeat}, uvloop"
    )
    print(
        f"CPU per event: {median:.1f} µs, median [{min(runs):.1f}-{max(runs):.1f}] "
        f"(runs: {', '.join(f'{r:.1f}' for r in runs)})"
    )
    return runs
