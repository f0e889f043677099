"""Several generator processes (``--generators N``): the visitors and the rate split across them.

On a 2-core machine one Python process offering thousands of messages a
second can become what a benchmark measures (issue 13: the echo ceiling).
``MultiGenerator`` has the interface of ``LoadGenerator`` (``start``,
``connect_missing``, ``phase_run``, ``stop``) and runs N child processes
(``spawn``), each an asyncio loop (uvloop when installed, as in the parent)
with a ``LoadGenerator`` over its share of the visitors. Per phase the parent
tells each child "rate r/N from this instant (``perf_counter``: the same
monotonic clock in every process), warm-up w, duration d"; Poisson arrivals
at r/N in N processes add up to Poisson arrivals at r, so the load is the one
a single process would offer. Each second every child sends its interval
histogram (HDR, encoded) and counts; the parent merges them into the same
per-second timeline, samples the server's CPU and the CPU of every generator
process (itself included), prints the progress line, and at the end merges
the phase's histograms and counters into the same summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import time
import traceback
from collections import Counter
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from hdrh.histogram import HdrHistogram

from benchmarks.load import (
    Config,
    CpuMeter,
    LoadGenerator,
    MachineMeter,
    Phase,
    RedisMeter,
    failures_so_far,
    new_histogram,
    percentiles,
    process_tree,
    progress_line,
    raise_nofile_limit,
    sample_processes,
    summarize,
)

HISTOGRAMS = ("hist", "retried_hist", "opening_hist", "head_hist", "sent_hist")
COUNTS = ("scheduled", "scheduled_measured", "sent", "acked", "lost", "refused", "visitors_added")


def make_generator(cfg: Config) -> LoadGenerator | MultiGenerator:
    """One process (today's generator) or ``cfg.generators`` of them."""
    if cfg.generators <= 1:
        return LoadGenerator(cfg)
    return MultiGenerator(cfg)


def shares(total: int, n: int) -> list[int]:
    """``total`` split into ``n`` near-equal whole parts."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# --------------------------------------------------------------------------- the child


def child_main(cfg: Config, index: int, conn: Connection) -> None:
    """A generator process: obey the parent's commands until ``stop``."""
    raise_nofile_limit()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_Child(cfg, index, conn).serve())
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        raise


class _Child:
    def __init__(self, cfg: Config, index: int, conn: Connection) -> None:
        self.gen = LoadGenerator(cfg)
        self.index = index
        self.conn = conn
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.inbox.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            self.inbox.put_nowait(("stop",))

    def _connected(self) -> dict[str, Any]:
        gen = self.gen
        return {
            "connect_s": gen.connect_s,
            "startup_errors": gen.startup_errors,
            "open": gen.open_connections,
        }

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._readable)
        gen = self.gen
        while True:
            command = await self.inbox.get()
            kind = command[0]
            if kind == "start":
                await gen.start()
                self.conn.send(("started", self._connected()))
            elif kind == "connect_missing":
                await gen.connect_missing(command[1])
                self.conn.send(("started", self._connected()))
            elif kind == "phase":
                _, rate, duration_s, warmup_s, start, offset_s = command
                self.conn.send(
                    ("done", await self._phase(rate, duration_s, warmup_s, start, offset_s))
                )
            elif kind == "stop":
                loop.remove_reader(self.conn.fileno())
                await gen.stop()
                self.conn.send(("stopped",))
                return

    async def _phase(
        self, rate: float, duration_s: float, warmup_s: float, start: float, offset_s: float
    ) -> dict[str, Any]:
        gen = self.gen
        tick = 0

        async def second(phase: Phase, now: float, dt: float, lag_s: float) -> None:
            nonlocal tick
            interval, phase.interval = phase.interval, new_histogram()
            self.conn.send(
                (
                    "tick",
                    tick,
                    {
                        "now": now,
                        "dt": dt,
                        "interval": interval.encode(),
                        "acked": phase.acked_interval,
                        "refused": phase.refused - phase.refused_mark,
                        "backlog": len(gen.backlog),
                        "open": gen.open_connections,
                        "lag_s": lag_s,
                        "failures": failures_so_far(phase),
                    },
                )
            )
            tick += 1
            phase.acked_interval = 0
            phase.refused_mark = phase.refused

        phase, undelivered = await gen.drive(rate, duration_s, warmup_s, start, offset_s, second)
        out: dict[str, Any] = {name: getattr(phase, name).encode() for name in HISTOGRAMS}
        out.update({name: getattr(phase, name) for name in COUNTS})
        out.update(
            errors=dict(phase.errors),
            close_codes=dict(phase.close_codes),
            undelivered=undelivered,
            open=gen.open_connections,
            sessions_opened=gen.sessions_opened,
            hello_hist=gen.hello_hist.encode(),
        )
        gen.hello_hist = new_histogram()
        return out


