"""The lead hand-off through a real server (issue 14, item 5): on a site that
keeps emails, a visitor sends the coupon form with the consent box ticked,
and the ``identified`` event on the site's Redis Stream carries the email,
the name and the consent record, in the published JSON Schema's shape."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from edge.automation import schema
from edge.core.automation import AutomationEvent
from edge.stores import keys
from tests.client import Visitor
from tests.helpers import PROFILES, ROOT, EdgeServer, RedisServer, edge_server

SHOP = "http://127.0.0.1/demo"
DB = 13  # a Redis database of its own
CONVERT = {"variant": "a", "action": "convert"}


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo site, which keeps emails (checked here, so that the test
    stays about a keeping site if the demo changes its mind)."""
    folder = tmp_path_factory.mktemp("profiles")
    shutil.copytree(PROFILES / "demo", folder / "demo")
    assert "keep_email: true" in (folder / "demo" / "site.yaml").read_text()
    return folder


@pytest.fixture(scope="module")
def server(redis: RedisServer, profiles: Path) -> Iterator[EdgeServer]:
    url = redis.url.replace("/0", f"/{DB}")
    with edge_server(redis_url=url, profiles=profiles) as running:
        yield running


@pytest.fixture
async def stream(redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis.url.replace("/0", f"/{DB}"))
    yield client
    await client.aclose()


async def entries_of(client: aioredis.Redis, visitor: str, kind: str) -> list[dict[bytes, bytes]]:
    """The visitor's stream entries of one type, once there is one."""
    deadline = time.monotonic() + 30
    while True:
        entries = await client.xrange(keys.automation_stream("demo"))
        found = [f for _, f in entries if AutomationEvent.from_fields(f).visitor == visitor]
        mine = [f for f in found if AutomationEvent.from_fields(f).type == kind]
        if mine:
            return mine
        if time.monotonic() > deadline:
            raise AssertionError(f"no {kind} for {visitor} in {found}")
        await asyncio.sleep(0.1)


def body_of(fields: dict[bytes, bytes]) -> dict[str, object]:
    """A stream entry as the webhook body it stands for (payload decoded)."""
    body: dict[str, object] = AutomationEvent.from_fields(fields).to_json()
    return body


async def test_a_ticked_coupon_form_hands_the_email_and_consent_to_the_stream(
    server: EdgeServer, stream: aioredis.Redis
) -> None:
    tab = Visitor(server.ws)
    await tab.connect()
    for _ in range(3):  # the first-order coupon needs 3 pages
        answers = await tab.track(tab.event("page_view", url=SHOP))
    assert "welcome-coupon" in [i["campaign"] for i in answers[-1]["items"]]
    form = [  # what the tracker sends for the coupon form, box ticked
        tab.event("identify", email="Ada@Example.com", name="Ada", marketing_consent=True),
        tab.event("widget", campaign="welcome-coupon", **CONVERT),
    ]
    answers = await tab.track(*form)
    assert [a for a in answers if a["type"] == "error"] == []
    assert [a["type"] for a in answers].count("coupon") == 1
    await tab.close()

    [fields] = await entries_of(stream, tab.visitor, "identified")
    raw_payload = json.loads(fields[b"payload"])
    body = body_of(fields)
    assert body["type"] == "identified" and body["site"] == "demo"
    assert raw_payload == body["payload"]
    payload = body["payload"]
    assert isinstance(payload, dict)
    assert payload["level"] == "claimed"
    assert payload["email"] == "ada@example.com"
    assert payload["name"] == "Ada"
    consent = payload["consent"]
    assert consent["given"] is True and isinstance(consent["at"], float)
    # the published JSON Schema: the file is the models' (test_lead.py checks it
    # is generated from them), and the body validates against the models
    published = json.loads((ROOT / "docs" / "automation-event.schema.json").read_text())
    assert published == schema.json_schema()
    schema.BODY.validate_json(json.dumps(body))
    # and the form's conversion went out too
    await entries_of(stream, tab.visitor, "widget_converted")
