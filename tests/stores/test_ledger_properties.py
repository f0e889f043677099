"""The ledger under random interleavings (issue 12, item 0).

Hypothesis drives two processes' ledgers over one store with random commit
delays and failures: visitors' tabs submit new events, duplicates of stored
ones and resends of whole messages, in any order, while writes are in flight
and compare-and-sets are lost. After every step the invariants of
``edge/stores/ledger.py``'s docstring must hold (``Ledger.check_invariants``); at the
end every message is acknowledged and each distinct event is stored exactly
once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config.sites import Site, load_site
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.errors import StoreError
from edge.stores.base import Conflict, StoreUnavailable, Write
from edge.stores.ledger import Hot, Ledger
from edge.stores.memory import MemoryStore
from edge.tracker import protocol as p
from tests.helpers import PROFILES

SITE: Site = load_site(PROFILES / "demo")
VISITORS = ("v" * 22, "w" * 22)
TABS = ("s" * 22, "t" * 22)


class ChaosStore(MemoryStore):
    """Each commit first yields to the loop a scripted number of times (a
    write in flight while other messages arrive), and some commits fail."""

    def __init__(self, delays: list[int], failures: list[bool]) -> None:
        super().__init__()
        self.delays, self.failures = delays, failures
        self.commits = 0

    async def commit(self, writes: Sequence[Write]) -> list[Conflict | None]:
        n = self.commits
        self.commits += 1
        for _ in range(self.delays[n % len(self.delays)]):
            await asyncio.sleep(0)
        if self.failures[n % len(self.failures)]:
            raise StoreError("chaos")
        return await super().commit(writes)


def page_view(tab: str, seq: int) -> p.Event:
    return p.parse_event(
        {"seq": seq, "id": f"{tab[:4]}{seq:08d}", "type": "page_view", "url": "http://s/demo"}
    )


@dataclass
class World:
    store: ChaosStore
    ledgers: tuple[Ledger, Ledger]
    hots: dict[tuple[int, str], Hot] = field(default_factory=dict)
    sent: dict[tuple[str, str], int] = field(default_factory=dict)  # (visitor, tab) -> last seq
    futures: list[asyncio.Future[Profile | None]] = field(default_factory=list)

    async def hot(self, process: int, visitor: str) -> Hot | None:
        """The visitor's hot profile; None while the ledger refuses to load
        (degraded: a connection then answers with the fallback)."""
        if (process, visitor) not in self.hots:
            try:
                self.hots[(process, visitor)] = await self.ledgers[process].open("demo", visitor)
            except StoreUnavailable:
                return None
        return self.hots[(process, visitor)]

    async def submit(self, process: int, visitor: str, tab: str, kind: str, n: int) -> None:
        hot = await self.hot(process, visitor)
        if hot is None:
            return
        last = self.sent.get((visitor, tab), 0)
        if kind == "new" or last == 0:
            seqs = list(range(last + 1, last + 1 + n))
            self.sent[(visitor, tab)] = seqs[-1]
        elif kind == "duplicate":
            seqs = [max(1, last - n)]
        else:  # a resend of the last message
            seqs = list(range(max(1, last - n + 1), last + 1))
        events = [page_view(tab, seq) for seq in seqs]
        ctx = VisitContext(visitor, tab)
        self.futures.append(self.ledgers[process].submit(hot, events, ctx, SITE, 1000.0))


STEP = st.one_of(
    st.tuples(
        st.just("submit"),
        st.integers(0, 1),  # process
        st.sampled_from(VISITORS),
        st.sampled_from(TABS),
        st.sampled_from(["new", "duplicate", "resend"]),
        st.integers(1, 3),
    ),
    st.tuples(st.just("run"), st.integers(0, 6)),
)


async def play(steps: list[tuple[object, ...]], delays: list[int], failures: list[bool]) -> None:
    store = ChaosStore(delays, failures)
    ledgers = (Ledger(store, retry_backoff_s=(0.0,)), Ledger(store, retry_backoff_s=(0.0,)))
    for ledger in ledgers:
        ledger.start()
    world = World(store, ledgers)
    for step in steps:
        if step[0] == "submit":
            _, process, visitor, tab, kind, n = step
            await world.submit(int(process), str(visitor), str(tab), str(kind), int(n))  # type: ignore[call-overload]
        else:
            for _ in range(int(step[1])):  # type: ignore[call-overload]
                await asyncio.sleep(0)
        for ledger in ledgers:
            assert ledger.check_invariants() == []
    await asyncio.wait_for(asyncio.gather(*world.futures), 10)  # every message acknowledged
    for ledger in ledgers:
        assert await ledger.drain(5)
        assert ledger.check_invariants() == []
    for visitor in VISITORS:
        distinct = sum(seq for (v, _), seq in world.sent.items() if v == visitor)
        stored = await store.load("demo", visitor)
        assert (stored.profile.pageviews if stored else 0) == distinct  # exactly once
    for (process, _), hot in world.hots.items():
        ledgers[process].release(hot)
    for ledger in ledgers:
        await ledger.stop()
        assert ledger.hot_count == 0  # nothing leaks


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(STEP, min_size=1, max_size=40),
    delays=st.lists(st.integers(0, 5), min_size=1, max_size=8),
    failures=st.lists(st.booleans(), min_size=1, max_size=8).map(
        lambda fs: [*fs, False]  # the store always answers again
    ),
)
def test_random_interleavings_keep_the_invariants(
    steps: list[tuple[object, ...]], delays: list[int], failures: list[bool]
) -> None:
    asyncio.run(play(steps, delays, failures))
