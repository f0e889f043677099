"""Campaign results for the admin API and page: totals per arm over the last
days and the A/B test's answer (``edge.core.experiment``: rates with confidence
intervals, each variant against the control and the holdout, the
sample-ratio check). Pure functions over the ``StatsStore`` table
(day -> arm -> field -> value)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from edge.core.experiment import HOLDOUT, experiment
from edge.core.stats import FIELDS, Table, day_of
from edge.decisioning.campaigns import Campaign


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


def counts(total: dict[str, float]) -> dict[str, Any]:
    """Every statistics field of an arm: counts as whole numbers, revenue as is."""
    out: dict[str, Any] = {name: round(total.get(name, 0.0)) for name in FIELDS}
    out["revenue"] = round(total.get("revenue", 0.0), 2)
    return out


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


def summarize(
    campaign: Campaign, table: Table, days: Sequence[str], now: float, tz: ZoneInfo
) -> dict[str, Any]:
    """One campaign's report: counts per arm, the A/B test's answer
    (``edge.core.experiment``) and the daily activity. ``maturing_from``: the
    first day whose visitors may still click, convert or buy within their
    window (their outcomes are still coming in)."""
    totals = arm_totals(table)
    answer = experiment(totals, campaign.shares(), campaign.attribution_days)
    answer["maturing_from"] = day_of(now - campaign.attribution_days * 86400, tz)
    return {
        "id": campaign.id,
        "name": campaign.name,
        "arms": {arm: counts(total) for arm, total in sorted(totals.items())},
        "experiment": answer,
        "daily": daily(table, days),
    }
