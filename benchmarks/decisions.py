"""In-process benchmarks of decisioning.

* ``decide``: one decision over 100 active campaigns (goal: median ≤ 50 µs,
  p99 ≤ 200 µs), and ``apply`` + ``decide`` per event.
* ``conditions``: our compiled conditions against the GrowthBook Python SDK's
  ``evalCondition`` on the same conditions and attributes (goal: ≥ 10x).

Every call is timed on its own (``perf_counter_ns``) so percentiles are real,
after a warm-up; each figure is the median of ``repeat`` runs with the spread.
"""

from __future__ import annotations

import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from edge.config.sites import Site, load_site
from edge.core.context import VisitContext
from edge.core.updates import apply
from edge.decisioning.attributes import Page
from edge.decisioning.conditions import compile_condition
from edge.decisioning.engine import decide
from edge.tracker import protocol as p

VISITOR, SESSION = "7c" * 16, "3e" * 16
PAGE_URL = "http://127.0.0.1:8000/demo/p/S7"
AUDIENCES: list[dict[str, Any]] = [
    {"session.pageviews": {"$gte": 3}, "visitor.identified": False},
    {"session.source": {"$in": ["facebook", "instagram"]}, "page.path": "/demo"},
    {"cart.items": {"$gte": 1}, "cart.value": {"$gt": 100}},
    {"orders.count": {"$gte": 2}, "orders.days_since_last": {"$gte": 60}},
    {"device.type": "mobile", "time.hour": {"$gte": 18, "$lt": 23}},
    {"$or": [{"session.medium": "search"}, {"session.medium": "paid"}]},
    {"viewed.categories": {"$elemMatch": {"$eq": "c3"}}, "visitor.returning": True},
    {"page.url": {"$regex": "/p/S[0-9]+$"}, "session.pageviews": {"$lt": 50}},
    {"visitor.days_since_last_visit": {"$gte": 30}},
    {"segments": {"$in": ["big-cart"]}, "page.type": {"$ne": "checkout"}},
]


def campaigns(count: int) -> list[dict[str, Any]]:
    placements = ["popup", "bar-top", "hero", "recommendations", "sidebar"]
    rng = random.Random(7)
    out = []
    for i in range(count):
        audience = dict(AUDIENCES[i % len(AUDIENCES)])
        audience["visitor.visits"] = {"$gte": rng.randint(1, 3)}
        # A threshold of its own, so that campaigns share some entries (as real
        # ones do: visitor.identified, page.path ...) but not all of them.
        audience["session.duration_s"] = {"$lt": rng.randint(600, 7200)}
        out.append(
            {
                "id": f"c{i:03d}",
                "priority": rng.randint(0, 100),
                "placement": placements[i % len(placements)],
                "audience": audience,
                "frequency": {"per_session": 2, "per_days": {"max": 3, "days": 7}},
                "widget": {"kind": "banner", "headline": {"en": f"Campaign {i}"}},
            }
        )
    return out


def build_site(count: int) -> Site:
    folder = Path(tempfile.mkdtemp()) / "bench"
    folder.mkdir()
    config = {
        "site": {"id": "bench", "timezone": "Europe/Warsaw"},
        "segments": [{"id": "big-cart", "condition": {"cart.value": {"$gte": 200}}}],
        "campaigns": campaigns(count),
    }
    (folder / "site.yaml").write_text(yaml.safe_dump(config))
    return load_site(folder)


def session_events(count: int) -> list[p.Event]:
    events: list[p.Event] = []
    for i in range(1, count + 1):
        base = {"seq": i, "id": f"b{i:09d}", "url": f"http://127.0.0.1:8000/demo/p/S{i % 30}"}
        if i % 5 == 0:
            events.append(
                p.parse_event(
                    {
                        **base,
                        "type": "cart",
                        "currency": "EUR",
                        "value": 80.0,
                        "items": [{"sku": f"S{i % 30}", "qty": 1, "price": 80.0}],
                    }
                )
            )
        elif i % 2:
            events.append(
                p.parse_event(
                    {
                        **base,
                        "type": "product_view",
                        "sku": f"S{i % 30}",
                        "category": f"c{i % 6}",
                        "price": 80.0,
                    }
                )
            )
        else:
            events.append(p.parse_event({**base, "type": "page_view"}))
    return events


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return (ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000)


def measure(step: Callable[[int], object], calls: int, repeat: int) -> list[tuple[float, float]]:
    clock = time.perf_counter_ns
    for i in range(min(calls, 2000)):  # warm-up
        step(i)
    runs = []
    for _ in range(repeat):
        gc.collect()
        samples = []
        for i in range(calls):
            start = clock()
            step(i)
            samples.append(clock() - start)
        runs.append(percentiles(samples))
    return runs


def report(label: str, runs: list[tuple[float, float]]) -> dict[str, Any]:
    medians = [r[0] for r in runs]
    p99s = [r[1] for r in runs]
    print(
        f"{label:<34} median {statistics.median(medians):7.1f} µs  "
        f"p99 {statistics.median(p99s):7.1f} µs   "
        f"(runs: {', '.join(f'{m:.1f}/{q:.1f}' for m, q in runs)})"
    )
    return {
        "label": label,
        "median_us": statistics.median(medians),
        "p99_us": statistics.median(p99s),
        "runs": runs,
    }


