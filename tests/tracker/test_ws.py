"""The WebSocket and beacon endpoints against a real server process, on both stores."""

from __future__ import annotations

import gzip
import json

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.client import BROWSER_HEADERS, Visitor, new_id, open_socket
from tests.helpers import EdgeServer

PAGE = "http://127.0.0.1/demo"


async def closed_with(visitor: Visitor) -> int:
    """Read until the server closes; return the close code."""
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(10):
            await visitor.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def test_hello_without_visitor_gets_a_fresh_id(server: EdgeServer) -> None:
    visitor = Visitor(server.ws)
    visitor.visitor = None  # type: ignore[assignment]
    welcome = await visitor.connect()
    assert len(welcome["visitor"]) == 32 and int(welcome["visitor"], 16) >= 0
    assert welcome["ack"] == 0 and welcome["v"] == 1 and welcome["config"]
    await visitor.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_events_are_acknowledged_in_the_clients_framing(
    server: EdgeServer, binary: bool
) -> None:
    visitor = Visitor(server.ws, binary=binary)
    await visitor.connect()
    answers = await visitor.track(visitor.event("page_view", url=PAGE))
    assert len(answers) == 1
    assert answers[0]["type"] == "decisions" and answers[0]["ack"] == 1
    # A first, anonymous, direct visit: only the cold-start recommendations apply.
    assert [item["campaign"] for item in answers[0]["items"]] == ["bestsellers"]
    answers = await visitor.track(visitor.event("custom", name="newsletter_view"))
    assert answers[-1]["ack"] == 2
    await visitor.close()


async def test_reconnect_resumes_from_what_was_stored(server: EdgeServer) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    await visitor.track(*(visitor.event("page_view", url=PAGE) for _ in range(3)))
    await visitor.close()
    again = Visitor(server.ws, visitor=visitor.visitor, session=visitor.session)
    assert (await again.connect())["ack"] == 3
    other_tab = Visitor(server.ws, visitor=visitor.visitor)
    assert (await other_tab.connect())["ack"] == 0
    await again.close()
    await other_tab.close()


async def test_unknown_event_type_is_refused_alone(server: EdgeServer) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    answers = await visitor.track(
        visitor.event("page_view", url=PAGE),
        visitor.event("teleport", to="mars"),
        visitor.event("product_view", sku="LMP-01", price=-3),
        visitor.event("product_view", sku="LMP-01", price=149.0),
    )
    assert answers[0] == {
        "type": "error",
        "code": "unknown_event_type",
        "message": "unknown event type 'teleport'",
        "seq": 2,
    }
    assert answers[1]["code"] == "invalid" and answers[1]["seq"] == 3
    assert answers[2]["ack"] == 4
    await visitor.close()


async def test_events_before_hello_get_an_error_and_close_1008(server: EdgeServer) -> None:
    # The first message must be a valid hello (tests/tracker/test_ws_edges.py).
    visitor = Visitor(server.ws)
    visitor.ws = await open_socket(visitor.url)
    await visitor.send({"type": "events", "events": []})
    answer = await visitor.recv()
    assert answer["type"] == "error" and answer["code"] == "hello_required"
    with pytest.raises(ConnectionClosed) as info:
        await visitor.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


@pytest.mark.parametrize("bad", ["null", "undefined", "guest", "", "0" * 32, "ABC" * 11, 42])
async def test_bad_visitor_ids_are_refused(server: EdgeServer, bad: object) -> None:
    visitor = Visitor(server.ws)
    visitor.ws = await open_socket(visitor.url)
    await visitor.send(
        {"type": "hello", "v": 1, "visitor": bad, "session": visitor.session, "url": PAGE}
    )
    answer = await visitor.recv()
    assert answer["type"] == "error"
    assert answer["code"] == ("bad_visitor_id" if isinstance(bad, str) else "invalid")
    assert await closed_with(visitor) == 1008


async def test_oversized_frame_closes_1009_and_keeps_what_was_accepted(
    server: EdgeServer,
) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    await visitor.track(visitor.event("page_view", url=PAGE))
    await visitor.ws.send("x" * (64 * 1024 + 1))  # type: ignore[union-attr]
    assert await closed_with(visitor) == 1009
    again = Visitor(server.ws, visitor=visitor.visitor, session=visitor.session)
    assert (await again.connect())["ack"] == 1
    await again.close()


@pytest.mark.parametrize(
    ("frame", "text"),
    [("{not json", True), (b"\xc1\xc1", False), (b"\xff\xfe", True)],
    ids=["json", "msgpack", "utf8"],
)
async def test_undecodable_frames_close_1007(
    server: EdgeServer, frame: str | bytes, text: bool
) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    await visitor.track(visitor.event("page_view", url=PAGE))
    await visitor.ws.send(frame, text=text)  # type: ignore[union-attr]
    assert await closed_with(visitor) == 1007
    again = Visitor(server.ws, visitor=visitor.visitor, session=visitor.session)
    assert (await again.connect())["ack"] == 1
    await again.close()


