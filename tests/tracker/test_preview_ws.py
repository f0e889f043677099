"""Preview links over a real socket, against a real server on the Redis store:
a draft is shown to the tab holding a valid token and to no one else, a bad
token is refused and changes nothing, and nothing a preview tab sends is
written anywhere (every key of the store is compared before and after)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_py
from websockets.asyncio.client import connect

from edge.config.sites import Site, load_site
from edge.core import preview
from edge.core.preview import Grant
from edge.stores import keys
from tests.client import Visitor, new_id, open_socket
from tests.helpers import PROFILES, EdgeServer, RedisServer, demo_without_campaigns, edge_server

TOKEN = "admin-token-for-preview-tests-01"
PAGE = "http://127.0.0.1/demo"

CAMPAIGNS = """
campaigns:
  - id: spring
    status: draft
    priority: 10
    placement: popup
    trigger: {exit_intent: true}
    audience: {visitor.identified: true}
    preview_page: /demo
    experiment:
      variants:
        - {id: a}
        - id: b
          widget:
            kind: coupon
            headline: {en: "Spring, with consent"}
            consent: {en: "Email me offers"}
            coupon: {source: generated, prefix: SPRING}
    widget:
      kind: coupon
      headline: {en: "Spring coupon"}
      coupon: {source: generated, prefix: SPRING}
  - id: second-page
    placement: bar
    audience: {session.pageviews: {$gte: 2}}
    widget: {kind: bar, headline: {en: "Second page already"}}
  - id: live-popup
    placement: popup
    widget: {kind: popup, headline: {en: "Live pop-up"}}
