"""``python -m benchmarks instructions``: the instructions edge's app executes
per event, counted by valgrind, so the same on a quiet machine and a busy one.

``python -m benchmarks app`` reads the process's CPU time. On this shared
virtual machine, two runs of one commit may differ by a fifth from one
hour to the next, and even from one run to the next (RESULTS.md, 2026-12-07:
470-690 µs per event within minutes), more than most single changes are
worth. A count of instructions does not depend on the machine's speed: this
runs ``benchmarks app`` under valgrind's cachegrind (counting only,
``--cache-sim=no``) twice, with ``--events`` N and N + M, and reports
(Ir(N + M) - Ir(N)) / M, the instructions of one more event: start-up
(imports, loading the sites, the driver's warm-up) cancels out.

The run is made repeatable: one message in flight (so every store batch
holds one event, whatever the timing), the embedded store by default (no
Redis process whose timing would decide the batches), ``PYTHONHASHSEED=0``,
and the load generator's seeded visitors. Two runs of one commit agree
within about 0.1% (RESULTS.md).

What it does not count: time the processor waits on memory (cache misses,
the cost of waking up after a sleep), the kernel's work (system calls), and
other processes (Redis). So it weighs code changes, not the machine; a
change that trades instructions for memory traffic or system calls is not
seen as it is: confirm with ``app`` and the load scenarios.

Needs valgrind (``apt-get install valgrind``). Under it the process runs
about 50 times slower, so ``app --under-valgrind`` makes every duration of
the settings 50 times its default (the answer deadline, the admission wait,
Redis's socket deadline ...: the paths taken are those of a normal run, not
fallbacks after a deadline missed), and lifts the template checks' budgets
and the driver's wait for an answer (the first user-agent lookup builds its
parser: seconds under valgrind). Timers that are not settings keep their
length: the automation recorder, which gathers for 50 ms, writes fewer and
larger batches than in a normal run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

_IR = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(events: int, store: str, visitors: int) -> int:
    """Instructions of one ``benchmarks app`` run of ``events`` events."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    command = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks",
        "app",
        "--store",
        store,
        "--in-flight",
        "1",
        "--visitors",
        str(visitors),
        "--events",
        str(events),
        "--repeat",
        "1",
        "--under-valgrind",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = _IR.search(done.stderr)
    if done.returncode != 0 or found is None or "CPU per event" not in done.stdout:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-12:])
        raise SystemExit(f"benchmarks app under valgrind failed ({done.returncode}):\n{tail}")
    return int(found.group(1).replace(",", ""))


def run(*, events: int, more: int, store: str, visitors: int) -> float:
    if events < 1 or more < 1:
        raise SystemExit("--events and --more must be at least 1")
    base = count(events, store, visitors)
    total = count(events + more, store, visitors)
    per_event = (total - base) / more
    print(f"app in process under valgrind, {store} store, {visitors} visitors, 1 message in flight")
    print(f"instructions: {base:,} for {events} events, {total:,} for {events + more}")
    print(f"instructions per event: {per_event:,.0f}")
    return per_event
