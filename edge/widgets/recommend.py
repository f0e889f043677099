"""Recommendation strategies: which products a recommendation block shows.

Pure functions of (strategy, profile, catalog, signals): no I/O and no clock,
so the decision path can call them with data it already fetched, and a test
can pin every rule. The shared counts come from ``edge.core.signals``; the caller
fetches only what the strategy needs (``SIGNALS_NEEDED``, or the exact store
queries from ``signal_queries``) and passes them in.

Rules every strategy follows, because a block that recommends the product on
screen, something already in the cart or a product nobody can buy wastes the
slot: exclude the current product, cart lines, already bought products (except
for replenishment) and out-of-stock or unknown skus; dedupe; and when a
strategy has fewer than ``limit`` products (a new product has no co-views),
top up with bestsellers, then trending, then catalog order, so a block is
never empty on a cold start.

Except the strategies of the shopper's own history (``HISTORY``: recently
viewed, viewed before, bought before): their block says "you saw these", so
it is never topped up with products the shopper never saw (issue 16: "Recently
viewed" showed bestsellers the shopper had not seen). It is left short, and
with nothing to show it is empty; the widget service then sends no widget for
it (``edge.widgets.service``), and the slot keeps the shop's own content.

``signals`` maps a signal name to (sku, score) pairs, best first. Pair signals
(``viewed_together``, ``bought_together``) are the partners of the anchor sku:
``current_sku``, else the last viewed product (``anchor_sku``). ``purchased``
is visitor-scoped: the skus this visitor bought. The profile keeps only order
ids, not order items, so nothing in edge produces it yet; until the profile
records purchased skus, the caller supplies it (or leaves it out, and then
"already bought" cannot be excluded and replenishment falls back).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.core.catalog import Catalog, Product
from edge.core.profile import Profile
from edge.core.signals import KINDS, PAIR_KINDS, SignalKind

Scores = Sequence[tuple[str, float]]

STRATEGIES: tuple[str, ...] = (
    "last_visit_viewed",
    "ever_viewed",
    "purchased",
    "similar",
    "viewed_together",
    "bought_together",
    "recently_discounted",
    "bestsellers",
    "trending",
)
FALLBACK: tuple[SignalKind, ...] = ("bestsellers", "trending")
# The shopper's own history: never topped up with what they did not see.
HISTORY = frozenset({"last_visit_viewed", "ever_viewed", "purchased"})
# What each strategy reads from ``signals``: its own signal, "purchased" for
# the already-bought exclusion (or as the list itself, for replenishment), and
# the fallback rankings (not for ``HISTORY``).
SIGNALS_NEEDED: dict[str, tuple[str, ...]] = {
    name: (
        *((name,) if name in PAIR_KINDS or name == "purchased" else ()),
        *(() if name == "purchased" else ("purchased",)),
        *(() if name in HISTORY else FALLBACK),
    )
    for name in STRATEGIES
}
_STORE_KINDS: dict[str, SignalKind] = {kind: kind for kind in KINDS}
_ANCHORED = frozenset({"similar", *PAIR_KINDS})
SIMILAR_PRICE_BAND = 0.25  # within 25 % of the anchor's price counts as a shared attribute
_WORD = re.compile(r"[^\W_]{3,}")


class SignalsView(Protocol):
    """Signals looked up by (name, anchor sku) - for callers holding partner
    lists of several skus. A plain mapping is the one-anchor case."""

    def scores(self, kind: str, sku: str | None) -> Scores: ...


@dataclass(frozen=True, slots=True)
class _MappingView:
    data: Mapping[str, Scores]

    def scores(self, kind: str, sku: str | None) -> Scores:
        return self.data.get(kind, ())


@dataclass(frozen=True, slots=True)
class _Context:
    profile: Profile | None
    catalog: Catalog
    signals: SignalsView
    current_sku: str | None
    anchor: str | None


def anchor_sku(profile: Profile | None, current_sku: str | None) -> str | None:
    """The sku pair signals and ``similar`` are computed for: the product on
    screen, else the one the visitor viewed last."""
    if current_sku:
        return current_sku
    if profile is not None and profile.products:
        return profile.products[0].sku
    return None


def signal_queries(
    strategy: str, profile: Profile | None, current_sku: str | None = None
) -> list[tuple[SignalKind, str | None]]:
    """The ``SignalStore.top_many`` queries a strategy needs, in the order of
    ``SIGNALS_NEEDED`` minus ``purchased`` (not a store signal). Zip the kinds
    with the answers to build the ``signals`` mapping."""
    _check(strategy)
    anchor = anchor_sku(profile, current_sku)
    out: list[tuple[SignalKind, str | None]] = []
    for name in SIGNALS_NEEDED[strategy]:
        kind = _STORE_KINDS.get(name)  # "purchased" is not a store signal
        if kind is None or (kind in PAIR_KINDS and anchor is None):
            continue
        out.append((kind, anchor if kind in PAIR_KINDS else None))
    return out


def recommend(
    strategy: str,
    profile: Profile | None,
    catalog: Catalog,
    signals: Mapping[str, Scores] | SignalsView,
    *,
    limit: int,
    current_sku: str | None = None,
) -> list[Product]:
    """Up to ``limit`` in-stock products for the block, best first; for a
    ``HISTORY`` strategy only products of the shopper's history (maybe none)."""
    _check(strategy)
    if limit <= 0:
        return []
    view: SignalsView = _MappingView(signals) if isinstance(signals, Mapping) else signals
    ctx = _Context(profile, catalog, view, current_sku, anchor_sku(profile, current_sku))
    seen = _excluded(ctx, strategy)
    picked: list[Product] = []
    for sku in _candidates(strategy, ctx):
        if sku in seen:
            continue
        seen.add(sku)
        product = catalog.by_id(sku)
        if product is None or not product.in_stock:
            continue
        picked.append(product)
        if len(picked) == limit:
            break
    return picked


