"""Segments outside the page (issue 14, item 4): counting and exporting the
members of a segment kept on the profile, on the embedded store, one Redis
server and a real three-master Redis Cluster (pages by cursor, NDJSON), and
end to end through real servers: a visitor who buys enough enters
``high-value`` (segment_entered on the automation stream) and is listed."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from edge.admin import segments as members
from edge.core.automation import AutomationEvent
from edge.core.profile import Membership, Profile
from edge.stores import keys
from edge.stores.base import ProfileStore, Write
from edge.stores.memory import MemoryStore
from edge.stores.redis import RedisStore
from tests.client import Visitor, new_id
from tests.cluster import RedisClusterServers
from tests.helpers import PROFILES, EdgeServer, RedisServer, edge_server

T0 = 1_790_000_000.0
TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- the store level: pages, cursors, NDJSON, on every store --------------------------


@pytest.fixture(params=["embedded", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ProfileStore]:
    if request.param == "embedded":
        yield MemoryStore()
        return
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        redis_store = RedisStore.from_url(server.url.replace("/0", "/4"))
        await redis_store.client.flushdb()
    else:
        cluster: RedisClusterServers = request.getfixturevalue("cluster")
        redis_store = RedisStore.from_url(cluster.url)
    yield redis_store
    await redis_store.close()


def profile(visitor: str, *segments: str, **fields: Any) -> Profile:
    kept = tuple(Membership(s, T0 + i) for i, s in enumerate(segments))
    return Profile(visitor=visitor, created_at=T0, last_seen=T0 + 9, segments=kept, **fields)


async def populate(store: ProfileStore, site: str) -> set[str]:
    """230 profiles of ``site``: every third in ``vip`` (and some in ``other``
    too); others only in ``other``, a merged device in ``vip``, another site's
    ``vip`` members. Returns the ``vip`` members' ids."""
    vip: set[str] = set()
    writes = []
    for i in range(230):
        visitor = new_id()
        segments: tuple[str, ...]
        if i % 3 == 0:
            vip.add(visitor)
            segments = ("other", "vip") if i % 2 else ("vip",)
        else:
            segments = ("other",) if i % 2 else ()
        writes.append(Write(site, visitor, 0, profile(visitor, *segments), None))
    merged = profile(new_id(), "vip", merged_into="c" + new_id())
    writes.append(Write(site, merged.visitor, 0, merged, None))
    for _ in range(5):
        visitor = new_id()
        writes.append(Write(f"{site}2", visitor, 0, profile(visitor, "vip"), None))
    assert await store.commit(writes) == [None] * len(writes)
    return vip


