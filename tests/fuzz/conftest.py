"""Fixtures of the fuzz suite: one real server process for the wire tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import EdgeServer, edge_server


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, in KiB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        todo += _children(current)
    return total


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[EdgeServer]:
    """One real edge server (embedded store) whose rate limit is out of the way."""
    with edge_server(env={"EDGE_MAX_MESSAGES_PER_S": "100000"}) as running:
        yield running
