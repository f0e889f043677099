"""The answer of an A/B test: per arm, the share of its visitors who clicked,
converted and bought within the attribution window, with 95% confidence
intervals, each variant against the control (and against the holdout for
purchases), and a sample-ratio-mismatch check. Pure functions over counts;
the method, with a worked example, is in docs/statistics.md.

* A rate's interval is Wilson's score interval (good at small counts and
  rates near 0, never outside [0, 1]).
* A difference of two rates gets Newcombe's hybrid score interval (his
  method 10, 1998): built from the two Wilson intervals, so the two agree.
* The sample-ratio check is Pearson's chi-square goodness of fit of the
  visitors per arm against the configured split (holdout included), with
  k - 1 degrees of freedom; a mismatch is flagged below p = 0.001, as
  GrowthBook does. The chi-square tail is the regularized upper incomplete
  gamma function, by its series or continued fraction (no SciPy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
SRM_P = 0.001  # a sample ratio mismatch below this p-value
HOLDOUT = "holdout"
# metric -> the statistics field counting visitors with that outcome in the window
METRICS = {"click": "clicked", "conversion": "converted", "purchase": "purchased"}
# metrics the holdout has: it is shown nothing, so it cannot click or convert
HOLDOUT_METRICS = ("purchase",)

Interval = tuple[float, float]


# --- intervals -------------------------------------------------------------------


def wilson(successes: float, trials: float, z: float = Z95) -> Interval:
    """Wilson's score interval for a proportion: the rates p for which the
    observed rate lies within z standard errors, sqrt(p(1-p)/n), of p."""
    if trials <= 0:
        raise ValueError("a rate needs at least one trial")
    p = min(max(successes, 0.0), trials) / trials
    z2n = z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / trials + z2n / (4 * trials))
    low = 0.0 if p == 0 else max(centre - half, 0.0)  # exactly 0 and 1 there (no rounding)
    high = 1.0 if p == 1 else min(centre + half, 1.0)
    return low, high


def newcombe(s1: float, n1: float, s0: float, n0: float, z: float = Z95) -> Interval:
    """Newcombe's hybrid score interval for p1 - p0 (independent samples)."""
    p1, p0 = min(s1, n1) / n1, min(s0, n0) / n0
    l1, u1 = wilson(s1, n1, z)
    l0, u0 = wilson(s0, n0, z)
    d = p1 - p0
    return d - math.hypot(p1 - l1, u0 - p0), d + math.hypot(u1 - p1, p0 - l0)