def is_history_block(widget: Mapping[str, object]) -> bool:
    """Whether ``widget`` is a recommendation block of the shopper's own history."""
    return widget.get("kind") == "recommendations" and widget.get("strategy") in HISTORY


def history_is_empty(
    widget: Mapping[str, object],
    profile: Profile | None,
    catalog: Catalog | None,
    current_sku: str | None = None,
) -> bool:
    """Whether ``widget`` is a block of the shopper's own history (``HISTORY``)
    with nothing to show them: such a campaign is passed over, and the slot
    goes to the next one (bestsellers), not to an empty block. Needs no
    shared signal, so it is known before deciding.

    The same answer as ``recommend(strategy, profile, catalog, {"purchased":
    <the profile's purchases>}, limit=1, current_sku=current_sku)`` being
    empty (the rules of ``_excluded``, for a strategy that is never anchored
    nor topped up), without building what ``recommend`` needs to rank: this
    runs before every decision (tests/widgets/test_recommend.py compares
    the two)."""
    if not is_history_block(widget):
        return False
    if catalog is None or profile is None:
        return True  # no history without a profile
    strategy = widget.get("strategy")
    excluded = {line.sku for line in profile.cart.lines}
    if current_sku:
        excluded.add(current_sku)
    if strategy == "purchased":
        skus: Iterable[str] = (b.sku for b in profile.purchased)
    else:
        excluded.update(b.sku for b in profile.purchased)
        skus = _visit_skus(profile) if strategy == "last_visit_viewed" else _viewed_skus(profile)
    by_id = catalog.by_id
    for sku in skus:
        if sku not in excluded:
            product = by_id(sku)
            if product is not None and product.in_stock:
                return False
    return True


def _check(strategy: str) -> None:
    if strategy not in _STRATEGIES:
        raise ValueError(
            f"unknown recommendation strategy {strategy!r}; valid: {', '.join(STRATEGIES)}"
        )


def _excluded(ctx: _Context, strategy: str) -> set[str]:
    """Never shown: the product on screen, cart lines, already bought (unless
    replenishing), and for strategies relative to the anchor, the anchor itself
    (the last viewed product is not "similar" to itself)."""
    out = {ctx.current_sku} if ctx.current_sku else set()
    if ctx.anchor and strategy in _ANCHORED:
        out.add(ctx.anchor)
    if ctx.profile is not None:
        out.update(line.sku for line in ctx.profile.cart.lines)
    if strategy != "purchased":
        out.update(sku for sku, _ in ctx.signals.scores("purchased", None))
    return out


