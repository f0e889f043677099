"""The server's own view of a phase: ``edge_message_seconds`` (from receiving
an events message to sending its answer) read from ``/metrics`` before and
after, so that a report can tell the server's time from the load
generator's own queueing.

The histogram has fixed buckets (``edge.admin.metrics.LATENCY_BUCKETS_S``),
so a quantile is reported as the bucket it falls in: "p99 ≤ 250 ms" means
99% of the messages the server handled in the phase took at most 250 ms.
A server with several workers answers a scrape from one of them; the
overload scenario runs one.
"""

from __future__ import annotations

import math
import re
import sys
import urllib.error
import urllib.request

METRIC = "edge_message_seconds_bucket"
_BUCKET = re.compile(r'^edge_message_seconds_bucket\{(?:[^}]*,)?le="([^"]+)"[^}]*\} (\S+)$')

Buckets = dict[float, float]  # upper bound (s) -> cumulative count, every site summed


def parse(text: str) -> Buckets:
    """The cumulative bucket counts of a ``/metrics`` page."""
    out: Buckets = {}
    for line in text.splitlines():
        match = _BUCKET.match(line)
        if match:
            le = math.inf if match[1] == "+Inf" else float(match[1])
            out[le] = out.get(le, 0.0) + float(match[2])
    return out


def scrape(base_http: str, timeout_s: float = 5.0) -> Buckets:
    """The histogram now; empty, said on stderr, from a server without
    ``/metrics`` (the report then shows n/a)."""
    try:
        with urllib.request.urlopen(f"{base_http}/metrics", timeout=timeout_s) as reply:
            return parse(reply.read().decode())
    except (urllib.error.URLError, TimeoutError) as exc:
        print(f"no server-side histogram from {base_http}/metrics: {exc}", file=sys.stderr)
        return {}


def quantile_bound_ms(before: Buckets, after: Buckets, q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``q`` quantile of what
    was counted between the two scrapes; None when nothing was; inf when it
    is past the last finite bucket."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    wanted = q * counts[-1]
    for bound, count in zip(bounds, counts, strict=True):
        if count >= wanted:
            return bound * 1000
    return math.inf


def messages(before: Buckets, after: Buckets) -> int:
    return int(after.get(math.inf, 0.0) - before.get(math.inf, 0.0))
