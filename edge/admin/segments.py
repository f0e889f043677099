"""Counting and exporting a segment's members (segments kept on the profile,
``membership: true``; edge.core.segments), for the admin API.

There is no index: members are found by reading the site's profiles, the way
``edge rfm propose`` does. A count, and an NDJSON export, read every profile
of the site once (``ProfileStore.iter_profiles``: SCAN on Redis, every master
in turn on a Cluster); a page of JSON reads profiles from a cursor until it
has ``limit`` members or the site ends. Cost: one SCAN step and one pipeline
of ``HGET`` per ``count`` keys, and decoding every profile read (about 10 us
each): a million profiles is a few hundred round trips and some seconds of
one process's CPU, off the visitors' path (the admin API only).

Cursors are opaque strings: ``m:<visitor>`` on the embedded store (profiles
in visitor order), ``r:<scan cursor>`` on one Redis server, and
``c:<master>:<scan cursor>`` on a Cluster (masters in name order; a resharding
between two pages may repeat or skip some profiles, as SCAN itself may repeat
a key). A profile merged into a customer's (edge.core.merge) is no member: its
customer's profile is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

from edge.core.profile import Profile, decode_profile
from edge.core.segments import member_of, refreshed
from edge.core.site import Site
from edge.errors import StoreError
from edge.stores import keys
from edge.stores.base import ProfileStore
from edge.stores.connect import REDIS_ERRORS, EdgeCluster, RedisClient, is_cluster
from edge.stores.ledger import Ledger
from edge.stores.redis import RedisStore

MAX_LIMIT = 1000


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Page:
    members: list[dict[str, Any]]
    cursor: str | None  # None: the last page


def record(profile: Profile, segment: str) -> dict[str, Any] | None:
    """What the export says of one member: ids and when it entered, nothing
    personal (the shop's customer id for verified customers only)."""
    if profile.merged_into is not None:
        return None
    membership = member_of(profile, segment)
    if membership is None:
        return None
    return {
        "visitor": profile.visitor,
        "customer": profile.customer_id if profile.level == "verified" else None,
        "since": membership.since,
        "last_seen": profile.last_seen,
    }


async def members(store: ProfileStore, site: str, segment: str) -> AsyncIterator[dict[str, Any]]:
    """Every member, each once (one pass over the site's profiles)."""
    async for profile in store.iter_profiles(site):
        found = record(profile, segment)
        if found is not None:
            yield found


@dataclass(frozen=True, slots=True)
class Refresh:
    profiles_read: int
    changed: int  # profiles whose stored membership changed


Changed = Callable[[Site, Profile | None, Profile | None, float], None]


async def refresh(
    ledger: Ledger, site: Site, now: float, timeout_s: float, changed: Changed
) -> Refresh:
    """Recompute every profile's kept membership at ``now`` (a backfill: a
    segment newly kept, a clock-driven condition crossed while the visitor
    was away). One pass over the site's profiles; a profile whose membership
    would change is written through the ledger (``submit_change``: a
    compare-and-set, the recomputation re-applied on what is stored after a
    lost one, so visitors' tabs and other processes writing meanwhile lose
    nothing). ``changed(site, before, after, now)`` gets each change once,
    for its ``segment_entered`` / ``segment_left``."""
    read = done = 0

    def change(profile: Profile | None) -> Profile | None:
        if profile is None or profile.sealed:
            return profile
        return refreshed(profile, site, now)

    async for profile in ledger.store.iter_profiles(site.id):
        read += 1
        if profile.sealed or refreshed(profile, site, now) is profile:
            continue
        hot = await ledger.open(site.id, profile.visitor)
        try:
            before = hot.current
            future = ledger.submit_change(hot, change, site, now)
            if hot.current is not before:  # (it stays pending if the store is slow)
                done += 1
                changed(site, before, hot.current, now)
            await ledger.settle(future, timeout_s)
        finally:
            ledger.release(hot)
    return Refresh(read, done)


async def count(store: ProfileStore, site: str, segment: str) -> tuple[int, int]:
    """(members, profiles read): a full pass over the site's profiles."""
    found = read = 0
    async for profile in store.iter_profiles(site):
        read += 1
        found += record(profile, segment) is not None
    return found, read


async def page(
    store: ProfileStore, site: str, segment: str, cursor: str | None, limit: int
) -> Page:
    """Members from ``cursor`` (None: the start) until at least ``limit``
    were found (a page may hold a few more: a scan step is never split) or
    the profiles end (``cursor`` None)."""
    if isinstance(store, RedisStore):
        try:
            return await _redis_page(store.client, site, segment, cursor, limit)
        except REDIS_ERRORS as exc:
            raise StoreError(f"segment members: {exc}") from exc
    return await _ordered_page(store, site, segment, cursor, limit)


async def _ordered_page(
    store: ProfileStore, site: str, segment: str, cursor: str | None, limit: int
) -> Page:
    """The embedded store (one process, small): profiles in visitor order."""
    after = ""
    if cursor is not None:
        if not cursor.startswith("m:"):
            raise BadCursor("not a cursor of this store")
        after = cursor[2:]
    found = [
        r
        async for p in store.iter_profiles(site)
        if p.visitor > after and (r := record(p, segment)) is not None
    ]
    found.sort(key=lambda r: str(r["visitor"]))
    if len(found) <= limit:
        return Page(found, None)
    return Page(found[:limit], f"m:{found[limit - 1]['visitor']}")


async def _redis_page(
    client: RedisClient, site: str, segment: str, cursor: str | None, limit: int
) -> Page:
    nodes = sorted(client.get_primaries(), key=lambda n: n.name) if _cluster(client) else []
    node, position = _parse(cursor, len(nodes))
    pattern = keys.profile_pattern(site)
    found: list[dict[str, Any]] = []
    while True:
        if nodes:
            cursors, batch = await client.scan(
                cursor=position, match=pattern, count=limit, target_nodes=nodes[node]
            )
            position = int(next(iter(cast("dict[str, int]", cursors).values())))
        else:
            position, batch = await client.scan(cursor=position, match=pattern, count=limit)
        found += await _read(client, batch, segment)
        if position == 0:
            node += 1
            if node >= max(len(nodes), 1):
                return Page(found, None)
        if len(found) >= limit:
            return Page(found, f"c:{node}:{position}" if nodes else f"r:{position}")


def _cluster(client: RedisClient) -> TypeGuard[EdgeCluster]:
    return is_cluster(client)


def _parse(cursor: str | None, nodes: int) -> tuple[int, int]:
    """(master index, scan cursor) of a Redis cursor."""
    if cursor is None:
        return 0, 0
    try:
        if nodes:
            kind, node, position = cursor.split(":")
            if kind == "c" and 0 <= int(node) < nodes and int(position) >= 0:
                return int(node), int(position)
        else:
            kind, position = cursor.split(":")
            if kind == "r" and int(position) >= 0:
                return 0, int(position)
    except ValueError:
        pass
    raise BadCursor("not a cursor of this store")


async def _read(client: RedisClient, batch: Sequence[Any], segment: str) -> list[dict[str, Any]]:
    if not batch:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in batch:
            pipe.hget(key, "p")
        payloads: list[Any] = await pipe.execute()
    out = []
    for payload in payloads:
        if payload:  # expired or erased since the scan saw it: skipped
            found = record(decode_profile(payload), segment)
            if found is not None:
                out.append(found)
    return out
