"""Every Redis user of edge on a real 3-master Redis Cluster: each key group is
one slot (a script over two slots would fail with CROSSSLOT), pipelines span
masters, SCAN visits every master, and the CLI takes ``redis+cluster://``.

The profile store itself runs the contract suite (test_contract.py) and the
proofs (tests/test_proofs.py, tests/widgets/test_coupon_proof.py) here too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.crc import key_slot

from edge.admin import privacy
from edge.automation.store import RedisAutomation
from edge.automation.tail import tail
from edge.cli import main
from edge.core.automation import AutomationEvent
from edge.core.signals import SignalUpdate
from edge.core.stats import StatUpdate
from edge.core.updates import new_profile
from edge.stores import keys
from edge.stores.base import Write
from edge.stores.connect import EdgeCluster
from edge.stores.coupons import RedisPools
from edge.stores.redis import RedisStore
from edge.stores.signals import TRENDING_HOURS, RedisSignalStore
from edge.stores.stats import RedisStats
from tests.client import new_id
from tests.cluster import RedisClusterServers

NOW = 1_790_000_000.0


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_each_atomic_group_is_one_slot() -> None:
    """What a script touches shares one hash tag (edge.stores.keys); the rest spreads."""
    site, visitor, campaign = "demo", new_id(), "launch"
    groups = [
        [keys.profile(site, visitor), keys.tombstone(site, visitor)],
        [
            keys.trending(site),
            *(keys.trending_bucket(site, h) for h in range(24)),
            keys.bestsellers(site),
            keys.viewed_together(site, "A"),
        ],
        [f(site, campaign) for f in (keys.coupon_known, keys.coupon_free, keys.coupon_given)],
        [keys.campaign_stats(site, campaign, f"2026-01-{d:02d}") for d in range(1, 31)],
        [
            keys.automation_stream(site),
            keys.cart_deadlines(site),
            keys.cart_payloads(site),
            keys.webhook_dead_letters(site),
        ],
    ]
    for group in groups:
        assert len({slot(k) for k in group}) == 1, group
    visitors = {slot(keys.profile(site, new_id())) for _ in range(50)}
    assert len(visitors) > 40  # visitors spread over the cluster


@pytest.fixture
async def store(cluster: RedisClusterServers) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(cluster.url)
    assert isinstance(s.client, EdgeCluster)
    yield s
    await s.close()


async def test_signals_on_a_cluster(store: RedisStore) -> None:
    site = f"sig{new_id()[:8]}"
    signals = RedisSignalStore(store.client, clock=lambda: NOW, trending_cache_s=5)
    await signals.record(
        site,
        [
            SignalUpdate("viewed_together", "A", "B"),
            SignalUpdate("viewed_together", "A", "C", 2),
            SignalUpdate("bestsellers", "A", None, 3),
            SignalUpdate("trending", "B"),
            SignalUpdate("trending", "B"),
            SignalUpdate("trending", "A"),
        ],
    )
    expected = [[("C", 2.0), ("B", 1.0)], [("A", 3.0)], [("B", 2.0), ("A", 1.0)]]
    queries = [("viewed_together", "A"), ("bestsellers", None), ("trending", None)]
    assert await signals.top_many(site, queries, 5) == expected  # type: ignore[arg-type]
    await store.client.script_flush()  # every master forgets the trending script
    await store.client.delete(keys.trending(site))
    assert await signals.top_many(site, queries, 5) == expected  # type: ignore[arg-type]
    assert (
        0
        < await store.client.ttl(keys.trending_bucket(site, int(NOW // 3600)))
        <= ((TRENDING_HOURS + 1) * 3600)
    )


async def test_statistics_on_a_cluster(store: RedisStore) -> None:
    stats = RedisStats(store.client)
    site, day = f"st{new_id()[:8]}", "2026-01-02"
    # Several campaigns: their tags hash to different slots, so one pipeline
    # goes to several masters at once.
    campaigns = [f"c{i}" for i in range(6)]
    assert len({slot(keys.campaign_stats(site, c, day)) for c in campaigns}) > 1
    await stats.record(site, [StatUpdate(c, "a", "impressions", day) for c in campaigns])
    await stats.record(site, [StatUpdate("c0", "a", "revenue", day, 12.5)])
    table = await stats.read(site, "c0", [day, "2026-01-03"])
    assert table[day]["a"]["impressions"] == 1 and table[day]["a"]["revenue"] == 12.5
    assert table["2026-01-03"] == {}
    assert (await stats.read(site, "c5", [day]))[day]["a"]["impressions"] == 1


async def test_coupon_pools_on_a_cluster(store: RedisStore) -> None:
    pools = RedisPools(store.client)
    site = f"cp{new_id()[:8]}"
    assert await pools.load(site, "p", [f"P-{i}" for i in range(150)]) == 150
    assert await pools.load(site, "p", [f"P-{i}" for i in range(150)]) == 0
    visitors = [new_id() for _ in range(200)]
    codes = await asyncio.gather(*(pools.claim(site, "p", v) for v in visitors))
    given = [c for c in codes if c is not None]
    assert len(given) == len(set(given)) == 150  # each code once; 50 visitors too late
    holder = visitors[codes.index(given[0])]
    assert await pools.claim(site, "p", holder) == given[0]
    assert await pools.code_of(site, "p", holder) == given[0]
    assert await pools.remaining(site, "p") == 0
    assert await pools.forget(site, "p", holder) is True
    assert await pools.code_of(site, "p", holder) is None


async def test_automation_on_a_cluster(cluster: RedisClusterServers, store: RedisStore) -> None:
    site = f"au{new_id()[:8]}"
    a = RedisAutomation(store.client, maxlen=1000)
    b = RedisAutomation.from_url(cluster.url, maxlen=1000)
    try:
        await a.publish(site, [AutomationEvent("purchase", site, "v0", NOW)])
        visitors = [new_id() for _ in range(60)]
        cart = {"customer": "42", "payload": {"value": 9.5}}
        await a.schedule(site, [(v, NOW + i % 5, cart) for i, v in enumerate(visitors)])
        await a.schedule(site, [(visitors[0], None, None)])  # cancelled
        claimed: list[AutomationEvent] = []

        async def claimer(s: RedisAutomation) -> None:
            for step in range(12):
                claimed.extend(await s.claim_due(site, NOW + step * 0.5, limit=4))

        await asyncio.gather(claimer(a), claimer(b), claimer(a), claimer(b))
        assert sorted(e.visitor for e in claimed) == sorted(visitors[1:])  # each exactly once
        assert {(e.customer, e.payload["value"]) for e in claimed} == {("42", 9.5)}
        stream = await b.read(site, 100)
        assert [e.type for _, e in stream] == ["purchase"] + ["cart_abandoned"] * 59
        await a.dead_letter(site, {"delivery": "d1"})
        assert await b.dead_letters(site) == [{"delivery": "d1"}]

        lines: list[str] = []
        assert await tail(cluster.url, site, 2, follow=False, out=lines.append) == 2

        async def later() -> None:
            await asyncio.sleep(0.3)
            await a.publish(site, [AutomationEvent("identified", site, "new", NOW)])

        followed: list[str] = []
        task = asyncio.create_task(later())
        await tail(cluster.url, site, 0, follow=True, out=followed.append, block_ms=3000, polls=1)
        await task
        assert [json.loads(line)["visitor"] for line in followed] == ["new"]
    finally:
        await b.close()


async def _pools_on_every_master(store: RedisStore, site: str) -> list[str]:
    """Campaign names whose pools sit on different masters (for the scan)."""
    client = store.client
    assert isinstance(client, EdgeCluster)
    await store.ping()  # every master answers; the slot map is known
    by_node: dict[str, str] = {}
    for i in range(200):
        name = f"gone{i}"
        node = client.nodes_manager.get_node_from_slot(slot(keys.coupon_given(site, name)))
        by_node.setdefault(node.name, name)
    assert len(by_node) == 3
    return sorted(by_node.values())


async def test_privacy_finds_pools_on_every_master(store: RedisStore) -> None:
    site, visitor = f"pv{new_id()[:8]}", new_id()
    pools = RedisPools(store.client)
    campaigns = await _pools_on_every_master(store, site)
    for name in campaigns:  # pools of campaigns no longer configured
        await pools.load(site, name, [f"{name}-1"])
        assert await pools.claim(site, name, visitor) == f"{name}-1"
    await store.commit([Write(site, visitor, 0, new_profile(visitor, NOW), None)])
    assert await privacy.pool_campaigns(store, site, []) == campaigns
    exported = await privacy.export_visitor(store, pools, site, visitor, [])
    assert exported is not None and exported["coupons"] == {n: f"{n}-1" for n in campaigns}
    report = await privacy.erase_visitor(store, pools, site, visitor, [], tombstone_s=60)
    assert report["coupons"] == campaigns and report["profile"] is True
    assert await privacy.export_visitor(store, pools, site, visitor, []) is None


def test_cli_takes_a_cluster_url(
    cluster: RedisClusterServers, capsys: pytest.CaptureFixture[str]
) -> None:
    """``edge privacy`` and ``edge events tail`` with ``--redis redis+cluster://``."""
    site, visitor = f"cli{new_id()[:8]}", new_id()

    async def seed() -> None:
        store = RedisStore.from_url(cluster.url)
        try:
            await store.commit([Write(site, visitor, 0, new_profile(visitor, NOW), None)])
            pools = RedisPools(store.client)
            await pools.load(site, "old", ["OLD-1"])
            await pools.claim(site, "old", visitor)
            events = RedisAutomation(store.client)
            await events.publish(site, [AutomationEvent("purchase", site, visitor, NOW)])
        finally:
            await store.close()

    asyncio.run(seed())
    where = ["--site", site, "--visitor", visitor, "--redis", cluster.url]
    assert main(["privacy", "export", *where]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["coupons"] == {"old": "OLD-1"} and exported["profile_version"] == 1
    assert main(["privacy", "erase", *where]) == 0
    assert json.loads(capsys.readouterr().out)["coupons"] == ["old"]
    assert main(["privacy", "export", *where]) == 1
    assert "nothing stored" in capsys.readouterr().err
    assert main(["events", "tail", "--site", site, "--redis", cluster.url]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["visitor"] == visitor


async def test_the_breaker_probe_relearns_the_topology(cluster: RedisClusterServers) -> None:
    """After the breaker opened, its probe drops idle connections and asks the
    cluster for its slot map again before the call goes out."""
    store = RedisStore.from_url(cluster.url, breaker_failures=1, breaker_cooldown_s=0.05)
    try:
        visitor = new_id()
        await store.commit([Write("demo", visitor, 0, new_profile(visitor, NOW), None)])
        client = store.client
        assert isinstance(client, EdgeCluster)
        epoch = client.nodes_manager._epoch
        store.breaker.failure()  # as after a timeout
        assert not store.available
        await asyncio.sleep(0.1)
        stored = await store.load("demo", visitor)  # the probe
        assert stored is not None and stored.version == 1
        assert store.available and client.nodes_manager._epoch == epoch + 1
    finally:
        await store.close()


async def test_one_master_forgetting_the_script_retries_only_its_writes(
    cluster: RedisClusterServers, store: RedisStore
) -> None:
    """A failed-over or restarted master lacks the script, the others have it:
    only that master's writes are sent again (a second compare-and-set of a
    write that ran would lose to itself and come back as a conflict)."""
    visitors = [new_id() for _ in range(30)]
    first = [Write("demo", v, 0, new_profile(v, NOW), None) for v in visitors]
    assert await store.commit(first) == [None] * 30
    cluster.cli(cluster.ports[0], "script", "flush")
    second = [Write("demo", v, 1, new_profile(v, NOW + 1), None) for v in visitors]
    assert await store.commit(second) == [None] * 30
    loaded = await store.load_many([("demo", v) for v in visitors])
    assert [s.version if s else None for s in loaded] == [2] * 30
