"""What both ingest paths (WebSocket and beacon) share: the services they
need, origin checks, and turning one ``events`` message into stored events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from edge.aliases import Aliases
from edge.breaker import by_deadline
from edge.decisioning.attributes import Page
from edge.decisioning.engine import Decision, decide
from edge.errors import ProtocolError
from edge.identity import customer_visitor
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


class Holder(Protocol):
    """What holds a visitor's hot profile (a connection, a beacon request):
    ``process`` moves it to the customer's profile on a verified identify."""

    hot: Hot | None


@dataclass
class Holding:
    hot: Hot | None = None


def segments(events: Sequence[p.Event], site: str) -> list[tuple[str | None, list[p.Event]]]:
    """``events`` cut before each verified identify: (the customer profile
    they go to from there on, or None for "where they went before", events)."""
    out: list[tuple[str | None, list[p.Event]]] = [(None, [])]
    for event in events:
        if isinstance(event, p.Identify) and event.customer_id is not None:
            out.append((customer_visitor(site, event.customer_id), []))
        out[-1][1].append(event)
    return out if out[0][1] else out[1:]


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
    aliases: Aliases = field(init=False)

    def __post_init__(self) -> None:
        self.aliases = Aliases(self.ledger, self.settings.ack_timeout_s)

    async def open(self, site: Site, visitor: str) -> Hot:
        """The visitor's hot profile: its own, or its customer's once aliased."""
        return await self.aliases.resolve(site, visitor, self.clock())

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
        holder: Holder,
        batch: p.Batch,
        ctx: VisitContext,
        site: Site,
        *,
        page: Page | None = None,
        deadline: float | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Store a batch; returns the messages to send first (errors, revealed
        coupons) and the acknowledging answer.

        ``holder.hot`` is None when nothing may be stored (no consent): events
        are then acknowledged and dropped. A verified identify moves the holder
        to the customer's profile (``edge.aliases``) before it is applied.
        Beacons (``page=None``) get a bare ``ack``: their page is going away.
        Raises ``TimeoutError`` if the store did not take the events within
        ``ack_timeout_s``, ``StoreUnavailable`` at once when it is known to
        be down (they stay queued either way).
        ``deadline`` (loop time): past it, a coupon claim still in flight is
        waited for only while the store is answering (``TimeoutError`` then;
        the claim goes on in the background), and recommendations come from
        the catalog alone. A write that hangs is the ledger's to notice
        (``Ledger.stall_after_s``).
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
        if holder.hot is not None:
            applied: list[tuple[Profile | None, Profile, p.Event]] = []
            try:
                profile = await self._store(holder, accepted, ctx, site, now, applied)
            finally:
                # Also when the answer is the fallback: what was applied stays
                # pending and is stored later, and a resend of it is a duplicate
                # (not applied again), so this is its only chance to count.
                self.widgets.learn(site, applied, now)
                self.automate(site, applied, now)  # automation events (edge.automation)
        before = errors + await self._reveal(accepted, ctx, site, deadline)
        seq = batch.highest_seq
        wanted = triggers(accepted) if page is not None else []
        if not wanted:
            return before, p.ack(seq)
        assert page is not None
        chosen = decide_all(profile, ctx, site, now, page, wanted, self.widgets.unavailable(site))
        items = await self.widgets.render(chosen, profile, ctx, site, page, deadline=deadline)
        return before, p.decisions(items, seq=seq)

    def store_answering(self) -> bool:
        """Worth waiting past the answer deadline for: no write failed or
        hung since the last that returned, and the store's breaker is closed."""
        return self.ledger.available

    def _limit(self) -> float:
        """The loop time past which nobody waits for the store (``ack_timeout_s``)."""
        return asyncio.get_running_loop().time() + self.settings.ack_timeout_s

    async def _store(
        self,
        holder: Holder,
        events: Sequence[p.Event],
        ctx: VisitContext,
        site: Site,
        now: float,
        applied: list[tuple[Profile | None, Profile, p.Event]],
    ) -> Profile | None:
        """Submit ``events`` to the holder's profile, following it to the
        customer's profile at each verified identify; wait until all are stored."""
        futures = []
        for target, part in segments(events, site.id):
            if target is not None:
                await self._move(holder, site, ctx, target, now)
            hot = holder.hot
            assert hot is not None
            if hot.current is not None and hot.current.sealed:  # another tab linked it
                await self._move(holder, site, ctx, None, now)
                hot = holder.hot
                assert hot is not None
            submitted = hot.submitted
            # a customer profile created by these events is that customer's
            own = ctx if hot.visitor == ctx.visitor else replace(ctx, visitor=hot.visitor)
            futures.append(self.ledger.submit(hot, part, own, site, now, applied))
            self.counters.duplicates += len(part) - (hot.submitted - submitted)
        profile = None
        for future in futures:
            profile = await self.ledger.settle(future, self.settings.ack_timeout_s)
        return profile

    async def _move(
        self, holder: Holder, site: Site, ctx: VisitContext, target: str | None, now: float
    ) -> None:
        """Hold ``target`` (linking this device to it) or, with None, wherever
        this device's alias now points."""
        old = holder.hot
        assert old is not None
        if target is not None and old.visitor == target:
            return  # already on this customer's profile
        if target is None:
            new = await self.aliases.resolve(site, ctx.visitor, now)
        else:
            new = await self.aliases.link(site, ctx.visitor, target, now)
        holder.hot = new  # never sealed: customer profiles are not (edge.aliases)
        self.ledger.release(old)

    async def _reveal(
        self, events: Sequence[p.Event], ctx: VisitContext, site: Site, deadline: float | None
    ) -> list[dict[str, Any]]:
        """A ``coupon`` message for each coupon form the visitor submitted.
        ``TimeoutError`` past ``deadline`` while the store is not answering:
        the answer is the fallback, the tracker resends, and the resent
        convert reveals the same code (a visitor's claim is theirs)."""
        messages = []
        for event in events:
            if isinstance(event, p.Widget) and event.action == "convert":
                reveal = self.widgets.reveal(site, event.campaign, event.variant, event.step, ctx)
                if deadline is not None:
                    reveal = by_deadline(
                        reveal, deadline, patience=self.store_answering, limit=self._limit()
                    )
                message = await reveal
                if message is not None:
                    messages.append(message)
        return messages
