"""What both ingest paths (WebSocket and beacon) share: the services they
need, origin checks, and turning one ``events`` message into stored events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from edge.config.registry import SiteRegistry
from edge.config.settings import Settings
from edge.core import offers
from edge.core.context import VisitContext
from edge.core.identity import customer_visitor
from edge.core.profile import Profile
from edge.core.properties import event_attributes
from edge.core.site import Site
from edge.core.updates import check_event, widget_refusal
from edge.decisioning.attributes import Page
from edge.decisioning.engine import NO_PAGE, Decision, decide, reveal_refusal
from edge.errors import ProtocolError
from edge.runtime.breaker import by_deadline
from edge.stores.aliases import Aliases
from edge.stores.ledger import Hot, Ledger
from edge.tracker import protocol as p
from edge.tracker.admission import Admission
from edge.tracker.geo import Geo
from edge.tracker.useragent import classify
from edge.widgets.service import Shown, WidgetService, coupon_of, nothing_to_recommend

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


def event_of(trigger: str, site: Site, events: Sequence[p.Event]) -> dict[str, Any] | None:
    """The ``event.*`` attributes of an ``event:<name>`` decision: the props
    of the batch's last custom event of that name, as declared (None for
    other triggers and for events not declared)."""
    if not trigger.startswith("event:"):
        return None
    specs = site.declared.events.get(trigger[6:])
    if specs is None:
        return None
    for event in reversed(events):
        if isinstance(event, p.Custom) and event.name == trigger[6:]:
            return event_attributes(event.props, specs)
    return None


def decide_all(
    profile: Profile | None,
    ctx: VisitContext,
    site: Site,
    now: float,
    page: Page,
    wanted: Sequence[str],
    unavailable: frozenset[str] = frozenset(),
    events: Sequence[p.Event] = (),
) -> list[Decision]:
    """Decisions for every trigger a batch asked for, each campaign once. A
    block of the shopper's own history with nothing in it is passed over
    (``nothing_to_recommend``), so its slot goes to the next campaign.
    ``events``: the batch, whose custom events' props an ``event:<name>``
    decision reads (``event_of``)."""
    device = classify(ctx.user_agent).to_attributes()
    unavailable = unavailable | nothing_to_recommend(site, profile, page.product)
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
            event=event_of(trigger, site, events) if events else None,
        ).items:
            if decision.campaign not in seen:
                seen.add(decision.campaign)
                chosen.append(decision)
    return chosen


def check_batch(
    batch: p.Batch, site: Site, prior: Profile | None, stored: bool, now: float
) -> tuple[list[dict[str, Any]], list[p.Event], int]:
    """Error frames for the events refused, the events accepted, and how many
    were refused ``not_offered``: a widget event must match what the server
    showed this visitor (``edge.core.offers``), checked where there is a profile to
    check it on (``stored``). Pure."""
    errors = [p.error(e.code, e.message, seq=e.seq) for e in batch.errors]
    accepted = []
    not_offered = 0
    for event in batch.events:
        try:
            check_event(event, site, now)
        except ProtocolError as exc:
            errors.append(p.error(exc.code, exc.message, seq=event.seq))
            continue
        if stored and isinstance(event, p.Widget):
            refusal = widget_refusal(prior, event, now)
            if refusal is not None:
                not_offered += 1
                errors.append(p.error("not_offered", refusal, seq=event.seq))
                continue
        accepted.append(event)
    return errors, accepted, not_offered


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


@dataclass(frozen=True, slots=True)
class Reveal:
    """Where coupon forms are judged: the visitor before this message
    (``prior``) and after it (``after``: the form's identify applied)."""

    prior: Profile | None
    after: Profile | None
    ctx: VisitContext
    site: Site
    page: Page | None


@dataclass
class Counters:
    connections: int = 0
    messages: int = 0
    events: int = 0
    duplicates: int = 0
    refused: int = 0
    bots: int = 0  # robot connections and beacons: counted, never profiled
    close_codes: dict[int, int] = field(default_factory=dict)
    # error frames by code for what clients may not do (docs/operations.md,
    # "What clients cannot do"): not_offered, robot, consent_required, not_eligible
    refusals: dict[str, int] = field(default_factory=dict)

    def refuse(self, code: str, count: int = 1) -> None:
        self.refusals[code] = self.refusals.get(code, 0) + count


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
    # the automation events of a stored change that is no event (AutomationService.changed)
    automate_change: Callable[[Site, Profile | None, Profile | None, float], None] = (
        lambda site, before, after, now: None
    )
    geo: Geo = field(default_factory=Geo)  # country and region of a visit (edge.tracker.geo)
    aliases: Aliases = field(init=False)
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.aliases = Aliases(self.ledger, self.settings.ack_timeout_s)
        self.admission = Admission(
            self.settings.admission_wait_s,
            self.settings.busy_retry_s,
            max_in_flight=self.settings.max_in_flight,
            budget_s=self.settings.in_flight_budget_s,
            resend_burst=self.settings.resend_burst,
        )

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
        sent: set[Shown] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Store a batch; returns the messages to send first (errors, revealed
        coupons) and the acknowledging answer.

        ``holder.hot`` is None when nothing may be stored (no consent): events
        are then acknowledged and dropped. A verified identify moves the holder
        to the customer's profile (``edge.stores.aliases``) before it is applied.
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
        prior = holder.hot.current if holder.hot is not None else None  # before this message
        errors, accepted = self._check(batch, site, prior, holder.hot is not None, now)
        self.counters.messages += 1
        self.counters.events += len(accepted)
        self.counters.refused += len(errors)
        wanted = triggers(accepted) if page is not None else []
        unavailable = self.widgets.unavailable(site) if wanted else frozenset()
        chosen: list[Decision] = []
        profile: Profile | None = None
        if holder.hot is not None:
            applied: list[tuple[Profile | None, Profile, p.Event]] = []
            try:
                futures = await self._submit(holder, accepted, ctx, site, now, applied)
                hot = holder.hot
                assert hot is not None
                rebases = hot.rebases
                if wanted:  # decided now, so the offers go into the same write (edge.core.offers)
                    assert page is not None
                    chosen = decide_all(
                        hot.current, ctx, site, now, page, wanted, unavailable, accepted
                    )
                    futures.append(self._offer(hot, chosen, site, now))
                profile = await self._settle(futures)
                if wanted and hot.rebases != rebases:
                    # Another process wrote this profile meanwhile (another tab
                    # showed a pop-up): decide again on what is stored now.
                    assert page is not None
                    chosen = decide_all(
                        profile, ctx, site, now, page, wanted, unavailable, accepted
                    )
                    profile = await self._settle([self._offer(hot, chosen, site, now)])
            finally:
                # Also when the answer is the fallback: what was applied stays
                # pending and is stored later, and a resend of it is a duplicate
                # (not applied again), so this is its only chance to count.
                # (Campaign statistics are counted as stored: Ledger.on_stored.)
                self.widgets.learn(site, applied, now)
                self.automate(site, applied, now)  # automation events (edge.automation)
        elif wanted:
            assert page is not None
            chosen = decide_all(None, ctx, site, now, page, wanted, unavailable, accepted)
        reveal = Reveal(prior, profile, ctx, site, page)
        before = errors + await self._reveal(accepted, reveal, deadline)
        seq = batch.highest_seq
        if not wanted:
            return before, p.ack(seq)
        assert page is not None
        items = await self.widgets.render(
            chosen, profile, ctx, site, page, deadline=deadline, sent=sent
        )
        return before, p.decisions(items, seq=seq)

    def _check(
        self, batch: p.Batch, site: Site, prior: Profile | None, stored: bool, now: float
    ) -> tuple[list[dict[str, Any]], list[p.Event]]:
        errors, accepted, not_offered = check_batch(batch, site, prior, stored, now)
        if not_offered:
            self.counters.refuse("not_offered", not_offered)
        return errors, accepted

    async def _settle(self, futures: Sequence[asyncio.Future[Profile | None]]) -> Profile | None:
        profile = None
        for future in futures:
            profile = await self.ledger.settle(future, self.settings.ack_timeout_s)
        return profile

    def _offer(
        self, hot: Hot, chosen: Sequence[Decision], site: Site, now: float
    ) -> asyncio.Future[Profile | None]:
        decided = [(d.campaign, d.variant, d.step) for d in chosen]
        bound = site.bounds.offers

        def change(profile: Profile | None) -> Profile | None:
            return None if profile is None else offers.record(profile, decided, now, bound)

        return self.ledger.submit_change(hot, change, site, now)

    def store_answering(self) -> bool:
        """Worth waiting past the answer deadline for: no write failed or
        hung since the last that returned, and the store's breaker is closed."""
        return self.ledger.available

    def _limit(self) -> float:
        """The loop time past which nobody waits for the store (``ack_timeout_s``)."""
        return asyncio.get_running_loop().time() + self.settings.ack_timeout_s

    async def _submit(
        self,
        holder: Holder,
        events: Sequence[p.Event],
        ctx: VisitContext,
        site: Site,
        now: float,
        applied: list[tuple[Profile | None, Profile, p.Event]],
    ) -> list[asyncio.Future[Profile | None]]:
        """Submit ``events`` to the holder's profile, following it to the
        customer's profile at each verified identify; the futures resolve
        once they are stored."""
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
        return futures

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
        holder.hot = new  # never sealed: customer profiles are not (edge.stores.aliases)
        self.ledger.release(old)

    async def _reveal(
        self, events: Sequence[p.Event], at: Reveal, deadline: float | None
    ) -> list[dict[str, Any]]:
        """A ``coupon`` message for each coupon form the visitor submitted, or
        an ``error`` saying why no code is given (``coupon_refusal``).
        ``TimeoutError`` past ``deadline`` while the store is not answering:
        the answer is the fallback, the tracker resends, and the resent
        convert reveals the same code (a visitor's claim is theirs)."""
        messages = []
        for event in events:
            if not (isinstance(event, p.Widget) and event.action == "convert"):
                continue
            refusal = self.coupon_refusal(event, at)
            if refusal is not None:
                code, why = refusal
                self.counters.refuse(code)
                self.counters.refused += 1
                messages.append(p.error(code, why, seq=event.seq))
                continue
            reveal = self.widgets.reveal(at.site, event.campaign, event.variant, event.step, at.ctx)
            if deadline is not None:
                reveal = by_deadline(
                    reveal, deadline, patience=self.store_answering, limit=self._limit()
                )
            message = await reveal
            if message is not None:
                messages.append(message)
        return messages

    def coupon_refusal(self, event: p.Widget, at: Reveal) -> tuple[str, str] | None:
        """(code, message) when a submitted form of a coupon campaign gets no
        code: a robot, no consent where the site requires it, a campaign or
        arm not shown to this visitor, or a visitor (as before the form) no
        longer in its audience or a campaign out of its schedule. None for a
        form that is no coupon form (nothing to reveal) and for a coupon,
        which a visitor who converted before always gets again (their own).
        A form with a consent checkbox needs it ticked (``marketing_consent``)."""
        prior, ctx, site = at.prior, at.ctx, at.site
        campaign = site.decisioning.by_id.get(event.campaign)
        widget = campaign.widget_for(event.variant, event.step) if campaign else {}
        if campaign is None or not coupon_of(widget):
            return None
        device = classify(ctx.user_agent)
        if device.is_bot:
            return "robot", "robots get no coupons"
        if not may_store(site, ctx.consent):
            return "consent_required", "this site gives coupons only with consent"
        if widget.get("consent") and not (at.after and at.after.marketing_consent):
            return "consent_required", "this form's consent box was not ticked"
        now = self.clock()
        refusal = widget_refusal(prior, event, now)
        if refusal is not None:
            return "not_offered", refusal
        state = prior.campaign(campaign.id) if prior is not None else None
        if state is not None and state.conversions:
            return None  # converted before: the code is theirs, shown again
        why = reveal_refusal(
            campaign, prior, ctx, site, now, at.page or NO_PAGE, device.to_attributes()
        )
        if why is not None:
            return "not_eligible", f"campaign {campaign.id}: {why}"
        return None
