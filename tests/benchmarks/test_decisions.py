"""The in-process benchmarks of ``benchmarks/decisions.py``: behaviour only,
never a time."""

from __future__ import annotations

from benchmarks.decisions import batch_us, run_conditions


def test_batch_us_measures_each_step_once_per_round_taking_turns() -> None:
    order: list[str] = []
    runs = batch_us([lambda i: order.append("a"), lambda i: order.append("b")], 3, 2)
    assert [len(times) for times in runs] == [2, 2]
    assert all(t >= 0 for times in runs for t in times)
    measured = order[2 * 3 :]  # after the warm-up calls of each step
    assert measured == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3


def test_the_conditions_benchmark_compares_the_same_answers() -> None:
    result = run_conditions(calls=200, repeat=3)
    assert result["same_answers"] is True
    assert result["edge_us"] > 0 and result["growthbook_us"] > 0
    assert result["ratio"] > 0
