"""Several processes on one Redis.

* One visitor, two tabs, each on its own server process, interleaving
  events: the stored profile holds every event exactly once, and decisions
  see both tabs' activity (a pop-up capped at once per visitor and shown in
  one tab is not shown again in the other).
* ``edge serve --workers 2``: connections are served by both worker
  processes (each labels its ``/metrics`` with its pid), and whatever worker
  a visitor's messages reach, its profile counts every event once.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.core.profile import Profile
from edge.stores.redis import RedisStore
from tests.client import Visitor
from tests.helpers import EdgeServer, RedisServer, demo_without_campaigns, edge_server, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

SITE = "demo"
PAGE = "http://127.0.0.1/demo"
FAST = {"EDGE_MAX_MESSAGES_PER_S": "1000"}

# One pop-up, on every page view, at most once per visitor in all.
CAMPAIGNS = """\
campaigns:
  - id: once
    placement: popup
    frequency: {per_visitor: 1}
    widget:
      kind: banner
      headline: {en: "Shown once"}
"""


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_without_campaigns(tmp_path_factory.mktemp("profiles"), CAMPAIGNS)


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    return redis.url.replace("/0", "/6")


@pytest.fixture(scope="module")
def two_servers(redis_url: str, profiles: Path) -> Iterator[tuple[EdgeServer, EdgeServer]]:
    with (
        edge_server(redis_url=redis_url, profiles=profiles, env=FAST) as a,
        edge_server(redis_url=redis_url, profiles=profiles, env=FAST) as b,
    ):
        yield a, b


async def stored(redis_url: str, visitor: str) -> Profile:
    store = RedisStore.from_url(redis_url, socket_timeout_s=5, connect_timeout_s=5)
    try:
        found = await store.load(SITE, visitor)
    finally:
        await store.close()
    assert found is not None, f"no profile for {visitor}"
    return found.profile


def popups(answers: list[dict[str, object]]) -> list[object]:
    decisions = answers[-1]
    assert decisions["type"] == "decisions" and "ack" in decisions, decisions
    items = decisions["items"]
    assert isinstance(items, list)
    return [item["campaign"] for item in items]


async def test_two_tabs_on_two_processes_share_one_profile_and_its_caps(
    two_servers: tuple[EdgeServer, EdgeServer], redis_url: str
) -> None:
    a, b = two_servers
    tab_a = Visitor(a.ws)
    tab_b = Visitor(b.ws, visitor=tab_a.visitor)  # same visitor, its own tab session
    await tab_a.connect()
    await tab_b.connect()  # both profiles hot, each in its own process

    # Tab A is shown the pop-up and reports the impression, as the tracker does.
    assert popups(await tab_a.track(tab_a.event("page_view", url=PAGE))) == ["once"]
    await tab_a.track(tab_a.event("widget", campaign="once", variant="a", action="impression"))
    # Tab B, on the other process, whose hot copy predates that impression: capped.
    assert popups(await tab_b.track(tab_b.event("page_view", url=PAGE))) == []

    # Then both tabs interleave page views and custom events, each message
    # answered on its own process, several in flight at once.
    async def browse(tab: Visitor, rounds: int) -> None:
        for n in range(rounds):
            answers = await tab.track(
                tab.event("page_view", url=f"{PAGE}/c/{n}"),
                tab.event("custom", name="tab", props={"n": n}),
            )
            assert popups(answers) == []  # the cap holds in both tabs, throughout

    await asyncio.gather(browse(tab_a, 40), browse(tab_b, 40))
    await tab_a.close()
    await tab_b.close()

    profile = await stored(redis_url, tab_a.visitor)
    streams = {s.session: s.hwm for s in profile.streams}
    assert streams == {tab_a.session: 2 + 80, tab_b.session: 1 + 80}
    assert profile.events == 2 + 80 + 1 + 80
    assert profile.pageviews == 1 + 40 + 1 + 40
    assert next(c.total for c in profile.custom if c.name == "tab") == 80
    state = profile.campaign("once")
    assert state is not None and state.impressions == 1


def metrics_of(server: EdgeServer) -> str:
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def per_pid(text: str, name: str) -> dict[int, float]:
    """The samples of a per-process metric, by the pid label."""
    found = {}
    for match in re.finditer(rf'^{name}\{{pid="(\d+)"\}} (\S+)$', text, re.MULTILINE):
        found[int(match[1])] = float(match[2])
    return found


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state


async def test_serve_with_two_workers_uses_both(redis_url: str, profiles: Path) -> None:
    with edge_server(redis_url=redis_url, profiles=profiles, workers=2, env=FAST) as server:
        tabs: list[Visitor] = []
        seen: dict[int, dict[str, float]] = {}

        def scrape() -> bool:
            """Until both workers answered a scrape (each scrape reaches one)."""
            text = metrics_of(server)
            messages = per_pid(text, "edge_messages_total")
            for pid, value in per_pid(text, "edge_connections").items():
                seen[pid] = {"connections": value, "messages": messages[pid]}
            return len(seen) >= 2

        # Which worker accepts a connection is the kernel's choice; concurrent
        # handshakes spread them. Connections stay open, so each worker's
        # edge_connections counts its own. A few rounds until both hold some.
        for _ in range(5):
            batch = [Visitor(server.ws) for _ in range(16)]
            await asyncio.gather(*(tab.connect() for tab in batch))
            await asyncio.gather(*(tab.track(tab.event("page_view", url=PAGE)) for tab in batch))
            tabs += batch
            seen.clear()
            await asyncio.to_thread(wait_until, scrape, 20, "both workers in /metrics")
            if all(w["connections"] > 0 for w in seen.values()):
                break
        # They are the server's own worker processes, not something else on the port.
        assert all(parent_of(pid) == server.process.pid for pid in seen), seen
        for tab in tabs:
            answers = await tab.track(tab.event("page_view", url=f"{PAGE}/again"))
            assert "ack" in answers[-1]
            await tab.close()

    print(f"\nworkers: {seen} (server pid {server.process.pid}, {len(tabs)} connections)")
    assert len(seen) == 2
    assert sum(w["connections"] for w in seen.values()) == len(tabs)
    assert all(w["connections"] > 0 and w["messages"] > 0 for w in seen.values()), seen
    for tab in tabs:
        profile = await stored(redis_url, tab.visitor)
        assert (profile.pageviews, profile.events) == (2, 2)