# --------------------------------------------------------------------------- the parent


class MultiGenerator:
    """``cfg.generators`` child processes driven as one generator."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.n = cfg.generators
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.conns: list[Connection] = []
        self.inbox: asyncio.Queue[tuple[int, tuple[Any, ...]]] = asyncio.Queue()
        server_pid = cfg.server_pid
        self.server_cpu = CpuMeter(lambda: process_tree(server_pid)) if server_pid else None
        # every generator process, this one included (it merges and samples)
        self.own_cpu = CpuMeter(lambda: [os.getpid(), *(p.pid for p in self.processes)])
        self.redis = RedisMeter(cfg.redis_url) if cfg.redis_url else None
        self.machine = MachineMeter()
        self.connect_s = 0.0
        self.startup_errors: dict[str, int] = {}
        self.open_connections = 0
        self.sessions_opened = 0

    def _child_cfg(self, index: int, visitors: int) -> Config:
        cfg = self.cfg
        return replace(
            cfg,
            visitors=visitors,
            spare_visitors=shares(cfg.spare_visitors, self.n)[index],
            connect_concurrency=math.ceil(cfg.connect_concurrency / self.n),
            seed=None if cfg.seed is None else cfg.seed + 1000 * (index + 1),
            server_pid=None,
            redis_url=None,
            progress=False,
            label=f"{cfg.label} generator {index + 1}/{self.n}",
            generators=1,
        )

    def _readable(self, index: int) -> None:
        conn = self.conns[index]
        try:
            while conn.poll():
                self.inbox.put_nowait((index, conn.recv()))
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self.inbox.put_nowait((index, ("error", "generator process ended")))

    async def _receive(self) -> tuple[int, tuple[Any, ...]]:
        index, message = await self.inbox.get()
        if message[0] == "error":
            raise RuntimeError(f"generator process {index + 1} failed:\n{message[1]}")
        return index, message

    async def _all(self, kind: str) -> list[tuple[Any, ...]]:
        """One ``kind`` answer from every child, in child order."""
        answers: dict[int, tuple[Any, ...]] = {}
        while len(answers) < self.n:
            index, message = await self._receive()
            if message[0] == kind:
                answers[index] = message
        return [answers[i] for i in range(self.n)]

    def _connected(self, answers: list[tuple[Any, ...]]) -> None:
        self.connect_s = max(a[1]["connect_s"] for a in answers)
        errors: Counter[str] = Counter()
        for a in answers:
            errors.update(a[1]["startup_errors"])
        self.startup_errors = dict(errors)
        self.open_connections = sum(a[1]["open"] for a in answers)

    async def start(self) -> None:
        """Start the children, each connecting its share of the visitors."""
        loop = asyncio.get_running_loop()
        for index, visitors in enumerate(shares(self.cfg.visitors, self.n)):
            mine, theirs = self.context.Pipe()
            process = self.context.Process(
                target=child_main,
                args=(self._child_cfg(index, visitors), index, theirs),
                name=f"loadgen-{index + 1}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self.processes.append(process)
            self.conns.append(mine)
            loop.add_reader(mine.fileno(), self._readable, index)
        for conn in self.conns:
            conn.send(("start",))
        self._connected(await self._all("started"))

    async def connect_missing(self, timeout_s: float) -> None:
        for conn in self.conns:
            conn.send(("connect_missing", timeout_s))
        self._connected(await self._all("started"))

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            for conn in self.conns:
                conn.send(("stop",))
            await asyncio.wait_for(self._all("stopped"), 30)
        for conn in self.conns:
            with contextlib.suppress(Exception):
                loop.remove_reader(conn.fileno())
            conn.close()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        self.processes, self.conns = [], []
        if self.redis is not None:
            await self.redis.close()

    async def phase_run(self, rate: float, duration_s: float, warmup_s: float) -> dict[str, Any]:
        """As ``LoadGenerator.phase_run``, the rate split across the children."""
        start = time.perf_counter() + 0.1  # time for the command to reach every child
        phase = Phase(start, start + warmup_s, start + warmup_s + duration_s)
        self.own_cpu.sample()
        self.machine.sample()
        if self.server_cpu is not None:
            self.server_cpu.sample()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.sample()
        fixed = self.cfg.arrivals == "fixed"
        for i, conn in enumerate(self.conns):
            # fixed arrivals: the children interleave instead of sending together
            offset = i / rate if fixed and rate > 0 else 0.0
            conn.send(("phase", rate / self.n, duration_s, warmup_s, start, offset))
        so_far = new_histogram()
        ticks: dict[int, dict[int, dict[str, Any]]] = {}
        done: dict[int, dict[str, Any]] = {}
        next_tick = 0
        while len(done) < self.n:
            index, message = await self._receive()
            if message[0] == "tick":
                ticks.setdefault(message[1], {})[index] = message[2]
            elif message[0] == "done":
                done[index] = message[1]
            while next_tick in ticks and all(
                i in ticks[next_tick] or i in done for i in range(self.n)
            ):
                await self._second(phase, rate, ticks.pop(next_tick), so_far)
                next_tick += 1
        for k in sorted(ticks):
            await self._second(phase, rate, ticks[k], so_far)
        return self._merge(phase, rate, duration_s, warmup_s, [done[i] for i in range(self.n)])

    async def _second(
        self,
        phase: Phase,
        rate: float,
        parts: dict[int, dict[str, Any]],
        so_far: HdrHistogram,
    ) -> None:
        now = time.perf_counter()
        interval = new_histogram()
        for part in parts.values():
            interval.add(HdrHistogram.decode(part["interval"]))
        figures = percentiles(interval)
        point: dict[str, Any] = {
            "t": round(max(p["now"] for p in parts.values()) - phase.start, 3),
            "target_rate": rate,
            "achieved_rate": sum(p["acked"] / max(p["dt"], 1e-6) for p in parts.values()),
            "p50_ms": figures["p50"],
            "p90_ms": figures["p90"],
            "p99_ms": figures["p99"],
            "max_ms": figures["max"],
            "backlog": sum(p["backlog"] for p in parts.values()),
            "refused_busy": sum(p["refused"] for p in parts.values()),
            "open_connections": sum(p["open"] for p in parts.values()),
            "measuring": now >= phase.measure_from,
            "generators_reporting": len(parts),
        }
        await sample_processes(point, self.own_cpu, self.machine, self.server_cpu, self.redis)
        point["loadgen_loop_lag_ms"] = max(p["lag_s"] for p in parts.values()) * 1000
        phase.timeline.append(point)
        so_far.add(interval)
        if self.cfg.progress:
            progress_line(
                self.cfg.label,
                rate,
                now - phase.start,
                point,
                so_far.get_value_at_percentile(99) / 1000,
                sum(p["failures"] for p in parts.values()),
            )

    def _merge(
        self,
        phase: Phase,
        rate: float,
        duration_s: float,
        warmup_s: float,
        parts: list[dict[str, Any]],
    ) -> dict[str, Any]:
        hello = new_histogram()
        for part in parts:
            for name in HISTOGRAMS:
                getattr(phase, name).add(HdrHistogram.decode(part[name]))
            for name in COUNTS:
                setattr(phase, name, getattr(phase, name) + part[name])
            phase.errors.update(part["errors"])
            phase.close_codes.update(part["close_codes"])
            hello.add(HdrHistogram.decode(part["hello_hist"]))
        self.open_connections = sum(p["open"] for p in parts)
        self.sessions_opened = sum(p["sessions_opened"] for p in parts)
        return summarize(
            phase,
            self.cfg,
            rate=rate,
            duration_s=duration_s,
            warmup_s=warmup_s,
            undelivered=sum(p["undelivered"] for p in parts),
            open_connections=self.open_connections,
            sessions_opened=self.sessions_opened,
            hello_hist=hello,
        )
