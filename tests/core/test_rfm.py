"""Unit tests for edge/core/rfm.py: quintile cut-offs proposed from the customers."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from edge.core.intelligence import DAY_S, Intelligence, rfm_scores
from edge.core.profile import Profile
from edge.core.rfm import (
    MIN_CUSTOMERS,
    Customer,
    Mode,
    customer_of,
    propose,
    quintile_cutoffs,
    render_yaml,
    score_shares,
)
from edge.decisioning.config import IntelligenceConfig

VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
NOW = 1_800_000_000.0


def buyer(orders: int, revenue: float, days_ago: float) -> Profile:
    return Profile(
        visitor=VISITOR,
        created_at=0.0,
        orders=orders,
        revenue=revenue,
        last_order_at=NOW - days_ago * DAY_S,
    )


def test_distinct_values_split_into_exact_fifths() -> None:
    values = list(range(1, 101))
    assert quintile_cutoffs(values, "reaches") == ((21, 41, 61, 81), False)
    assert quintile_cutoffs(values, "at_most") == ((20, 40, 60, 80), False)
    modes: list[Mode] = ["reaches", "at_most"]
    for mode in modes:
        cutoffs, _ = quintile_cutoffs(values, mode)
        assert score_shares(values, cutoffs, mode) == (0.2, 0.2, 0.2, 0.2, 0.2)


def test_ties_spread_the_cutoffs_and_leave_an_empty_score() -> None:
    # most customers order once: a fifth below "2 orders" is impossible
    orders = [1] * 70 + [2] * 15 + [3] * 10 + [5] * 5
    cutoffs, spread = quintile_cutoffs(orders, "reaches")
    assert cutoffs == (2, 3, 5, 6)  # moved up to values customers have, then past them
    assert spread
    assert score_shares(orders, cutoffs, "reaches") == (0.7, 0.15, 0.1, 0.05, 0.0)
    # with enough distinct values, collisions move to the next value and every score is used
    orders = [1] * 3 + [2] * 2 + [3, 5, 8]
    cutoffs, spread = quintile_cutoffs(orders, "reaches")
    assert (cutoffs, spread) == ((2, 3, 5, 8), True)
    assert 0 not in score_shares(orders, cutoffs, "reaches")


def test_the_lowest_value_is_never_a_cutoff_of_a_reaching_score() -> None:
    # 90% at the minimum: a cut-off there would give f 1 to nobody
    cutoffs, _ = quintile_cutoffs([1] * 90 + [4] * 10, "reaches")
    assert cutoffs[0] == 4
    assert score_shares([1] * 90 + [4] * 10, cutoffs, "reaches")[0] == 0.9


def test_the_highest_value_is_never_a_recency_cutoff() -> None:
    days = [10] * 10 + [400] * 90
    cutoffs, _ = quintile_cutoffs(days, "at_most")
    assert cutoffs[3] < 400  # else r 1 would be empty however long ago they bought
    assert score_shares(days, cutoffs, "at_most")[0] == 0.9  # r 1


@pytest.mark.parametrize("mode", ["reaches", "at_most"])
def test_a_single_customer_still_gets_valid_cutoffs(mode: Mode) -> None:
    cutoffs, spread = quintile_cutoffs([3], mode)
    assert list(cutoffs) == sorted(set(cutoffs)) and len(cutoffs) == 4
    assert spread
    shares = score_shares([3], cutoffs, mode)
    assert sorted(shares) == [0, 0, 0, 0, 1.0]


def test_two_values() -> None:
    assert quintile_cutoffs([5, 9], "reaches")[0] == (9, 10, 11, 12)
    assert quintile_cutoffs([5, 9], "at_most")[0] == (5, 6, 7, 8)


def test_no_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        quintile_cutoffs([], "reaches")


@given(
    st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=300),
    st.sampled_from(["reaches", "at_most"]),
)
def test_cutoffs_are_always_four_ascending_whole_numbers_the_config_accepts(
    values: list[int], mode: Mode
) -> None:
    cutoffs, _ = quintile_cutoffs(values, mode)
    assert all(isinstance(c, int) and c >= 0 for c in cutoffs)
    assert all(b > a for a, b in itertools.pairwise(cutoffs))
    IntelligenceConfig.model_validate({"rfm": {"frequency": list(cutoffs)}})
    assert sum(score_shares(values, cutoffs, mode)) == pytest.approx(1.0)


def test_no_buyers_no_proposal() -> None:
    visitor = Profile(visitor=VISITOR, created_at=0.0, pageviews=12)
    assert customer_of(visitor, NOW) is None
    assert propose([], scanned=40) is None


def test_a_merged_device_profile_is_not_counted_twice() -> None:
    device = dataclasses.replace(buyer(2, 80.0, 3), merged_into="c" * 32)
    assert customer_of(device, NOW) is None


def test_customer_values_are_rounded_the_exact_way() -> None:
    # days up, revenue down: "days <= c" and "revenue >= c" keep their answers
    assert customer_of(buyer(3, 149.99, 12.01), NOW) == Customer(13, 3, 149)
    assert customer_of(buyer(1, 20.0, 0.0), NOW) == Customer(0, 1, 20)
    future = dataclasses.replace(buyer(1, 20.0, 0.0), last_order_at=NOW + 3600)
    assert customer_of(future, NOW) == Customer(0, 1, 20)  # a clock ahead: today


def test_the_proposed_shares_are_what_the_site_will_score() -> None:
    rng = random.Random(7)
    profiles = [
        buyer(
            orders=rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 6, 9]),
            revenue=round(rng.lognormvariate(5, 1), 2),
            days_ago=rng.uniform(0, 700),
        )
        for _ in range(1000)
    ]
    customers = [c for c in (customer_of(p, NOW) for p in profiles) if c is not None]
    proposal = propose(customers, scanned=1500)
    assert proposal is not None
    assert (proposal.customers, proposal.scanned) == (1000, 1500)
    cfg = Intelligence(
        recency_days=proposal.recency.cutoffs,
        frequency=proposal.frequency.cutoffs,
        monetary=proposal.monetary.cutoffs,
    )
    scored = [rfm_scores(p, cfg, NOW) for p in profiles]
    for axis, index in zip(proposal.axes, range(3), strict=True):
        counts = Counter(s[index] for s in scored if s is not None)
        assert tuple(counts[score] / 1000 for score in range(1, 6)) == axis.shares
    # nearly continuous values (whole days, whole euros): fifths, give or take a tie
    assert proposal.recency.shares == pytest.approx((0.2,) * 5, abs=0.01)
    assert proposal.monetary.shares == pytest.approx((0.2,) * 5, abs=0.01)
    assert proposal.frequency.shares[0] == sum(p.orders == 1 for p in profiles) / 1000


def test_warnings_for_few_customers_and_empty_scores() -> None:
    few = propose([Customer(10, 1, 50), Customer(20, 1, 70), Customer(30, 2, 90)], scanned=9)
    assert few is not None
    warnings = few.warnings()
    assert any(w.startswith("only 3 profiles with orders") for w in warnings)
    assert any(w.startswith("frequency: no customer gets score") for w in warnings)
    many = propose([Customer(d, 1 + d % 7, 10 * d) for d in range(MIN_CUSTOMERS)], scanned=100)
    assert many is not None
    assert many.warnings() == []
    assert many.warnings(min_customers=1000)[0].startswith("only 100 profiles")


def test_the_yaml_pastes_into_the_site_configuration() -> None:
    proposal = propose([Customer(d, 1 + d % 5, 7 * d) for d in range(200)], scanned=250)
    assert proposal is not None
    text = render_yaml(proposal, "demo", "2027-01-15T12:00:00+00:00")
    data = yaml.safe_load(text)
    assert list(data) == ["intelligence"]
    rfm = IntelligenceConfig.model_validate(data["intelligence"]).rfm
    assert rfm.recency_days == list(proposal.recency.cutoffs)
    assert rfm.frequency == list(proposal.frequency.cutoffs)
    assert rfm.monetary == list(proposal.monetary.cutoffs)
    assert "quintiles of 200 profiles with orders (250 profiles read)" in text
    assert "# r 5 4 3 2 1: 20% 20% 20% 20% 20%" in text
