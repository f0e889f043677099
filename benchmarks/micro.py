"""Micro benchmarks of the pure core, in process: what one event costs.

Each step is timed per event over a realistic stream (page views, product
views, cart changes) on a profile that has grown to its bounds. Reports the
median and the spread over ``repeat`` runs, after a warm-up run.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.config.sites import load_site
from edge.core.context import VisitContext
from edge.core.profile import Profile, decode_profile, encode_profile
from edge.core.updates import apply
from edge.tracker import protocol as p

DEMO = Path(__file__).resolve().parent.parent / "profiles" / "demo"
VISITOR, SESSION = "5f" * 16, "a1" * 16


def raw_events(count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(1, count + 1):
        base = {"seq": i, "id": f"ev{i:010d}", "url": f"http://127.0.0.1:8000/demo/p/{i % 40}"}
        if i % 10 == 0:
            events.append(
                {
                    **base,
                    "type": "cart",
                    "currency": "EUR",
                    "value": 59.0,
                    "items": [{"sku": f"S{i % 40}", "qty": 1, "price": 59.0}],
                }
            )
        elif i % 2:
            events.append(
                {
                    **base,
                    "type": "product_view",
                    "sku": f"S{i % 60}",
                    "name": "Lamp",
                    "category": f"c{i % 7}",
                    "price": 59.0,
                }
            )
        else:
            events.append({**base, "type": "page_view", "title": "Lamps"})
    return events


def timed(label: str, count: int, repeat: int, step: Callable[[], None]) -> None:
    step()  # warm-up
    per_event = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        per_event.append((time.perf_counter() - start) / count * 1e6)
    median = statistics.median(per_event)
    print(f"{label:<28} {median:8.2f} µs/event  (runs: {', '.join(f'{v:.2f}' for v in per_event)})")


def run(*, events: int, repeat: int) -> None:
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    )
    site = load_site(DEMO)
    raw = raw_events(events)
    parsed = [p.parse_event(r) for r in raw]
    ctx = VisitContext(
        VISITOR,
        SESSION,
        url="http://127.0.0.1:8000/demo",
        referrer="https://www.google.com/search?q=lamp",
    )
    now = time.time()

    def parse() -> None:
        for r in raw:
            p.parse_event(r)

    state: dict[str, Profile | None] = {"profile": None}

    def fold() -> None:
        profile = None
        for i, e in enumerate(parsed):
            profile = apply(profile, e, ctx, site, now + i)
        state["profile"] = profile

    timed("parse_event", events, repeat, parse)
    timed("apply", events, repeat, fold)
    grown = state["profile"]
    assert grown is not None
    payload = encode_profile(grown)
    print(f"grown profile: {len(payload)} bytes msgpack")

    def encode() -> None:
        for _ in range(events):
            encode_profile(grown)

    def decode() -> None:
        for _ in range(events):
            decode_profile(payload)

    timed("encode_profile", events, repeat, encode)
    timed("decode_profile", events, repeat, decode)
