"""Scores and segments computed from the profile: RFM, lead score, interests,
lifecycle and churn, win-back, and the verified personal data.

Everything here is a pure function: no I/O, no clock (``now`` is passed in),
inputs are never mutated. ``on_event`` is what ``edge.core.updates.apply`` calls to
fold one event into the stored lead score and interests; ``attributes`` is what
``edge.decisioning.attributes.build`` exposes to conditions (documented in
docs/configuration.md, "Attributes").
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from edge.core.profile import Interest, Profile
from edge.core.source import url_path
from edge.decisioning.config import IntelligenceConfig

DAY_S = 86400.0
MIN_INTERVAL_DAYS = 7.0  # floor of a customer's expected interval (split orders, same-day reorders)
MAX_INTEREST = 1000.0  # an interest score never exceeds this
MIN_INTEREST = 0.01  # below this an interest is forgotten
TOP_INTERESTS = 3

# interest points per category signal
VIEW_POINTS = 1.0
CART_POINTS = 3.0
PURCHASE_POINTS = 5.0

SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "needs_attention",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
)
NO_SEGMENT = "none"
# RFM_GRID[r - 1][fm - 1], fm = round-half-up((f + m) / 2); see docs/configuration.md
RFM_GRID: tuple[tuple[str, ...], ...] = (
    ("lost", "lost", "hibernating", "at_risk", "cant_lose"),  # r = 1
    ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),  # r = 2
    ("needs_attention", "needs_attention", "needs_attention", "loyal", "loyal"),  # r = 3
    ("promising", "potential_loyalists", "loyal", "loyal", "champions"),  # r = 4
    ("new", "potential_loyalists", "potential_loyalists", "champions", "champions"),  # r = 5
)
STAGES = (
    "new_visitor",
    "engaged",
    "lead",
    "customer",
    "repeat_customer",
    "at_risk",
    "lapsed",
)
AT_RISK = 0.5  # churn risk from which a customer is at_risk (twice the expected interval)


@dataclass(frozen=True, slots=True)
class ScoreRule:
    event: str
    points: float
    name: str | None = None
    path: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Intelligence:
    """A site's compiled ``intelligence`` section."""

    recency_days: tuple[float, ...] = (30, 90, 180, 365)
    frequency: tuple[float, ...] = (2, 3, 5, 8)
    monetary: tuple[float, ...] = (100, 250, 500, 1000)
    rules: tuple[ScoreRule, ...] = ()
    score_half_life_days: float | None = 30
    threshold: float = 50
    interests_half_life_days: float = 30
    single_order_days: float = 365
    winback_days: float = 90


def compile_intelligence(config: IntelligenceConfig) -> Intelligence:
    """The runtime form: regexes compiled once, at load."""
    return Intelligence(
        recency_days=tuple(config.rfm.recency_days),
        frequency=tuple(config.rfm.frequency),
        monetary=tuple(config.rfm.monetary),
        rules=tuple(
            ScoreRule(r.event, r.points, r.name, re.compile(r.path) if r.path else None)
            for r in config.score.rules
        ),
        score_half_life_days=config.score.half_life_days,
        threshold=config.score.threshold,
        interests_half_life_days=config.interests.half_life_days,
        single_order_days=config.churn.single_order_days,
        winback_days=config.winback_days,
    )


DEFAULT = Intelligence()


def decay(value: float, at: float, now: float, half_life_days: float | None) -> float:
    """``value`` measured at ``at``, halved every ``half_life_days`` until ``now``."""
    if half_life_days is None or now <= at or value == 0:
        return value
    factor: float = 0.5 ** ((now - at) / (half_life_days * DAY_S))
    return value * factor


# --- RFM -----------------------------------------------------------------------


def recency_score(days: float, cutoffs: Sequence[float]) -> int:
    """5 at or below the first cut-off, one less past each cut-off (1 past all four)."""
    return 5 - sum(days > c for c in cutoffs)


def count_score(value: float, cutoffs: Sequence[float]) -> int:
    """1 plus the number of cut-offs ``value`` reaches (frequency, monetary)."""
    return 1 + sum(value >= c for c in cutoffs)


def rfm_scores(profile: Profile, cfg: Intelligence, now: float) -> tuple[int, int, int] | None:
    """(r, f, m), each 1 … 5; None for a visitor without orders. ``edge.core.rfm``
    proposes cut-offs with the same two scoring functions."""
    if profile.orders < 1 or profile.last_order_at is None:
        return None
    days = max(0.0, now - profile.last_order_at) / DAY_S
    r = recency_score(days, cfg.recency_days)
    f = count_score(profile.orders, cfg.frequency)
    m = count_score(profile.revenue, cfg.monetary)
    return r, f, m


