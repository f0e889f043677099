"""``python -m benchmarks instructions`` without valgrind: a stand-in
``valgrind`` on PATH runs the command it is given (the real ``benchmarks
app --under-valgrind``) and reports a made-up instruction count, a
thousand per event plus a start-up, so the figure printed must be exactly
1,000 per event. Behaviour only, never a time."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

STAND_IN = """#!{python}
import re, subprocess, sys
args = [a for a in sys.argv[1:] if not a.startswith("--") or "=" not in a]  # its own options
done = subprocess.run(args)
events = int(sys.argv[sys.argv.index("--events") + 1])
sys.stderr.write("==1== I   refs:      {{:,}}\\n".format(5_000_000 + 1_000 * events))
sys.exit(done.returncode)
"""


def instructions(valgrind: str, folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``benchmarks instructions`` with ``valgrind`` (a script) first on PATH."""
    stand_in = folder / "valgrind"
    stand_in.write_text(valgrind)
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "instructions", *options],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_instructions_per_event_are_the_difference_of_two_runs(tmp_path: Path) -> None:
    options = ("--events", "40", "--more", "60", "--visitors", "10")
    done = instructions(STAND_IN.format(python=sys.executable), tmp_path, *options)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "embedded store, 10 visitors, 1 message in flight" in out
    assert "instructions: 5,040,000 for 40 events, 5,100,000 for 100" in out
    assert "instructions per event: 1,000" in out


def test_a_failed_run_is_reported_not_counted(tmp_path: Path) -> None:
    broken = "#!/bin/sh\necho 'it broke' >&2\nexit 3\n"
    done = instructions(broken, tmp_path, "--events", "5", "--more", "5")
    assert done.returncode != 0
    assert "benchmarks app under valgrind failed (3)" in done.stderr
    assert "it broke" in done.stderr
