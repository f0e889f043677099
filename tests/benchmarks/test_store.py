"""A smoke of ``python -m benchmarks store``: both ways run their batches
against a private redis-server and every write wins its compare-and-set (the
benchmark asserts that itself). Behaviour only, never a time."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_the_store_benchmark_runs_both_ways() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "store", "--batches", "200", "--size", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "200 batches of 2 write(s) each way, 3 runs" in out
    rows = [line for line in out.splitlines() if line.startswith(("| own", "| pooled"))]
    assert [row.split(" | ")[0] for row in rows] == ["| own connection", "| pooled pipeline"]
    assert "own connection / pooled pipeline:" in out
