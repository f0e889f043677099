"""Background tasks under edge.runtime.supervisor: a crash is logged, counted, makes
the process not ready for a while, and the task starts again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from edge.config.sites import Site, load_site
from edge.core.context import VisitContext
from edge.runtime.supervisor import Supervisor
from edge.stores.base import Conflict, Write
from edge.stores.ledger import Ledger
from edge.stores.memory import MemoryStore
from edge.tracker import protocol as p
from tests.client import new_id
from tests.helpers import PROFILES


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_crashed_task_is_logged_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    supervisor = Supervisor(unready_s=30.0, backoff_s=(0.0,), clock=clock)
    runs = 0
    done = asyncio.Event()

    async def task() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"bug {runs}")
        done.set()
        await asyncio.Event().wait()  # then runs for good

    supervisor.start("worker", task)
    await asyncio.wait_for(done.wait(), 2)
    assert runs == 3
    assert supervisor.crashes == {"worker": 2}
    assert "RuntimeError: bug 2" in supervisor.problems()[0]
    assert "background task worker crashed" in caplog.text
    assert "Traceback" in caplog.text  # logged with its traceback
    clock.now += 31  # ready again once the crash is old enough
    assert supervisor.problems() == []
    await supervisor.stop()


async def test_a_task_that_returns_is_not_restarted() -> None:
    supervisor = Supervisor(backoff_s=(0.0,))
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    await supervisor.start("once", once)
    await asyncio.sleep(0.01)
    assert runs == 1 and supervisor.crashes == {}
    await supervisor.stop()


async def test_a_crashed_on_demand_task_is_reported() -> None:
    supervisor = Supervisor()

    async def boom() -> None:
        raise ValueError("nope")

    task = asyncio.get_running_loop().create_task(boom())
    supervisor.watch("recorder", task)
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert supervisor.crashes == {"recorder": 1}


class BuggyStore(MemoryStore):
    """Raises an error that is not a StoreError in its first commit: a bug."""

    def __init__(self) -> None:
        super().__init__()
        self.bugs = 1

    async def commit(self, writes: Sequence[Write]) -> list[Conflict | None]:
        if self.bugs:
            self.bugs -= 1
            raise KeyError("a bug in the store layer")
        return await super().commit(writes)


async def test_the_flusher_survives_a_bug_and_stores_the_events() -> None:
    site: Site = load_site(PROFILES / "demo")
    supervisor = Supervisor(backoff_s=(0.0,))
    ledger = Ledger(BuggyStore())
    ledger.start(supervisor)
    visitor, session = new_id(), new_id()
    hot = await ledger.open("demo", visitor)
    event = p.parse_event({"seq": 1, "id": "e0000001", "type": "page_view", "url": "http://s/"})
    stored = ledger.submit(hot, [event], VisitContext(visitor, session), site, 1.0)
    profile = await asyncio.wait_for(stored, 2)
    assert profile is not None and profile.pageviews == 1
    assert supervisor.crashes == {"flusher": 1}
    assert ledger.check_invariants() == []
    ledger.release(hot)
    await ledger.stop()
    await supervisor.stop()
