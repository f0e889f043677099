"""What both ingest paths (WebSocket and beacon) share: the services they
need, origin checks, and turning one ``events`` message into stored events."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from edge.decisioning.attributes import Page
from edge.decisioning.engine import Decision, decide
from edge.errors import ProtocolError
from edge.ledger import Hot, Ledger
from edge.profile import Profile
from edge.registry import SiteRegistry
from edge.settings import Settings
from edge.sites import Site
from edge.tracker import protocol as p
from edge.tracker.context import VisitContext
from edge.tracker.useragent import classify
from edge.updates import check_event
from edge.widgets.service import WidgetService

# Event types after which the page's decisions may change; custom events
# additionally trigger the campaigns waiting for them; widget reports do neither.
PAGE_EVENTS = frozenset({"page_view", "product_view", "cart", "purchase", "identify"})


def may_store(site: Site, consent: bool | None) -> bool:
    """Consent given, or not asked for where the site does not require it."""
    return consent is True or (consent is None and not site.require_consent)


def triggers(events: Sequence[p.Event]) -> list[str]:
    """The decisions a batch asks for, in the engine's trigger names."""
    found = ["page_view"] if any(e.type in PAGE_EVENTS for e in events) else []
    for event in events:
        if isinstance(event, p.Custom) and f"event:{event.name}" not in found:
            found.append(f"event:{event.name}")
    return found


def next_page(page: Page, events: Sequence[p.Event]) -> Page:
    """The page the visitor is on after ``events`` (decisions target it)."""
    for event in events:
        if isinstance(event, p.PageView):
            page = Page(url=event.url or page.url, type=event.page_type)
        elif isinstance(event, p.ProductView):
            page = replace(
                page, type=page.type or "product", product=event.sku, category=event.category
            )
    return page


def decide_all(
    profile: Profile | None,
    ctx: VisitContext,
    site: Site,
    now: float,
    page: Page,
    wanted: Sequence[str],
    unavailable: frozenset[str] = frozenset(),
) -> list[Decision]:
    """Decisions for every trigger a batch asked for, each campaign once."""
    device = classify(ctx.user_agent).to_attributes()
    chosen: list[Decision] = []
    seen: set[str] = set()
    for trigger in wanted:
        for decision in decide(
            profile,
            ctx,
            site,
            now,
            trigger=trigger,
            page=page,
            device=device,
            unavailable=unavailable,
        ).items:
            if decision.campaign not in seen:
                seen.add(decision.campaign)
                chosen.append(decision)
    return chosen


@dataclass
class Counters:
    connections: int = 0
    messages: int = 0
    events: int = 0
    duplicates: int = 0
    refused: int = 0
    bots: int = 0  # robot connections and beacons: counted, never profiled
    close_codes: dict[int, int] = field(default_factory=dict)


@dataclass
class Ingest:
    settings: Settings
    registry: SiteRegistry
    ledger: Ledger
    widgets: WidgetService
    clock: Callable[[], float] = time.time
    counters: Counters = field(default_factory=Counters)
    latency: Callable[[str, float], None] = lambda site, seconds: None
    automate: Callable[[Site, Sequence[Any], float], None] = lambda site, applied, now: None

    def origin_allowed(self, site: Site, origin: str | None, host: str | None) -> bool:
        """Same-origin and listed origins pass; a missing Origin (not a browser)
        passes unless ``require_origin`` is set."""
        if origin is None:
            return not self.settings.require_origin
        origin = origin.rstrip("/").lower()
        if origin in site.allowed_origins:
            return True
        return host is not None and urlsplit(origin).netloc == host.lower()

    async def process(
        self,
        hot: Hot | None,
        batch: p.Batch,
        ctx: VisitContext,
        site: Site,
        *,
        page: Page | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Store a batch; returns the messages to send first (errors, revealed
        coupons) and the acknowledging answer.

        ``hot`` is None when nothing may be stored (no consent): events are then
        acknowledged and dropped. Beacons (``page=None``) get a bare ``ack``:
        their page is going away. Raises ``TimeoutError`` if the store did not
        take the events within ``ack_timeout_s``, ``StoreUnavailable`` at once
        when it is known to be down (they stay queued either way).
        """
        now = self.clock()
        errors = [p.error(e.code, e.message, seq=e.seq) for e in batch.errors]
        accepted = []
        for event in batch.events:
            try:
                check_event(event, site, now)
            except ProtocolError as exc:
                errors.append(p.error(exc.code, exc.message, seq=event.seq))
                continue
            accepted.append(event)
        self.counters.messages += 1
        self.counters.events += len(accepted)
        self.counters.refused += len(errors)
        profile: Profile | None = None
        if hot is not None:
            submitted = hot.submitted
            applied: list[tuple[Profile | None, Profile, p.Event]] = []
            future = self.ledger.submit(hot, accepted, ctx, site, now, applied)
            self.counters.duplicates += len(accepted) - (hot.submitted - submitted)
            profile = await self.ledger.settle(future, self.settings.ack_timeout_s)
            self.widgets.learn(site, applied, now)
            self.automate(site, applied, now)  # automation events (edge.automation)
        before = errors + await self._reveal(accepted, ctx, site)
        seq = batch.highest_seq
        wanted = triggers(accepted) if page is not None else []
        if not wanted:
            return before, p.ack(seq)
        assert page is not None
        chosen = decide_all(profile, ctx, site, now, page, wanted, self.widgets.unavailable(site))
        items = await self.widgets.render(chosen, profile, ctx, site, page)
        return before, p.decisions(items, seq=seq)

    async def _reveal(
        self, events: Sequence[p.Event], ctx: VisitContext, site: Site
    ) -> list[dict[str, Any]]:
        """A ``coupon`` message for each coupon form the visitor submitted."""
        messages = []
        for event in events:
            if isinstance(event, p.Widget) and event.action == "convert":
                message = await self.widgets.reveal(
                    site, event.campaign, event.variant, event.step, ctx
                )
                if message is not None:
                    messages.append(message)
        return messages
