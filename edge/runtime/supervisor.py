"""Long-lived background tasks that a bug cannot end silently.

A task of the process (the ledger's flusher, the configuration watcher, the
abandoned-cart claimer) runs for the life of the process; if it dies, nothing
says so, and the work it does simply stops (issue 12: one unexpected
``IndexError`` in the flusher left every visitor waiting for a write that
never came, while ``/readyz`` said 200). Here each such task runs under
``Supervisor.start``: an exception other than cancellation is logged with its
traceback, counted (``edge_task_crashes_total``), makes the process not
ready (``/readyz`` 503) for ``unready_s``, and the task is started again
after a backoff that grows with each crash in a row. A task that returns
normally is not restarted.

Short-lived tasks started on demand (the statistics and automation
recorders) report their own crash with ``Supervisor.watch``: the next
demand starts them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Crash:
    at: float  # monotonic
    error: str


class Supervisor:
    def __init__(
        self,
        *,
        unready_s: float = 30.0,
        backoff_s: Sequence[float] = (0.05, 0.5, 2.0, 5.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._unready_s = unready_s
        self._backoff = tuple(backoff_s)
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.crashes: dict[str, int] = {}  # task name -> crashes since start
        self.last_crash: dict[str, Crash] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` as task ``name``, restarting it after each crash."""
        task = asyncio.get_running_loop().create_task(self._keep(name, run), name=f"edge-{name}")
        self._tasks[name] = task
        return task

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        in_a_row = 0
        while True:
            started = self._clock()
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the point of this module: logged, counted, restarted
                if self._clock() - started > 60.0:  # it ran well for a while: a fresh start
                    in_a_row = 0
                delay = self._backoff[min(in_a_row, len(self._backoff) - 1)]
                in_a_row += 1
                self._record(name, exc)
                log.exception("background task %s crashed; restarting in %.2fs", name, delay)
            await asyncio.sleep(delay)

    def watch(self, name: str, task: asyncio.Task[object]) -> None:
        """Report a crash of an on-demand task (it is started again on demand)."""
        task.add_done_callback(lambda done: self._done(name, done))

    def _done(self, name: str, task: asyncio.Task[object]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._record(name, exc)
            log.error("background task %s crashed", name, exc_info=exc)

    def _record(self, name: str, exc: BaseException) -> None:
        self.crashes[name] = self.crashes.get(name, 0) + 1
        self.last_crash[name] = Crash(self._clock(), f"{type(exc).__name__}: {exc}"[:200])

    def problems(self) -> list[str]:
        """Why the process is not ready: tasks that crashed within ``unready_s``."""
        now = self._clock()
        return [
            f"task {name} crashed {now - crash.at:.0f}s ago ({crash.error})"
            for name, crash in sorted(self.last_crash.items())
            if now - crash.at < self._unready_s
        ]

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
