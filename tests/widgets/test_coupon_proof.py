"""The pool proof: 1,000 visitors claim codes of one pool at once, through two
server processes sharing one Redis (one server, then a 3-master Redis Cluster).
No code is issued twice, nobody gets two, and everyone gets their own code back
when they come again on the other node."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.client import Busy, Visitor
from tests.cluster import RedisClusterServers
from tests.helpers import PROFILES, EdgeServer, RedisServer, edge_server

VISITORS = 1000
CODES = 1200
FAST = {"EDGE_MAX_MESSAGES_PER_S": "100000"}


@pytest.fixture(scope="module")
def pool_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    profiles = tmp_path_factory.mktemp("profiles")
    site = profiles / "demo"
    shutil.copytree(PROFILES / "demo", site)
    (site / "coupons").mkdir()
    (site / "coupons" / "launch.txt").write_text(
        "# one code per line\n" + "\n".join(f"LAUNCH-{i:05d}" for i in range(CODES)) + "\n"
    )
    (site / "campaigns.yaml").write_text(
        yaml.safe_dump(
            {
                "campaigns": [
                    {
                        "id": "launch",
                        "placement": "popup",
                        "trigger": {"exit_intent": True},
                        "widget": {
                            "kind": "coupon",
                            "headline": "Launch offer",
                            "coupon": {"source": "pool", "file": "launch.txt", "warn_below": 10},
                        },
                    }
                ]
            }
        )
    )
    (site / "segments.yaml").unlink()
    return profiles


@pytest.fixture(scope="module", params=["redis", "cluster"])
def two_nodes(
    request: pytest.FixtureRequest, pool_site: Path
) -> Iterator[tuple[EdgeServer, EdgeServer]]:
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("cluster")
        cluster.flush()  # a fresh pool: the cluster has one database, shared by the session
        url = cluster.url
    else:
        server: RedisServer = request.getfixturevalue("redis")
        url = server.url.replace("/0", "/8")
    with (
        edge_server(redis_url=url, profiles=pool_site, env=FAST) as a,
        edge_server(redis_url=url, profiles=pool_site, env=FAST) as b,
    ):
        yield a, b


async def acknowledged(tab: Visitor, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send ``events`` until acknowledged, as the tracker does after the fallback
    answer (a store slower than the answer deadline under this burst: docs/protocol.md,
    "Store outages"); the answers of the acknowledged try."""
    while True:
        await tab.send({"type": "events", "events": events})
        answers = [await tab.recv()]
        while answers[-1]["type"] != "decisions" and not _resend(answers[-1]):
            answers.append(await tab.recv())
            if "ack" in answers[-1]:
                return answers
        if "ack" in answers[-1]:
            return answers
        # Not stored (yet), or refused busy by admission control under this
        # burst: whatever else answers this try comes within moments; drop it.
        with contextlib.suppress(TimeoutError):
            while True:
                await asyncio.wait_for(tab.recv(), 0.2)
        await asyncio.sleep(answers[-1].get("retry_ms", 100) / 1000)


def _resend(answer: dict[str, Any]) -> bool:
    """An answer that ends a try without an ack (docs/protocol.md, "Overload"
    and "Store outages"): the tracker resends."""
    return answer["type"] == "error" and answer.get("code") in ("busy", "store_unavailable")


async def welcomed(server: EdgeServer, visitor: str | None) -> Visitor:
    """A tab past its ``hello``; a hello refused busy (admission control under
    this burst closes 1013 with ``retry_ms``) is tried again after that, as the
    tracker does."""
    while True:
        tab = Visitor(server.ws, visitor=visitor)
        try:
            await tab.connect()
            return tab
        except Busy as busy:
            await tab.close()
            await asyncio.sleep(busy.retry_ms / 1000)
            visitor = tab.visitor


async def claim(
    server: EdgeServer, visitor: str | None, gate: asyncio.Semaphore
) -> tuple[str, str | None]:
    async with gate:
        tab = await welcomed(server, visitor)
        if visitor is None:  # a newcomer is shown the pop-up first (edge.core.offers)
            shown = await acknowledged(tab, [tab.event("page_view", url="http://127.0.0.1/demo")])
            assert [i["campaign"] for i in shown[-1]["items"]] == ["launch"], shown
        answers = await acknowledged(
            tab,
            [
                tab.event("identify", email=f"{tab.visitor[:8]}@example.com"),
                tab.event("widget", campaign="launch", variant="a", action="convert"),
            ],
        )
        await tab.close()
    coupons = [a for a in answers if a["type"] == "coupon"]
    assert len(coupons) == 1, answers
    return tab.visitor, coupons[0]["code"]


async def test_a_thousand_visitors_two_nodes_one_pool(
    two_nodes: tuple[EdgeServer, EdgeServer],
) -> None:
    a, b = two_nodes
    gate = asyncio.Semaphore(200)
    first = await asyncio.gather(*(claim(a if i % 2 else b, None, gate) for i in range(VISITORS)))
    codes = [code for _, code in first]
    assert None not in codes
    assert len(set(codes)) == VISITORS  # no code issued twice
    assert all(code.startswith("LAUNCH-") for code in codes)  # type: ignore[union-attr]
    # Everyone again, on the other node: the same code, never a second one.
    again = await asyncio.gather(
        *(claim(b if i % 2 else a, visitor, gate) for i, (visitor, _) in enumerate(first))
    )
    assert again == first
