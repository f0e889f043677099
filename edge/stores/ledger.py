"""Hot profiles and group commit: how ingest meets the store.

The naive design (one store round trip per message) caps a process near
3,700 messages/s on this kind of machine, and redis-py's pool then fails
under load. Instead:

* A visitor's profile is *hot* in this process while one of its connections
  is open. Events are applied to it at once (``edge.core.updates.apply``, pure) and
  remembered as *pending* until stored.
* One flusher task writes every dirty profile in one batch (one pipeline of
  compare-and-set scripts) as soon as the previous batch returned: group
  commit. Under load batches grow and round trips per event shrink; when idle,
  a lone event is written at once.
* A message is acknowledged only after the batch holding its events returned
  (at-least-once in). A lost compare-and-set (another process wrote the
  profile) re-reads the stored profile and re-applies the pending events on
  top of it, then writes again: no lost updates, and since the replay window
  lives in the profile, no event is applied twice (exactly-once applied).

When the store fails (docs/operations.md, "Store outages") nothing is
dropped: the profiles stay dirty and the flusher retries with backoff. The
ledger is then *degraded* until a write succeeds again: every message waiting
for a write is told at once (``StoreUnavailable``), and new ones are not made
to wait, so visitors get a fallback answer without an ``ack`` and resend; the
resent events are duplicates of the pending ones and are stored once.

Invariants, for each hot profile ``h`` (``check_invariants`` tests them):
  ``h.current == fold(apply, h.base, h.pending)``;
  ``len(h.pending) == h.submitted - h.flushed``;
  ``h.version`` is the store version ``h.base`` was read or written at;
  ``h`` is in the dirty set only while it has pending updates, and always
  then unless its write is in flight (a duplicate arriving during that write
  once left it dirty with nothing pending, and the flusher died on it);
  every waiter waits for an update not yet stored (``target > h.flushed``);
  at most one write of ``h`` is in flight (there is one flusher), and the
  flusher runs under ``edge.runtime.supervisor``: a bug in it is logged, counted and
  restarted, never a silent end of all storing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge.core.context import VisitContext
from edge.core.events import Event
from edge.core.profile import Profile
from edge.core.site import Site
from edge.core.updates import apply
from edge.errors import ProfileMoved, StoreError
from edge.runtime.breaker import StallWatch
from edge.runtime.supervisor import Supervisor
from edge.stores.base import ProfileStore, Stored, StoreUnavailable, Write

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (site id, visitor id)
# An event as it was stored: (site, profile before it, after it, event, time).
Applied = tuple[Site, Profile | None, Profile, Event, float]


Change = Callable[[Profile | None], Profile | None]


@dataclass(eq=False)
class Pending:
    """One queued update: an event (folded in by ``apply``), or a ``change``,
    a pure function of the profile (the identity merge steps of
    ``edge.core.merge``), which must give the same result when re-applied on a
    newer stored profile."""

    event: Event | None
    ctx: VisitContext | None
    site: Site
    now: float
    change: Change | None = None
    # The profile before and after this update, in the fold that is (to be)
    # written: set when it is applied, and again on every rebase.
    before: Profile | None = None
    after: Profile | None = None

    def redo(self, profile: Profile | None) -> Profile | None:
        if self.change is not None:
            self.before, self.after = profile, self.change(profile)
        else:
            assert self.event is not None and self.ctx is not None
            self.before = profile
            self.after = apply(profile, self.event, self.ctx, self.site, self.now)
        return self.after

    def applied(self) -> Applied | None:
        """This event as stored, when it changed the profile."""
        if self.event is None or self.after is None or self.after is self.before:
            return None
        return (self.site, self.before, self.after, self.event, self.now)


@dataclass(eq=False)
class Hot:
    site: str
    visitor: str
    base: Profile | None
    version: int
    current: Profile | None
    pending: deque[Pending] = field(default_factory=deque)
    submitted: int = 0  # pending events ever queued
    flushed: int = 0  # of those, how many are stored
    refs: int = 0
    waiters: list[tuple[int, asyncio.Future[Profile | None]]] = field(default_factory=list)
    config: Site | None = None  # the site configuration of the latest update (its TTLs)
    rebases: int = 0  # lost compare-and-sets: another writer's changes came in

    @property
    def key(self) -> Key:
        return (self.site, self.visitor)


class Ledger:
    def __init__(
        self,
        store: ProfileStore,
        *,
        max_batch: int = 512,
        retry_backoff_s: Sequence[float] = (0.05, 0.1, 0.25, 0.5),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self._hot: dict[Key, Hot] = {}
        self._loading: dict[Key, asyncio.Future[Stored | None]] = {}
        self._dirty: dict[Key, Hot] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._max_batch = max_batch
        self._backoff = tuple(retry_backoff_s)
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.conflicts = 0
        self.store_errors = 0
        self.degraded = False  # the last write failed, and none succeeded since
        self._settling: set[asyncio.Future[Profile | None]] = set()  # messages in ``settle``
        self._in_flight: set[Key] = set()  # profiles whose write the flusher awaits
        self.anomalies = 0  # dirty profiles found with nothing to write (a broken invariant)
        self.observe_batch: Callable[[float], None] = lambda seconds: None  # metrics hook
        # A write the watch finds hung counts as failed for the messages waiting
        # on it (a hung store answers nothing before its socket deadline): they
        # get the fallback, and the ledger is degraded until a write returns.
        # None: only failed writes do that (docs/operations.md, "Store outages").
        self.stall_watch: StallWatch | None = None
        # Told of the events each write stored, each as it was applied on what
        # the store held (after any rebase): what follows from an event for
        # everyone (campaign statistics) is counted here, so an event that a
        # rebase turns into a no-op (another process stored the same
        # conversion first) counts nothing, and each stored one counts once.
        self.on_stored: Callable[[Sequence[Applied]], None] = lambda applied: None

    # --- lifecycle ---------------------------------------------------------

    def start(self, supervisor: Supervisor | None = None) -> None:
        if self._task is None:
            if supervisor is not None:
                self._task = supervisor.start("flusher", self._flusher)
            else:
                self._task = asyncio.get_running_loop().create_task(
                    self._flusher(), name="edge-flusher"
                )

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is pending; False if the store would not take it in time."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float = 10.0) -> None:
        drained = await self.drain(timeout_s)
        if not drained:
            log.error("shutting down with %d profiles not stored", len(self._dirty))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def available(self) -> bool:
        """False while writes are failing or the store's breaker is not closed:
        callers should answer without waiting for the store."""
        return not self.degraded and bool(getattr(self.store, "available", True))

    async def settle(
        self, future: asyncio.Future[Profile | None], timeout_s: float
    ) -> Profile | None:
        """Wait for ``submit``'s future. Raises ``StoreUnavailable`` at once
        when the store is known to be down, or as soon as a write fails while
        waiting, and ``TimeoutError`` after ``timeout_s``. Either way the
        events stay pending and are stored when the store is back."""
        if future.done():
            return future.result()
        if not self.available:
            future.cancel()  # this message's own: the ledger skips it
            raise StoreUnavailable("profile store unavailable")
        self._settling.add(future)
        try:
            return await _within(future, timeout_s)
        finally:
            self._settling.discard(future)

    # --- hot profiles --------------------------------------------------------

    @property
    def hot_count(self) -> int:
        return len(self._hot)

    async def open(self, site: str, visitor: str) -> Hot:
        """Make the visitor's profile hot (loading it once) and hold it."""
        key = (site, visitor)
        hot = self._hot.get(key)
        if hot is None:
            if self.degraded and self._dirty:  # the flusher is retrying: it probes
                raise StoreUnavailable("profile store unavailable")
            stored = await self._load(key)
            hot = self._hot.get(key)  # another open may have won while we waited
            if hot is None:
                profile = stored.profile if stored else None
                hot = Hot(site, visitor, profile, stored.version if stored else 0, profile)
                self._hot[key] = hot
        hot.refs += 1
        return hot

    async def _load(self, key: Key) -> Stored | None:
        loading = self._loading.get(key)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[Stored | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            stored = await self.store.load(*key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so no "never retrieved" warning
            raise
        finally:
            del self._loading[key]
        future.set_result(stored)
        return stored

    def release(self, hot: Hot) -> None:
        hot.refs -= 1
        self._maybe_evict(hot)

    def _maybe_evict(self, hot: Hot) -> None:
        if hot.refs <= 0 and not hot.pending and self._hot.get(hot.key) is hot:
            del self._hot[hot.key]

    async def forget(self, site: str, visitor: str, timeout_s: float = 5.0) -> bool:
        """Drop the visitor's hot copy (erasure). Call it after the store's
        ``forget``: the writes still pending are then dropped by the store's
        tombstone. Waits until no write of the profile is in flight (clearing
        the copy under a write would break the invariants above), then clears
        it at once. A connection still holding the ``Hot`` starts over from
        no profile; what it writes is dropped by the tombstone too. False if
        the visitor was not hot, or the store did not take the pending writes
        within ``timeout_s`` (the copy is then left as it is)."""
        key = (site, visitor)
        hot = self._hot.get(key)
        if hot is None:
            return False
        deadline = asyncio.get_running_loop().time() + timeout_s
        while hot.pending:  # a write is queued or in flight: let it land (and be dropped)
            done: asyncio.Future[Profile | None] = asyncio.get_running_loop().create_future()
            hot.waiters.append((hot.submitted, done))
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(done, max(left, 0.0))
            except TimeoutError:
                return False
        # Nothing pending, so nothing in flight: clear it in one step.
        self._dirty.pop(key, None)
        hot.base = hot.current = None
        hot.version = 0
        if self._hot.get(key) is hot:
            del self._hot[key]
        return True

    # --- ingest --------------------------------------------------------------

    def submit(
        self,
        hot: Hot,
        events: Sequence[Event],
        ctx: VisitContext,
        site: Site,
        now: float,
        applied: list[tuple[Profile | None, Profile, Event]] | None = None,
    ) -> asyncio.Future[Profile | None]:
        """Apply ``events`` now; the future resolves once they are stored.

        It resolves with the stored profile, at once when nothing new had to be
        stored (all duplicates of events already stored). ``applied`` collects
        (before, after, event) of each event that changed the profile, for the
        side effects that follow from it (shared recommendation signals).
        Raises ``ProfileMoved`` when the profile is sealed (merged into a
        customer's, ``edge.core.merge``): events go to that profile instead.
        """
        if hot.current is not None and hot.current.sealed and events:
            raise ProfileMoved(f"visitor merged into {hot.current.merged_into}")
        for event in events:
            updated = apply(hot.current, event, ctx, site, now)
            if updated is not hot.current:
                if applied is not None:
                    applied.append((hot.current, updated, event))
                hot.pending.append(Pending(event, ctx, site, now, None, hot.current, updated))
                hot.current = updated
                hot.submitted += 1
                hot.config = site
        return self._wait_stored(hot)

    def submit_change(
        self, hot: Hot, change: Change, site: Site, now: float
    ) -> asyncio.Future[Profile | None]:
        """Queue a pure ``change`` of the profile (re-applied on a newer stored
        profile after a lost compare-and-set); the future resolves once stored."""
        updated = change(hot.current)
        if updated is not hot.current:
            hot.current = updated
            hot.pending.append(Pending(None, None, site, now, change))
            hot.submitted += 1
            hot.config = site
        return self._wait_stored(hot)

    def _wait_stored(self, hot: Hot) -> asyncio.Future[Profile | None]:
        future: asyncio.Future[Profile | None] = asyncio.get_running_loop().create_future()
        if hot.flushed >= hot.submitted:
            future.set_result(hot.current)
        else:
            hot.waiters.append((hot.submitted, future))
            self._mark_dirty(hot)
        return future

    def _mark_dirty(self, hot: Hot) -> None:
        self._dirty[hot.key] = hot
        self._idle.clear()
        self._wake.set()

    # --- the flusher -----------------------------------------------------------

    async def _flusher(self) -> None:
        failures = 0
        while True:
            if not self._dirty:  # (after a restart by the supervisor, work may be waiting)
                self._idle.set()
                await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                try:
                    await self._flush_once()
                    if self.degraded and failures:
                        log.warning("store writes succeed again after %d failures", failures)
                    elif self.degraded:  # the stall watch had given up waiting on this write
                        log.warning("a stalled store write returned")
                    failures = 0
                    self.degraded = False
                except StoreError as exc:
                    self.store_errors += 1
                    self.degraded = True
                    self._fail_waiters(exc)
                    delay = self._backoff[min(failures, len(self._backoff) - 1)]
                    failures += 1
                    if failures == 1 or not isinstance(exc, StoreUnavailable):
                        log.warning("store write failed (%s); retrying in %.2fs", exc, delay)
                    await asyncio.sleep(delay)

    def _fail_waiters(self, exc: StoreError) -> None:
        """Tell every message waiting in ``settle`` that its write will not come
        soon. The events stay pending (and dirty): a later try stores them."""
        for future in self._settling:
            if not future.done():  # the ledger skips a done future when it stores
                future.set_exception(StoreUnavailable(f"profile store unavailable: {exc}"))

    async def _flush_once(self) -> None:
        batch = list(self._dirty.values())[: self._max_batch]
        for hot in batch:
            del self._dirty[hot.key]
        snapshot = []
        for hot in batch:
            if not hot.pending or hot.config is None:  # the invariant says never: say so, heal
                self.anomalies += 1
                log.error("ledger: %s was dirty with nothing to write", hot.key)
                self._maybe_evict(hot)
            elif hot.current is None:  # the pending changes leave no profile: nothing to store
                self._stored_nothing(hot)
            else:
                snapshot.append((hot, hot.current, hot.submitted, hot.config))
        writes = [
            Write(
                hot.site,
                hot.visitor,
                hot.version,
                profile,
                # a device aliased to a customer lives as long as a known visitor
                config.ttl_s(profile.identified or profile.sealed),
            )
            for hot, profile, _, config in snapshot
            if profile is not None and config is not None  # (for mypy: filtered above)
        ]
        started = time.perf_counter()
        watch = self.stall_watch.start(self._stalled) if self.stall_watch else None
        self._in_flight = {hot.key for hot, *_ in snapshot}
        try:
            results = await self.store.commit(writes)
        except BaseException:
            for hot, *_ in snapshot:  # nothing was lost: they stay dirty and are retried
                self._dirty.setdefault(hot.key, hot)
            raise
        finally:
            self._in_flight = set()
            if watch is not None:
                watch.cancel()
        self.batches += 1
        self.observe_batch(time.perf_counter() - started)
        for (hot, profile, upto, _), result in zip(snapshot, results, strict=True):
            if result is None:
                assert profile is not None
                self._stored(hot, profile, upto)
            else:
                self.conflicts += 1
                self._rebase(hot, result.current)

    def check_invariants(self) -> list[str]:
        """The invariants of the module docstring that do not hold now (for
        tests: it re-applies every pending update, too slow for production)."""
        broken = [f"{self.anomalies} dirty profiles had nothing to write"] if self.anomalies else []
        for key, hot in self._hot.items():
            if len(hot.pending) != hot.submitted - hot.flushed:
                unflushed = hot.submitted - hot.flushed
                broken.append(f"{key}: {len(hot.pending)} pending, {unflushed} unflushed")
            folded = hot.base
            for pending in hot.pending:
                folded = pending.redo(folded)
            if folded != hot.current:
                broken.append(f"{key}: current is not base + pending")
            if hot.pending and key not in self._dirty and key not in self._in_flight:
                broken.append(f"{key}: pending but neither dirty nor being written")
            if any(t <= hot.flushed and not f.done() for t, f in hot.waiters):
                broken.append(f"{key}: a waiter waits for what is already stored")
        for key, hot in self._dirty.items():
            if not hot.pending:
                broken.append(f"{key}: dirty with nothing pending")
            if self._hot.get(key) is not hot and hot.refs > 0:
                broken.append(f"{key}: dirty but not the hot copy")
        return broken

    def _stalled(self) -> None:
        self.degraded = True
        self._fail_waiters(StoreUnavailable("profile store not answering"))

    def _stored(self, hot: Hot, profile: Profile, upto: int) -> None:
        hot.version += 1
        hot.base = profile
        stored = [hot.pending.popleft() for _ in range(upto - hot.flushed)]
        hot.flushed = upto
        self._tell_stored(stored)
        ready = [f for target, f in hot.waiters if target <= upto]
        hot.waiters = [(t, f) for t, f in hot.waiters if t > upto]
        for future in ready:
            if not future.done():
                future.set_result(profile)
        if hot.pending:
            self._mark_dirty(hot)
        else:
            # A message of duplicates that came during this write marked it
            # dirty; with nothing pending it must leave the dirty set now.
            self._dirty.pop(hot.key, None)
            self._maybe_evict(hot)

    def _tell_stored(self, stored: Sequence[Pending]) -> None:
        applied = [a for a in (p.applied() for p in stored) if a is not None]
        if not applied:
            return
        try:
            self.on_stored(applied)
        except Exception:  # a bug there must not stop the storing; logged
            log.exception("ledger: on_stored failed for %d events", len(applied))

    def _stored_nothing(self, hot: Hot) -> None:
        """Pending changes that fold to no profile at all (a change of a
        profile erased meanwhile): there is nothing to write, so they are
        done, and their messages are answered."""
        hot.pending.clear()
        hot.flushed = hot.submitted
        waiters, hot.waiters = hot.waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_result(None)
        self._maybe_evict(hot)

    def _rebase(self, hot: Hot, stored: Stored | None) -> None:
        """Another writer won: re-apply our pending events on what it stored.

        If it sealed the profile (merged it into a customer's), nothing may be
        applied to it any more: every pending update is dropped unstored and
        its messages are told so (``ProfileMoved``, no ``ack``); the tracker
        resends the events, and they go to the customer's profile."""
        hot.base = stored.profile if stored else None
        hot.version = stored.version if stored else 0
        hot.rebases += 1
        if hot.base is not None and hot.base.sealed:
            self._moved(hot)
            return
        current = hot.base
        for p in hot.pending:
            current = p.redo(current)
        hot.current = current
        self._mark_dirty(hot)

    def _moved(self, hot: Hot) -> None:
        hot.current = hot.base
        hot.pending.clear()
        hot.flushed = hot.submitted
        self._dirty.pop(hot.key, None)
        waiters, hot.waiters = hot.waiters, []
        target = hot.current.merged_into if hot.current is not None else None
        error = ProfileMoved(f"visitor merged into {target}")
        for _, future in waiters:
            if not future.done():
                future.set_exception(error)
        self._maybe_evict(hot)


async def _within(future: asyncio.Future[Profile | None], timeout_s: float) -> Profile | None:
    """Wait for the ledger's future, or raise ``TimeoutError``: a timer that
    cancels it, cheaper than ``wait_for(shield(...))`` (two more futures and a
    task per message). The future is the message's own; the ledger skips a
    cancelled one, so the events stay queued and are still stored."""
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        future.cancel()

    timer = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        return await future
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()
