"""Proposed RFM cut-offs: quintiles of a site's customers (``edge rfm propose``).

Pure functions: the caller reads the profiles (``ProfileStore.iter_profiles``)
and passes the time; nothing here does I/O or reads a clock.

How the cut-offs relate to the scores (``edge.core.intelligence.rfm_scores``):

* recency: r = 5 - (number of cut-offs the days since the last order exceed),
  so the k-th cut-off should have k fifths of the customers at or below it;
* frequency and monetary: 1 + (number of cut-offs the value reaches), so the
  k-th cut-off should have k fifths of the customers below it.

Every value is reduced to a whole number first, in the direction that keeps
the comparison exact for whole cut-offs: days since the last order are
rounded up (``days <= c`` iff ``ceil(days) <= c``), revenue is rounded down
(``revenue >= c`` iff ``floor(revenue) >= c``). So the proposed cut-offs are
whole numbers a marketer can read, and the shares printed next to them are
exactly what the site will score.

Ties (most customers have one order) make true quintiles impossible. Each
cut-off is then the value whose share is nearest to its fifth, never the
lowest value for the "reaches" scores (it would leave score 1 empty) nor the
highest for recency (it would leave r 1 empty). Where two cut-offs collide the
later one moves up to the next value some customer has (by one past the
highest), because the site configuration needs four strictly ascending ones.
A score that ends up empty is reported.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from edge.core.intelligence import DAY_S, count_score, recency_score
from edge.core.profile import Profile

MIN_CUSTOMERS = 100  # fewer customers than this and quintiles are mostly noise
Mode = Literal["at_most", "reaches"]  # how a value compares with a cut-off


@dataclass(frozen=True, slots=True)
class Customer:
    """What RFM reads of one profile with orders, as whole numbers."""

    days: int  # since the last order, rounded up
    orders: int
    revenue: int  # rounded down


@dataclass(frozen=True, slots=True)
class Axis:
    """The proposal for one score."""

    name: str  # the key in the site configuration: recency_days, frequency, monetary
    cutoffs: tuple[int, int, int, int]
    shares: tuple[float, float, float, float, float]  # of customers with score 1 … 5
    spread: bool  # ties made some cut-offs collide, and they were moved apart

    @property
    def empty_scores(self) -> tuple[int, ...]:
        return tuple(score for score, share in enumerate(self.shares, 1) if share == 0)


@dataclass(frozen=True, slots=True)
class Proposal:
    customers: int
    scanned: int  # profiles read, with and without orders
    recency: Axis
    frequency: Axis
    monetary: Axis

    @property
    def axes(self) -> tuple[Axis, Axis, Axis]:
        return (self.recency, self.frequency, self.monetary)

    def warnings(self, min_customers: int = MIN_CUSTOMERS) -> list[str]:
        out = []
        if self.customers < min_customers:
            out.append(
                f"only {self.customers} profiles with orders (fewer than {min_customers}): "
                "quintiles of so few customers are mostly noise; use them as a rough guide"
            )
        for axis in self.axes:
            empty = axis.empty_scores
            if empty:
                listed = ", ".join(str(s) for s in empty)
                out.append(
                    f"{axis.name}: no customer gets score {listed}: too many customers share "
                    "a value, so the cut-offs could not split them into fifths"
                )
        return out


def customer_of(profile: Profile, now: float) -> Customer | None:
    """None for a visitor without orders, and for a device profile merged into
    a customer's profile (its orders are counted there)."""
    if profile.orders < 1 or profile.last_order_at is None or profile.merged_into is not None:
        return None
    days = max(0.0, now - profile.last_order_at) / DAY_S
    return Customer(math.ceil(days), profile.orders, math.floor(max(0.0, profile.revenue)))


def quintile_cutoffs(values: Sequence[int], mode: Mode) -> tuple[tuple[int, int, int, int], bool]:
    """Four strictly ascending whole cut-offs splitting ``values`` (not empty)
    as near to fifths as ties allow; and whether collisions had to be spread."""
    if not values:
        raise ValueError("no values to split")
    ordered = sorted(values)
    n = len(ordered)
    distinct = sorted(set(ordered))
    if mode == "reaches":  # share below the cut-off
        candidates = distinct[1:] or [distinct[0] + 1]
        share = {c: bisect_left(ordered, c) / n for c in candidates}
    else:  # share at or below the cut-off
        candidates = distinct[:-1] or [distinct[0]]
        share = {c: bisect_right(ordered, c) / n for c in candidates}
    chosen = [min(candidates, key=lambda c: (abs(share[c] - k / 5), c)) for k in range(1, 5)]
    spread = False
    for i in range(1, 4):
        if chosen[i] <= chosen[i - 1]:  # collided: the next value customers have, else + 1
            above = bisect_right(candidates, chosen[i - 1])
            chosen[i] = candidates[above] if above < len(candidates) else chosen[i - 1] + 1
            spread = True
    return (chosen[0], chosen[1], chosen[2], chosen[3]), spread


def score_shares(
    values: Sequence[int], cutoffs: Sequence[float], mode: Mode
) -> tuple[float, float, float, float, float]:
    """The share of ``values`` scoring 1 … 5 with ``cutoffs``, by the site's own
    scoring functions."""
    counts = [0] * 5
    for value in values:
        score = recency_score(value, cutoffs) if mode == "at_most" else count_score(value, cutoffs)
        counts[score - 1] += 1
    n = len(values) or 1
    return (counts[0] / n, counts[1] / n, counts[2] / n, counts[3] / n, counts[4] / n)


def _axis(name: str, values: Sequence[int], mode: Mode) -> Axis:
    cutoffs, spread = quintile_cutoffs(values, mode)
    return Axis(name, cutoffs, score_shares(values, cutoffs, mode), spread)


def propose(customers: Iterable[Customer], scanned: int) -> Proposal | None:
    """Quintile cut-offs of ``customers``; None when there is none."""
    found = list(customers)
    if not found:
        return None
    return Proposal(
        customers=len(found),
        scanned=scanned,
        recency=_axis("recency_days", [c.days for c in found], "at_most"),
        frequency=_axis("frequency", [c.orders for c in found], "reaches"),
        monetary=_axis("monetary", [c.revenue for c in found], "reaches"),
    )


def _percent(shares: Sequence[float]) -> str:
    return " ".join(f"{round(s * 100)}%" for s in shares)


def render_yaml(proposal: Proposal, site: str, when: str) -> str:
    """The proposal in the shape of the site configuration, ready to paste,
    with the counts and the share of customers per score as comments."""
    r, f, m = proposal.axes
    rows = [
        (f"recency_days: {list(r.cutoffs)}", f"r 5 4 3 2 1: {_percent(r.shares[::-1])}"),
        (f"frequency: {list(f.cutoffs)}", f"f 1 2 3 4 5: {_percent(f.shares)}"),
        (f"monetary: {list(m.cutoffs)}", f"m 1 2 3 4 5: {_percent(m.shares)}"),
    ]
    width = max(len(key) for key, _ in rows) + 2
    lines = [
        f"# RFM cut-offs for site {site}, proposed by `edge rfm propose` at {when}:",
        f"# quintiles of {proposal.customers} profiles with orders "
        f"({proposal.scanned} profiles read).",
        f'# Paste into profiles/{site}/site.yaml (docs/configuration.md, "intelligence").',
        "intelligence:",
        "  rfm:",
    ]
    lines += [f"    {key.ljust(width)}# {comment}" for key, comment in rows]
    return "\n".join(lines) + "\n"
