"""Custom properties set by the admin API, and custom event props deciding,
against real server processes on the embedded store and on real Redis (the
demo declares loyalty_points, plan, preferred_store and wishlist_add's props)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from edge.core.identity import sign_token
from tests.client import Visitor, new_id
from tests.helpers import EdgeServer, RedisServer, edge_server

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOME = "http://127.0.0.1/demo"
ENV = {"EDGE_MAX_MESSAGES_PER_S": "100000", "EDGE_ADMIN_TOKEN": TOKEN}


@pytest.fixture(scope="module", params=["embedded", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[EdgeServer]:
    redis_url = None
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis")
        redis_url = redis.url.replace("/0", "/11")
    with edge_server(redis_url=redis_url, env=ENV) as running:
        yield running


def patch(server: EdgeServer, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.patch(
        f"{server.http}/admin/sites/demo/{path}/properties",
        json=body,
        headers={**AUTH, **headers},
        timeout=10,
    )


def exported_of(server: EdgeServer, path: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.http}/admin/sites/demo/{path}", headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def shown(answers: list[dict[str, Any]]) -> list[str]:
    return [i["campaign"] for a in answers if a["type"] == "decisions" for i in a["items"]]


async def test_properties_set_by_the_admin_api_decide_on_the_open_tab(server: EdgeServer) -> None:
    tab = Visitor(server.ws)
    await tab.connect()
    assert "plus-points" not in shown(await tab.track(tab.event("page_view", url=HOME)))
    answer = patch(server, f"visitors/{tab.visitor}", {"plan": "plus", "loyalty_points": 620})
    assert answer.status_code == 200, answer.text
    assert answer.json()["props"] == {"loyalty_points": 620, "plan": "plus"}
    # the tab holds the same profile: its next page view sees the properties
    assert "plus-points" in shown(await tab.track(tab.event("page_view", url=HOME)))
    # and its events did not undo them (one profile, changes applied in order)
    answer = patch(server, f"visitors/{tab.visitor}", {"loyalty_points": 100})
    assert answer.json()["props"] == {"loyalty_points": 100, "plan": "plus"}
    assert "plus-points" not in shown(await tab.track(tab.event("page_view", url=HOME)))
    exported = exported_of(server, f"visitors/{tab.visitor}")
    assert exported["profile"]["props"] == [["loyalty_points", 100], ["plan", "plus"]]
    assert exported["profile"]["pageviews"] == 3
    await tab.close()


async def test_a_customer_known_before_the_first_visit_gets_them_on_sign_in(
    server: EdgeServer,
) -> None:
    customer = f"cust-{new_id()[:8]}"
    answer = patch(server, f"customers/{customer}", {"plan": "plus", "loyalty_points": 900})
    assert answer.status_code == 200, answer.text
    assert answer.json()["visitor"].startswith("c")
    tab = Visitor(server.ws)
    await tab.connect()
    ts = int(time.time())
    sig = sign_token(b"test-secret", "demo", customer, ts)  # tests.helpers sets the secret
    signed = tab.event("identify", customer_id=customer, ts=ts, sig=sig)
    answers = await tab.track(signed, tab.event("page_view", url=HOME))
    assert "plus-points" in shown(answers)
    # null deletes; the stored profile is the customer's
    answer = patch(server, f"customers/{customer}", {"plan": None})
    assert answer.json()["props"] == {"loyalty_points": 900}
    exported = exported_of(server, f"customers/{customer}")
    assert exported["profile"]["props"] == [["loyalty_points", 900]]
    assert exported["profile"]["customer_id"] == customer
    assert exported["profile"]["level"] == "verified"
    await tab.close()


def test_bad_values_are_refused_naming_the_property(server: EdgeServer) -> None:
    cases = [
        ({"loyalty_points": -5}, "property 'loyalty_points': must be at least 0"),
        ({"plan": "gold"}, "property 'plan': must be one of 'free', 'plus'"),
        ({"loyalty_points": "5"}, "property 'loyalty_points': must be a whole number"),
        ({"nickname": "x"}, "unknown property 'nickname'"),
        ([1, 2], "the body is a JSON object"),
    ]
    for body, message in cases:
        answer = patch(server, "customers/cust-bad", body)
        assert answer.status_code == 400
        assert message in answer.json()["error"]
    raw = httpx.patch(
        f"{server.http}/admin/sites/demo/customers/cust-bad/properties",
        content=b"{nope",
        headers=AUTH,
        timeout=10,
    )
    assert raw.status_code == 400 and raw.json()["error"] == "the body is not JSON"
    # nothing was created by the refused calls
    exported = httpx.get(
        f"{server.http}/admin/sites/demo/customers/cust-bad", headers=AUTH, timeout=10
    )
    assert exported.status_code == 404
    assert patch(server, f"visitors/{new_id()}", {"plan": "plus"}).status_code == 404
    unauthorized = httpx.patch(
        f"{server.http}/admin/sites/demo/customers/x/properties", json={"plan": "plus"}, timeout=10
    )
    assert unauthorized.status_code == 401


async def test_a_custom_event_trigger_reads_the_events_props(server: EdgeServer) -> None:
    tab = Visitor(server.ws)
    await tab.connect()
    await tab.track(tab.event("page_view", url=HOME))
    cheap = {"sku": "MUG-01", "price": 18}
    answers = await tab.track(tab.event("custom", name="wishlist_add", props=cheap))
    assert "wishlist-shipping" not in shown(answers)
    dear = {"sku": "LMP-01", "price": 149.5}
    answers = await tab.track(tab.event("custom", name="wishlist_add", props=dear))
    assert shown(answers) == ["wishlist-shipping"]
    # a mistyped or undeclared prop refuses the event, naming the prop
    bad = tab.event("custom", name="wishlist_add", props={"price": "lots"})
    answers = await tab.track(bad)
    errors = [a for a in answers if a["type"] == "error"]
    assert [(e["code"], e["seq"]) for e in errors] == [("invalid", bad["seq"])]
    assert "prop 'price' must be a number" in errors[0]["message"]
    other = tab.event("custom", name="wishlist_add", props={"colour": "red"})
    [error] = [a for a in await tab.track(other) if a["type"] == "error"]
    assert "undeclared prop 'colour'" in error["message"]
    # events of names not declared keep their props unread, as before
    free = tab.event("custom", name="newsletter_signup", props={"list": "weekly"})
    assert not [a for a in await tab.track(free) if a["type"] == "error"]
    exported = exported_of(server, f"visitors/{tab.visitor}")
    counts = {c[0]: c[1] for c in exported["profile"]["custom"]}
    assert counts == {"wishlist_add": 2, "newsletter_signup": 1}  # the refused ones not
    await tab.close()