def run_decide(*, campaigns_count: int, calls: int, repeat: int) -> list[dict[str, Any]]:
    site = build_site(campaigns_count)
    print(f"{len(site.decisioning.campaigns)} active campaigns")
    ctx = VisitContext(
        VISITOR, SESSION, url=PAGE_URL, referrer="https://www.google.com/search?q=linen"
    )
    events = session_events(calls + 2000)
    profile = None
    now = 1_790_000_000.0
    for i, event in enumerate(events[:200]):
        profile = apply(profile, event, ctx, site, now + i)
    page = Page(url=PAGE_URL, type="product", product="S7", category="c1")
    device = {"type": "desktop", "os": "Linux", "browser": "Firefox", "bot": False}
    grown = profile
    results = [
        report(
            "decide (100 campaigns)",
            measure(
                lambda i: decide(grown, ctx, site, now + 300, page=page, device=device),
                calls,
                repeat,
            ),
        )
    ]

    state = {"profile": grown}

    def apply_and_decide(i: int) -> None:
        updated = apply(state["profile"], events[200 + i % calls], ctx, site, now + 300 + i)
        state["profile"] = updated
        decide(updated, ctx, site, now + 300 + i, page=page, device=device)

    results.append(report("apply + decide per event", measure(apply_and_decide, calls, repeat)))
    return results


# A spread of targeting conditions as marketers write them: simple
# comparisons, membership, regular expressions, nested logic, arrays, versions.
CONDITIONS: list[dict[str, Any]] = [
    *AUDIENCES,
    {
        "page.url": {"$regex": "^https?://[^/]+/demo/(p|c)/"},
        "device.os": {"$in": ["iOS", "Android"]},
    },
    {
        "$and": [
            {"session.source": {"$nin": ["direct", "internal"]}},
            {"$or": [{"cart.items": {"$gte": 2}}, {"viewed.products": {"$gte": 5}}]},
        ]
    },
    {"viewed.skus": {"$all": ["S1", "S3"]}, "cart.skus": {"$size": {"$gte": 1}}},
    {"device.browser": {"$regexi": "safari|chrome"}, "app.version": {"$vgte": "2.4.0"}},
    {
        "session.pages": {"$elemMatch": {"$regex": "^/demo/c/"}},
        "visitor.level": {"$ne": "verified"},
    },
    {
        "$nor": [{"page.type": "checkout"}, {"page.type": "cart"}],
        "time.weekday": {"$in": ["sat", "sun"]},
    },
]


def batch_us(
    steps: Sequence[Callable[[int], object]], calls: int, repeat: int
) -> list[list[float]]:
    """Mean µs per call over ``calls`` back-to-back calls of each step, for
    each of ``repeat`` rounds (for sub-µs work the per-call clock read would
    cost more than the work itself). The steps take turns within each round,
    so a machine that slows down or speeds up meanwhile (a shared VM does,
    by a fifth within minutes) weighs on all of them alike."""
    clock = time.perf_counter
    for step in steps:
        for i in range(min(calls, 5000)):
            step(i)
    runs: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for step, times in zip(steps, runs, strict=True):
            gc.collect()
            start = clock()
            for i in range(calls):
                step(i)
            times.append((clock() - start) / calls * 1e6)
    return runs


def run_conditions(*, calls: int, repeat: int) -> dict[str, Any]:
    from growthbook.core import evalCondition  # the benchmark extra

    from edge.decisioning import attributes as attrs

    site = build_site(1)
    ctx = VisitContext(VISITOR, SESSION, url=PAGE_URL)
    profile = None
    for i, event in enumerate(session_events(60)):
        profile = apply(profile, event, ctx, site, 1_790_000_000.0 + i)
    page = Page(url=PAGE_URL, type="product", product="S7")
    attributes = attrs.build(
        profile,
        ctx,
        site,
        1_790_000_100.0,
        page,
        {"type": "mobile", "os": "iOS", "browser": "Safari", "bot": False},
    )
    attributes["segments"] = ["big-cart"]
    attributes["app"] = {"version": "2.10.1"}
    compiled = [compile_condition(c) for c in CONDITIONS]
    ours_answers = [c(attributes) for c in compiled]
    theirs_answers = [evalCondition(attributes, c) for c in CONDITIONS]
    agree = ours_answers == theirs_answers
    print(
        f"{len(CONDITIONS)} conditions, {sum(ours_answers)} true; "
        f"same answers as GrowthBook: {agree}"
    )
    n = len(CONDITIONS)
    ours, theirs, empty = batch_us(
        [
            lambda i: compiled[i % n](attributes),
            lambda i: evalCondition(attributes, CONDITIONS[i % n]),
            lambda i: None,  # the loop and call, to subtract
        ],
        calls,
        repeat,
    )
    base = statistics.median(empty)
    mine, gb = statistics.median(ours) - base, statistics.median(theirs) - base
    # each round's own ratio: the two sides measured apart would carry the drift between
    ratios = [(t - e) / (o - e) for o, t, e in zip(ours, theirs, empty, strict=True)]
    print(
        f"edge compiled     {mine:6.3f} µs/condition  (runs: {', '.join(f'{r:.3f}' for r in ours)})"
    )
    print(
        f"growthbook        {gb:6.3f} µs/condition  (runs: {', '.join(f'{r:.3f}' for r in theirs)})"
    )
    print(f"harness overhead  {base:6.3f} µs/call, subtracted from both")
    ratio = statistics.median(ratios)
    print(
        f"edge is {ratio:.1f}x faster (median of the rounds' ratios: "
        f"{', '.join(f'{r:.1f}' for r in ratios)})"
    )
    return {"edge_us": mine, "growthbook_us": gb, "ratio": ratio, "same_answers": agree}
