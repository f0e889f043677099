"""Edge cases of the WebSocket protocol (issue 7): the first message, deep
nesting, and text frames that are not UTF-8. Documented in docs/protocol.md,
"Errors and close codes"."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed

from edge.errors import MalformedFrame
from edge.tracker import protocol as p
from tests.client import BROWSER_UA, Visitor, new_id, open_socket
from tests.helpers import EdgeServer, edge_server

PAGE = "http://127.0.0.1/demo"


@pytest.fixture(scope="module")
def edges() -> Iterator[EdgeServer]:
    """A server of its own: the UTF-8 test reads its whole log."""
    with edge_server() as server:
        yield server


async def closed(visitor: Visitor) -> tuple[list[dict[str, Any]], int, str]:
    """Every answer until the server closes, and its close code and reason."""
    answers = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            answers.append(await visitor.recv())
    assert info.value.rcvd is not None, "closed without a close frame"
    return answers, info.value.rcvd.code, info.value.rcvd.reason


def hello(**changes: Any) -> dict[str, Any]:
    return {
        "type": "hello",
        "v": 1,
        "visitor": new_id(),
        "session": new_id(),
        "url": PAGE,
        **changes,
    }


# --- (a) the first message must be a valid hello ----------------------------------------


@pytest.mark.parametrize(
    ("first", "code", "reason"),
    [
        ([1, 2], "invalid", "bad hello"),
        ("hello", "invalid", "bad hello"),
        (5, "invalid", "bad hello"),
        (None, "invalid", "bad hello"),
        ({}, "hello_required", "hello required"),
        ({"type": 5}, "hello_required", "hello required"),
        ({"type": "events", "events": []}, "hello_required", "hello required"),
        ({"type": "welcome"}, "hello_required", "hello required"),
        ({"type": "hello"}, "invalid", "bad hello"),
        (hello(v=2), "invalid", "bad hello"),
        (hello(visitor="guest"), "bad_visitor_id", "bad visitor id"),
    ],
    ids=[
        "array",
        "string",
        "number",
        "null",
        "empty-object",
        "type-not-a-string",
        "events",
        "server-message",
        "hello-without-fields",
        "hello-v2",
        "bad-visitor",
    ],
)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_anything_but_a_valid_hello_first_gets_one_error_and_close_1008(
    edges: EdgeServer, first: Any, code: str, reason: str, binary: bool
) -> None:
    visitor = Visitor(edges.ws, binary=binary)
    visitor.ws = await open_socket(visitor.url)
    await visitor.ws.send(msgpack.packb(first) if binary else json.dumps(first))
    answers, close_code, close_reason = await closed(visitor)
    assert [(a["type"], a["code"]) for a in answers] == [("error", code)]
    assert (close_code, close_reason) == (1008, reason)


async def test_an_undecodable_first_frame_closes_1007(edges: EdgeServer) -> None:
    visitor = Visitor(edges.ws)
    visitor.ws = await open_socket(visitor.url)
    await visitor.ws.send("{")
    answers, code, _ = await closed(visitor)
    assert (answers, code) == ([], 1007)


async def test_a_valid_hello_is_still_welcomed(edges: EdgeServer) -> None:
    visitor = Visitor(edges.ws)
    assert (await visitor.connect())["type"] == "welcome"
    await visitor.close()


# --- (b) nesting: one bound, one answer -------------------------------------------------


def nested_json(depth: int) -> str:
    """An ``events`` message whose unknown field ``x`` nests so that the whole
    message is ``depth`` levels deep (the message itself is level 1)."""
    return '{"type":"events","events":[],"x":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def nested_msgpack(depth: int) -> bytes:
    """The same in msgpack, written by hand: msgpack's packer refuses deep values."""
    head = b"\x83" + b"".join(msgpack.packb(v) for v in ("type", "events", "events", [], "x"))
    return head + b"\x91" * (depth - 2) + b"\x90"


def test_the_nesting_bound_is_exact_in_both_framings() -> None:
    bound = p.MAX_NESTING
    assert p.decode_frame(nested_json(bound))["type"] == "events"
    assert p.decode_frame(nested_msgpack(bound))["type"] == "events"
    for frame in (nested_json(bound + 1), nested_msgpack(bound + 1)):
        with pytest.raises(MalformedFrame, match=f"nested deeper than {bound} levels"):
            p.decode_frame(frame)


