"""Store outages against real processes: Redis killed for 5 s (connections
refused) and Redis hung for 3 s (``CLIENT PAUSE``, or the process stopped by
``SIGSTOP``: connections accepted, no answers), while visitors stream page views.

Each visitor behaves like the tracker: it keeps every event until an ``ack``
covers it and resends what is unacknowledged with its next message. Checked:
every answer (the first frame after a send) within 50 ms during the outage
(within the answer deadline, 100 ms, plus scheduling when Redis hangs),
the server alive, then every event stored exactly once (each profile counts
exactly the page views its visitor made: acknowledged ones were not lost,
resent ones not applied twice), and normal acknowledged answers within 2 s
of Redis coming back. Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from edge.core.profile import decode_profile
from edge.stores import keys
from tests.client import Visitor
from tests.helpers import EdgeServer, edge_server, free_port, wait_until

pytestmark = [pytest.mark.timeout(60)]

PAGE = "http://127.0.0.1/demo"
ANSWER_BUDGET_S = 0.050
# A hung Redis: nothing fails fast until a call's socket deadline (250 ms)
# passed, so the first messages are answered at the answer deadline
# (EDGE_ANSWER_DEADLINE_S, 100 ms); the rest is room for a shared machine,
# kept below the socket deadline, which is what this bound tells apart.
HUNG_BOUND_S = 0.200
PACE_S = 0.1  # one message per visitor every ~100 ms


class Redis:
    """A redis-server this test may kill and restart on the same port and
    data folder; AOF with fsync on every write, so what was acknowledged
    survives the kill."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> Any:
        with redis_py.Redis(port=self.port, socket_timeout=5) as client:
            return client.execute_command(*args)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.command("PING"), 10, "redis-server")

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections and buffers commands;
        nothing is answered until ``resume``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            self.process.terminate()
            self.process.wait(10)


OPEN: list[Tab] = []


@pytest.fixture(autouse=True)
async def closing() -> AsyncIterator[None]:
    """Close every tab a test opened, also after a failed assertion: an open
    socket left to the garbage collector fails a later test with a warning."""
    yield
    tabs, OPEN[:] = list(OPEN), []
    await asyncio.gather(*(tab.visitor.close() for tab in tabs), return_exceptions=True)


def normal_s(before: list[Sample]) -> float:
    """ "Back to normal": the answer budget, or twice the p90 measured before
    the fault when this shared machine was slower than that to begin with.

    Phases are judged by their p90, not their p99 or maximum: a phase has a
    few hundred answers, so its p99 is its second or third slowest one, which
    a shared CI machine's scheduling alone pushes past any fair bound. What
    these tests tell apart is systematic: a message that waits for a hung or
    dead store waits out the answer deadline (100 ms), so a phase where that
    happens has its p90 at the deadline, far above the budget."""
    return max(ANSWER_BUDGET_S, 2 * p90(before)) if before else ANSWER_BUDGET_S


@pytest.fixture
def stack() -> Iterator[tuple[Redis, EdgeServer]]:
    with tempfile.TemporaryDirectory() as folder:
        store = Redis(Path(folder))
        store.start()
        try:
            with edge_server(redis_url=store.url) as server:
                yield store, server
                assert server.process.poll() is None, server.output()
        finally:
            store.stop()


@dataclass
class Sample:
    sent_at: float  # time.monotonic() of the send
    latency_s: float  # until the first answer frame
    acked: bool  # the answer acknowledged (else: the fallback)


