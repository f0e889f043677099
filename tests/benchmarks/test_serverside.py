"""The server-side histogram of the overload report (benchmarks/serverside.py):
read from a real /metrics page, and its quantiles as bucket bounds."""

from __future__ import annotations

import asyncio
import math

from benchmarks import serverside
from tests.client import Visitor
from tests.helpers import edge_server

PAGE = """\
# TYPE edge_message_seconds histogram
edge_message_seconds_bucket{le="0.005",site="a"} 10.0
edge_message_seconds_bucket{le="0.1",site="a"} 90.0
edge_message_seconds_bucket{le="+Inf",site="a"} 100.0
edge_message_seconds_bucket{le="0.005",site="b"} 0.0
edge_message_seconds_bucket{le="0.1",site="b"} 0.0
edge_message_seconds_bucket{le="+Inf",site="b"} 100.0
edge_message_seconds_count{site="a"} 100.0
"""


def test_buckets_are_summed_over_sites_and_quantiles_are_bucket_bounds() -> None:
    after = serverside.parse(PAGE)
    assert after == {0.005: 10.0, 0.1: 90.0, math.inf: 200.0}
    assert serverside.messages({}, after) == 200
    assert serverside.quantile_bound_ms({}, after, 0.05) == 5.0
    assert serverside.quantile_bound_ms({}, after, 0.45) == 100.0
    assert serverside.quantile_bound_ms({}, after, 0.99) == math.inf
    before = {0.005: 10.0, 0.1: 10.0, math.inf: 110.0}  # only what came after counts
    assert serverside.quantile_bound_ms(before, after, 0.5) == 100.0
    assert serverside.quantile_bound_ms(after, after, 0.5) is None


async def test_a_phase_counts_the_messages_the_server_answered() -> None:
    with edge_server() as server:
        http = server.http
        before = await asyncio.to_thread(serverside.scrape, http)
        tab = Visitor(server.ws)
        await tab.connect()
        for n in range(3):
            await tab.track(tab.event("page_view", url=f"http://127.0.0.1/demo/{n}"))
        await tab.close()
        after = await asyncio.to_thread(serverside.scrape, http)
    assert serverside.messages(before, after) == 3
    assert serverside.quantile_bound_ms(before, after, 0.99) is not None


def test_a_server_without_metrics_gives_an_empty_histogram() -> None:
    assert serverside.scrape("http://127.0.0.1:9", timeout_s=1) == {}
