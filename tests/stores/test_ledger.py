"""The group-commit ledger, with stores that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from edge.config.sites import Site, load_site
from edge.core import offers
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.updates import apply
from edge.errors import StoreError
from edge.stores.base import Conflict, Write
from edge.stores.ledger import Ledger
from edge.stores.memory import MemoryStore
from edge.tracker import protocol as p
from tests.client import new_id
from tests.helpers import PROFILES


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(PROFILES / "demo")


def page_view(seq: int, session: str) -> p.Event:
    return p.parse_event(
        {
            "seq": seq,
            "id": f"{session[:8]}{seq:08d}",
            "type": "page_view",
            "url": "http://127.0.0.1/demo",
        }
    )


class FlakyStore(MemoryStore):
    """Fails the first ``failures`` commits, and counts batches."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.batch_sizes: list[int] = []

    async def commit(self, writes: Sequence[Write]) -> list[Conflict | None]:
        if self.failures:
            self.failures -= 1
            raise StoreError("down")
        self.batch_sizes.append(len(writes))
        return await super().commit(writes)


async def test_acknowledgement_waits_for_the_store(site: Site) -> None:
    store = FlakyStore(failures=2)
    ledger = Ledger(store, retry_backoff_s=(0.01,))
    ledger.start()
    visitor, session = new_id(), new_id()
    hot = await ledger.open("demo", visitor)
    future = ledger.submit(hot, [page_view(1, session)], VisitContext(visitor, session), site, 1.0)
    await asyncio.sleep(0)
    assert not future.done()  # the store is failing: nothing is acknowledged yet
    profile = await asyncio.wait_for(future, 2)
    assert profile is not None and profile.pageviews == 1
    assert ledger.store_errors == 2
    stored = await store.load("demo", visitor)
    assert stored is not None and stored.profile.pageviews == 1
    ledger.release(hot)
    await ledger.stop()
    assert ledger.hot_count == 0


async def test_many_visitors_share_one_batch(site: Site) -> None:
    store = FlakyStore(failures=0)
    ledger = Ledger(store)
    ledger.start()
    hots, futures = [], []
    for _ in range(50):
        visitor, session = new_id(), new_id()
        hot = await ledger.open("demo", visitor)
        hots.append(hot)
        ctx = VisitContext(visitor, session)
        futures.append(ledger.submit(hot, [page_view(1, session)], ctx, site, 1.0))
    await asyncio.gather(*futures)
    assert sum(store.batch_sizes) == 50
    assert len(store.batch_sizes) <= 2  # one batch, maybe a lone first one
    for hot in hots:
        ledger.release(hot)
    await ledger.stop()


async def test_a_lost_compare_and_set_reapplies_pending_events(site: Site) -> None:
    store = MemoryStore()
    visitor = new_id()
    one, two = Ledger(store), Ledger(store)
    one.start()
    two.start()
    first, second = await one.open("demo", visitor), await two.open("demo", visitor)
    tab_a, tab_b = new_id(), new_id()
    fa = one.submit(first, [page_view(1, tab_a)], VisitContext(visitor, tab_a), site, 1.0)
    fb = two.submit(second, [page_view(1, tab_b)], VisitContext(visitor, tab_b), site, 2.0)
    await asyncio.gather(fa, fb)
    assert one.conflicts + two.conflicts == 1
    stored = await store.load("demo", visitor)
    assert stored is not None
    assert stored.profile.pageviews == 2 and stored.version == 2
    for ledger, hot in ((one, first), (two, second)):
        ledger.release(hot)
        await ledger.stop()


async def test_duplicates_resolve_at_once_when_already_stored(site: Site) -> None:
    store = MemoryStore()
    ledger = Ledger(store)
    ledger.start()
    visitor, session = new_id(), new_id()
    ctx = VisitContext(visitor, session)
    hot = await ledger.open("demo", visitor)
    await ledger.submit(hot, [page_view(1, session)], ctx, site, 1.0)
    batches = ledger.batches
    again = ledger.submit(hot, [page_view(1, session)], ctx, site, 2.0)
    assert again.done()
    profile: Profile | None = again.result()
    assert profile is not None and profile.pageviews == 1
    assert ledger.batches == batches
    ledger.release(hot)
    await ledger.stop()


def test_fold_equals_sequential_apply(site: Site) -> None:
    """The invariant the ledger relies on when it rebases."""
    visitor, session = new_id(), new_id()
    ctx = VisitContext(visitor, session)
    events = [page_view(i, session) for i in range(1, 6)]
    profile = None
    for event in events:
        profile = apply(profile, event, ctx, site, 10.0)
    again = profile
    for event in events:
        again = apply(again, event, ctx, site, 11.0)
    assert again is profile


class GatedStore(MemoryStore):
    """Holds every commit until ``gate`` is set: a write stays in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def commit(self, writes: Sequence[Write]) -> list[Conflict | None]:
        self.started.set()
        await self.gate.wait()
        return await super().commit(writes)


async def test_a_duplicate_during_a_write_does_not_wedge_the_flusher(site: Site) -> None:
    """Issue 12, item 0: a message of duplicates arriving while the same
    profile's write is in flight left it dirty with nothing pending, and the
    next flush died on ``pending[-1]``: nothing was stored again."""
    store = GatedStore()
    ledger = Ledger(store)
    ledger.start()
    visitor, session = new_id(), new_id()
    ctx = VisitContext(visitor, session)
    hot = await ledger.open("demo", visitor)
    first = ledger.submit(hot, [page_view(1, session)], ctx, site, 1.0)
    await store.started.wait()  # the write of event 1 is in flight
    resent = ledger.submit(hot, [page_view(1, session)], ctx, site, 1.5)  # a duplicate
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(first, resent), 2)
    # The flusher still works: another visitor's event is stored.
    other, other_session = new_id(), new_id()
    hot2 = await ledger.open("demo", other)
    ctx2 = VisitContext(other, other_session)
    later = ledger.submit(hot2, [page_view(1, other_session)], ctx2, site, 2.0)
    profile = await asyncio.wait_for(later, 2)
    assert profile is not None and profile.pageviews == 1
    ledger.release(hot)
    ledger.release(hot2)
    await ledger.stop()
    assert ledger.hot_count == 0


async def test_a_change_of_a_profile_erased_meanwhile_is_answered(site: Site) -> None:
    """A pure change (edge.core.offers) pending on a profile that another process
    erased folds to no profile: nothing to write, and its message is answered
    (it once stayed dirty forever, and its message never got an answer)."""
    store = MemoryStore()
    one, two = Ledger(store), Ledger(store)
    one.start()
    two.start()
    visitor, session = new_id(), new_id()
    ctx = VisitContext(visitor, session)
    hot = await one.open("demo", visitor)
    await one.submit(hot, [page_view(1, session)], ctx, site, 1.0)
    assert await store.erase("demo", visitor)  # by another process

    def change(profile: Profile | None) -> Profile | None:
        return None if profile is None else offers.record(profile, [("c", "a", 0)], 2.0, 20)

    answered = one.submit_change(hot, change, site, 2.0)
    assert await asyncio.wait_for(answered, 2) is None
    assert one.check_invariants() == [] and one.anomalies == 0
    assert await store.load("demo", visitor) is None
    one.release(hot)
    for ledger in (one, two):
        await ledger.stop()
    assert one.hot_count == 0
