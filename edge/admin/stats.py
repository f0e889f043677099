"""Campaign results for the admin API and page: totals per arm over the last
days, and each variant's uplift against the holdout. Pure functions over the
``StatsStore`` table (day -> arm -> field -> value)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from edge.stats import FIELDS, Table

HOLDOUT = "holdout"
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def last_days(now: float, tz: ZoneInfo, count: int) -> list[str]:
    """The ``count`` days up to today in the site's time zone, oldest first."""
    today = datetime.fromtimestamp(now, tz).date()
    return [(today - timedelta(days=i)).isoformat() for i in reversed(range(count))]


def arm_totals(table: Table) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for arms in table.values():
        for arm, values in arms.items():
            total = totals.setdefault(arm, dict.fromkeys(FIELDS, 0.0))
            for name, value in values.items():
                total[name] = total.get(name, 0.0) + value
    return totals


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def with_rates(total: dict[str, float]) -> dict[str, Any]:
    """Counts plus ``conversion_rate`` (the widget's goal per visitor who saw
    it) and ``purchase_rate`` (orders per visitor who saw it)."""
    out: dict[str, Any] = {name: total.get(name, 0.0) for name in FIELDS}
    for name in ("impressions", "visitors", "clicks", "closes", "conversions", "orders"):
        out[name] = int(out[name])
    out["conversion_rate"] = _rate(total.get("conversions", 0.0), total.get("visitors", 0.0))
    out["purchase_rate"] = _rate(total.get("orders", 0.0), total.get("visitors", 0.0))
    return out


def uplift(arm: dict[str, float], holdout: dict[str, float]) -> dict[str, Any] | None:
    """Difference in purchase rate (orders / visitors) of an arm against the
    holdout, with a 95% confidence interval by the normal approximation for
    the difference of two independent proportions (Wald):
    ``d ± 1.96 * sqrt(p1(1-p1)/n1 + p0(1-p0)/n0)``. A visitor with several
    orders makes the rate exceed a proportion; the variance term then uses
    the rate capped at 1. None without visitors on either side."""
    n1, n0 = arm.get("visitors", 0.0), holdout.get("visitors", 0.0)
    if n1 <= 0 or n0 <= 0:
        return None
    p1, p0 = arm.get("orders", 0.0) / n1, holdout.get("orders", 0.0) / n0
    q1, q0 = min(p1, 1.0), min(p0, 1.0)
    se = math.sqrt(q1 * (1 - q1) / n1 + q0 * (1 - q0) / n0)
    difference = p1 - p0
    low, high = difference - Z95 * se, difference + Z95 * se
    return {
        "metric": "purchase_rate",
        "variant_rate": p1,
        "holdout_rate": p0,
        "difference": difference,
        "ci95": [low, high],
        "standard_error": se,
        "relative": difference / p0 if p0 > 0 else None,
        "significant": low > 0 or high < 0,
        "method": "normal approximation, difference of two proportions",
    }


def daily(table: Table, days: Sequence[str]) -> list[dict[str, Any]]:
    """Impressions and conversions per day over the arms that showed the
    campaign (the holdout's would-have-seen reports are left out)."""
    rows = []
    for day in days:
        arms = table.get(day, {})
        shown = [v for arm, v in arms.items() if arm != HOLDOUT]
        rows.append(
            {
                "day": day,
                "impressions": int(sum(v.get("impressions", 0.0) for v in shown)),
                "conversions": int(sum(v.get("conversions", 0.0) for v in shown)),
            }
        )
    return rows


def summarize(campaign: str, name: str, table: Table, days: Sequence[str]) -> dict[str, Any]:
    totals = arm_totals(table)
    holdout = totals.get(HOLDOUT)
    has_holdout = holdout is not None and holdout.get("visitors", 0.0) > 0
    return {
        "id": campaign,
        "name": name,
        "arms": {arm: with_rates(total) for arm, total in sorted(totals.items())},
        "uplift": (
            {arm: uplift(total, holdout) for arm, total in sorted(totals.items()) if arm != HOLDOUT}
            if has_holdout and holdout is not None
            else None
        ),
        "daily": daily(table, days),
    }