"""

TTL_REFUSED = "a preview lasts more than 0 and at most 240 minutes"
STRICT_SITE = "site: {id: strict, tracking: {require_consent: true}}\n"


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = demo_without_campaigns(tmp_path_factory.mktemp("profiles"), CAMPAIGNS)
    (folder / "strict").mkdir()
    (folder / "strict" / "site.yaml").write_text(STRICT_SITE)
    (folder / "strict" / "campaigns.yaml").write_text(CAMPAIGNS)
    return folder


@pytest.fixture(scope="module")
def redis_url(redis: RedisServer) -> str:
    url = redis.url.replace("/0", "/14")
    redis_py.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def shop(redis_url: str, profiles: Path) -> Iterator[EdgeServer]:
    env = {"EDGE_ADMIN_TOKEN": TOKEN, "EDGE_MAX_MESSAGES_PER_S": "100000"}
    with edge_server(redis_url=redis_url, profiles=profiles, env=env) as server:
        yield server


def site_of(profiles: Path, name: str = "demo") -> Site:
    return load_site(profiles / name)


def token_for(profiles: Path, campaign: str, site: str = "demo", **grant: Any) -> str:
    _, token = preview.mint(
        TOKEN.encode(), site_of(profiles, site), campaign, now=time.time(), **grant
    )
    return token


def snapshot(url: str) -> dict[bytes, bytes | None]:
    """Every key of the store with its value (a dump, whatever its type)."""
    client = redis_py.Redis.from_url(url)
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


def forged(token: str) -> str:
    """``token`` with the last digit of its signature changed."""
    return token[:-1] + ("1" if token.endswith("0") else "0")


async def preview_hello(visitor: Visitor, token: str, **hello: Any) -> list[dict[str, Any]]:
    """Send a preview hello; return every answer up to and with ``welcome``."""
    visitor.ws = await open_socket(visitor.url)
    await visitor.send(
        {
            "type": "hello",
            "v": 1,
            "visitor": visitor.visitor,
            "session": visitor.session,
            "url": PAGE,
            "preview": token,
            **hello,
        }
    )
    answers = [await visitor.recv()]
    while answers[-1]["type"] != "welcome":
        answers.append(await visitor.recv())
    return answers


def items_of(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["campaign"], item["variant"]) for item in answer["items"]]


async def test_a_preview_shows_the_draft_to_that_tab_and_stores_nothing(
    shop: EdgeServer, profiles: Path, redis_url: str
) -> None:
    token = token_for(profiles, "spring")
    before = snapshot(redis_url)
    tab = Visitor(shop.ws)
    [welcome] = await preview_hello(tab, token, consent=True)
    grant = preview.verify(token, TOKEN.encode(), "demo", time.time())
    assert (
        welcome["preview"]
        == grant.to_wire()
        == {
            "campaign": "spring",
            "variant": None,
            "step": None,
            "expires": grant.expires,
        }
    )
    assert welcome["ack"] == 0 and welcome["css"]

    [answer] = await tab.track(tab.event("page_view", url=PAGE))
    assert answer["type"] == "decisions" and answer["ack"] == 1
    # The draft takes the pop-up placement at once, whatever its audience and trigger.
    assert items_of(answer) == [("spring", "a")]
    [item] = answer["items"]
    assert item["preview"] is True and item["trigger"] == {"type": "page_view", "value": True}
    assert "Spring coupon" in item["html"]
    trace = answer["preview"]["trace"]
    assert answer["preview"]["campaign"] == "spring"
    assert trace[1:3] == [
        "campaign spring: status draft: shown to no one else",
        "campaign spring, if it were live: audience failed at visitor.identified "
        "(= True, was False)",
    ]
    assert (
        "campaign live-popup: shown in popup (audience matched); the preview takes popup: "
        "not shown" in trace
    )

    # Its reports are believed (the copy holds the offer); others are not.
    answers = await tab.track(
        tab.event("widget", campaign="spring", variant="a", action="impression", url=PAGE),
        tab.event("widget", campaign="live-popup", variant="a", action="impression", url=PAGE),
    )
    assert [(a["type"], a.get("code")) for a in answers] == [
        ("error", "not_offered"),
        ("ack", None),
    ]
    # A coupon form reveals the placeholder, never a real code.
    answers = await tab.track(
        tab.event("identify", email="qa@shop.example", url=PAGE),
        tab.event("widget", campaign="spring", variant="a", action="convert", url=PAGE),
    )
    coupon = answers[0]
    assert coupon["type"] == "coupon" and coupon["code"] == "PREVIEW" and coupon["preview"]
    assert "PREVIEW" in coupon["html"] and answers[-1]["ack"] == 5
    await tab.close()
    assert snapshot(redis_url) == before  # no profile, offer, statistic, signal or stream


async def test_the_visitors_own_profile_is_read_and_never_written(
    shop: EdgeServer, profiles: Path, redis_url: str
) -> None:
    tab = Visitor(shop.ws)
    await tab.connect(consent=True)
    [answer] = await tab.track(tab.event("page_view", url=PAGE))
    assert items_of(answer) == [("live-popup", "a")]  # the draft: for no one
    await tab.close()
    client = redis_py.Redis.from_url(redis_url)
    stored = client.dump(keys.profile("demo", tab.visitor))
    assert stored is not None
    before = snapshot(redis_url)

    again = Visitor(shop.ws, visitor=tab.visitor, session=tab.session)
    [welcome] = await preview_hello(again, token_for(profiles, "spring", variant="b"))
    assert welcome["ack"] == 1  # what the store holds of this tab
    again.seq = iter(range(2, 100))  # type: ignore[assignment]
    [answer] = await again.track(again.event("page_view", url=f"{PAGE}/c/lighting"))
    # The second page view is counted on the tab's copy of the stored profile.
    assert items_of(answer) == [("spring", "b"), ("second-page", "a")]
    await again.close()
    assert snapshot(redis_url) == before


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda p: forged(token_for(p, "spring")), "preview token signature does not match"),
        (lambda p: "not-a-token", "malformed preview token"),
        (
            lambda p: preview.sign(
                TOKEN.encode(), Grant("demo", "spring", None, None, int(time.time()) - 120)
            ),
            "preview token expired 2 min ago",
        ),
        (
            lambda p: token_for(p, "spring", site="strict"),
            "preview token is for site 'strict', not 'demo'",
        ),
        (
            lambda p: preview.sign(
                TOKEN.encode(), Grant("demo", "gone", None, None, int(time.time()) + 60)
            ),
            "campaign 'gone' is not in site demo's configuration",
        ),
    ],
    ids=["forged", "malformed", "expired", "other-site", "unknown-campaign"],
)
async def test_a_refused_token_is_answered_and_changes_nothing(
    shop: EdgeServer, profiles: Path, redis_url: str, token: Any, why: str
) -> None:
    before = snapshot(redis_url)
    tab = Visitor(shop.ws)
    page_view = tab.event("page_view", url=PAGE)
    refused, welcome = await preview_hello(tab, token(profiles), consent=True, events=[page_view])
    assert refused == {"type": "error", "code": "preview_refused", "message": why}
    assert welcome["preview"] == {"refused": why} and "css" not in welcome
    answer = await tab.recv()  # the page view the hello carried: acknowledged, nothing shown
    assert answer == {
        "type": "decisions",
        "items": [],
        "ack": 1,
        "preview": {"refused": why, "trace": []},
    }
    await tab.close()
    assert snapshot(redis_url) == before


async def test_consent_rules_still_hold_in_a_preview(
    shop: EdgeServer, profiles: Path, redis_url: str
) -> None:
    before = snapshot(redis_url)
    # Without consent on a site that requires it: shown, but no coupon.
    tab = Visitor(shop.ws, site="strict")
    await preview_hello(tab, token_for(profiles, "spring", site="strict"))
    [answer] = await tab.track(tab.event("page_view", url=PAGE))
    assert items_of(answer) == [("spring", "a")]
    answers = await tab.track(
        tab.event("widget", campaign="spring", variant="a", action="convert", url=PAGE)
    )
    assert answers[0]["code"] == "consent_required" and answers[-1]["type"] == "ack"
    await tab.close()
    # With consent, the form's own consent box must be ticked.
    tab = Visitor(shop.ws, site="strict")
    await preview_hello(
        tab, token_for(profiles, "spring", site="strict", variant="b"), consent=True
    )
    await tab.track(tab.event("page_view", url=PAGE))
    convert = {"campaign": "spring", "variant": "b", "action": "convert", "url": PAGE}
    answers = await tab.track(
        tab.event("identify", email="qa@shop.example", url=PAGE), tab.event("widget", **convert)
    )
    assert answers[0]["message"] == "this form's consent box was not ticked"
    answers = await tab.track(
        tab.event("identify", email="qa@shop.example", marketing_consent=True, url=PAGE),
        tab.event("widget", **convert),
    )
    assert answers[0]["type"] == "coupon" and answers[0]["code"] == "PREVIEW"
    await tab.close()
    assert snapshot(redis_url) == before


async def test_robots_get_no_preview(shop: EdgeServer, profiles: Path) -> None:
    async with connect(f"{shop.ws}/ws?site=demo", user_agent_header="curl/8.5") as ws:
        hello = {"type": "hello", "v": 1, "visitor": new_id(), "session": new_id(), "url": PAGE}
        await ws.send(json.dumps({**hello, "preview": token_for(profiles, "spring")}))
        refused = json.loads(await ws.recv())
        assert refused["code"] == "preview_refused"
        assert refused["message"] == "robots get no preview"
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_the_admin_api_signs_links_this_server_accepts(shop: EdgeServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    path = "/admin/sites/demo/preview"
    async with httpx.AsyncClient(base_url=shop.http) as client:
        wanted = {"campaign": "spring", "variant": "b", "step": 1, "ttl_min": 10}
        assert (await client.post(path, json=wanted)).status_code == 401
        answer = await client.post(path, json=wanted, headers=auth)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        link = answer.json()
        assert link["url"] == f"http://127.0.0.1:8000/demo?edge_preview={link['token']}"
        assert (link["campaign"], link["variant"], link["step"]) == ("spring", "b", 0)
        assert time.time() < link["expires"] <= time.time() + 600
        refusals = [
            ({"campaign": "spring", "step": 2}, "campaign spring has 1 step"),
            ({"campaign": "spring", "step": 0}, "step counts from 1 (the first step)"),
            ({"campaign": "spring", "ttl_min": "long"}, "ttl_min must be a number"),
            ({"campaign": "spring", "ttl_min": 300}, TTL_REFUSED),
            ({"campaign": "spring", "ttl_min": 0}, TTL_REFUSED),
            ({"variant": "b"}, "campaign (the id of the campaign to preview) is required"),
        ]
        for body, why in refusals:
            refused = await client.post(path, json=body, headers=auth)
            assert (refused.status_code, refused.json()) == (400, {"error": why})
        garbage = await client.post(path, content=b"{", headers=auth)
        assert garbage.status_code == 400
        unknown = await client.post("/admin/sites/nope/preview", json=wanted, headers=auth)
        assert unknown.status_code == 404
    tab = Visitor(shop.ws)
    [welcome] = await preview_hello(tab, link["token"])
    assert welcome["preview"]["variant"] == "b"
    await tab.close()


@pytest.fixture(scope="module")
def demo_shop() -> Iterator[EdgeServer]:
    """The demo as shipped (embedded store)."""
    env = {"EDGE_ADMIN_TOKEN": TOKEN, "EDGE_MAX_MESSAGES_PER_S": "100000"}
    with edge_server(profiles=PROFILES, env=env) as server:
        yield server


async def test_a_preview_decides_with_the_custom_events_props(demo_shop: EdgeServer) -> None:
    """The demo's wishlist-shipping (audience event.price > 100) previewed: the
    trace of the wishlist_add decision reads the event's price, as the live
    path does."""
    tab = Visitor(demo_shop.ws)
    await preview_hello(tab, token_for(PROFILES, "wishlist-shipping"), consent=True)
    await tab.track(tab.event("page_view", url=PAGE))

    async def wishlist(price: float) -> list[str]:
        props = {"sku": "LMP-01", "price": price}
        answers = await tab.track(tab.event("custom", name="wishlist_add", props=props))
        [answer] = [a for a in answers if a["type"] == "decisions"]
        head = "on event:wishlist_add: campaign wishlist-shipping, live:"
        return [line for line in answer["preview"]["trace"] if line.startswith(head)]

    [dear] = await wishlist(149.0)
    assert "audience matched" in dear, dear
    [cheap] = await wishlist(20.0)
    assert "audience failed at event.price" in cheap, cheap
    await tab.close()
