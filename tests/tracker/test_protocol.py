"""Unit tests for edge/tracker/protocol.py and edge/ids.py."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest

from edge.errors import BadVisitorId, InvalidMessage, MalformedFrame
from edge.ids import EVENT_ID, check_session_id, check_visitor_id, is_valid_id, new_id
from edge.tracker import protocol as p

VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
SESSION = "f00d0a9b2d3e4f5061728394a5b6c717"
HELLO: dict[str, Any] = {
    "type": "hello",
    "v": 1,
    "visitor": VISITOR,
    "session": SESSION,
    "url": "https://shop.example/p/lamp?utm_source=facebook",
    "referrer": "https://www.facebook.com/",
    "title": "Lamp",
    "screen": [1920, 1080],
    "lang": "en-GB",
    "consent": True,
}
EVENTS: dict[str, Any] = {
    "type": "events",
    "events": [
        {
            "seq": 7,
            "id": "k3J9aQ2m",
            "type": "page_view",
            "url": "https://shop.example/c/lamps",
            "title": "Lamps",
            "referrer": "https://shop.example/",
        },
        {
            "seq": 8,
            "id": "p0Zx81Lr",
            "type": "product_view",
            "sku": "LMP-01",
            "name": "Lamp",
            "category": "lamps",
            "price": 49.0,
        },
    ],
}


def ev(seq: int, kind: str = "page_view", **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "id": f"event-{seq:04d}", "type": kind, **fields}


# --- framing -----------------------------------------------------------------------


@pytest.mark.parametrize("message", [HELLO, EVENTS], ids=["hello", "events"])
def test_json_and_msgpack_frames_decode_to_the_same_message(message: dict[str, Any]) -> None:
    from_json = p.decode_frame(json.dumps(message))
    from_msgpack = p.decode_frame(msgpack.packb(message, use_bin_type=True))
    assert from_json == from_msgpack == message


def test_both_framings_parse_to_equal_models() -> None:
    text = p.parse_hello(p.decode_frame(json.dumps(HELLO)))
    binary = p.parse_hello(p.decode_frame(msgpack.packb(HELLO, use_bin_type=True)))
    assert text == binary
    assert (text.visitor, text.session, text.screen, text.consent) == (
        VISITOR,
        SESSION,
        [1920, 1080],
        True,
    )
    batch_t = p.parse_events(p.decode_frame(json.dumps(EVENTS)))
    batch_b = p.parse_events(p.decode_frame(msgpack.packb(EVENTS, use_bin_type=True)))
    assert batch_t == batch_b
    assert [e.type for e in batch_t.events] == ["page_view", "product_view"]
    assert batch_t.highest_seq == 8
    assert batch_t.errors == ()


@pytest.mark.parametrize(
    "frame",
    [
        "{",
        '{"type": "hello",}',
        "",
        '{"type": "events", "price": NaN}',
        '{"x": Infinity}',
        '{"x": -Infinity}',
        "NaN",
        "[" * 100_000,
    ],
    ids=["unclosed", "trailing-comma", "empty", "nan", "inf", "-inf", "bare-nan", "deep"],
)
def test_malformed_json_is_refused(frame: str) -> None:
    with pytest.raises(MalformedFrame) as caught:
        p.decode_frame(frame)
    assert caught.value.code == "malformed"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"\x92\x01",  # an array of two with one item
        b"\x81\x01\x02",  # a map with an integer key
        b"\xa2\xff\xfe",  # a str that is not UTF-8
        b"\x80\x01",  # extra data after the message
        b"\x91" * 100_000,
    ],
    ids=["empty", "reserved", "truncated", "int-key", "not-utf8", "extra", "deep"],
)
def test_malformed_msgpack_is_refused(frame: bytes) -> None:
    with pytest.raises(MalformedFrame) as caught:
        p.decode_frame(frame)
    assert caught.value.code == "malformed"


@pytest.mark.parametrize(
    "frame",
    ["[1, 2]", "1", '"hello"', "null", msgpack.packb([1]), msgpack.packb(3.5), msgpack.packb(None)],
)
def test_a_message_that_is_not_an_object_is_invalid(frame: str | bytes) -> None:
    with pytest.raises(InvalidMessage) as caught:
        p.decode_frame(frame)
    assert caught.value.code == "invalid"
    assert not isinstance(caught.value, MalformedFrame)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_prices_in_msgpack_are_invalid(value: float) -> None:
    frame = msgpack.packb(
        {"type": "events", "events": [ev(1, "product_view", sku="A", price=value)]}
    )
    batch = p.parse_events(p.decode_frame(frame))
    assert batch.events == ()
    assert [(e.seq, e.code) for e in batch.errors] == [(1, "invalid")]


def test_non_finite_custom_props_are_invalid() -> None:
    frame = msgpack.packb(
        {"type": "events", "events": [ev(1, "custom", name="x", props={"v": math.nan})]}
    )
    batch = p.parse_events(p.decode_frame(frame))
    assert batch.events == ()
    assert [(e.seq, e.code) for e in batch.errors] == [(1, "invalid")]


def test_message_type() -> None:
    assert p.message_type({"type": "hello"}) == "hello"
    for message in ({}, {"type": 1}, {"type": None}):
        with pytest.raises(InvalidMessage):
            p.message_type(message)


# --- hello and ids ------------------------------------------------------------


@pytest.mark.parametrize(
    "visitor",
    [
        "null",
        "undefined",
        "guest",
        "",
        "a" * 31,
        "ab" * 16 + "c",
        VISITOR.upper(),
        "8C1F0A9B2D3E4F5061728394a5b6c7d8",
        "0" * 32,
        "f" * 32,
        "g" * 32,
        "8c1f0a9b-2d3e-4f50-6172-8394a5b6c7d8",
    ],
)
def test_hello_refuses_bad_visitor_ids(visitor: str) -> None:
    with pytest.raises(BadVisitorId) as caught:
        p.parse_hello({**HELLO, "visitor": visitor})
    assert caught.value.code == "bad_visitor_id"


def test_hello_with_visitor_null_lets_the_server_mint_one() -> None:
    hello = p.parse_hello({**HELLO, "visitor": None})
    assert hello.visitor is None
    assert hello.session == SESSION
    minimal = p.parse_hello({"type": "hello", "session": SESSION, "url": "https://s.example/"})
    assert (minimal.visitor, minimal.v, minimal.consent, minimal.referrer) == (None, 1, None, None)


@pytest.mark.parametrize("session", ["null", "", "0" * 32, SESSION.upper(), SESSION[:-1], None])
def test_hello_refuses_bad_session_ids(session: str | None) -> None:
    with pytest.raises(InvalidMessage) as caught:
        p.parse_hello({**HELLO, "session": session})
    assert caught.value.code == "invalid"


@pytest.mark.parametrize(
    "changes",
    [{"v": 2}, {"url": None}, {"type": "events"}, {"screen": [1, 2, 3]}, {"consent": "maybe"}],
)
def test_hello_of_the_wrong_shape_is_invalid(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        p.parse_hello({**HELLO, **changes})
    assert caught.value.code == "invalid"


def test_ids_module() -> None:
    minted = new_id()
    assert is_valid_id(minted)
    assert len(minted) == 32
    assert minted != new_id()
    assert check_visitor_id(VISITOR) == VISITOR
    assert check_session_id(SESSION) == SESSION
    assert not is_valid_id(None)
    assert not is_valid_id(123)
    with pytest.raises(BadVisitorId):
        check_visitor_id(None)
    with pytest.raises(InvalidMessage) as caught:
        check_session_id("undefined")
    assert caught.value.code == "invalid"
    assert EVENT_ID.fullmatch("k3J9aQ2m")
    assert EVENT_ID.fullmatch("a_b-" * 16)
    assert not EVENT_ID.fullmatch("short7x")
    assert not EVENT_ID.fullmatch("a" * 65)
    assert not EVENT_ID.fullmatch("has space")


# --- events -------------------------------------------------------------------------


def test_one_unknown_and_one_invalid_event_are_reported_the_others_returned() -> None:
    message = {
        "type": "events",
        "events": [
            ev(1, url="https://shop.example/"),
            ev(2, "teleport"),
            ev(3, "product_view"),  # sku is required
            ev(4, "custom", name="newsletter:open"),
        ],
    }
    batch = p.parse_events(message)
    assert [(e.seq, e.id, e.type) for e in batch.events] == [
        (1, "event-0001", "page_view"),
        (4, "event-0004", "custom"),
    ]
    assert [(e.seq, e.code) for e in batch.errors] == [(2, "unknown_event_type"), (3, "invalid")]
    assert "teleport" in batch.errors[0].message
    assert "sku" in batch.errors[1].message
    assert batch.highest_seq == 4
    assert (batch.visitor, batch.session) == (None, None)


def test_highest_seq_covers_refused_events_and_ignores_unusable_seqs() -> None:
    message = {"type": "events", "events": [ev(3), ev(9, "teleport"), ev(5, "cart")]}
    assert p.parse_events(message).highest_seq == 9
    bad_seqs = [
        {"seq": True, "id": "event-0001", "type": "page_view"},
        {"seq": 0, "id": "event-0002", "type": "page_view"},
        {"seq": "5", "id": "event-0003", "type": "page_view"},
        {"seq": 2**53, "id": "event-0004", "type": "page_view"},
        "not an event",
    ]
    batch = p.parse_events({"type": "events", "events": bad_seqs})
    assert batch.highest_seq == 0
    assert batch.events == ()
    assert [(e.seq, e.code) for e in batch.errors] == [(None, "invalid")] * 5
    assert p.parse_events({"type": "events", "events": []}) == p.Batch((), (), 0)


def test_at_most_one_hundred_events() -> None:
    batch = p.parse_events({"type": "events", "events": [ev(n + 1) for n in range(100)]})
    assert len(batch.events) == 100
    assert batch.highest_seq == 100
    with pytest.raises(InvalidMessage, match="at most 100"):
        p.parse_events({"type": "events", "events": [ev(n + 1) for n in range(101)]})


@pytest.mark.parametrize("events", [None, {}, "events", 3])
def test_events_must_be_a_list(events: Any) -> None:
    with pytest.raises(InvalidMessage, match="'events' must be a list"):
        p.parse_events({"type": "events", "events": events})


def test_beacon_mode_requires_visitor_and_session() -> None:
    message = {"type": "events", "events": [ev(1)], "visitor": VISITOR, "session": SESSION}
    batch = p.parse_events(message, beacon=True)
    assert (batch.visitor, batch.session, len(batch.events)) == (VISITOR, SESSION, 1)
    with pytest.raises(BadVisitorId):
        p.parse_events({**message, "visitor": None}, beacon=True)
    with pytest.raises(BadVisitorId):
        p.parse_events({"type": "events", "events": [], "session": SESSION}, beacon=True)
    with pytest.raises(InvalidMessage) as caught:
        p.parse_events({"type": "events", "events": [], "visitor": VISITOR}, beacon=True)
    assert caught.value.code == "invalid"
    # outside beacon mode the fields are ignored
    assert p.parse_events({**message, "visitor": "guest"}).visitor is None


@pytest.mark.parametrize(
    "event",
    [
        ev(1, "product_view", sku="A", price=-0.01),
        ev(1, "product_view", sku="A", price=1e13),
        ev(1, "product_view", sku="A", price=math.nan),
        ev(1, "product_view", sku="A", price=math.inf),
        ev(1, "cart", items=[], value=-1, currency="EUR"),
        ev(1, "cart", items=[{"sku": "A", "price": -5}], value=1, currency="EUR"),
        ev(1, "cart", items=[{"sku": "A", "price": math.inf}], value=1, currency="EUR"),
        ev(1, "purchase", order_id="A-1", items=[], value=math.nan, currency="EUR"),
        ev(1, "purchase", order_id="A-1", items=[], value=-3, currency="EUR"),
    ],
    ids=[
        "negative",
        "huge",
        "nan",
        "inf",
        "cart-value",
        "item-negative",
        "item-inf",
        "purchase-nan",
        "purchase-negative",
    ],
)
def test_prices_must_be_finite_and_not_negative(event: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        p.parse_event(event)
    assert caught.value.code == "invalid"
    assert caught.value.seq == 1


def test_zero_and_normal_prices_are_fine() -> None:
    zero = p.parse_event(ev(1, "product_view", sku="A", price=0))
    assert isinstance(zero, p.ProductView)
    assert zero.price == 0.0
    cart = p.parse_event(
        ev(2, "cart", items=[{"sku": "A", "qty": 2, "price": 9.5}], value=19.0, currency="PLN")
    )
    assert isinstance(cart, p.Cart)
    assert cart.items == [p.Item(sku="A", qty=2, price=9.5)]


@pytest.mark.parametrize(
    "fields",
    [
        {"email": "ann@example.com"},
        {"customer_id": "c-1", "ts": 1_700_000_000, "sig": "ab" * 32},
    ],
    ids=["claimed", "verified"],
)
def test_identify_with_email_or_a_signed_customer_id(fields: dict[str, Any]) -> None:
    event = p.parse_event(ev(1, "identify", **fields))
    assert isinstance(event, p.Identify)
    for key, value in fields.items():
        assert getattr(event, key) == value


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"customer_id": "c-1"},
        {"customer_id": "c-1", "ts": 1_700_000_000},
        {"customer_id": "c-1", "sig": "ab" * 32},
        {"ts": 1_700_000_000, "sig": "ab" * 32},
        {"email": "ann@example.com", "customer_id": "c-1", "ts": 1_700_000_000, "sig": "ab" * 32},
        {"email": "ann@example.com", "customer_id": "c-1"},
        {"email": "not an email"},
        {"customer_id": "c-1", "ts": 1_700_000_000, "sig": "AB" * 32},
        {"customer_id": "c-1", "ts": 1_700_000_000, "sig": "ab" * 31},
        {"customer_id": "c-1", "ts": 1_700_000_000, "sig": "ab" * 32, "name": "Ann"},
        {"customer_id": "c-1", "ts": 1_700_000_000, "sig": "ab" * 32, "marketing_consent": True},
        {"email": "ann@example.com", "name": "x" * 101},
    ],
    ids=[
        "nothing",
        "id-only",
        "no-sig",
        "no-ts",
        "no-id",
        "both",
        "email-and-id",
        "bad-email",
        "upper-sig",
        "short-sig",
        "name-without-email",
        "consent-without-email",
        "long-name",
    ],
)
def test_identify_needs_email_xor_a_signed_customer_id(fields: dict[str, Any]) -> None:
    """(and a form's name and consent box come with its email only)"""
    with pytest.raises(InvalidMessage) as caught:
        p.parse_event(ev(6, "identify", **fields))
    assert caught.value.code == "invalid"
    assert caught.value.seq == 6


@pytest.mark.parametrize(
    "event",
    [
        ev(1, id="short"),
        ev(0),
        ev(1, "custom", name="has space"),
        ev(1, "custom", name="x", props={f"k{n}": n for n in range(33)}),
        ev(1, "custom", name="x", props={"nested": {"a": 1}}),
        ev(1, "cart", items=[{"sku": "A"}], value=1, currency="eur"),
        ev(1, "cart", items=[{"sku": "A"}] * 101, value=1, currency="EUR"),
        ev(1, "cart", items=[{"sku": "A", "qty": 0}], value=1, currency="EUR"),
        ev(1, "product_view", sku=""),
    ],
    ids=[
        "event-id",
        "seq-0",
        "custom-name",
        "too-many-props",
        "nested-prop",
        "currency",
        "too-many-items",
        "qty-0",
        "empty-sku",
    ],
)
def test_other_invalid_events(event: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        p.parse_event(event)
    assert caught.value.code == "invalid"


def test_unknown_fields_are_ignored_but_unknown_types_are_not() -> None:
    event = p.parse_event(ev(1, "custom", name="x", added_later={"a": 1}))
    assert isinstance(event, p.Custom)
    assert not hasattr(event, "added_later")
    with pytest.raises(p.UnknownEventType) as caught:
        p.parse_event(ev(5, "Page_View"))
    assert (caught.value.code, caught.value.seq) == ("unknown_event_type", 5)
    with pytest.raises(p.UnknownEventType):
        p.parse_event({"seq": 1, "id": "event-0001"})


# --- encoding -----------------------------------------------------------------


SERVER_MESSAGES = [
    p.welcome(VISITOR, SESSION, 12, "abc123def456"),
    p.ack(7),
    p.decisions([{"slot": "hero", "html": "<b>Żółw</b>", "score": 0.5}], seq=8),
    p.decisions([], seq=None),
    p.error("invalid", "seq: must be ≥ 1", seq=3),
    p.error("hello_required", "send hello first"),
]


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: str(m["type"]))
def test_encode_round_trips_in_both_framings(message: dict[str, Any]) -> None:
    text = p.encode(message, binary=False)
    binary = p.encode(message, binary=True)
    assert isinstance(text, str)
    assert isinstance(binary, bytes)
    assert p.decode_frame(text) == message
    assert p.decode_frame(binary) == message
    assert json.loads(text) == msgpack.unpackb(binary, raw=False)


def test_server_message_shapes() -> None:
    assert p.welcome(VISITOR, SESSION, 12, "v1") == {
        "type": "welcome",
        "v": 1,
        "visitor": VISITOR,
        "session": SESSION,
        "ack": 12,
        "config": "v1",
    }
    assert p.ack(3) == {"type": "ack", "ack": 3}
    assert p.decisions([], seq=None) == {"type": "decisions", "items": []}
    assert p.decisions([], seq=0) == {"type": "decisions", "items": [], "ack": 0}
    assert p.error("x", "y") == {"type": "error", "code": "x", "message": "y"}
    assert p.error("x", "y", seq=2)["seq"] == 2


def test_encode_never_sends_a_nan() -> None:
    """A non-finite number is not JSON: it goes out as null, never as NaN."""
    text = p.encode({"type": "x", "score": math.nan, "top": math.inf}, binary=False)
    assert text == '{"type":"x","score":null,"top":null}'
    assert json.loads(text) == {"type": "x", "score": None, "top": None}


def test_is_finite_number() -> None:
    assert p.is_finite_number(1)
    assert p.is_finite_number(-2.5)
    assert not p.is_finite_number(True)
    assert not p.is_finite_number(math.nan)
    assert not p.is_finite_number(math.inf)
    assert not p.is_finite_number("1")


def test_hello_carries_the_pages_language_cut_not_refused() -> None:
    hello = p.parse_hello({**HELLO, "lang": "en-US", "page_lang": "pl-PL"})
    assert (hello.lang, hello.page_lang) == ("en-US", "pl-PL")
    long = p.parse_hello({**HELLO, "page_lang": "x" * 500})  # whatever <html lang> says
    assert long.page_lang == "x" * 35
    assert p.parse_hello(HELLO).page_lang is None