def rfm_segment(r: int, f: int, m: int) -> str:
    return RFM_GRID[r - 1][(f + m + 1) // 2 - 1]


# --- lead score ----------------------------------------------------------------


def score_value(profile: Profile, cfg: Intelligence, now: float) -> float:
    return decay(profile.score, profile.score_at, now, cfg.score_half_life_days)


def event_points(rules: tuple[ScoreRule, ...], event: Any, url: str | None) -> float:
    """The points of every rule that matches ``event`` (a protocol event)."""
    points = 0.0
    path: str | None = None
    for rule in rules:
        if rule.event != event.type:
            continue
        if rule.name is not None and rule.name != getattr(event, "name", None):
            continue
        if rule.path is not None:
            if path is None:
                path = url_path(url) or "/"
            if rule.path.search(path) is None:
                continue
        points += rule.points
    return points


# --- interests -----------------------------------------------------------------


def add_interests(
    interests: tuple[Interest, ...],
    points: Mapping[str, float],
    now: float,
    half_life_days: float,
    bound: int,
) -> tuple[Interest, ...]:
    """``interests`` decayed to ``now`` plus ``points``, best first, at most ``bound``."""
    scores = {i.name: decay(i.score, i.at, now, half_life_days) for i in interests}
    for name, value in points.items():
        scores[name] = min(MAX_INTEREST, scores.get(name, 0.0) + value)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(Interest(n, round(s, 4), now) for n, s in ranked[:bound] if s >= MIN_INTEREST)


def interest_scores(profile: Profile, cfg: Intelligence, now: float) -> dict[str, float]:
    """Category -> affinity decayed to ``now``, best first."""
    scores = {
        i.name: decay(i.score, i.at, now, cfg.interests_half_life_days) for i in profile.interests
    }
    return {
        name: round(value, 2)
        for name, value in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    }


def _category(line: Any, profile: Profile) -> str | None:
    """A line's category, or the one the visitor saw on the product's page."""
    if line.category:
        return str(line.category)
    viewed = next((v for v in profile.products if v.sku == line.sku), None)
    return viewed.category if viewed is not None else None


def _interest_points(profile: Profile, changes: Mapping[str, Any], event: Any) -> dict[str, float]:
    points: dict[str, float] = {}
    kind = event.type
    if kind == "product_view":
        if event.category:
            points[event.category] = VIEW_POINTS
    elif kind == "cart":  # lines added, or with more units, since the last cart event
        before: dict[str, int] = {}
        for old in profile.cart.lines:
            before[old.sku] = before.get(old.sku, 0) + old.qty
        for line in event.items:
            if line.qty > before.get(line.sku, 0):
                name = _category(line, profile)
                if name:
                    points[name] = points.get(name, 0.0) + CART_POINTS
    elif kind == "purchase" and "orders" in changes:  # not a repeated order id
        for line in event.items:
            name = _category(line, profile)
            if name:
                points[name] = points.get(name, 0.0) + PURCHASE_POINTS
    return points


def on_event(
    profile: Profile,
    changes: Mapping[str, Any],
    event: Any,
    url: str | None,
    cfg: Intelligence,
    now: float,
    bound: int,
) -> dict[str, Any]:
    """The lead score and interest changes of one applied event.

    ``changes`` are those the event's handler made (a purchase of an order id
    already counted makes none, and then earns no interest points).
    """
    out: dict[str, Any] = {}
    if cfg.rules:
        points = event_points(cfg.rules, event, url)
        if points:
            value = round(score_value(profile, cfg, now) + points, 4)
            out["score"] = max(0.0, value)
            out["score_at"] = now
            if profile.score_crossed_at is None and value >= cfg.threshold:
                out["score_crossed_at"] = now
    if event.type in ("product_view", "cart", "purchase"):
        points_by_category = _interest_points(profile, changes, event)
        if points_by_category:
            out["interests"] = add_interests(
                profile.interests, points_by_category, now, cfg.interests_half_life_days, bound
            )
    return out


# --- lifecycle and churn ----------------------------------------------------------


def expected_interval_days(profile: Profile, cfg: Intelligence) -> float | None:
    """The customer's own purchase rhythm: the mean gap between their orders.

    With one order (or orders from before ``first_order_at`` was recorded) there
    is no rhythm yet: ``churn.single_order_days`` stands in for it.
    """
    if profile.orders < 1 or profile.last_order_at is None:
        return None
    if profile.orders < 2 or profile.first_order_at is None:
        return cfg.single_order_days
    mean = (profile.last_order_at - profile.first_order_at) / DAY_S / (profile.orders - 1)
    return max(MIN_INTERVAL_DAYS, mean)


def churn_risk(profile: Profile, cfg: Intelligence, now: float) -> float | None:
    """0 while the quiet time is within the expected interval, then rising
    linearly: 0.5 at twice the interval, 1.0 at three times; None without orders."""
    expected = expected_interval_days(profile, cfg)
    if expected is None or profile.last_order_at is None:
        return None
    quiet = max(0.0, now - profile.last_order_at) / DAY_S
    return round(min(1.0, max(0.0, (quiet / expected - 1) / 2)), 3)


def lifecycle_stage(
    profile: Profile, cfg: Intelligence, now: float, risk: float | None = None
) -> str:
    """The first that applies: lapsed, at_risk, repeat_customer, customer (with
    orders, by churn risk and count), then lead, engaged, new_visitor."""
    if risk is None:
        risk = churn_risk(profile, cfg, now)
    if risk is not None:
        if risk >= 1.0:
            return "lapsed"
        if risk >= AT_RISK:
            return "at_risk"
        return "repeat_customer" if profile.orders >= 2 else "customer"
    if profile.level != "anonymous" or score_value(profile, cfg, now) >= cfg.threshold:
        return "lead"
    if profile.visits >= 2 or profile.pageviews >= 5 or profile.cart.lines:
        return "engaged"
    return "new_visitor"


def winback(profile: Profile, cfg: Intelligence) -> bool:
    """This visit started at least ``winback_days`` after the previous one ended."""
    session, previous = profile.session, profile.previous_visit_at
    if session is None or previous is None:
        return False
    return session.started_at - previous >= cfg.winback_days * DAY_S


# --- personal data --------------------------------------------------------------


def birthday_parts(birthday: str | None) -> tuple[int, int] | None:
    """(month, day) of ``MM-DD`` or ``YYYY-MM-DD``; None when absent or invalid."""
    if not birthday:
        return None
    parts = birthday.split("-")
    try:
        month, day = int(parts[-2]), int(parts[-1])
    except (ValueError, IndexError):
        return None
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(2000, month)[1]:
        return None
    return month, day


def days_to_birthday(birthday: str | None, today: date) -> int | None:
    """Days until the next birthday, 0 on the day. Someone born on 29 February
    celebrates on 28 February in years without one."""
    parts = birthday_parts(birthday)
    if parts is None:
        return None
    month, day = parts

    def on(year: int) -> date:
        if (month, day) == (2, 29) and not calendar.isleap(year):
            return date(year, 2, 28)
        return date(year, month, day)

    next_one = on(today.year)
    if next_one < today:
        next_one = on(today.year + 1)
    return (next_one - today).days


# --- the attributes ----------------------------------------------------------------


def _rfm(profile: Profile, cfg: Intelligence, now: float) -> dict[str, Any]:
    scores = rfm_scores(profile, cfg, now)
    if not scores:
        return {"r": None, "f": None, "m": None, "segment": NO_SEGMENT}
    return {"r": scores[0], "f": scores[1], "m": scores[2], "segment": rfm_segment(*scores)}


def _score(profile: Profile, cfg: Intelligence, now: float) -> dict[str, Any]:
    value = score_value(profile, cfg, now)
    return {"value": round(value, 2), "hot": value >= cfg.threshold}


def _interests(profile: Profile, cfg: Intelligence, now: float) -> dict[str, Any]:
    interests = interest_scores(profile, cfg, now)
    return {"top": list(interests)[:TOP_INTERESTS], "scores": interests}


def _lifecycle(profile: Profile, cfg: Intelligence, now: float) -> dict[str, Any]:
    risk = churn_risk(profile, cfg, now)
    return {
        "stage": lifecycle_stage(profile, cfg, now, risk),
        "churn_risk": risk,
        "winback": winback(profile, cfg),
    }


# Each namespace of this module and how it is built, in the order documented.
BUILDERS: dict[str, Callable[[Profile, Intelligence, float], dict[str, Any]]] = {
    "rfm": _rfm,
    "score": _score,
    "interests": _interests,
    "lifecycle": _lifecycle,
}
NAMESPACES = frozenset(BUILDERS)


def attributes(
    profile: Profile, cfg: Intelligence, now: float, only: frozenset[str] = NAMESPACES
) -> dict[str, Any]:
    """The ``rfm``, ``score``, ``interests`` and ``lifecycle`` namespaces, or
    just those in ``only`` (segments kept on the profile are recomputed on
    every applied event, and need only what their conditions name)."""
    return {name: make(profile, cfg, now) for name, make in BUILDERS.items() if name in only}
