"""The automation shell: derives events from what ingest stored, publishes
them in the background, claims due deadlines (abandoned carts and the timed
kinds: browse abandonment, customers away, churn risk), sends webhooks.

Like ``WidgetService.learn``, ``observe`` only queues: nobody waits for the
stream, and the events themselves are already stored. A failed write is
logged and the batch is dropped (the profiles hold the truth).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from edge.automation.config import automation_of
from edge.automation.store import AutomationStore, Deadline, member
from edge.automation.webhooks import Delivery, Poster, dead_record, deliver, post
from edge.core.automation import (
    AutomationEvent,
    cart_payload,
    customer_of,
    deadline,
    derive,
    segment_events,
    timed,
)
from edge.core.profile import Profile
from edge.core.site import Site

log = logging.getLogger(__name__)

RECENT = 10_000  # converted coupon campaigns remembered until their reveal
MAX_DELIVERIES = 8  # webhook requests in flight per process


class AutomationService:
    def __init__(
        self,
        store: AutomationStore,
        *,
        claim_interval_s: float = 5.0,
        webhook_attempts: int = 5,
        webhook_backoff_s: float = 1.0,
        webhook_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        env: Mapping[str, str] | None = None,
        poster: Poster = post,
    ) -> None:
        self.store = store
        self._interval_s = claim_interval_s
        self._attempts = max(1, webhook_attempts)
        self._backoff_s = webhook_backoff_s
        self._timeout_s = webhook_timeout_s
        self._clock = clock
        self._env = env
        self._poster = poster
        self._events: dict[str, list[AutomationEvent]] = {}
        self._deadlines: dict[str, list[Deadline]] = {}
        self._sites: dict[str, Site] = {}
        self._converted: OrderedDict[tuple[str, str, str], str | None] = OrderedDict()
        self._recorder: asyncio.Task[None] | None = None
        self._claimer: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_DELIVERIES)
        # Reports a crash of the recorder (edge.runtime.supervisor); the next event restarts it.
        self.on_task: Callable[[str, asyncio.Task[None]], None] = lambda name, task: None

    # --- from ingest ---------------------------------------------------------

    def observe(
        self, site: Site, applied: Sequence[tuple[Profile | None, Profile, Any]], now: float
    ) -> None:
        """Queue the automation events and deadline changes of stored events."""
        if not applied:
            return
        cfg = automation_of(site)
        kept = {s.id for s in site.decisioning.kept}
        events: list[AutomationEvent] = []
        deadlines: list[Deadline] = []
        for before, after, event in applied:
            events += derive(site.id, before, after, event, cfg, site.intelligence, now, kept)
            change = deadline(before, after, event, cfg)
            if change is not None:
                due = change[1]
                cart = {"customer": customer_of(after), "payload": cart_payload(after.cart)}
                deadlines.append((after.visitor, due, cart if due is not None else None))
            for kind, due, payload in timed(before, after, event, cfg, site.intelligence):
                data = {"customer": customer_of(after), "payload": payload}
                deadlines.append((member(kind, after.visitor), due, data if due else None))
        for e in events:
            if e.type == "widget_converted":
                self._remember((site.id, e.visitor, str(e.payload["campaign"])), e.customer)
        if events:
            self._events.setdefault(site.id, []).extend(events)
        if deadlines:
            self._deadlines.setdefault(site.id, []).extend(deadlines)
        if events or deadlines:
            self._sites[site.id] = site
            if self._recorder is None or self._recorder.done():
                self._recorder = asyncio.get_running_loop().create_task(self._record())
                self.on_task("automation-recorder", self._recorder)

    def changed(
        self, site: Site, before: Profile | None, after: Profile | None, now: float
    ) -> None:
        """Queue the automation events of a stored change that is no event
        (``Ledger.submit_change``: a property set by the admin API, a
        membership backfill): what it did to kept segments. Called once per
        change, with the hot copy before and after it, like ``observe``."""
        if after is None or after is before:
            return
        kept = {s.id for s in site.decisioning.kept}
        events = segment_events(site.id, before, after, now, kept)
        if events:
            self._events.setdefault(site.id, []).extend(events)
            self._sites[site.id] = site
            if self._recorder is None or self._recorder.done():
                self._recorder = asyncio.get_running_loop().create_task(self._record())
                self.on_task("automation-recorder", self._recorder)

    def coupon_issued(self, site: Site, campaign: str, visitor: str, code: str | None) -> None:
        """From ``WidgetService.reveal``: once per stored conversion of a coupon
        form that got a code (a resent form, or one without consent, is not
        an issue: ``observe`` did not see a new conversion)."""
        key = (site.id, visitor, campaign)
        if code is None or key not in self._converted:
            return
        customer = self._converted.pop(key)
        event = AutomationEvent(
            "coupon_issued",
            site.id,
            visitor,
            self._clock(),
            customer,
            {"campaign": campaign, "code": code},
        )
        self._events.setdefault(site.id, []).append(event)
        self._sites[site.id] = site
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.get_running_loop().create_task(self._record())
            self.on_task("automation-recorder", self._recorder)

    def _remember(self, key: tuple[str, str, str], customer: str | None) -> None:
        self._converted[key] = customer
        self._converted.move_to_end(key)
        while len(self._converted) > RECENT:
            self._converted.popitem(last=False)

    async def _record(self) -> None:
        while self._events or self._deadlines:
            events, self._events = self._events, {}
            deadlines, self._deadlines = self._deadlines, {}
            for site_id, changes in deadlines.items():
                try:
                    await self.store.schedule(site_id, _last_per_member(changes))
                except Exception:  # a missed reminder; logged
                    log.exception(
                        "site %s: recording %d automation deadlines failed", site_id, len(changes)
                    )
            for site_id, batch in events.items():
                try:
                    await self.store.publish(site_id, batch)
                except Exception:  # the stream misses these; profiles are stored; logged
                    log.exception(
                        "site %s: publishing %d automation events failed", site_id, len(batch)
                    )
                self._send(self._sites[site_id], batch)
            await asyncio.sleep(0.05)  # let a batch gather

    # --- due deadlines: abandoned carts, timed automation -----------------------

    def start(self, sites: Callable[[], Iterable[Site]]) -> None:
        """Claim due deadlines every ``claim_interval_s`` (every process
        does; the claim is atomic)."""
        if self._interval_s > 0 and self._claimer is None:
            self._claimer = asyncio.get_running_loop().create_task(self._claim_loop(sites))

    async def _claim_loop(self, sites: Callable[[], Iterable[Site]]) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.claim(sites(), self._clock())
            except Exception:  # retried on the next tick; logged
                log.exception("claiming due automation deadlines failed")

    async def claim(self, sites: Iterable[Site], now: float) -> list[AutomationEvent]:
        """Emit ``cart_abandoned`` for every deadline due at ``now``."""
        claimed: list[AutomationEvent] = []
        for site in sites:
            automation_of(site)  # keep the compiled section warm for the hot path
            while True:
                events = await self.store.claim_due(site.id, now)
                claimed += events
                self._send(site, events)
                if len(events) < 100:
                    break
        return claimed

    # --- webhooks ----------------------------------------------------------------

    def _send(self, site: Site, events: Sequence[AutomationEvent]) -> None:
        hooks = automation_of(site).webhooks
        for hook in hooks:
            for event in events:
                if hook.wants(event.type):
                    task = asyncio.get_running_loop().create_task(
                        self._deliver(Delivery.of(site.id, hook, event))
                    )
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        env = os.environ if self._env is None else self._env
        secret = env.get(delivery.hook.secret_env)
        async with self._slots:
            if not secret:
                delivered, tries, error = False, 0, f"{delivery.hook.secret_env} is not set"
            else:
                delivered, tries, error = await deliver(
                    delivery,
                    secret.encode(),
                    attempts=self._attempts,
                    backoff_s=self._backoff_s,
                    timeout_s=self._timeout_s,
                    poster=self._poster,
                    clock=self._clock,
                )
        if delivered:
            return
        log.warning(
            "site %s: webhook %s failed after %d tries (%s); dead-lettered",
            delivery.site,
            delivery.hook.url,
            tries,
            error,
        )
        try:
            await self.store.dead_letter(
                delivery.site, dead_record(delivery, tries, error, self._clock())
            )
        except Exception:
            log.exception("site %s: recording a dead letter failed", delivery.site)

    async def drain(self) -> None:
        """Wait for queued events and in-flight deliveries (tests, shutdown)."""
        if self._recorder is not None:
            await asyncio.gather(self._recorder, return_exceptions=True)
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def close(self, grace_s: float = 2.0) -> None:
        if self._claimer is not None:
            self._claimer.cancel()
            await asyncio.gather(self._claimer, return_exceptions=True)
        try:
            await asyncio.wait_for(self.drain(), grace_s)
        except TimeoutError:  # retries still waiting: given up at shutdown; logged
            log.warning("%d webhook deliveries abandoned at shutdown", len(self._deliveries))
            for task in list(self._deliveries):
                task.cancel()


def _last_per_member(changes: Sequence[Deadline]) -> list[Deadline]:
    """One change per deadline (kind and visitor), the latest."""
    latest: dict[str, Deadline] = {}
    for change in changes:
        latest.pop(change[0], None)
        latest[change[0]] = change
    return list(latest.values())