async def test_wrong_shape_gets_an_error_frame(server: EdgeServer) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    for message, code in [
        ([1, 2], "invalid"),
        ({"type": "dance"}, "invalid"),
        ({"type": "events", "events": "x"}, "invalid"),
    ]:
        await visitor.ws.send(json.dumps(message))  # type: ignore[union-attr]
        answer = await visitor.recv()
        assert answer["type"] == "error" and answer["code"] == code, answer
    await visitor.close()


async def test_message_flood_closes_1008(server: EdgeServer) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    for _ in range(100):
        await visitor.send({"type": "events", "events": []})
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(200):
            await visitor.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


@pytest.mark.parametrize(
    ("query", "origin"),
    [("site=demo", "https://evil.example"), ("site=nope", None), ("", None)],
    ids=["foreign-origin", "unknown-site", "no-site"],
)
async def test_handshake_refused_with_403(
    server: EdgeServer, query: str, origin: str | None
) -> None:
    with pytest.raises(InvalidStatus) as info:
        await open_socket(f"{server.ws}/ws?{query}", origin=origin)  # type: ignore[arg-type]
    assert info.value.response.status_code == 403


async def test_allowed_and_same_origin_handshakes_pass(server: EdgeServer) -> None:
    for origin in ["http://localhost:8000", server.http]:
        ws = await open_socket(f"{server.ws}/ws?site=demo", origin=origin)  # type: ignore[arg-type]
        await ws.close()


# --- the beacon ---------------------------------------------------------------


def beacon(visitor: Visitor, events: list[dict[str, object]]) -> dict[str, object]:
    return {
        "type": "events",
        "visitor": visitor.visitor,
        "session": visitor.session,
        "events": events,
    }


async def test_beacon_shares_dedupe_with_the_socket(server: EdgeServer) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    events = [visitor.event("page_view", url=PAGE) for _ in range(5)]
    await visitor.track(*events[:3])
    await visitor.close()
    async with httpx.AsyncClient(base_url=server.http, headers=BROWSER_HEADERS) as http:
        answer = await http.post(
            "/collect?site=demo",
            content=json.dumps(beacon(visitor, events)),
            headers={"content-type": "text/plain"},
        )
        assert answer.status_code == 200
        assert answer.json() == {"type": "ack", "ack": 5}
        packed = msgpack.packb(beacon(visitor, events))
        answer = await http.post(
            "/collect?site=demo", content=packed, headers={"content-type": "application/msgpack"}
        )
        assert answer.json() == {"type": "ack", "ack": 5}
    again = Visitor(server.ws, visitor=visitor.visitor, session=visitor.session)
    assert (await again.connect())["ack"] == 5
    await again.close()


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{oops", {}, 400, "malformed"),
        (b'{"type": "hello"}', {}, 400, "invalid"),
        (
            json.dumps(
                {"type": "events", "visitor": "guest", "session": new_id(), "events": []}
            ).encode(),
            {},
            400,
            "bad_visitor_id",
        ),
        (b"x" * (64 * 1024 + 1), {}, 413, "too_big"),
        (b"{}", {"origin": "https://evil.example"}, 403, "origin_refused"),
    ],
    ids=["malformed", "not-events", "bad-visitor", "too-big", "foreign-origin"],
)
async def test_beacon_refusals(
    server: EdgeServer, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    async with httpx.AsyncClient(base_url=server.http, headers=BROWSER_HEADERS) as http:
        answer = await http.post("/collect?site=demo", content=body, headers=headers)
    assert answer.status_code == status
    assert answer.json()["code"] == code


async def test_tracker_script_is_served_small(server: EdgeServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, headers=BROWSER_HEADERS) as http:
        plain = await http.get("/edge.js", headers={"accept-encoding": "identity"})
        zipped = await http.get("/edge.js")
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/javascript")
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == plain.text
    size = len(gzip.compress(plain.content, compresslevel=9))
    print(f"tracker: {len(plain.content)} bytes, {size} bytes gzipped (budget 5120)")
    assert size <= 5120


async def test_healthz_reports_store_and_site_versions(server: EdgeServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, headers=BROWSER_HEADERS) as http:
        health = (await http.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["store"] in {"embedded", "redis"}
    assert len(health["sites"]["demo"]["version"]) == 12
    assert health["sites"]["demo"]["problems"] == []


async def test_metrics_and_readiness(server: EdgeServer) -> None:
    visitor = Visitor(server.ws)
    await visitor.connect()
    await visitor.track(visitor.event("page_view", url=PAGE))
    await visitor.close()
    async with httpx.AsyncClient(base_url=server.http) as http:
        ready = await http.get("/readyz")
        text = (await http.get("/metrics")).text
    assert ready.status_code == 200 and ready.json() == {"ready": True, "problems": []}
    assert 'edge_message_seconds_count{site="demo"}' in text
    assert "edge_store_batches_total" in text and "edge_connections{" in text
    events = [line for line in text.splitlines() if line.startswith("edge_events_total")]
    assert events and float(events[0].split()[-1]) >= 1