def _candidates(strategy: str, ctx: _Context) -> Iterator[str]:
    """The strategy's own skus, then the fallbacks (none for ``HISTORY``);
    lazy, so the fallbacks and the catalog scan only run when the strategy
    came up short."""
    yield from _STRATEGIES[strategy](ctx)
    if strategy in HISTORY:
        return
    for kind in FALLBACK:
        yield from _ranked(ctx, ctx.signals.scores(kind, None))
    yield from (p.id for p in ctx.catalog.products)


def _ranked(ctx: _Context, scores: Scores) -> list[str]:
    """Best score first, catalog order on ties: the answer must not depend on
    how a store happens to order equal scores."""
    pos = ctx.catalog.position
    ordered = sorted(scores, key=lambda item: (-item[1], pos(item[0]), item[0]))
    return [sku for sku, _ in ordered]


def _last_visit_viewed(ctx: _Context) -> list[str]:
    return _visit_skus(ctx.profile) if ctx.profile is not None else []


def _visit_skus(profile: Profile) -> list[str]:
    """Viewed before this visit started; when this is the first visit, what
    was viewed earlier in it (the current product is excluded later)."""
    session = profile.session
    started = session.started_at if session is not None else float("inf")
    before = [v.sku for v in profile.products if v.at < started]
    return before or [v.sku for v in profile.products]


def _ever_viewed(ctx: _Context) -> list[str]:
    return _viewed_skus(ctx.profile) if ctx.profile is not None else []


def _viewed_skus(profile: Profile) -> list[str]:
    return [v.sku for v in profile.products]


def _purchased(ctx: _Context) -> list[str]:
    return _ranked(ctx, ctx.signals.scores("purchased", None))


def _words(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in _WORD.findall(text))


def _similar(ctx: _Context) -> Iterator[str]:
    """Same category first, then other categories sharing attributes (name
    words, price band); within each, more shared attributes and a closer price
    first. Without a known anchor product, the visitor's latest category."""
    anchor = ctx.catalog.by_id(ctx.anchor) if ctx.anchor else None
    if anchor is None:
        if ctx.profile is not None and ctx.profile.categories:
            yield from (p.id for p in ctx.catalog.in_category(ctx.profile.categories[0].name))
        return
    words = _words(anchor.name)

    def shared(product: Product) -> int:
        near = abs(product.price - anchor.price) <= SIMILAR_PRICE_BAND * max(anchor.price, 0.01)
        return len(words & _words(product.name)) + near

    def order(product: Product) -> tuple[int, float, int]:
        distance = abs(product.price - anchor.price)
        return (-shared(product), distance, ctx.catalog.position(product.id))

    yield from (p.id for p in sorted(ctx.catalog.in_category(anchor.category), key=order))
    others = (p for p in ctx.catalog.products if p.category != anchor.category and shared(p) > 0)
    yield from (p.id for p in sorted(others, key=order))


def _pairs(kind: str) -> Callable[[_Context], list[str]]:
    def strategy(ctx: _Context) -> list[str]:
        if ctx.anchor is None:
            return []
        return _ranked(ctx, ctx.signals.scores(kind, ctx.anchor))

    return strategy


def _recently_discounted(ctx: _Context) -> list[str]:
    return [p.id for p in ctx.catalog.recently_discounted]


def _ranking(kind: str) -> Callable[[_Context], list[str]]:
    def strategy(ctx: _Context) -> list[str]:
        return _ranked(ctx, ctx.signals.scores(kind, None))

    return strategy


_STRATEGIES: dict[str, Callable[[_Context], Iterable[str]]] = {
    "last_visit_viewed": _last_visit_viewed,
    "ever_viewed": _ever_viewed,
    "purchased": _purchased,
    "similar": _similar,
    "viewed_together": _pairs("viewed_together"),
    "bought_together": _pairs("bought_together"),
    "recently_discounted": _recently_discounted,
    "bestsellers": _ranking("bestsellers"),
    "trending": _ranking("trending"),
}
assert tuple(_STRATEGIES) == STRATEGIES
