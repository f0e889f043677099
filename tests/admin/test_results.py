"""The campaign report and the admin page, as pure functions (no server)."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from edge.admin import page
from edge.admin.stats import last_days, summarize
from edge.config.sites import load_site
from edge.core.experiment import newcombe, wilson
from edge.core.stats import Table
from edge.decisioning.campaigns import Campaign, Variant
from tests.helpers import PROFILES

TZ = ZoneInfo("Europe/Warsaw")
NOW = 1_790_000_000.0  # 2026-09-21 in Warsaw


@pytest.fixture(scope="module")
def ab() -> Campaign:
    """The demo's cart reminder with two variants, 1:3, beside its 20% holdout."""
    cart = load_site(PROFILES / "demo").decisioning.by_id["cart-reminder"]
    variants = (Variant("a", 0.25, None), Variant("b", 1.0, None))
    return replace(cart, name="Cart <b>reminder</b>", variants=variants)


def table(b_visitors: float) -> Table:
    return {
        "2026-09-20": {
            "a": {"visitors": 100, "clicked": 10, "converted": 4, "purchased": 3},
            "b": {"visitors": b_visitors - 100, "clicked": 40, "converted": 20},
            "holdout": {"visitors": 100, "purchased": 1},
        },
        "2026-09-21": {
            "a": {"visitors": 100, "clicked": 10, "converted": 4, "purchased": 3},
            "b": {"visitors": 100, "clicked": 20, "converted": 10, "purchased": 30},
            "holdout": {"visitors": 100, "purchased": 2},
        },
    }


def report(campaign: Campaign, data: Table) -> dict[str, object]:
    days = last_days(NOW, TZ, 2)
    return summarize(campaign, data, days, NOW, TZ)


def test_variants_against_the_control_and_the_holdout(ab: Campaign) -> None:
    got = report(ab, table(b_visitors=600))["experiment"]
    assert isinstance(got, dict)
    assert got["control"] == "a" and got["attribution_days"] == 3
    assert got["maturing_from"] == "2026-09-18"  # three days of outcomes still to come
    assert {arm: a["expected_share"] for arm, a in got["arms"].items()} == pytest.approx(
        {"a": 0.2, "b": 0.6, "holdout": 0.2}
    )
    b = got["arms"]["b"]
    assert b["visitors"] == 600 and b["click"]["rate"] == 0.1
    assert b["click"]["ci95"] == pytest.approx(list(wilson(60, 600)))
    by_pair = {(c["arm"], c["against"], c["metric"]): c for c in got["comparisons"]}
    assert set(by_pair) == {
        ("b", "a", "click"),
        ("b", "a", "conversion"),
        ("b", "a", "purchase"),
        ("a", "holdout", "purchase"),
        ("b", "holdout", "purchase"),
    }
    purchase = by_pair[("b", "a", "purchase")]
    assert purchase["difference"] == pytest.approx(30 / 600 - 6 / 200)
    assert purchase["ci95"] == pytest.approx(list(newcombe(30, 600, 6, 200)))
    assert purchase["relative"] == pytest.approx((0.05 - 0.03) / 0.03)
    # 200, 600 and 200 visitors is exactly 20/60/20.
    assert got["srm"]["chi2"] == pytest.approx(0) and not got["srm"]["mismatch"]


def test_the_page_shows_the_answer_and_warns_of_a_skewed_split(ab: Campaign) -> None:
    def html(b_visitors: float) -> str:
        campaigns = [report(ab, table(b_visitors))]
        shown = {"site": "demo", "config": "v1", "from": "2026-09-20", "to": "2026-09-21",
                 "timezone": "Europe/Warsaw", "campaigns": campaigns}  # fmt: skip
        return page.render([shown], generated="now")

    fine = html(600)
    assert "Sample ratio mismatch" not in fine
    assert "Visitor split as configured (sample-ratio check p = 1.0000)" in fine
    assert "Cart &lt;b&gt;reminder&lt;/b&gt;" in fine  # autoescaped
    assert "10.00% (" in fine and "control a; outcomes within\n 3 days" in fine
    assert "<td>b</td><td>a</td><td>purchase</td>" in fine
    skewed = html(900)  # 200 / 900 / 200 where 20/60/20 expects 260 / 780 / 260
    assert "Sample ratio mismatch" in skewed and 'role="alert"' in skewed
    assert "p &lt; 0.0001" in skewed


def test_a_campaign_without_an_experiment_has_rates_but_nothing_to_compare() -> None:
    plain = load_site(PROFILES / "demo").decisioning.by_id["newsletter"]
    data: Table = {"2026-09-21": {"a": {"visitors": 40, "clicked": 4, "impressions": 90}}}
    got = report(plain, data)
    experiment = got["experiment"]
    assert isinstance(experiment, dict)
    assert experiment["attribution_days"] == 7 and experiment["srm"] is None
    assert experiment["comparisons"] == [] and experiment["arms"]["a"]["click"]["count"] == 4
    assert got["arms"] == {
        "a": {"impressions": 90, "visitors": 40, "clicks": 0, "closes": 0, "conversions": 0,
              "clicked": 4, "converted": 0, "purchased": 0, "orders": 0, "revenue": 0.0}
    }  # fmt: skip
