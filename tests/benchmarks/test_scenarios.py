"""The capacity ladder's rules (``benchmarks.scenarios.capacity_ladder``),
driven by a scripted stand-in for the load generator: no server, no
timing, only which steps are run and what the ladder concludes."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from benchmarks import scenarios

LIMIT_MS = 10.0


def step(rate: float, p99_ms: float, lag_ms: float, steal_pct: float = 2.0) -> dict[str, Any]:
    return {
        "target_rate": rate,
        "achieved_rate": rate,
        "latency_ms": {"p99": p99_ms},
        "failures": 0,
        "acked_share": 1.0,
        "loadgen_loop_lag_ms_max": lag_ms,
        "errors": {},
        "close_codes": {},
        "lost_events": 0,
        "undelivered_at_end": 0,
        "server_cpu_pct": 50.0,
        "loadgen_cpu_pct": 20.0,
        "machine_steal_pct": steal_pct,
    }


@dataclass
class Label:
    label: str = "stand-in"


@dataclass
class Scripted:
    """Answers each ``phase_run`` with the next (p99 ms, generator lag ms[,
    CPU stolen from the machine %]) of its script, and records the rates it
    was asked for."""

    script: list[tuple[float, ...]]
    cfg: Label = field(default_factory=Label)
    asked: list[float] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def phase_run(self, rate: float, duration_s: float, warmup_s: float) -> dict[str, Any]:
        self.asked.append(rate)
        return step(rate, *self.script.pop(0))


def ladder(monkeypatch: pytest.MonkeyPatch, gen: Scripted, tries: int) -> dict[str, Any]:
    monkeypatch.setattr(scenarios, "make_generator", lambda cfg: gen)
    args = argparse.Namespace(
        repeat=1,
        start_rate=500.0,
        step_rate=500.0,
        max_rate=5000.0,
        step_s=1.0,
        step_warmup_s=0.0,
        p99_limit_ms=LIMIT_MS,
        step_tries=tries,
        steal_limit_pct=10.0,
    )
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    (result,) = asyncio.run(scenarios.capacity_ladder(args, Label()))  # type: ignore[arg-type]
    return result


async def _no_sleep(delay: float, result: Any = None) -> Any:
    return result


def test_a_step_failed_while_the_generator_stalled_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,000/s fails with the generator 44 ms late, then holds: the ladder goes on.
    gen = Scripted([(3, 5), (14, 44), (4, 5), (12, 3)])
    result = ladder(monkeypatch, gen, tries=3)
    assert gen.asked == [500, 1000, 1000, 1500]
    assert result["held_rate"] == 1000
    assert [(s["try"], s["held"]) for s in result["steps"]] == [
        (1, True),
        (1, False),
        (2, True),
        (1, False),
    ]
    assert result["steps"][1]["generator_stalled"] is True
    assert (result["first_failed"]["target_rate"], result["first_failed"]["try"]) == (1500, 1)


def test_a_step_failed_on_its_own_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = Scripted([(3, 5), (12, 4)])  # the generator on time: the server missed the limit
    result = ladder(monkeypatch, gen, tries=3)
    assert gen.asked == [500, 1000]
    assert result["held_rate"] == 500


def test_the_tries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = Scripted([(3, 5), (30, 25), (31, 26), (29, 24)])  # the generator late every time
    result = ladder(monkeypatch, gen, tries=3)
    assert gen.asked == [500, 1000, 1000, 1000]
    assert result["held_rate"] == 500
    assert [s["try"] for s in result["steps"]] == [1, 1, 2, 3]
    assert result["first_failed"]["try"] == 3  # the try that decided


def test_one_try_is_the_old_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = Scripted([(3, 5), (14, 44)])
    assert ladder(monkeypatch, gen, tries=1)["held_rate"] == 500
    assert gen.asked == [500, 1000]


def test_a_step_failed_while_the_host_took_the_cpus_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,000/s fails with 30% of a core stolen by the hypervisor, then holds;
    # 1,500/s fails with 5% stolen (below the limit): that one is the server's.
    gen = Scripted([(3, 5, 2), (14, 5, 30), (4, 5, 3), (12, 3, 5)])
    result = ladder(monkeypatch, gen, tries=3)
    assert gen.asked == [500, 1000, 1000, 1500]
    assert result["held_rate"] == 1000
    reasons = [s["retry_reason"] for s in result["steps"]]
    assert reasons == [None, "machine stolen", None, None]
    assert result["first_failed"]["machine_steal_pct"] == 5


def test_the_report_says_why_a_step_was_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = Scripted([(3, 5, 2), (14, 44, 2), (14, 5, 30), (12, 3, 40)])
    result = ladder(monkeypatch, gen, tries=3)
    report = {
        "scenario": "capacity",
        "p99_limit_ms": LIMIT_MS,
        "flags": {"step_tries": 3, "steal_limit_pct": 10.0},
        "variants": [{"name": "edge", "ladders": [result]}],
    }
    for s in result["steps"]:  # what the real generator reports besides
        s["latency_ms"].update(p50=1.0, p99_9=20.0, max=30.0)
        s["session_opening_latency_ms"] = {"p99": 15.0}
        s["redis_ops_per_s"] = 100.0
    rows = [
        line
        for line in scenarios._ladder_lines(report, report["variants"][0])
        if line.startswith("| 1 |")
    ]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == [
        "yes",
        "no (generator stalled)",
        "no (machine stolen)",
        "no (machine stolen)",
    ]
    assert "| 30 |" in rows[2]  # the stolen share is in the table


def steady_variant(name: str, cpu_pct: float, rate: float) -> dict[str, Any]:
    figure = {"median": None, "min": None, "max": None}
    summary = {"p99_ms": dict(figure, median=5.0)}
    summary["server_cpu_pct"] = dict(figure, median=cpu_pct)
    summary["achieved_rate"] = dict(figure, median=rate)
    return {"name": name, "summary": summary}


def test_steady_echo_variants_are_compared_by_cpu_per_message() -> None:
    report = {
        "scenario": "echo",
        "variants": [
            steady_variant("bare echo", 20.0, 1000.0),
            steady_variant("storing echo", 25.0, 1000.0),
            steady_variant("edge", 65.0, 1000.0),
        ],
    }
    (line,) = scenarios._comparison(report)
    assert line == (
        "Server CPU per message: bare echo 0.200 ms (20% of a core at 1000/s); "
        "storing echo 0.250 ms (25% of a core at 1000/s); edge 0.650 ms (65% of a core at 1000/s)."
    )
    assert report["variants"][2]["server_cpu_ms_per_message"] == pytest.approx(0.65)


def test_echo_ladders_say_when_the_storing_echo_held_nothing() -> None:
    def rate(held: float) -> dict[str, Any]:
        return {"held_rate": {"median": held, "min": held, "max": held}}

    report = {"scenario": "echo", "variants": [rate(3000.0), rate(0.0), rate(1000.0)]}
    lines = scenarios._comparison(report)
    assert "**33%** of the transport ceiling" in lines[0]
    assert "held no step" in lines[1]
    assert "edge_share_of_floor" not in report


def test_the_private_redis_listens_on_a_unix_socket_when_asked() -> None:
    import redis as redis_py

    with scenarios.redis_server(unix=True) as url:
        assert url.startswith("unix://") and url.endswith("/redis.sock?db=0")
        client = redis_py.Redis.from_url(url)
        try:
            assert client.ping() is True
            assert client.connection_pool.connection_class is redis_py.UnixDomainSocketConnection
        finally:
            client.close()
