"""A smoke of ``python -m benchmarks app``: the real app in process answers
every message of the simulated visitors (the driver stops with an error on
a message left without its ack), on both stores. Behaviour only, never a
time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.app import _slower
from edge.config.settings import Settings
from tests.helpers import ROOT


def app_benchmark(*options: str) -> str:
    """Its output: 300 events from 20 visitors, twice, with ``options``."""
    command = [sys.executable, "-m", "benchmarks", "app", *options]
    return subprocess.run(
        [*command, "--events", "300", "--visitors", "20", "--repeat", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_the_app_benchmark_answers_every_message(store: str) -> None:
    out = app_benchmark("--store", store)
    header = f"app in process, {store} store, 20 visitors, 2 message(s) in flight, 300 events x 2"
    assert header in out
    assert "CPU per event:" in out
    per_batch = float(out.split("events per store batch: ")[1].split()[0])
    assert per_batch >= 1.0  # the ledger stored them, a batch holding one or more


def test_by_type_counts_every_measured_message_once() -> None:
    out = app_benchmark("--store", "embedded", "--by-type", "--in-flight", "1")
    table = out.split("by type (µs):\n")[1].split("app in process")[0]
    counts = {line.split()[0]: int(line.split("n=")[1].split()[0]) for line in table.splitlines()}
    assert "page_view" in counts
    events = sum(n for kind, n in counts.items() if kind != "hello")
    assert events == 600  # 300 events x 2 runs; the warm-up's are not counted
    shares = [float(line.split("%")[0].split()[-1]) for line in table.splitlines()]
    assert abs(sum(shares) - 100) < 0.5


def test_under_valgrind_every_duration_is_longer_and_no_rate() -> None:
    """``app --under-valgrind``: the settings' durations 50 times their
    defaults (the paths of a normal run, 50 times slower), rates untouched;
    the server takes every value."""
    slower = _slower(50)
    defaults = Settings()
    assert slower["EDGE_ANSWER_DEADLINE_S"] == str(defaults.answer_deadline_s * 50)
    assert slower["EDGE_REDIS_SOCKET_TIMEOUT_S"] == str(defaults.redis_socket_timeout_s * 50)
    assert not [name for name in slower if name.endswith("PER_S")]
    settings = Settings.from_env(slower)
    assert settings.admission_wait_s == defaults.admission_wait_s * 50
    assert settings.max_messages_per_s == defaults.max_messages_per_s
