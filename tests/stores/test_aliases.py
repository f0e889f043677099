"""Identity across devices, end to end: real server processes on a real Redis.

A verified identify merges the device's history into the customer's profile
and aliases the device to it; a typed email links nothing; a bad token changes
nothing; two devices merging at once on two processes both land exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from edge.core.identity import customer_visitor, sign_token
from edge.core.profile import Profile, decode_profile
from edge.stores import keys
from tests.client import Visitor, new_id
from tests.helpers import EdgeServer, RedisServer, edge_server

SECRET = b"test-secret"  # tests.helpers.edge_server sets EDGE_DEMO_SECRET to it
TOKEN = "alias-admin-token"
FAST = {"EDGE_MAX_MESSAGES_PER_S": "100000", "EDGE_ADMIN_TOKEN": TOKEN}
PAGE = "http://127.0.0.1/demo"


@pytest.fixture(scope="module")
def two_servers(redis: RedisServer) -> Iterator[tuple[EdgeServer, EdgeServer, str]]:
    url = redis.url.replace("/0", "/5")
    with edge_server(redis_url=url, env=FAST) as a, edge_server(redis_url=url, env=FAST) as b:
        yield a, b, url


def stored(redis_url: str, visitor: str) -> Profile | None:
    client = redis.Redis.from_url(redis_url)
    try:
        payload = client.hget(keys.profile("demo", visitor), "p")
    finally:
        client.close()
    return decode_profile(payload) if isinstance(payload, bytes) else None


def must(redis_url: str, visitor: str) -> Profile:
    profile = stored(redis_url, visitor)
    assert profile is not None, f"no profile stored for {visitor}"
    return profile


def verified(tab: Visitor, customer: str, **personal: Any) -> dict[str, Any]:
    ts = int(time.time())
    sig = sign_token(SECRET, "demo", customer, ts)
    return tab.event("identify", customer_id=customer, ts=ts, sig=sig, **personal)


def views(tab: Visitor, *skus: str) -> list[dict[str, Any]]:
    return [tab.event("page_view", url=PAGE)] + [
        tab.event("product_view", sku=sku, category="lighting") for sku in skus
    ]


def acked(answers: list[dict[str, Any]]) -> dict[str, Any]:
    assert "ack" in answers[-1], answers
    return answers[-1]


def recommended(answers: list[dict[str, Any]]) -> str:
    """Every rendered widget's HTML in the answers, joined."""
    return " ".join(
        str(item.get("html", ""))
        for answer in answers
        if answer.get("type") == "decisions"
        for item in answer.get("items", [])
    )


async def test_devices_merge_into_one_customer_profile(
    two_servers: tuple[EdgeServer, EdgeServer, str],
) -> None:
    a, b, url = two_servers
    customer = f"cust-{new_id()[:8]}"
    target = customer_visitor("demo", customer)
    phone = Visitor(a.ws)
    await phone.connect()
    acked(await phone.track(*views(phone, "LMP-01", "LMP-02")))
    # the identify and the events after it, in one message, go to the customer
    acked(
        await phone.track(
            verified(phone, customer, first_name="Ada"), phone.event("product_view", sku="KIT-01")
        )
    )
    merged = must(url, target)
    assert (merged.level, merged.customer_id, merged.first_name) == ("verified", customer, "Ada")
    assert merged.merged_from == (phone.visitor,)
    assert {p.sku for p in merged.products} == {"LMP-01", "LMP-02", "KIT-01"}
    assert merged.events == 5
    stub = must(url, phone.visitor)
    assert (stub.merged_into, stub.merge_pending, stub.products) == (target, False, ())

    # a second device, on the other process, signs in as the same customer
    laptop = Visitor(b.ws)
    await laptop.connect()
    acked(await laptop.track(*views(laptop, "TXT-01")))
    acked(await laptop.track(verified(laptop, customer)))
    both = must(url, target)
    assert set(both.merged_from) == {phone.visitor, laptop.visitor}
    assert {p.sku for p in both.products} == {"LMP-01", "LMP-02", "KIT-01", "TXT-01"}
    assert both.events == 5 + 3
    assert both.pageviews == 2

    # the phone keeps streaming on its open socket: its events land on the customer
    acked(await phone.track(phone.event("page_view", url=PAGE)))
    assert must(url, target).pageviews == 3
    # ... and resending what was already stored changes nothing (exactly once)
    await phone.send(
        {
            "type": "events",
            "events": [
                {"seq": 1, "id": f"{phone.session[:8]}{1:08d}", "type": "page_view", "url": PAGE}
            ],
        }
    )
    while "ack" not in (await phone.recv()):
        pass
    assert must(url, target).pageviews == 3
    await phone.close()

    # a later visit of the phone (new tab, no identify) lands on the customer at once
    again = Visitor(a.ws, visitor=phone.visitor)
    await again.connect()
    answers = await again.track(again.event("page_view", url="http://127.0.0.1/demo/c/lighting"))
    acked(answers)
    assert must(url, target).pageviews == 4
    assert must(url, phone.visitor).pageviews == 0  # the device holds only the pointer
    assert "LMP-01" in recommended(answers) or "LMP-02" in recommended(answers)
    await again.close()
    await laptop.close()


