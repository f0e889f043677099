"""A short smoke of the ``steady`` load scenario, so the benchmark suite keeps working.

Benchmarks are not tests: this asserts behaviour only (the run completes, the
report has its figures, events were acknowledged, nothing failed), never a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, edge_server

pytestmark = [pytest.mark.timeout(60)]

RUN_KEYS = {
    "target_rate",
    "achieved_rate",
    "latency_ms",
    "errors",
    "close_codes",
    "lost_events",
    "events_scheduled_measured",
    "events_acked_measured",
    "acked_share",
    "open_connections",
    "server_cpu_pct",
    "server_rss_mb",
    "loadgen_cpu_pct",
    "timeline",
    "failures",
}


@pytest.mark.parametrize("generators", [1, 2])
def test_steady_smoke_against_a_server_it_is_given(tmp_path: Path, generators: int) -> None:
    """One generator process, and two (``--generators 2``: the visitors and the
    rate split across child processes, their figures merged into one report)."""
    out = tmp_path / "report"
    with edge_server(env={"EDGE_MAX_MESSAGES_PER_S": "1000"}) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks",
                "run",
                "steady",
                "--url",
                server.ws,
                "--server-pid",
                str(server.process.pid),
                "--visitors",
                "100",
                "--rate",
                "200",
                "--duration-s",
                "5",
                "--warmup-s",
                "1",
                "--repeat",
                "1",
                "--seed",
                "7",
                "--generators",
                str(generators),
                "--quiet",
                "--out",
                str(out),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    for key in ("scenario", "machine", "note", "command", "variants"):
        assert key in report
    assert report["machine"]["cores"] and report["machine"]["websockets"]
    (variant,) = report["variants"]
    (run,) = variant["runs"]
    assert run.keys() >= RUN_KEYS
    for q in ("p50", "p90", "p99", "p99_9", "max"):
        assert q in run["latency_ms"]
    assert run["events_scheduled_measured"] > 0
    assert run["acked_share"] >= 0.99, run
    assert run["errors"] == {} and run["close_codes"] == {} and run["lost_events"] == 0, run
    assert run["failures"] == 0
    assert run["generators"] == generators
    assert run["open_connections"] == 100, run["open_connections"]
    assert (
        run["latency_ms"]["count"] + run["session_opening_latency_ms"]["count"]
        == run["events_acked_measured"]
    )
    # every acknowledged event is timed from its send too (merged across processes)
    assert run["admitted_from_send_ms"]["count"] == run["events_acked_measured"], run
    # the first 5 s of the 5 measured, apart (merged across generator processes too)
    head = run["head_latency_ms"]["count"]
    assert 0.8 * run["latency_ms"]["count"] <= head <= run["latency_ms"]["count"], run
    assert (out / "summary.md").read_text().startswith("# `steady`")
    assert (out / "latency.png").stat().st_size > 0 and (out / "rate.png").stat().st_size > 0