@pytest.mark.parametrize("depth", [33, 100, 500, 900, 990, 1000, 1100, 5_000, 50_000])
def test_every_depth_past_the_bound_gets_the_same_answer(depth: int) -> None:
    """Before, depths around Python's recursion limit decoded or not depending
    on the caller's stack: now one message for all, in JSON and msgpack."""
    messages = set()
    for frame in (
        nested_json(depth),
        "[" * depth + "]" * depth,
        '{"a":' * depth + "1" + "}" * depth,
        b"\x91" * depth + b"\xc0",
        b"\x81\xa1a" * depth + b"\x01",
    ):
        with pytest.raises(MalformedFrame) as caught:
            p.decode_frame(frame)
        messages.add(caught.value.message)
    assert messages == {f"cannot decode frame: nested deeper than {p.MAX_NESTING} levels"}
    with pytest.raises(MalformedFrame):  # never closed: malformed as well (its message varies)
        p.decode_frame("[" * depth)


def test_the_answer_does_not_depend_on_the_callers_stack() -> None:
    frames = [nested_json(p.MAX_NESTING), nested_json(p.MAX_NESTING + 1), nested_json(950)]

    def outcomes() -> list[str]:
        found = []
        for frame in frames:
            try:
                found.append(p.decode_frame(frame)["type"])
            except MalformedFrame as exc:
                found.append(exc.message)
        return found

    def deep(levels: int) -> list[str]:
        return outcomes() if levels == 0 else deep(levels - 1)

    shallow = outcomes()
    headroom = 60  # frames the decoding itself may use
    assert deep(sys.getrecursionlimit() - headroom - 50) == shallow
    assert shallow[0] == "events" and shallow[1] == shallow[2]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_deep_frames_close_1007_after_hello_and_shallow_ones_pass(
    edges: EdgeServer, binary: bool
) -> None:
    nested = nested_msgpack if binary else nested_json
    visitor = Visitor(edges.ws)
    await visitor.connect()
    assert visitor.ws is not None
    await visitor.ws.send(nested(p.MAX_NESTING))
    answer = json.loads(await visitor.ws.recv()) if not binary else await visitor.recv()
    assert answer == {"type": "ack", "ack": 0}
    for depth in (p.MAX_NESTING + 1, 950, 20_000):
        if depth > p.MAX_NESTING + 1:
            await visitor.connect()
            assert visitor.ws is not None
        await visitor.ws.send(nested(depth))
        answers, code, reason = await closed(visitor)
        assert (answers, code) == ([], 1007), depth
        assert reason == f"cannot decode frame: nested deeper than {p.MAX_NESTING} levels"


async def test_a_deep_beacon_gets_400(edges: EdgeServer) -> None:
    body = nested_json(p.MAX_NESTING + 1).encode()
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(
            f"{edges.http}/collect?site=demo", content=body, headers={"user-agent": BROWSER_UA}
        )
    assert answer.status_code == 400
    assert answer.json()["code"] == "malformed"


# --- (c) text frames that are not UTF-8 ------------------------------------------------------


async def test_invalid_utf8_closes_1007_without_a_traceback_in_the_log(edges: EdgeServer) -> None:
    for _ in range(3):
        visitor = Visitor(edges.ws)
        await visitor.connect()
        assert visitor.ws is not None
        await visitor.ws.send(b'{"type":"events","events":[],"x":"\xff\xfe"}', text=True)
        answers, code, _ = await closed(visitor)
        assert (answers, code) == ([], 1007)
    # the server is fine, and counted those closes as the client's
    async with httpx.AsyncClient(timeout=5) as client:
        metrics = (await client.get(f"{edges.http}/metrics")).text
    assert any(
        line.startswith("edge_closes_total{") and 'code="1007"' in line
        for line in metrics.splitlines()
    ), metrics
    log = edges.output()
    assert "Traceback" not in log, log[-3000:]
    assert "Invalid UTF-8" not in log, log[-3000:]


async def test_messages_before_an_invalid_utf8_frame_are_answered_before_1007(
    edges: EdgeServer,
) -> None:
    """Issue 12, item 7: the server closed 1007 as soon as it read the bad
    frame, and the answer to the message before it (stored) never went out."""
    visitor = Visitor(edges.ws)
    await visitor.connect()
    assert visitor.ws is not None
    await visitor.send({"type": "events", "events": [visitor.event("page_view", url=PAGE)]})
    await visitor.ws.send(b'{"type":"events","events":[],"x":"\xff\xfe"}', text=True)
    await visitor.send({"type": "events", "events": [visitor.event("custom", name="after")]})
    answers, code, reason = await closed(visitor)
    assert [answer.get("ack") for answer in answers] == [1], answers  # the first, not the third
    assert (code, reason) == (1007, "invalid UTF-8")
    again = Visitor(edges.ws, visitor=visitor.visitor, session=visitor.session)
    assert (await again.connect())["ack"] == 1  # stored, and only it
    await again.close()