async def test_typed_email_of_a_customer_reveals_nothing(
    two_servers: tuple[EdgeServer, EdgeServer, str],
) -> None:
    a, _, url = two_servers
    customer = f"cust-{new_id()[:8]}"
    email = f"{customer}@example.com"
    owner = Visitor(a.ws)
    await owner.connect()
    acked(await owner.track(*views(owner, "DEC-03", "KIT-03")))
    acked(await owner.track(owner.event("identify", email=email), verified(owner, customer)))
    await owner.close()
    target = customer_visitor("demo", customer)
    assert {p.sku for p in must(url, target).products} == {"DEC-03", "KIT-03"}

    attacker = Visitor(a.ws)
    await attacker.connect()
    answers = await attacker.track(
        attacker.event("page_view", url="http://127.0.0.1/demo/c/lighting"),
        attacker.event("identify", email=email),
    )
    acked(answers)
    answers = await attacker.track(
        attacker.event("page_view", url="http://127.0.0.1/demo/c/lighting")
    )
    acked(answers)
    html = recommended(answers)
    assert "DEC-03" not in html and "KIT-03" not in html
    theirs = must(url, attacker.visitor)
    assert (theirs.level, theirs.customer_id, theirs.merged_into) == ("claimed", None, None)
    assert theirs.products == ()
    assert attacker.visitor not in must(url, target).merged_from
    await attacker.close()

    # nor can anyone open the customer's profile by sending its id in hello
    intruder = Visitor(a.ws, visitor=target)
    with pytest.raises(AssertionError):
        await intruder.connect()
    await intruder.close()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param({"sig": "0" * 64}, id="forged"),
        pytest.param({"ts": int(time.time()) - 7 * 86400}, id="expired"),
        pytest.param({"site": "another-site"}, id="other-site"),
    ],
)
async def test_a_bad_token_is_refused_and_changes_nothing(
    two_servers: tuple[EdgeServer, EdgeServer, str], token: dict[str, Any]
) -> None:
    a, _, url = two_servers
    customer = f"cust-{new_id()[:8]}"
    tab = Visitor(a.ws)
    await tab.connect()
    acked(await tab.track(*views(tab, "LMP-03")))
    ts = token.get("ts", int(time.time()))
    sig = token.get("sig") or sign_token(SECRET, token.get("site", "demo"), customer, ts)
    answers = await tab.track(tab.event("identify", customer_id=customer, ts=ts, sig=sig))
    errors = [m for m in answers if m.get("type") == "error"]
    assert [e["code"] for e in errors] == ["identity_rejected"], answers
    assert stored(url, customer_visitor("demo", customer)) is None
    mine = must(url, tab.visitor)
    assert (mine.level, mine.merged_into, mine.pageviews) == ("anonymous", None, 1)
    await tab.close()


async def test_concurrent_merges_on_two_processes_each_land_once(
    two_servers: tuple[EdgeServer, EdgeServer, str],
) -> None:
    a, b, url = two_servers
    customer = f"cust-{new_id()[:8]}"
    devices = [Visitor(server.ws) for server in (a, b, a, b)]

    async def sign_in(tab: Visitor, index: int) -> None:
        await tab.connect()
        acked(await tab.track(*views(tab, f"DEC-0{index % 3 + 1}")))
        acked(await tab.track(verified(tab, customer)))
        acked(await tab.track(verified(tab, customer)))  # again: a page reload signs again
        await tab.close()

    await asyncio.gather(*(sign_in(tab, i) for i, tab in enumerate(devices)))
    profile = must(url, customer_visitor("demo", customer))
    assert set(profile.merged_from) == {tab.visitor for tab in devices}
    assert len(profile.merged_from) == 4
    assert profile.pageviews == 4  # one landing page view per device, each once
    assert profile.events == 4 * 2 + 4 * 2  # views, then two identifies per device
    for tab in devices:
        stub = must(url, tab.visitor)
        assert stub.merged_into == customer_visitor("demo", customer)
        assert not stub.merge_pending


async def test_privacy_requests_cover_every_linked_profile(
    two_servers: tuple[EdgeServer, EdgeServer, str],
) -> None:
    """Export and erasure by the shop's customer id (or by any device id)
    reach the customer's profile and every device merged into it."""
    a, b, url = two_servers
    customer = f"cust-{new_id()[:8]}"
    target = customer_visitor("demo", customer)
    devices = [Visitor(a.ws), Visitor(b.ws)]
    for tab in devices:
        await tab.connect()
        acked(await tab.track(*views(tab, "LMP-01"), verified(tab, customer)))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=a.http, headers=auth) as admin:
        by_device = await admin.get(f"/admin/sites/demo/visitors/{devices[0].visitor}")
        assert by_device.status_code == 200
        exported = by_device.json()
        assert exported["profile"]["merged_into"] == target
        [linked] = [p for p in exported["linked_profiles"] if p["id"] == target]
        assert linked["profile"]["customer_id"] == customer
        assert {p["id"] for p in exported["linked_profiles"]} == {target, devices[1].visitor}

        erased = await admin.delete(f"/admin/sites/demo/customers/{customer}")
        assert erased.status_code == 200, erased.text
        report = erased.json()
        assert report["profile"] is True
        assert set(report["linked_profiles"]) == {tab.visitor for tab in devices}
        gone = await admin.get(f"/admin/sites/demo/customers/{customer}")
        assert gone.status_code == 404
    for key in (target, *(tab.visitor for tab in devices)):
        assert stored(url, key) is None
    # the still-open tabs keep sending: nothing comes back (tombstones)
    for tab in devices:
        await tab.track(tab.event("page_view", url=PAGE))
        await tab.close()
    for key in (target, *(tab.visitor for tab in devices)):
        assert stored(url, key) is None