async def all_pages(store: ProfileStore, site: str, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await members.page(store, site, "vip", cursor, limit)
        found += page.members
        cursor = page.cursor
        if cursor is None:
            return found
    raise AssertionError("the cursor never ended")


async def test_pages_list_every_member_once_and_nothing_else(store: ProfileStore) -> None:
    site = f"seg{new_id()[:8]}"  # a site of its own: the cluster is shared by the session
    vip = await populate(store, site)
    found = await all_pages(store, site, limit=7)
    assert len(found) == len(vip)
    assert {m["visitor"] for m in found} == vip
    one = found[0]
    assert set(one) == {"visitor", "customer", "since", "last_seen"}
    assert one["customer"] is None and one["last_seen"] == T0 + 9
    assert one["since"] in (T0, T0 + 1)  # its place in the profile's tuple
    # one big page holds them all and says it is the last
    page = await members.page(store, site, "vip", None, 1000)
    assert {m["visitor"] for m in page.members} == vip and page.cursor is None


async def test_count_and_ndjson_read_every_profile_once(store: ProfileStore) -> None:
    site = f"seg{new_id()[:8]}"
    vip = await populate(store, site)
    assert await members.count(store, site, "vip") == (len(vip), 231)
    assert [m async for m in members.members(store, site, "vip")] != []
    assert {m["visitor"] async for m in members.members(store, site, "vip")} == vip
    assert await members.count(store, site, "nobody") == (0, 231)


async def test_a_cursor_of_another_store_is_refused(store: ProfileStore) -> None:
    for bad in ("x", "m", "r:-1", "c:9:0", "c:0", "r:abc", "m:"):
        if (bad == "m:") == isinstance(store, MemoryStore):
            continue  # "m:" is the embedded store's own (the start)
        with pytest.raises(members.BadCursor):
            await members.page(store, "demo", "vip", bad, 10)


async def test_a_cluster_page_walks_every_master(cluster: RedisClusterServers) -> None:
    store = RedisStore.from_url(cluster.url)
    site = f"seg{new_id()[:8]}"
    try:
        vip = await populate(store, site)
        cursors = []
        cursor: str | None = None
        while True:
            page = await members.page(store, site, "vip", cursor, 10)
            cursor = page.cursor
            if cursor is None:
                break
            cursors.append(cursor)
        masters = {c.split(":")[1] for c in cursors}
        assert masters == {"0", "1", "2"}, cursors
        assert len(await all_pages(store, site, 10)) == len(vip)
    finally:
        await store.close()


# --- end to end: real servers, real sockets -------------------------------------------


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("profiles")
    shutil.copytree(PROFILES / "demo", folder / "demo")
    return folder


@pytest.fixture(scope="module", params=["embedded", "redis"])
def server(
    request: pytest.FixtureRequest, profiles: Path
) -> Iterator[tuple[EdgeServer, str | None]]:
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis").url.replace("/0", "/5")
        redis_sync.Redis.from_url(url).flushdb()
    env = {"EDGE_ADMIN_TOKEN": TOKEN, "EDGE_MAX_MESSAGES_PER_S": "100000"}
    with edge_server(redis_url=url, profiles=profiles, env=env) as running:
        yield running, url


def api(server: EdgeServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.http}/admin{path}", headers=AUTH, params=params, timeout=10)


async def buy(server: EdgeServer, value: float) -> str:
    tab = Visitor(server.ws)
    await tab.connect(consent=True)
    items = [{"sku": "LMP-01", "qty": 1, "price": value}]
    order = {"order_id": new_id()[:12], "items": items, "value": value, "currency": "EUR"}
    await tab.track(tab.event("page_view", url="http://127.0.0.1/demo"))
    await tab.track(tab.event("purchase", **order))
    await tab.close()
    return tab.visitor


def stream_events(url: str, visitor: str) -> list[AutomationEvent]:
    client = redis_sync.Redis.from_url(url)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(  # type: ignore[assignment]
        keys.automation_stream("demo")
    )
    events = [AutomationEvent.from_fields(fields) for _, fields in entries]
    return [e for e in events if e.visitor == visitor]


async def test_a_big_buyer_enters_the_segment_and_is_counted_and_exported(
    server: tuple[EdgeServer, str | None],
) -> None:
    running, url = server
    big = await buy(running, 350.0)
    small = await buy(running, 20.0)
    count = api(running, "/sites/demo/segments/high-value")
    assert count.status_code == 200, count.text
    body = count.json()
    assert body["members"] >= 1 and body["profiles_read"] >= 2
    assert body["name"] == "Spent 300 EUR or more"
    listed = await pages_of(running)
    assert big in listed and small not in listed
    lines = api(running, "/sites/demo/segments/high-value/members", format="ndjson")
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    exported = [json.loads(line) for line in lines.text.splitlines()]
    assert {m["visitor"] for m in exported} == listed
    assert body["members"] == len(listed)
    if url is not None:  # the automation stream (Redis only): one segment_entered
        await until(lambda: stream_events(url, big))
        entered = [e for e in stream_events(url, big) if e.type == "segment_entered"]
        assert [e.payload for e in entered] == [{"segment": "high-value"}]
        assert not [e for e in stream_events(url, small) if e.type.startswith("segment_")]


async def pages_of(running: EdgeServer) -> set[str]:
    found: set[str] = set()
    cursor = ""
    while True:
        answer = api(running, "/sites/demo/segments/high-value/members", limit=1, cursor=cursor)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found |= {m["visitor"] for m in body["members"]}
        if body["cursor"] is None:
            return found
        cursor = body["cursor"]


async def until(predicate: Any) -> None:
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not seen in 5 s")


def test_what_is_no_kept_segment_is_told_apart(server: tuple[EdgeServer, str | None]) -> None:
    running, _ = server
    not_kept = api(running, "/sites/demo/segments/cart-abandoners")
    assert not_kept.status_code == 409
    assert "membership: true" in not_kept.json()["error"]
    assert api(running, "/sites/demo/segments/nope/members").status_code == 404
    assert api(running, "/sites/nope/segments/high-value").status_code == 404
    assert api(running, "/sites/demo/segments/high-value/members", limit=0).status_code == 400
    bad = api(running, "/sites/demo/segments/high-value/members", cursor="zz")
    assert bad.status_code == 400
    anonymous = httpx.get(f"{running.http}/admin/sites/demo/segments/high-value", timeout=10)
    assert anonymous.status_code == 401


# --- membership computed without an event: properties, and the backfill --------------


def patch(running: EdgeServer, visitor: str, body: dict[str, Any]) -> httpx.Response:
    url = f"{running.http}/admin/sites/demo/visitors/{visitor}/properties"
    return httpx.patch(url, json=body, headers=AUTH, timeout=10)


def kinds_of(url: str, visitor: str) -> list[tuple[str, str]]:
    return [
        (e.type, str(e.payload["segment"]))
        for e in stream_events(url, visitor)
        if e.type.startswith("segment_")
    ]


async def test_a_property_set_by_the_admin_api_enters_a_kept_segment_at_once(
    server: tuple[EdgeServer, str | None],
) -> None:
    """The visitor does not come back: the PATCH itself recomputes membership
    (count and export see it) and emits segment_entered / segment_left, once each."""
    running, url = server
    tab = Visitor(running.ws)
    await tab.connect(consent=True)
    await tab.track(tab.event("page_view", url="http://127.0.0.1/demo"))
    await tab.close()
    assert patch(running, tab.visitor, {"loyalty_points": 620}).status_code == 200
    listed = {m["visitor"] for m in api_members(running, "loyal-members")}
    assert tab.visitor in listed
    assert patch(running, tab.visitor, {"loyalty_points": 700}).status_code == 200  # still in
    assert patch(running, tab.visitor, {"loyalty_points": 10}).status_code == 200
    assert tab.visitor not in {m["visitor"] for m in api_members(running, "loyal-members")}
    if url is not None:
        await until(lambda: len(kinds_of(url, tab.visitor)) >= 2)
        await asyncio.sleep(0.2)  # nothing more comes
        assert kinds_of(url, tab.visitor) == [
            ("segment_entered", "loyal-members"),
            ("segment_left", "loyal-members"),
        ]


def post(running: EdgeServer, path: str, headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(f"{running.http}{path}", headers=headers, timeout=30)


def api_members(running: EdgeServer, segment: str) -> list[dict[str, Any]]:
    lines = api(running, f"/sites/demo/segments/{segment}/members", format="ndjson")
    assert lines.status_code == 200, lines.text
    return [json.loads(line) for line in lines.text.splitlines()]


@pytest.fixture(params=["embedded", "redis"])
def fresh(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[EdgeServer, str | None, Path]]:
    """A server on a copy of the demo whose high-value segment is not kept yet."""
    shutil.copytree(PROFILES / "demo", tmp_path / "demo")
    segments = tmp_path / "demo" / "segments.yaml"
    kept = "    membership: true\n    condition:\n      orders.revenue"
    text = segments.read_text()
    assert kept in text
    segments.write_text(text.replace(kept, "    condition:\n      orders.revenue"))
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis").url.replace("/0", "/6")
        redis_sync.Redis.from_url(url).flushdb()
    env = {"EDGE_ADMIN_TOKEN": TOKEN, "EDGE_MAX_MESSAGES_PER_S": "100000"}
    with edge_server(redis_url=url, profiles=tmp_path, env=env) as running:
        yield running, url, segments


async def test_a_newly_kept_segment_is_backfilled_by_refresh(
    fresh: tuple[EdgeServer, str | None, Path],
) -> None:
    running, url, segments = fresh
    big = await buy(running, 350.0)
    small = await buy(running, 20.0)
    text = segments.read_text()
    segments.write_text(
        text.replace(
            "    condition:\n      orders.revenue",
            "    membership: true\n    condition:\n      orders.revenue",
        )
    )
    reload = post(running, "/admin/reload")
    assert reload.status_code == 200, reload.text
    assert api_members(running, "high-value") == []  # nobody came back yet
    refresh = post(running, "/admin/sites/demo/segments/refresh")
    assert refresh.status_code == 200, refresh.text
    assert refresh.json()["changed"] == 1 and refresh.json()["profiles_read"] >= 2
    assert {m["visitor"] for m in api_members(running, "high-value")} == {big}
    again = post(running, "/admin/sites/demo/segments/refresh")
    assert again.json()["changed"] == 0
    if url is not None:
        await until(lambda: kinds_of(url, big))
        await asyncio.sleep(0.2)
        assert kinds_of(url, big) == [("segment_entered", "high-value")]
        assert kinds_of(url, small) == []
    anonymous = post(running, "/admin/sites/demo/segments/refresh", headers={})
    assert anonymous.status_code == 401