# --- the chi-square tail ---------------------------------------------------------


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square distributed with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("degrees of freedom must be at least 1")
    if x <= 0:
        return 1.0
    return gamma_q(df / 2, x / 2)


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a)
    (Numerical Recipes' gammq): the series of P = 1 - Q below x = a + 1, where
    it converges fast, the continued fraction of Q above."""
    if x <= 0:
        return 1.0
    if x < a + 1:
        return max(0.0, 1.0 - _p_series(a, x))
    return _q_fraction(a, x)


def _prefactor(a: float, x: float) -> float:
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    denominator = a
    for _ in range(10_000):
        denominator += 1
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * _prefactor(a, x)


def _q_fraction(a: float, x: float) -> float:
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return h * _prefactor(a, x)


# --- the sample-ratio check ----------------------------------------------------------


def srm(
    observed: Mapping[str, float], shares: Mapping[str, float], threshold: float = SRM_P
) -> dict[str, Any] | None:
    """Visitors per arm against the configured split. ``shares`` are the
    configured arms' shares of all visitors (summing to 1). Arms seen but not
    configured (a variant removed since) are left out and listed. None with
    fewer than two configured arms or no visitors in them."""
    arms = [arm for arm, share in shares.items() if share > 0]
    total = sum(observed.get(arm, 0.0) for arm in arms)
    if len(arms) < 2 or total <= 0:
        return None
    expected = {arm: total * shares[arm] for arm in arms}
    chi2 = sum((observed.get(arm, 0.0) - e) ** 2 / e for arm, e in expected.items())
    p_value = chi2_sf(chi2, len(arms) - 1)
    return {
        "observed": {arm: round(observed.get(arm, 0.0)) for arm in arms},
        "expected": expected,
        "shares": {arm: shares[arm] for arm in arms},
        "chi2": chi2,
        "df": len(arms) - 1,
        "p_value": p_value,
        "threshold": threshold,
        "mismatch": p_value < threshold,
        "unconfigured": sorted(arm for arm in observed if arm not in shares),
    }


# --- the report --------------------------------------------------------------------------


def rate(successes: float, trials: float) -> dict[str, Any] | None:
    """``count`` of ``trials`` visitors, their ``rate`` and its ``ci95``."""
    if trials <= 0:
        return None
    low, high = wilson(successes, trials)
    share = min(successes, trials) / trials
    return {"count": round(successes), "rate": share, "ci95": [low, high]}


def compare(
    arm: str, against: str, metric: str, ours: Mapping[str, float], theirs: Mapping[str, float]
) -> dict[str, Any] | None:
    """``arm`` against ``against`` on ``metric``: the difference of rates
    (percentage points as a fraction), Newcombe's 95% interval, the relative
    change (against's rate as the base) and whether the interval leaves out 0.
    None when either arm has no visitors."""
    n1, n0 = ours.get("visitors", 0.0), theirs.get("visitors", 0.0)
    if n1 <= 0 or n0 <= 0:
        return None
    field = METRICS[metric]
    s1, s0 = ours.get(field, 0.0), theirs.get(field, 0.0)
    p1, p0 = min(s1, n1) / n1, min(s0, n0) / n0
    low, high = newcombe(s1, n1, s0, n0)
    return {
        "arm": arm,
        "against": against,
        "metric": metric,
        "difference": p1 - p0,
        "ci95": [low, high],
        "relative": (p1 - p0) / p0 if p0 > 0 else None,
        "significant": low > 0 or high < 0,
    }


def arm_report(arm: str, total: Mapping[str, float], share: float | None) -> dict[str, Any]:
    visitors = total.get("visitors", 0.0)
    shown = HOLDOUT_METRICS if arm == HOLDOUT else tuple(METRICS)
    rates = {
        metric: rate(total.get(field, 0.0), visitors) if metric in shown else None
        for metric, field in METRICS.items()
    }
    return {
        "visitors": round(visitors),
        "expected_share": share,
        **rates,
        "orders": round(total.get("orders", 0.0)),
        "revenue": round(total.get("revenue", 0.0), 2),
    }


def comparisons(
    order: Sequence[str], totals: Mapping[str, Mapping[str, float]], control: str
) -> list[dict[str, Any]]:
    """Every variant against the control on each metric, then every variant
    (the control included) against the holdout on purchases."""
    variants = [arm for arm in order if arm != HOLDOUT]
    empty: Mapping[str, float] = {}
    pairs = [(arm, control, metric) for arm in variants if arm != control for metric in METRICS]
    if HOLDOUT in order:
        pairs += [(arm, HOLDOUT, metric) for arm in variants for metric in HOLDOUT_METRICS]
    found = (
        compare(arm, against, metric, totals.get(arm, empty), totals.get(against, empty))
        for arm, against, metric in pairs
    )
    return [c for c in found if c is not None]


def experiment(
    totals: Mapping[str, Mapping[str, float]],
    shares: Mapping[str, float],
    attribution_days: float,
) -> dict[str, Any]:
    """The whole answer from per-arm totals (``visitors``, ``clicked``,
    ``converted``, ``purchased``, ``orders``, ``revenue``). ``shares``: the
    configured arms in configuration order (variants, then ``holdout``) with
    their shares of visitors; the first is the control."""
    configured = [arm for arm in shares if arm != HOLDOUT]
    control = configured[0] if configured else "a"
    order = [*shares, *sorted(arm for arm in totals if arm not in shares)]
    empty: Mapping[str, float] = {}
    return {
        "attribution_days": attribution_days,
        "confidence": 0.95,
        "control": control,
        "arms": {arm: arm_report(arm, totals.get(arm, empty), shares.get(arm)) for arm in order},
        "comparisons": comparisons(order, totals, control),
        "srm": srm({arm: t.get("visitors", 0.0) for arm, t in totals.items()}, shares),
    }
