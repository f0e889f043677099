"""The A/B test's statistics (edge.core.experiment), against published values
and closed forms."""

from __future__ import annotations

import math

import pytest

from edge.core.experiment import Z95, chi2_sf, compare, experiment, gamma_q, newcombe, srm, wilson


def test_wilson_matches_the_published_example_and_its_definition() -> None:
    # Wilson's interval for 81 of 263 (Wikipedia, "Binomial proportion confidence interval").
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # Its ends are the rates p at which 81/263 lies exactly z standard errors away.
    for p in (low, high):
        assert (81 / 263 - p) ** 2 == pytest.approx(Z95**2 * p * (1 - p) / 263)


def test_wilson_stays_inside_zero_and_one() -> None:
    assert wilson(0, 10)[0] == 0.0 and 0 < wilson(0, 10)[1] < 0.35
    assert wilson(10, 10)[1] == 1.0 and 0.65 < wilson(10, 10)[0] < 1
    assert wilson(12, 10) == wilson(10, 10)  # more successes than trials: capped
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_newcombe_matches_his_paper() -> None:
    """Newcombe (1998), Statistics in Medicine 17:873, table II, example (a):
    56/70 - 48/80, method 10: 0.0524 to 0.3339."""
    low, high = newcombe(56, 70, 48, 80)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    # Swapping the arms mirrors the interval.
    assert newcombe(48, 80, 56, 70) == pytest.approx((-high, -low))


@pytest.mark.parametrize("x", [0.001, 0.1, 1.0, 2.5, 3.841458820694124, 7.0, 10.83, 30.0, 80.0])
def test_chi_square_tail_agrees_with_closed_forms(x: float) -> None:
    root = math.sqrt(x / 2)
    assert chi2_sf(x, 1) == pytest.approx(math.erfc(root), rel=1e-12)
    assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
    three = math.erfc(root) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    assert chi2_sf(x, 3) == pytest.approx(three, rel=1e-12)
    assert chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-12)


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [  # critical values of the chi-square distribution (any statistics table)
        (3.841458820694124, 1, 0.05),
        (10.827566170662733, 1, 0.001),
        (13.815510557964274, 2, 0.001),
        (16.26623619623813, 3, 0.001),
        (23.209251158954356, 10, 0.01),
        (43.77297182574219, 30, 0.05),
    ],
)
def test_chi_square_tail_at_critical_values(x: float, df: int, p: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-9)


def test_gamma_q_edges() -> None:
    assert gamma_q(1.0, 0.0) == 1.0 and chi2_sf(0.0, 3) == 1.0
    assert 0 < chi2_sf(400.0, 2) < 1e-80  # far in the tail, no underflow to garbage
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)


def test_sample_ratio_mismatch() -> None:
    shares = {"a": 0.4, "b": 0.4, "holdout": 0.2}
    fine = srm({"a": 4000, "b": 4050, "holdout": 1990}, shares)
    assert fine is not None and not fine["mismatch"] and fine["df"] == 2
    # Pearson's statistic by hand: expected 4016, 4016, 2008 of 10,040.
    by_hand = (16**2 + 34**2) / 4016 + 18**2 / 2008
    assert fine["chi2"] == pytest.approx(by_hand)
    assert fine["p_value"] == pytest.approx(math.exp(-by_hand / 2))  # 2 degrees of freedom
    broken = srm({"a": 4000, "b": 4400, "holdout": 2000, "old": 50}, shares)
    assert broken is not None and broken["mismatch"] and broken["p_value"] < 0.001
    assert broken["unconfigured"] == ["old"] and "old" not in broken["observed"]
    assert srm({"a": 10}, {"a": 1.0}) is None  # one arm: nothing to check
    assert srm({}, shares) is None


def test_comparisons_need_visitors_on_both_sides() -> None:
    assert compare("b", "a", "click", {"visitors": 10, "clicked": 2}, {"visitors": 0}) is None
    assert compare("b", "a", "click", {"visitors": 80, "clicked": 4}, {}) is None
    zero = compare("b", "a", "click", {"visitors": 80, "clicked": 4}, {"visitors": 50})
    assert zero is not None and zero["relative"] is None  # no base rate to be relative to


def test_the_whole_answer() -> None:
    totals = {
        "a": {"visitors": 70, "clicked": 56, "converted": 7, "purchased": 4, "orders": 5},
        "b": {"visitors": 80, "clicked": 48, "converted": 8, "purchased": 8, "revenue": 99.5},
        "holdout": {"visitors": 40, "purchased": 1, "orders": 1},
    }
    shares = {"a": 0.4, "b": 0.4, "holdout": 0.2}
    got = experiment(totals, shares, 7)
    assert got["control"] == "a" and got["attribution_days"] == 7
    assert list(got["arms"]) == ["a", "b", "holdout"]
    b = got["arms"]["b"]
    assert b["visitors"] == 80 and b["revenue"] == 99.5 and b["expected_share"] == 0.4
    assert b["click"]["count"] == 48 and b["click"]["rate"] == 0.6
    assert b["click"]["ci95"] == pytest.approx(list(wilson(48, 80)))
    holdout = got["arms"]["holdout"]
    assert holdout["click"] is None and holdout["conversion"] is None
    assert holdout["purchase"]["rate"] == 0.025
    pairs = [(c["arm"], c["against"], c["metric"]) for c in got["comparisons"]]
    assert pairs == [
        ("b", "a", "click"),
        ("b", "a", "conversion"),
        ("b", "a", "purchase"),
        ("a", "holdout", "purchase"),
        ("b", "holdout", "purchase"),
    ]
    click = got["comparisons"][0]
    assert click["difference"] == pytest.approx(0.6 - 0.8)
    assert click["ci95"] == pytest.approx([-0.3339, -0.0524], abs=1e-4)  # Newcombe's example
    assert click["significant"] is True and click["relative"] == pytest.approx(-0.25)
    assert got["srm"]["observed"] == {"a": 70, "b": 80, "holdout": 40}


def test_an_arm_no_longer_configured_is_shown_but_not_checked() -> None:
    totals = {"a": {"visitors": 50}, "old": {"visitors": 5, "clicked": 1}}
    got = experiment(totals, {"a": 1.0}, 3)
    assert list(got["arms"]) == ["a", "old"] and got["srm"] is None
    pairs = {(c["arm"], c["against"], c["metric"]) for c in got["comparisons"]}
    assert pairs == {("old", "a", "click"), ("old", "a", "conversion"), ("old", "a", "purchase")}
    empty = experiment({}, {"a": 0.5, "b": 0.5}, 7)
    assert empty["arms"]["a"]["click"] is None and empty["comparisons"] == []
