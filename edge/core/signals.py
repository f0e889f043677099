"""Shared recommendation signals, the pure part: what one event adds.

The counts themselves (co-occurrence and popularity over every visitor) are
kept by a ``SignalStore`` (``edge.stores.signals``, whose docstring describes
the four kinds). ``signal_updates`` derives what one applied event adds; it is
pure (like ``edge.core.updates.apply``) so ingest can call it on the profile it
already has, and a replayed event (``apply`` returns the same profile object)
or an order reported twice adds nothing, keeping the counts exactly-once like
the profile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from edge.core import events as p
from edge.core.profile import Profile

SignalKind = Literal["viewed_together", "bought_together", "bestsellers", "trending"]
KINDS: tuple[SignalKind, ...] = get_args(SignalKind)
PAIR_KINDS: frozenset[str] = frozenset({"viewed_together", "bought_together"})

RECENT_PARTNERS = 5  # a view pairs with at most this many earlier views of the visit
MAX_ORDER_SKUS = 20  # pairs are counted among an order's first 20 distinct skus (380 updates)


@dataclass(frozen=True, slots=True)
class SignalUpdate:
    """Add ``amount`` to ``partner`` in the list of ``sku`` (pair kinds), or to
    ``sku`` in the site-wide ranking (``partner`` is None)."""

    kind: SignalKind
    sku: str
    partner: str | None = None
    amount: float = 1.0


def signal_updates(before: Profile | None, after: Profile, event: p.Event) -> list[SignalUpdate]:
    """What the event that turned ``before`` into ``after`` adds to the signals."""
    if after is before:  # apply() returns the same object for a replayed event
        return []
    if isinstance(event, p.ProductView):
        return _view_updates(before, after, event.sku)
    if isinstance(event, p.Purchase):
        if before is not None and after.orders == before.orders:  # order reported twice
            return []
        return _purchase_updates(event.items)
    return []


def _view_updates(before: Profile | None, after: Profile, sku: str) -> list[SignalUpdate]:
    """Trending counts every view; pairs only the first view of ``sku`` in a
    visit, so going back and forth between two products counts them once."""
    updates = [SignalUpdate("trending", sku)]
    if before is None or after.session is None:
        return updates
    started = after.session.started_at
    visit = [v for v in before.products if v.at >= started]  # earlier views of this visit
    if any(v.sku == sku for v in visit):
        return updates
    for viewed in visit[:RECENT_PARTNERS]:
        updates.append(SignalUpdate("viewed_together", sku, viewed.sku))
        updates.append(SignalUpdate("viewed_together", viewed.sku, sku))
    return updates


def _purchase_updates(items: Iterable[p.Item]) -> list[SignalUpdate]:
    units: dict[str, int] = {}
    for item in items:
        units[item.sku] = units.get(item.sku, 0) + item.qty
    updates = [SignalUpdate("bestsellers", sku, None, float(qty)) for sku, qty in units.items()]
    skus = list(units)[:MAX_ORDER_SKUS]
    updates.extend(SignalUpdate("bought_together", a, b) for a in skus for b in skus if a != b)
    return updates
