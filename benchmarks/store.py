"""``python -m benchmarks store``: what a batch of profile writes costs this
process in CPU, through the ledger's own connection (``edge.stores.lane``)
and through redis-py's pooled pipeline (as on a cluster), against a private
redis-server, under uvloop as ``edge serve`` runs.

The ledger writes a batch as soon as the previous one returned, so at 1,000
events/s most batches hold one or two writes: the cost per batch, not per
write, is what the server pays per event. The two ways alternate, batch for
batch in blocks, so that a slower moment of the machine falls on both. CPU
is this process's (``time.process_time``: Python, redis-py, the event loop
and the system calls), not Redis's.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import uvloop

from benchmarks.micro import DEMO, raw_events
from benchmarks.scenarios import redis_server
from edge.config.sites import load_site
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.updates import apply
from edge.stores.base import Write
from edge.stores.redis import RedisStore
from edge.tracker import protocol as p

BLOCK = 200  # batches of one way before switching to the other


def grown_profile(visitor: str) -> Profile:
    """A profile after 40 events of the demo shop (about the size of a busy
    shopper's)."""
    os.environ.setdefault("EDGE_DEMO_SECRET", "benchmark-secret")  # as the scenarios set it
    site = load_site(Path(DEMO))
    ctx = VisitContext(visitor, "a1" * 16, url="http://127.0.0.1:8000/demo")
    profile: Profile | None = None
    now = time.time()
    for i, raw in enumerate(raw_events(40)):
        profile = apply(profile, p.parse_event(raw), ctx, site, now + i)
    assert profile is not None
    return profile


async def _measure(url: str, batches: int, size: int, repeat: int) -> dict[str, list[float]]:
    stores = {
        "own connection": RedisStore.from_url(url),
        "pooled pipeline": RedisStore.from_url(url, own_connection=False),
    }
    template = grown_profile("5f" * 16)
    versions: dict[str, int] = {}
    cpu_us: dict[str, list[float]] = {name: [] for name in stores}

    async def block(name: str, store: RedisStore) -> float:
        started = time.process_time()
        for b in range(BLOCK):
            visitors = [f"{name}v{b % 50:03d}{w:03d}" for w in range(size)]
            writes = [Write("bench", v, versions.get(v, 0), template, 3600) for v in visitors]
            results = await store.commit(writes)
            for visitor, result in zip(visitors, results, strict=True):
                assert result is None, "a benchmark write lost its compare-and-set"
                versions[visitor] = versions.get(visitor, 0) + 1
        return (time.process_time() - started) / BLOCK * 1e6

    for name, store in stores.items():  # warm-up: connections, scripts loaded
        await block(name, store)
    for _ in range(repeat):
        sums = {name: 0.0 for name in stores}
        for _ in range(max(1, batches // BLOCK)):
            for name, store in stores.items():
                sums[name] += await block(name, store)
        for name in stores:
            cpu_us[name].append(sums[name] / max(1, batches // BLOCK))
    for store in stores.values():
        await store.close()
    return cpu_us


def run(*, batches: int, size: int, repeat: int) -> None:
    with redis_server() as url:
        cpu_us = uvloop.run(_measure(url, batches, size, repeat))
    print(f"{batches} batches of {size} write(s) each way, {repeat} runs, uvloop")
    print("| way | CPU µs per batch: median [min-max] | per write |")
    print("|---|---|---|")
    for name, runs in cpu_us.items():
        median = statistics.median(runs)
        print(
            f"| {name} | {median:.1f} [{min(runs):.1f}-{max(runs):.1f}] | {median / size:.1f} |"
        )
    own, pooled = (statistics.median(v) for v in cpu_us.values())
    print(f"own connection / pooled pipeline: {own / pooled:.2f}")
