"""docs/statistics.md's worked example, recomputed: its counts go through
edge.core.experiment, and every figure the document states must be what the code
(and the admin page's formatting) gives."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from edge.admin.page import ci, pts, rel
from edge.config.sites import load_site
from edge.core.experiment import METRICS, Z95, experiment, srm, wilson
from tests.helpers import ROOT

DOC = (ROOT / "docs" / "statistics.md").read_text()
MINUS = "\u2212"  # the document writes a minus sign, not a hyphen


def block(name: str) -> list[str]:
    """The table or indented block that follows ``<!-- example: name -->``."""
    marker = f"<!-- example: {name} -->"
    assert marker in DOC, marker
    lines = DOC.split(marker, 1)[1].splitlines()[1:]
    found = []
    for line in lines:
        if not line.strip():
            if found:
                break
            continue
        found.append(line)
    return found


def table(name: str) -> list[dict[str, str]]:
    header, _, *rows = block(name)
    names = [cell.strip() for cell in header.strip("|").split("|")]
    return [
        dict(zip(names, (cell.strip() for cell in row.strip("|").split("|")), strict=True))
        for row in rows
    ]


def text(name: str) -> str:
    return "\n".join(block(name))


def counts() -> dict[str, dict[str, float]]:
    return {
        row["arm"]: {
            "visitors": float(row["visitors"]),
            **{field: float(row[field]) for field in METRICS.values() if row[field]},
        }
        for row in table("counts")
    }


def shares() -> dict[str, float]:
    return {row["arm"]: float(row["configured share"].rstrip("%")) / 100 for row in table("counts")}


ANSWER = experiment(counts(), shares(), 7)


def test_the_configuration_shown_gives_the_shares_in_the_table(tmp_path: Path) -> None:
    yaml_block = DOC.split("```yaml\n", 1)[1].split("```", 1)[0]
    campaign = {"id": "free-shipping", "placement": "bar", "widget": {"kind": "bar"}}
    campaign.update(yaml.safe_load(yaml_block))
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "site.yaml").write_text("site: {id: shop, timezone: Europe/Warsaw}\n")
    (folder / "campaigns.yaml").write_text(yaml.safe_dump({"campaigns": [campaign]}))
    [compiled] = load_site(folder).decisioning.campaigns
    assert compiled.shares() == pytest.approx(shares())
    assert compiled.attribution_days == 7


def test_the_sample_ratio_check() -> None:
    check = ANSWER["srm"]
    assert check is not None and not check["mismatch"]
    stated = text("srm")
    observed = {arm: c["visitors"] for arm, c in counts().items()}
    for arm, expected in check["expected"].items():
        term = (observed[arm] - expected) ** 2 / expected
        assert f"{abs(observed[arm] - expected):g}²/{expected:g}" in stated
        assert f"{term:.4f}" in stated
    assert f"= {check['chi2']:.4f}" in stated
    assert f"Q(1, {check['chi2'] / 2:.4f}) = e^({MINUS}{check['chi2'] / 2:.4f}) = " in stated
    assert f"= {check['p_value']:.4f}" in stated
    assert math.exp(-check["chi2"] / 2) == pytest.approx(check["p_value"])
    # The broken variant of the example: b with 4100 visitors.
    broken = srm({**observed, "b": 4100}, shares())
    assert broken is not None and broken["mismatch"]
    flowing = " ".join(DOC.split())
    assert f"χ² would be {broken['chi2']:.4f}, p = {broken['p_value']:.7f}" in flowing


def test_the_wilson_steps() -> None:
    stated = text("wilson")
    n, x = 4420, 420
    p = x / n
    z2n = Z95**2 / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = Z95 / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    assert f"{x} / {n} = {p:.6f}" in stated
    assert f"{Z95:.6f}² / {n} = {z2n:.6f}" in stated
    assert f"({p:.6f} + {z2n / 2:.6f}) / {1 + z2n:.6f} = {centre:.6f}" in stated
    root = f"√({p:.6f} · {1 - p:.6f} / {n} + {z2n:.6f} / {4 * n})"
    assert f"{Z95:.6f} / {1 + z2n:.6f} · {root} = {half:.6f}" in stated
    low, high = wilson(x, n)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert f"{low:.6f} to {high:.6f}" in stated


def test_the_rates() -> None:
    rows = table("rates")
    assert [row["arm"] for row in rows] == list(ANSWER["arms"])
    for row in rows:
        arm = ANSWER["arms"][row["arm"]]
        assert row["click-through"] == ci(arm["click"])
        assert row["conversion"] == ci(arm["conversion"])
        assert row["purchase"] == ci(arm["purchase"])


def test_the_newcombe_steps() -> None:
    stated = " ".join(DOC.split())
    b, a = ANSWER["arms"]["b"]["click"], ANSWER["arms"]["a"]["click"]
    d = b["rate"] - a["rate"]
    (lb, ub), (la, ua) = b["ci95"], a["ci95"]
    assert f"d = {b['rate']:.6f} {MINUS} {a['rate']:.6f} = {d:.6f}" in stated
    assert f"(`a`: {la:.6f} to {ua:.6f})" in stated
    steps = text("newcombe")
    lower = f"{d:.6f} {MINUS} √({b['rate'] - lb:.6f}² + {ua - a['rate']:.6f}²)"
    upper = f"{d:.6f} + √({ub - b['rate']:.6f}² + {a['rate'] - la:.6f}²)"
    [click] = [c for c in ANSWER["comparisons"] if (c["arm"], c["metric"]) == ("b", "click")]
    assert f"{lower} = {click['ci95'][0]:.6f}" in steps
    assert f"{upper} = {click['ci95'][1]:.6f}" in steps


def test_the_comparisons() -> None:
    rows = table("comparisons")
    assert len(rows) == len(ANSWER["comparisons"])
    for row, got in zip(rows, ANSWER["comparisons"], strict=True):
        assert (row["arm"], row["against"], row["metric"]) == (
            got["arm"],
            got["against"],
            got["metric"],
        )
        assert row["difference"] == pts(got["difference"])
        assert row["95% CI"] == f"{pts(got['ci95'][0])} to {pts(got['ci95'][1])}"
        assert row["relative"] == rel(got["relative"])
        assert row["significant"] == ("yes" if got["significant"] else "no")


def test_the_document_is_linked() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/statistics.md" in readme
    assert "(statistics.md)" in (ROOT / "docs" / "configuration.md").read_text()
    assert "(statistics.md)" in (ROOT / "docs" / "operations.md").read_text()