@dataclass
class Tab:
    """One visitor streaming page views the way the tracker does."""

    visitor: Visitor
    outbox: dict[int, dict[str, Any]] = field(default_factory=dict)
    made: int = 0
    samples: list[Sample] = field(default_factory=list)
    welcome_s: float = 0.0
    welcome: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def open(cls, server: EdgeServer) -> Tab:
        tab = cls(Visitor(server.ws))
        OPEN.append(tab)  # closed by the ``closing`` fixture, even when a test fails
        started = time.perf_counter()
        tab.welcome = await tab.visitor.connect()
        tab.welcome_s = time.perf_counter() - started
        return tab

    async def step(self, new: bool = True) -> Sample:
        if new:
            event = self.visitor.event("page_view", url=PAGE)
            self.outbox[event["seq"]] = event
            self.made += 1
        events = list(self.outbox.values())[:100]
        sent_at, started = time.monotonic(), time.perf_counter()
        await self.visitor.send({"type": "events", "events": events})
        first: float | None = None
        acked = False
        while True:
            message = await self.visitor.recv()
            if first is None:
                first = time.perf_counter() - started
            if isinstance(message.get("ack"), int):
                acked = True
                self.outbox = {s: e for s, e in self.outbox.items() if s > message["ack"]}
            if message["type"] in ("ack", "decisions"):
                break
            assert message["type"] == "error" and message["code"] == "store_unavailable", message
        sample = Sample(sent_at, first, acked)
        self.samples.append(sample)
        return sample

    async def stream(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            await asyncio.sleep(PACE_S * random.uniform(0.5, 1.5))

    async def drain(self) -> None:
        while self.outbox:
            if not (await self.step(new=False)).acked:
                await asyncio.sleep(0.05)


def http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def between(tabs: list[Tab], start: float, end: float) -> list[Sample]:
    return [s for tab in tabs for s in tab.samples if start <= s.sent_at < end]


def quantile(samples: list[Sample], q: float) -> float:
    latencies = sorted(s.latency_s for s in samples)
    return latencies[min(len(latencies) - 1, int(len(latencies) * q))]


def p99(samples: list[Sample]) -> float:
    return quantile(samples, 0.99)


def p90(samples: list[Sample]) -> float:
    return quantile(samples, 0.90)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def check_stored(store: Redis, tabs: list[Tab]) -> None:
    """Every event stored exactly once: acknowledged ones survived the outage
    and the resent ones were not applied twice."""
    for tab in tabs:
        assert not tab.outbox
        payload = store.command("HGET", keys.profile("demo", tab.visitor.visitor), "p")
        assert payload, f"no profile for {tab.visitor.visitor}"
        profile = decode_profile(payload)
        assert profile.pageviews == tab.made, (profile.pageviews, tab.made)


async def test_redis_killed_for_5s(stack: tuple[Redis, EdgeServer]) -> None:
    store, server = stack
    tabs = list(await asyncio.gather(*(Tab.open(server) for _ in range(18))))
    stop = asyncio.Event()
    streams = [asyncio.create_task(tab.stream(stop)) for tab in tabs]
    await asyncio.sleep(2.0)

    down = time.monotonic()
    await asyncio.to_thread(store.kill)
    await asyncio.sleep(0.5)
    # Visitors arriving during the outage are welcomed (ack unknown: 0).
    late = list(await asyncio.gather(*(Tab.open(server) for _ in range(2))))
    for tab in late:
        assert tab.welcome["ack"] == 0
        assert tab.welcome_s <= ANSWER_BUDGET_S, ms(tab.welcome_s)
    streams += [asyncio.create_task(tab.stream(stop)) for tab in late]
    tabs += late
    status, body = await asyncio.to_thread(http, f"{server.http}/readyz")
    assert status == 503 and "store" in body, body
    _, metrics = await asyncio.to_thread(http, f"{server.http}/metrics")
    assert any(
        line.startswith("edge_store_breaker_state") and line.endswith(" 2.0")
        for line in metrics.splitlines()
    ), metrics
    await asyncio.sleep(down + 5.0 - time.monotonic())

    await asyncio.to_thread(store.start)
    up = time.monotonic()
    await asyncio.sleep(3.0)
    stop.set()
    await asyncio.gather(*streams)
    await asyncio.wait_for(asyncio.gather(*(tab.drain() for tab in tabs)), 10)
    status, _ = await asyncio.to_thread(http, f"{server.http}/readyz")
    assert status == 200

    before = between(tabs, 0, down)
    during = between(tabs, down, up)
    recovering = between(tabs, up, up + 2.0)
    after = between(tabs, up + 2.0, up + 3.0)
    print(
        f"\nkilled 5 s, {len(tabs)} visitors: before p90 {ms(p90(before))}, "
        f"p99 {ms(p99(before))}, "
        f"{sum(not s.acked for s in before)}/{len(before)} fallbacks; "
        f"outage {len(during)} answers, {sum(not s.acked for s in during)} fallbacks, "
        f"p90 {ms(p90(during))}, p99 {ms(p99(during))}, "
        f"max {ms(max(s.latency_s for s in during))}; "
        f"first 2 s after p90 {ms(p90(recovering))}, p99 {ms(p99(recovering))}, "
        f"first ack {ms(min(s.sent_at for s in recovering + after if s.acked) - up)} after; "
        f"then p90 {ms(p90(after))}, p99 {ms(p99(after))}, "
        f"{sum(s.acked for s in after)}/{len(after)} acked; "
        f"late hello {ms(max(t.welcome_s for t in late))}; "
        f"events {sum(t.made for t in tabs)}"
    )
    assert sum(not s.acked for s in during) > len(during) // 2  # the outage was seen
    # Known down: answered at once, none waits out the answer deadline.
    assert p90(during) <= ANSWER_BUDGET_S
    assert max(s.latency_s for s in during) <= HUNG_BOUND_S
    assert p90(recovering) <= normal_s(before)
    assert after and all(s.acked for s in after)
    assert p90(after) <= normal_s(before)
    check_stored(store, tabs)
    await asyncio.gather(*(tab.visitor.close() for tab in tabs))


async def test_redis_hung_for_3s(stack: tuple[Redis, EdgeServer]) -> None:
    """A paused Redis takes connections and commands but answers nothing: the
    first calls wait out their deadline (``EDGE_REDIS_SOCKET_TIMEOUT_S``, 250 ms),
    but no visitor waits longer than the answer deadline for them; once a write
    failed, answers are immediate again. Commands the server ran after edge
    gave up on them are recognised (compare-and-set, dedupe)."""
    store, server = stack
    tabs = list(await asyncio.gather(*(Tab.open(server) for _ in range(12))))
    stop = asyncio.Event()
    streams = [asyncio.create_task(tab.stream(stop)) for tab in tabs]
    await asyncio.sleep(1.5)
    down = time.monotonic()
    await asyncio.to_thread(store.command, "CLIENT", "PAUSE", "3000", "ALL")
    up = down + 3.0
    await asyncio.sleep(up + 3.0 - time.monotonic())
    stop.set()
    await asyncio.gather(*streams)
    await asyncio.wait_for(asyncio.gather(*(tab.drain() for tab in tabs)), 10)

    during = between(tabs, down, up)
    settled = between(tabs, down + 0.5, up)
    after = between(tabs, up + 2.0, up + 3.0)
    print(
        f"\nhung 3 s, {len(tabs)} visitors: {len(during)} answers, "
        f"{sum(not s.acked for s in during)} fallbacks, "
        f"max {ms(max(s.latency_s for s in during))}, "
        f"median {ms(statistics.median(s.latency_s for s in during))}; "
        f"from 0.5 s on p90 {ms(p90(settled))}, max {ms(max(s.latency_s for s in settled))}; "
        f"after p90 {ms(p90(after))}, p99 {ms(p99(after))}, "
        f"{sum(s.acked for s in after)}/{len(after)} acked"
    )
    assert max(s.latency_s for s in during) <= HUNG_BOUND_S  # the answer deadline, at most
    assert p90(settled) <= ANSWER_BUDGET_S  # once a write failed: at once
    assert after and all(s.acked for s in after)
    assert p90(after) <= normal_s(between(tabs, 0, down))
    check_stored(store, tabs)
    await asyncio.gather(*(tab.visitor.close() for tab in tabs))


async def test_redis_stopped_for_3s(stack: tuple[Redis, EdgeServer]) -> None:
    """The redis-server process stopped (``SIGSTOP``) for 3 s while visitors
    stream and new ones arrive: every message and every ``hello`` is answered
    within the answer deadline (plus scheduling), though no Redis call fails
    before its 250 ms socket deadline; a ``hello`` whose profile load hangs is
    welcomed with ``ack`` 0 and the load is taken up later. When Redis runs
    again, everything is stored exactly once."""
    store, server = stack
    tabs = list(await asyncio.gather(*(Tab.open(server) for _ in range(12))))
    stop = asyncio.Event()
    streams = [asyncio.create_task(tab.stream(stop)) for tab in tabs]
    await asyncio.sleep(1.5)
    late: list[Tab] = []
    down = time.monotonic()
    store.pause()
    try:
        # The first arrives while the first stalled write is still waiting
        # (its load hangs too); the later ones once the store is known down.
        for wait_s in (0.02, 0.3, 0.6, 0.6, 0.6):
            await asyncio.sleep(wait_s)
            tab = await Tab.open(server)
            late.append(tab)
            streams.append(asyncio.create_task(tab.stream(stop)))
        await asyncio.sleep(down + 3.0 - time.monotonic())
    finally:
        store.resume()
    up = time.monotonic()
    tabs += late
    await asyncio.sleep(3.0)
    stop.set()
    await asyncio.gather(*streams)
    await asyncio.wait_for(asyncio.gather(*(tab.drain() for tab in tabs)), 10)

    during = between(tabs, down, up)
    first = between(tabs, down, down + 0.3)
    after = between(tabs, up + 2.0, up + 3.0)
    latencies = sorted(s.latency_s for s in during)
    print(
        f"\nstopped 3 s, {len(tabs)} visitors: {len(during)} answers, "
        f"{sum(not s.acked for s in during)} fallbacks, "
        f"max {ms(latencies[-1])}, p99 {ms(p99(during))}, "
        f"median {ms(statistics.median(latencies))}; "
        f"first 0.3 s: {len(first)} answers, max {ms(max(s.latency_s for s in first))}; "
        f"hellos while stopped {', '.join(ms(t.welcome_s) for t in late)} "
        f"(ack {[t.welcome['ack'] for t in late]}); "
        f"after p90 {ms(p90(after))}, p99 {ms(p99(after))}, "
        f"{sum(s.acked for s in after)}/{len(after)} acked"
    )
    assert sum(not s.acked for s in during) > len(during) // 2  # the hang was seen
    assert latencies[-1] <= HUNG_BOUND_S
    assert all(t.welcome_s <= HUNG_BOUND_S and t.welcome["ack"] == 0 for t in late)
    assert after and all(s.acked for s in after)
    assert p90(after) <= normal_s(between(tabs, 0, down))
    check_stored(store, tabs)
    await asyncio.gather(*(tab.visitor.close() for tab in tabs))
    # Every hot profile was released, the loads that outlived their deadline too.
    await asyncio.to_thread(wait_until, lambda: hot_profiles(server) == 0, 10, "hot profiles")


def hot_profiles(server: EdgeServer) -> int:
    status, body = http(f"{server.http}/healthz")
    assert status == 200, body
    return int(json.loads(body)["hot_profiles"])
