"""The widget shell: renders decided widgets, reveals coupon codes, keeps
coupon pools loaded. Async and stateful (caches, the store); the choices are
made by the pure engine before this runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.signals import SignalKind, SignalUpdate, signal_updates
from edge.core.site import Site
from edge.core.stats import StatUpdate, stat_updates
from edge.decisioning.attributes import Page
from edge.decisioning.campaigns import Campaign
from edge.decisioning.engine import Decision
from edge.runtime.breaker import by_deadline
from edge.stores.coupons import CouponPools
from edge.stores.ledger import Applied
from edge.stores.signals import SignalStore
from edge.stores.stats import StatsStore
from edge.widgets.coupons import generated_code, read_pool
from edge.widgets.recommend import (
    Scores,
    history_is_empty,
    is_history_block,
    recommend,
    signal_queries,
)
from edge.widgets.render import RenderError
from edge.widgets.text import page_language

log = logging.getLogger(__name__)

C = TypeVar("C")  # a compiled configuration object (_PerConfig)
V = TypeVar("V")

CACHE_SIZE = 2048
Shown = tuple[str, str, int]  # a widget sent: (campaign, arm, step)


class WidgetService:
    """``signal_cache_s``: how long this process reuses a signal list it read
    (bestsellers, a product's partners) before asking the store again; the
    rankings move slowly, and a round trip per page view would not."""

    def __init__(
        self,
        pools: CouponPools,
        signals: SignalStore,
        stats: StatsStore,
        *,
        signal_cache_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pools = pools
        self.signals = signals
        self.stats = stats
        self._counted: dict[str, list[StatUpdate]] = {}
        self._cache_s = signal_cache_s
        self._clock = clock
        self._scores: OrderedDict[tuple[str, str, str | None], tuple[float, Scores]] = OrderedDict()
        self._learned: dict[str, list[SignalUpdate]] = {}
        self._recorder: asyncio.Task[None] | None = None
        self._html: OrderedDict[tuple[str, ...], str] = OrderedDict()
        self._empty: dict[str, set[str]] = {}  # site -> campaigns whose pool ran dry
        self._low: dict[str, dict[str, int]] = {}  # site -> campaign -> codes left, when low
        self.on_coupon: Callable[[Site, str, str, str | None], None] = lambda *issued: None
        self.signals_dropped = 0  # signal updates naming a product not in the catalog
        # Reports a crash of the recorder (edge.runtime.supervisor); the next event restarts it.
        self.on_task: Callable[[str, asyncio.Task[None]], None] = lambda name, task: None

    # --- rendering -------------------------------------------------------------

    def unavailable(self, site: Site) -> frozenset[str]:
        """Campaigns the engine must pass over: empty pools, missing secrets."""
        empty = self._empty.get(site.id)
        if site.secret is not None:
            return frozenset(empty) if empty else frozenset()
        generated = _generated_coupons(site.decisioning.by_id)
        return generated | empty if empty else generated

    async def render(
        self,
        decisions: Sequence[Decision],
        profile: Profile | None,
        ctx: VisitContext,
        site: Site,
        page: Page,
        *,
        deadline: float | None = None,
        sent: set[Shown] | None = None,
    ) -> list[dict[str, Any]]:
        """The decisions' wire items with their HTML. Recommendation signals
        not read by ``deadline`` (loop time) are not waited for: the
        strategies run on the catalog alone, this time (the read goes on).

        ``sent``: the widgets (campaign, arm, step) this connection was sent
        on the page it is on. Those come without ``html``: the tracker has it,
        and shows a widget once per page (a filled slot is never swapped), so
        rendering it again (recommendations: reading signals and ranking
        products) would be work for nothing. The ones rendered now are added.

        A recommendation block with no product to show is left out: no empty
        widget is sent (the slot keeps the shop's own content). A block of the
        shopper's own history that would be empty is not even decided
        (``nothing_to_recommend``): the slot goes to the next campaign."""
        lang = page_language(ctx.lang, site.locale, ctx.page_lang)
        items = []
        for decision in decisions:
            item = decision.to_wire()
            if decision.widget is not None:
                shown = (decision.campaign, decision.variant, decision.step)
                if sent is None or shown not in sent:
                    products = await self._products(decision, profile, site, page, deadline)
                    if not products and decision.widget.get("kind") == "recommendations":
                        continue  # no empty block: the slot keeps the shop's own content
                    item["html"] = self._html_for(decision, lang, site, products)
                    if sent is not None:
                        sent.add(shown)
            items.append(item)
        return items

    async def _products(
        self,
        decision: Decision,
        profile: Profile | None,
        site: Site,
        page: Page,
        deadline: float | None = None,
    ) -> Sequence[Any]:
        """Recommendations in a recommendation widget; nothing for the others."""
        widget = decision.widget or {}
        if widget.get("kind") != "recommendations" or site.catalog is None:
            return ()
        strategy = str(widget.get("strategy"))
        limit = int(widget.get("limit", 4))
        queries = signal_queries(strategy, profile, page.product)
        answers = await self._top_many(site.id, queries, limit * 3 + 10, deadline)
        signals: dict[str, Scores] = {
            kind: scores for (kind, _), scores in zip(queries, answers, strict=True)
        }
        signals["purchased"] = [(b.sku, b.at) for b in profile.purchased] if profile else []
        return recommend(
            strategy, profile, site.catalog, signals, limit=limit, current_sku=page.product
        )

    async def _top_many(
        self,
        site: str,
        queries: Sequence[tuple[SignalKind, str | None]],
        n: int,
        deadline: float | None = None,
    ) -> list[Scores]:
        now = self._clock()
        answers: dict[int, Scores] = {}
        missing = []
        for index, (kind, sku) in enumerate(queries):
            cached = self._scores.get((site, kind, sku))
            if cached is not None and cached[0] > now:
                answers[index] = cached[1]
            else:
                missing.append(index)
        if missing:
            fetched: Sequence[Scores]
            read = asyncio.ensure_future(
                self.signals.top_many(site, [queries[i] for i in missing], n)
            )
            try:
                # No patience past the deadline: the catalog is a fine answer.
                fetched = await (read if deadline is None else by_deadline(read, deadline))
            except TimeoutError:  # a slow store: the catalog now, the late answer cached
                log.debug("site %s: recommendation signals not read in time", site)
                keys = [(site, *queries[i]) for i in missing]
                read.add_done_callback(lambda done: self._cache_late(keys, now, done))
                return [answers.get(i, ()) for i in range(len(queries))]
            except Exception:  # recommendations degrade to the catalog; logged
                log.exception("site %s: reading recommendation signals failed", site)
                fetched = [() for _ in missing]
            for index, scores in zip(missing, fetched, strict=True):
                answers[index] = scores
                self._scores[(site, *queries[index])] = (now + self._cache_s, scores)
            while len(self._scores) > CACHE_SIZE:
                self._scores.popitem(last=False)
        return [answers[i] for i in range(len(queries))]

    def _cache_late(
        self,
        keys: Sequence[tuple[str, SignalKind, str | None]],
        now: float,
        read: asyncio.Future[Any],
    ) -> None:
        """A signal read that outlived its answer deadline: keep what it found."""
        if read.cancelled() or read.exception() is not None:
            return
        found: Sequence[Scores] = read.result()
        for key, scores in zip(keys, found, strict=True):
            self._scores[key] = (now + self._cache_s, scores)
        while len(self._scores) > CACHE_SIZE:
            self._scores.popitem(last=False)

    # --- learning from events ----------------------------------------------------

    def learn(
        self, site: Site, applied: Sequence[tuple[Profile | None, Profile, Any]], now: float
    ) -> None:
        """Queue what applied events imply for the recommendation signals;
        written in batches in the background: nobody waits for them, and the
        events themselves are already safe."""
        signals = [
            u for before, after, event in applied for u in signal_updates(before, after, event)
        ]
        if signals:
            signals = self._known(site, signals)
        if signals:
            self._learned.setdefault(site.id, []).extend(signals)
            self._start_recorder()

    def count(self, stored: Sequence[Applied]) -> None:
        """Queue the campaign statistics of events as they were stored
        (``Ledger.on_stored``): each from the profile the store held before
        it, so a conversion another tab or process stored first, which then
        changes nothing, is not counted (``stat_updates``)."""
        for site, before, after, event, now in stored:
            stats = stat_updates(before, after, event, site.timezone, now, site.decisioning.by_id)
            if stats:
                self._counted.setdefault(site.id, []).extend(stats)
        if self._counted:
            self._start_recorder()

    def _start_recorder(self) -> None:
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.get_running_loop().create_task(self._record())
            self.on_task("statistics-recorder", self._recorder)

    def _known(self, site: Site, updates: list[SignalUpdate]) -> list[SignalUpdate]:
        """The updates about products of the site's catalog. A client names
        any SKU it likes; shared counts (and their Redis keys) stay bounded by
        the catalog. Without a catalog there is nothing to recommend: none."""
        catalog = site.catalog
        if catalog is None:
            self.signals_dropped += len(updates)
            return []
        known = [
            u
            for u in updates
            if catalog.by_id(u.sku) is not None
            and (u.partner is None or catalog.by_id(u.partner) is not None)
        ]
        self.signals_dropped += len(updates) - len(known)
        return known

    async def _record(self) -> None:
        while self._learned or self._counted:
            signals, self._learned = self._learned, {}
            stats, self._counted = self._counted, {}
            for site, updates in signals.items():
                try:
                    await self.signals.record(site, updates)
                except Exception:  # rankings lag a little; events are safe; logged
                    log.exception("site %s: recording %d signals failed", site, len(updates))
            for site, counts in stats.items():
                try:
                    await self.stats.record(site, counts)
                except Exception:  # statistics lag; the profiles hold the truth; logged
                    log.exception("site %s: recording %d statistics failed", site, len(counts))
            await asyncio.sleep(0.05)  # let a batch gather

    async def close(self) -> None:
        if self._recorder is not None:
            await asyncio.gather(self._recorder, return_exceptions=True)
        await self.signals.close()

    def _html_for(self, decision: Decision, lang: str, site: Site, products: Sequence[Any]) -> str:
        assert decision.widget is not None
        # A widget's HTML depends on the campaign, arm, step and language, and
        # for recommendations on the products: the same bestsellers are shown
        # to every newcomer, so that is cached too.
        key = (
            site.id,
            site.version,
            decision.campaign,
            decision.variant,
            str(decision.step),
            lang,
            *(str(getattr(p, "id", "")) for p in products),
        )
        if key in self._html:
            self._html.move_to_end(key)
            return self._html[key]
        html = site.renderer.render(
            decision.widget,
            lang=lang,
            campaign=decision.campaign,
            variant=decision.variant,
            placement=decision.placement,
            products=products,
        )
        self._html[key] = html
        if len(self._html) > CACHE_SIZE:
            self._html.popitem(last=False)
        return html

    # --- coupons ---------------------------------------------------------------

    async def reveal(
        self, site: Site, campaign_id: str, variant: str, step: int, ctx: VisitContext
    ) -> dict[str, Any] | None:
        """The ``coupon`` message for a converted coupon form, or None."""
        campaign = site.decisioning.by_id.get(campaign_id)
        if campaign is None:
            return None
        widget = campaign.widget_for(variant, step)
        coupon = coupon_of(widget)
        if coupon is None:
            return None
        code = await self._code(site, campaign, coupon, ctx.visitor)
        self.on_coupon(site, campaign.id, ctx.visitor, code)  # edge.automation: coupon_issued
        return coupon_message(site, campaign, widget, variant, code, ctx)

    async def _code(
        self, site: Site, campaign: Campaign, coupon: Mapping[str, Any], visitor: str
    ) -> str | None:
        if coupon.get("source") == "pool":
            code = await self.pools.claim(site.id, campaign.id, visitor)
            if code is None:
                self._empty.setdefault(site.id, set()).add(campaign.id)
                log.warning("site %s: coupon pool of %s is empty", site.id, campaign.id)
            return code
        if site.secret is None:
            return None
        return generated_code(
            site.secret, site.id, campaign.id, visitor, str(coupon.get("prefix", "EDGE"))
        )

    async def sync_pools(self, site: Site) -> None:
        """Load the site's pool files (idempotent) and note low or empty pools."""
        empty, low = set(), {}
        for campaign in site.decisioning.by_id.values():
            coupon = _coupon(campaign)
            if coupon.get("source") != "pool":
                continue
            path = site.folder / "coupons" / str(coupon.get("file"))
            codes = await asyncio.to_thread(read_pool, path)  # off the event loop
            added = await self.pools.load(site.id, campaign.id, codes)
            left = await self.pools.remaining(site.id, campaign.id)
            if added:
                log.info(
                    "site %s: %d new codes for %s (%d free)", site.id, added, campaign.id, left
                )
            if left == 0:
                empty.add(campaign.id)
            elif left < int(coupon.get("warn_below", 100)):
                low[campaign.id] = left
                log.warning("site %s: only %d codes left for %s", site.id, left, campaign.id)
        self._empty[site.id] = empty
        self._low[site.id] = low

    def pool_report(self, site: Site) -> dict[str, Any]:
        return {
            "empty": sorted(self._empty.get(site.id, ())),
            "low": dict(self._low.get(site.id, {})),
        }


def nothing_to_recommend(
    site: Site, profile: Profile | None, current_sku: str | None
) -> frozenset[str]:
    """The site's recommendation campaigns of the shopper's own history
    (recently viewed ...) that have nothing to show this shopper on this page,
    in every arm and step: the engine passes them over (pure)."""
    history = _history_campaigns(site.decisioning.campaigns)
    if not history:
        return frozenset()
    empty: dict[str, bool] = {}  # strategy -> nothing to show; one look per strategy
    passed_over = []
    for campaign_id, widgets in history:
        for widget in widgets:
            strategy = str(widget.get("strategy"))
            nothing = empty.get(strategy)
            if nothing is None:
                nothing = history_is_empty(widget, profile, site.catalog, current_sku)
                empty[strategy] = nothing
            if not nothing:
                break
        else:  # every widget empty (or none at all)
            passed_over.append(campaign_id)
    return frozenset(passed_over)


class _PerConfig(Generic[C, V]):
    """``compute(config)`` worked out once per compiled configuration object,
    not per event. Keyed by the object's id, and holding the object so that
    its id is not reused while the entry lives; a site's configuration
    changes only on a reload, so a handful of entries (at most 64)."""

    def __init__(self, compute: Callable[[C], V]) -> None:
        self.compute = compute
        self.entries: dict[int, tuple[C, V]] = {}

    def __call__(self, config: C) -> V:
        cached = self.entries.get(id(config))
        if cached is not None and cached[0] is config:
            return cached[1]
        value = self.compute(config)
        if len(self.entries) >= 64:
            self.entries.clear()
        self.entries[id(config)] = (config, value)
        return value


def _find_history_campaigns(
    campaigns: tuple[Campaign, ...],
) -> tuple[tuple[str, list[Mapping[str, Any]]], ...]:
    found = []
    for campaign in campaigns:
        widgets = _widgets(campaign)
        if all(is_history_block(w) for w in widgets):  # none at all: passed over too
            found.append((campaign.id, widgets))
    return tuple(found)


_history_campaigns = _PerConfig(_find_history_campaigns)
"""The campaigns every widget of which is a block of the shopper's own
history, with those widgets: the only ones ``nothing_to_recommend`` can pass
over."""


def _find_generated_coupons(campaigns: Mapping[str, Campaign]) -> frozenset[str]:
    return frozenset(c.id for c in campaigns.values() if _coupon(c).get("source") == "generated")


_generated_coupons = _PerConfig(_find_generated_coupons)
"""The campaigns (drafts included, from ``Decisioning.by_id``) whose coupons
are generated: they need the site's secret."""


def _widgets(campaign: Campaign) -> list[Mapping[str, Any]]:
    arms = [v.widget for v in campaign.variants if v.widget is not None]
    return arms + [step.widget for step in campaign.steps]


def coupon_message(
    site: Site,
    campaign: Campaign,
    widget: Mapping[str, Any],
    variant: str,
    code: str | None,
    ctx: VisitContext,
) -> dict[str, Any]:
    """The ``coupon`` message revealing ``code`` in the campaign's form (a
    template that fails is logged and the code still goes out, without HTML)."""
    try:
        html = site.renderer.render(
            widget,
            lang=page_language(ctx.lang, site.locale, ctx.page_lang),
            campaign=campaign.id,
            variant=variant,
            placement=campaign.placement,
            code=code,
            revealed=True,
        )
    except RenderError:
        log.exception("site %s: coupon template failed", site.id)
        html = ""
    return {"type": "coupon", "campaign": campaign.id, "code": code, "html": html}


def coupon_of(widget: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The coupon section of a coupon widget; None for any other widget."""
    coupon = widget.get("coupon")
    return coupon if widget.get("kind") == "coupon" and isinstance(coupon, Mapping) else None


def _coupon(campaign: Campaign) -> Mapping[str, Any]:
    for step in campaign.steps:
        coupon = coupon_of(step.widget)
        if coupon is not None:
            return coupon
    return {}
