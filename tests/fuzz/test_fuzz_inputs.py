"""Property-based fuzzing of every input a visitor controls (issue 7, "Abuse").

Three layers:

1. the pure protocol layer (``edge.tracker.protocol``): any text, any bytes,
   any structure either decodes to a value or raises a ``ProtocolError``;
2. the pure update (``edge.core.updates.apply``) over random valid event streams
   with duplicates and out-of-order sequence numbers;
3. the wire, against one real server process: every malformed WebSocket frame
   is answered with an ``error`` frame or a documented close code (1007, 1008,
   1009; never 1011, never silence), ``POST /collect`` answers 200/400/403/413
   only, and the server stays healthy with flat memory.

The wire tests compute the expected answer of each frame from the pure layer
(the oracle), so they check the documented behaviour, not only "no crash".
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from edge.config.sites import load_site
from edge.core.context import VisitContext
from edge.core.profile import Profile, decode_profile, encode_profile
from edge.core.updates import apply
from edge.errors import MalformedFrame, ProtocolError
from edge.tracker import protocol as p
from tests.client import BROWSER_UA, new_id
from tests.fuzz.conftest import rss_kib
from tests.helpers import EdgeServer

PAGE = "http://127.0.0.1/demo"
FRAME_LIMIT = 64 * 1024  # EDGE_MAX_FRAME_BYTES default
RECEIVE_TIMEOUT_S = 2.0
RSS_GROWTH_KIB = 50 * 1024

_CHECKS = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.function_scoped_fixture,
    HealthCheck.large_base_example,
]


def fuzz(max_examples: int) -> settings:
    """Reproducible (derandomized, no example database), no deadline."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=_CHECKS,
        print_blob=False,
    )


# --- strategies -----------------------------------------------------------------

SURROGATES = st.characters(categories=["Cs"])
ANY_TEXT = st.one_of(
    st.text(max_size=40), st.text(max_size=5), st.text(SURROGATES, min_size=1, max_size=3)
)
HUGE_INTS = st.sampled_from([2**53, 2**53 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30)])
INTS = st.integers() | HUGE_INTS
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324, 1e12 + 1]
)
SCALARS = st.none() | st.booleans() | INTS | FLOATS | ANY_TEXT
JSON_KEYS = ANY_TEXT | st.sampled_from(["type", "seq", "id", "events", "visitor", "session"])


def json_values(leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(JSON_KEYS, inner, max_size=5),
        max_leaves=leaves,
    )


def _packable(value: Any) -> Any:
    """The same structure, made packable by msgpack (no lone surrogates, 64-bit ints)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, int) and not isinstance(value, bool):
        return max(-(2**63), min(value, 2**64 - 1))
    if isinstance(value, list):
        return [_packable(v) for v in value]
    if isinstance(value, dict):
        return {_packable(k): _packable(v) for k, v in value.items()}
    return value


def _event_id(seq: int) -> str:
    return f"ev-{seq:08d}"


SKUS = st.sampled_from(["LMP-01", "CHR-02", "RUG-03", "a", "x" * 64])
CATEGORIES = st.none() | st.sampled_from(["lamps", "lighting", "chairs", "Rugs"])
MONEY = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
URLS = st.sampled_from(
    [
        PAGE,
        "http://127.0.0.1/demo/cart",
        "http://127.0.0.1/demo/c/lighting?utm_source=facebook&utm_medium=social",
        "https://www.google.com/search?q=lamp",
        "http://[::1",  # urlsplit raises ValueError on this one
        "",
        "not a url",
    ]
)
ITEMS = st.lists(
    st.fixed_dictionaries(
        {"sku": SKUS},
        optional={
            "qty": st.integers(1, 10_000),
            "price": MONEY,
            "name": st.text(max_size=20),
            "category": CATEGORIES,
        },
    ),
    max_size=4,
)
CAMPAIGNS = st.sampled_from(
    ["welcome-coupon", "newsletter", "winback", "bestsellers", "recently-viewed", "nope"]
)


def _fields(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """The type-specific fields of a valid event of ``kind``."""
    if kind == "page_view":
        return st.fixed_dictionaries(
            {"url": URLS},
            optional={"title": st.text(max_size=20), "referrer": URLS, "page_type": CATEGORIES},
        )
    if kind == "product_view":
        return st.fixed_dictionaries(
            {"sku": SKUS},
            optional={"name": st.text(max_size=20), "category": CATEGORIES, "price": MONEY},
        )
    if kind == "cart":
        return st.fixed_dictionaries(
            {"items": ITEMS, "value": MONEY, "currency": st.sampled_from(["EUR", "PLN"])}
        )
    if kind == "purchase":
        return st.fixed_dictionaries(
            {
                "order_id": st.sampled_from(["o-1", "o-2", "o-3"]),
                "items": ITEMS,
                "value": MONEY,
                "currency": st.just("EUR"),
            }
        )
    if kind == "identify":
        email = st.fixed_dictionaries({"email": st.sampled_from(["a@b.co", "Ann@Shop.Example"])})
        verified = st.fixed_dictionaries(
            {
                "customer_id": st.sampled_from(["c-1", "c-2"]),
                "ts": st.integers(0, 2**40),
                "sig": st.just("0" * 64),
            },
            optional={
                "first_name": st.just("Ann"),
                "birthday": st.sampled_from(["02-29", "1990-12-31"]),
                "tier": st.just("gold"),
            },
        )
        return email | verified
    if kind == "custom":
        return st.fixed_dictionaries(
            {"name": st.sampled_from(["newsletter_signup", "newsletter_view", "a.b:c-d"])},
            optional={
                "props": st.dictionaries(
                    st.text(max_size=10),
                    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    max_size=4,
                )
            },
        )
    assert kind == "widget"
    return st.fixed_dictionaries(
        {
            "campaign": CAMPAIGNS,
            "action": st.sampled_from(["impression", "click", "close", "convert"]),
        },
        optional={"variant": st.sampled_from(["", "a", "holdout"]), "step": st.integers(0, 100)},
    )


KINDS = ["page_view", "product_view", "cart", "purchase", "identify", "custom", "widget"]


@st.composite
def valid_event_dicts(
    draw: st.DrawFn, seqs: st.SearchStrategy[int] | None = None
) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    seq = draw(seqs if seqs is not None else st.integers(1, p.MAX_SEQ))
    event: dict[str, Any] = {"seq": seq, "id": _event_id(seq), "type": kind}
    if draw(st.booleans()):  # an id shared by another seq: dedupe by id
        event["id"] = draw(st.sampled_from(["shared-id-1", "shared-id-2"]))
    if draw(st.booleans()):
        event["at"] = draw(st.integers(0, p.MAX_SEQ))
    event.update(draw(_fields(kind)))
    return event


REQUIRED = [
    "seq",
    "id",
    "type",
    "sku",
    "items",
    "value",
    "currency",
    "order_id",
    "name",
    "campaign",
]


@st.composite
def near_valid_events(draw: st.DrawFn) -> Any:
    """A valid event with one to three mutations (wrong types, bad values, ...)."""
    event = draw(valid_event_dicts())
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["replace", "delete", "add", "type", "nested"]))
        keys = sorted(event)
        if how == "replace" and keys:
            event[draw(st.sampled_from(keys))] = draw(json_values(6))
        elif how == "delete":
            event.pop(draw(st.sampled_from(REQUIRED)), None)
        elif how == "add":
            event[draw(JSON_KEYS)] = draw(json_values(6))
        elif how == "type":
            event["type"] = draw(st.sampled_from(KINDS) | ANY_TEXT | SCALARS)
        else:
            key = draw(st.sampled_from(["items", "props", "screen"]))
            event[key] = draw(json_values(10))
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values(6))  # not even an object
    return event


@st.composite
def near_valid_messages(draw: st.DrawFn) -> Any:
    """An ``events`` (or ``hello``) message that is nearly right."""
    events = draw(st.lists(near_valid_events() | valid_event_dicts(), max_size=6))
    if draw(st.integers(0, 19)) == 0:
        events = [{"seq": 1, "id": "x" * 8, "type": "page_view"}] * 101  # over the limit
    message: Any = {"type": "events", "events": events}
    mutation = draw(st.sampled_from(["none"] * 6 + ["type", "events", "drop", "extra"]))
    if mutation == "type":
        message["type"] = draw(st.sampled_from(["hello", "welcome", "EVENTS", ""]) | SCALARS)
    elif mutation == "events":
        message["events"] = draw(json_values(8))
    elif mutation == "drop":
        del message["events"]
    elif mutation == "extra":
        message[draw(JSON_KEYS)] = draw(json_values(6))
    return message


@st.composite
def near_valid_hellos(draw: st.DrawFn) -> Any:
    hello: dict[str, Any] = {
        "type": "hello",
        "v": 1,
        "visitor": draw(st.sampled_from([new_id(), None])),
        "session": new_id(),
        "url": PAGE,
    }
    hello.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "referrer": URLS,
                    "title": st.text(max_size=10),
                    "screen": st.lists(st.integers(0, 100_000), max_size=2),
                    "lang": st.sampled_from(["en-GB", "pl", ""]),
                    "consent": st.booleans(),
                },
            )
        )
    )
    for _ in range(draw(st.integers(0, 3))):
        key = draw(
            st.sampled_from(["type", "v", "visitor", "session", "url", "screen", "lang", "consent"])
            | JSON_KEYS
        )
        if draw(st.booleans()):
            hello[key] = draw(
                json_values(6)
                | st.sampled_from(["null", "undefined", "guest", "", "0" * 32, "A" * 32, 42])
            )
        else:
            hello.pop(key, None)
    return hello


def deep_json(depth: int, *, objects: bool) -> str:
    if objects:
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


def deep_msgpack(depth: int, *, maps: bool) -> bytes:
    if maps:
        return b"\x81\xa1a" * depth + b"\x01"
    return b"\x91" * depth + b"\xc0"


# text frames: (payload as str, or bytes for invalid UTF-8 sent as a text frame)
TEXT_FRAMES = st.one_of(
    st.text(max_size=200),
    st.text(SURROGATES | st.characters(), max_size=50).map(
        lambda s: s.encode("utf-8", "surrogatepass")
    ),
    st.binary(max_size=100).filter(lambda b: not _is_utf8(b)),
    json_values().map(lambda v: json.dumps(v)),  # NaN / Infinity literals included
    near_valid_messages().map(lambda m: json.dumps(m)),
    near_valid_messages().map(lambda m: json.dumps(m, ensure_ascii=False)),
    st.integers(1, 25_000).map(lambda d: deep_json(d, objects=False)),
    st.integers(1, 10_000).map(lambda d: deep_json(d, objects=True)),
    st.integers(4000, 5000).map(lambda n: '{"type":"events","events":[],"x":' + "9" * n + "}"),
    st.sampled_from(
        [
            "1e999",
            '{"type":"events","events":[{"seq":1e999}]}',
            '{"type":"events","events":[{"seq":1,"id":"abcdefgh","type":"product_view",'
            '"sku":"a","price":1e999}]}',
            '{"type":"events","events":[{"seq":1,"id":"abcdefgh","type":"custom",'
            '"name":"x","props":{"\\ud800":1}}]}',
            '{"type":"events","events":[{"seq":1,"id":"abcdefgh","type":"custom",'
            '"name":"x","props":{"k":NaN}}]}',
            '{"type":"\\ud800"}',
            '{"type":"events","events":[{"seq":1,"id":"abcdefgh","type":"\\udfff"}]}',
            '{"type":"events","events":[],"type":"hello"}',
            "",
            " ",
            "null",
            "[]",
        ]
    ),
)


def _packb(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


BINARY_FRAMES = st.one_of(
    st.binary(max_size=200),
    json_values().map(_packable).map(_packb),
    near_valid_messages().map(_packable).map(_packb),
    near_valid_messages()
    .map(_packable)
    .map(_packb)
    .flatmap(
        lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n])  # truncated
    ),
    st.integers(1, 20_000).map(lambda d: deep_msgpack(d, maps=False)),
    st.integers(1, 10_000).map(lambda d: deep_msgpack(d, maps=True)),
    st.sampled_from(
        [
            b"",
            b"\xc1",  # never used
            b"\xdd\xff\xff\xff\xff",  # array of 2**32-1, no items
            b"\xdf\xff\xff\xff\xff",  # map of 2**32-1, no items
            b"\xd6\xff\x00\x00\x00\x00",  # timestamp ext
            b"\xc7\x01\xff\x00",  # broken timestamp ext
            b"\xd4\x05\x00",  # unknown ext
            b"\x81\xc0\x01",  # nil key
            b"\x81\x91\x01\x01",  # array key
            b"\x81\xc4\x04type\xa6events",  # bytes key "type"
            b"\x82\xa4type\xa6events\xa6events\x91\x81\xa3seq\xcf" + b"\xff" * 8,  # seq 2**64-1
            b"\x81\xa4type\xa6events\x00",  # extra data
            b"\x81\xa4type\xa3\xff\xfe\xfd",  # invalid UTF-8 str
            _packb({"type": "events", "events": [{"seq": 1, "price": float("nan")}]}),
            _packb(
                {
                    "type": "events",
                    "events": [
                        {
                            "seq": 1,
                            "id": "abcdefgh",
                            "type": "cart",
                            "items": [],
                            "value": float("inf"),
                            "currency": "EUR",
                        }
                    ],
                }
            ),
        ]
    ),
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- 1. the pure protocol layer ----------------------------------------------------


def decode_and_parse(data: str | bytes) -> object:
    """Everything the server does with one frame after hello, without I/O.
    Returns the parsed value; only ``ProtocolError`` may escape."""
    message = p.decode_frame(data)
    kind = p.message_type(message)
    if kind == "hello":
        return p.parse_hello(message)
    batch = p.parse_events(message)
    for error in batch.errors:  # what the server sends back must encode
        p.encode(p.error(error.code, error.message, seq=error.seq), binary=False)
        p.encode(p.error(error.code, error.message, seq=error.seq), binary=True)
    return batch


def _only_protocol_errors(data: str | bytes) -> None:
    try:
        decode_and_parse(data)
    except ProtocolError as exc:
        # the error frame built from it must encode in both framings
        answer = p.encode(p.error(exc.code, exc.message, seq=exc.seq), binary=False)
        assert isinstance(answer, str)
        answer.encode("utf-8")  # sendable as a text frame
        p.encode(p.error(exc.code, exc.message, seq=exc.seq), binary=True)


@fuzz(800)
@given(st.text(max_size=300) | TEXT_FRAMES.filter(lambda f: isinstance(f, str)))
def test_any_text_decodes_or_is_refused(frame: str) -> None:
    _only_protocol_errors(frame)


@fuzz(700)
@given(BINARY_FRAMES)
def test_any_bytes_decode_or_are_refused(frame: bytes) -> None:
    _only_protocol_errors(frame)


@fuzz(300)
@given(st.integers(1, 200_000), st.booleans())
def test_deep_nesting_is_refused_not_a_recursion_error(depth: int, objects: bool) -> None:
    _only_protocol_errors(deep_json(depth, objects=objects))
    _only_protocol_errors(deep_msgpack(depth, maps=objects))


@fuzz(800)
@given(near_valid_events())
def test_near_valid_events_parse_or_are_refused(item: Any) -> None:
    try:
        event = p.parse_event(item)
    except ProtocolError as exc:
        answer = p.encode(p.error(exc.code, exc.message, seq=exc.seq), binary=False)
        assert isinstance(answer, str)
        answer.encode("utf-8")  # sendable as a text frame
        return
    # what was accepted keeps the documented invariants
    assert 1 <= event.seq <= p.MAX_SEQ
    for name in ("price", "value"):
        value = getattr(event, name, None)
        assert value is None or (math.isfinite(value) and 0 <= value <= 1e12)


@fuzz(300)
@given(near_valid_messages())
def test_near_valid_messages_parse_or_are_refused(message: Any) -> None:
    try:
        batch = p.parse_events(message)
    except ProtocolError:
        return
    assert len(batch.events) + len(batch.errors) == len(message["events"])
    assert batch.highest_seq >= max((e.seq for e in batch.events), default=0)


@fuzz(500)
@given(near_valid_hellos() | json_values().map(lambda v: {"type": "hello", "x": v}))
def test_near_valid_hellos_parse_or_are_refused(hello: Any) -> None:
    try:
        parsed = p.parse_hello(hello)
    except ProtocolError:
        return
    assert parsed.v == p.PROTOCOL_VERSION


@fuzz(150)
@given(near_valid_messages(), st.sampled_from([new_id(), "guest", None, 7]), st.booleans())
def test_beacons_parse_or_are_refused(message: Any, visitor: Any, drop_session: bool) -> None:
    if isinstance(message, dict):
        message = {**message, "visitor": visitor}
        if not drop_session:
            message["session"] = new_id()
    with contextlib.suppress(ProtocolError):
        p.parse_events(message, beacon=True)


# --- 2. the pure update -------------------------------------------------------------

DEMO = Path(__file__).resolve().parents[2] / "profiles" / "demo"
SITE = dataclasses.replace(load_site(DEMO), secret=b"test-secret")
VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
TABS = ["f00d0a9b2d3e4f5061728394a5b6c717", "beef0a9b2d3e4f5061728394a5b6c717"]
T0 = 1_700_000_000.0


@st.composite
def event_streams(draw: st.DrawFn) -> list[tuple[p.Event, VisitContext, float]]:
    """Valid events with small seqs (duplicates, gaps, out of order), two tabs,
    times that sometimes jump past the session timeout."""
    steps: list[tuple[p.Event, VisitContext, float]] = []
    now = T0
    for item in draw(st.lists(valid_event_dicts(st.integers(1, 80)), max_size=40)):
        now += draw(st.sampled_from([0.0, 1.0, 30.0, 3600.0, 40 * 86400.0]))
        ctx = VisitContext(
            visitor=VISITOR,
            session=draw(st.sampled_from(TABS)),
            url=draw(URLS),
            referrer=draw(st.none() | URLS),
            consent=draw(st.none() | st.booleans()),
        )
        steps.append((p.parse_event(item), ctx, now))
    resend = draw(st.booleans())
    if steps and resend:  # resend a tail, as after a reconnect
        steps += steps[-draw(st.integers(1, len(steps))) :]
    return steps


def _round_trips(profile: Profile) -> None:
    assert decode_profile(encode_profile(profile)) == profile


@fuzz(400)
@given(event_streams())
def test_apply_over_random_event_streams(steps: list[tuple[p.Event, VisitContext, float]]) -> None:
    profile: Profile | None = None
    for event, ctx, now in steps:
        before = copy.deepcopy(profile)
        after = apply(profile, event, ctx, SITE, now)
        assert profile == before, "apply mutated its input"
        _round_trips(after)
        # replaying the event just applied is a no-op, returning the very same object
        assert apply(after, event, ctx, SITE, now + 1) is after
        if profile is not None and after is not profile:
            assert after.events == profile.events + 1
        profile = after


# --- 3. over the wire ----------------------------------------------------------------


@dataclasses.dataclass
class Expect:
    """What the server must answer to one frame sent after hello."""

    close: int | None = None  # a close code, or
    error: str | None = None  # one error frame with this code (message-level), or
    ack: int | None = None  # errors, coupons, then an ack/decisions with this ack
    min_errors: int = 0


def on_the_wire(data: str | bytes) -> str | bytes:
    """A str with lone surrogates cannot be sent as such: send its bytes in a text frame."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return data.encode("utf-8", "surrogatepass")
    return data


def oracle(data: str | bytes, *, text: bool) -> Expect:
    data = on_the_wire(data)
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > FRAME_LIMIT:
        return Expect(close=1009)
    if text and isinstance(data, bytes):
        if not _is_utf8(data):
            return Expect(close=1007)
        data = data.decode("utf-8")
    try:
        message = p.decode_frame(data)
        kind = p.message_type(message)
        if kind == "hello":
            return Expect(error="invalid")
        if kind != "events":
            return Expect(error="invalid")
        batch = p.parse_events(message)
    except MalformedFrame:
        return Expect(close=1007)
    except ProtocolError as exc:
        return Expect(error=exc.code)
    return Expect(ack=batch.highest_seq, min_errors=len(batch.errors))


class Socket:
    """One established visitor connection, reopened whenever the server closes it."""

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.ws: ClientConnection | None = None
        self.reconnects = 0

    def open(self) -> ClientConnection:
        if self.ws is None:
            ws = connect(
                f"{self.server.ws}/ws?site=demo",
                compression=None,
                user_agent_header=BROWSER_UA,
                max_size=2**22,
                open_timeout=5,
                legacy=True,
            )
            ws.send(
                json.dumps(
                    {"type": "hello", "v": 1, "visitor": new_id(), "session": new_id(), "url": PAGE}
                )
            )
            assert json.loads(ws.recv(timeout=RECEIVE_TIMEOUT_S))["type"] == "welcome"
            self.ws = ws
            self.reconnects += 1
        return self.ws

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


def _decode_answer(frame: str | bytes) -> dict[str, Any]:
    answer: dict[str, Any] = (
        msgpack.unpackb(frame, raw=False) if isinstance(frame, bytes) else json.loads(frame)
    )
    return answer


def exchange(
    sock: Socket, data: str | bytes, *, text: bool
) -> tuple[list[dict[str, Any]], int | None]:
    """Send one frame; return the answers up to the final one, and the close code if closed."""
    ws = sock.open()
    data = on_the_wire(data)
    expect = oracle(data, text=text)
    answers: list[dict[str, Any]] = []
    try:
        ws.send(data, text=text)
        while True:
            try:
                frame = ws.recv(timeout=RECEIVE_TIMEOUT_S)
            except TimeoutError:
                pytest.fail(
                    f"no answer within {RECEIVE_TIMEOUT_S}s to {data!r:.200} (got {answers})"
                )
            answer = _decode_answer(frame)
            answers.append(answer)
            if expect.error is not None and answer["type"] == "error":
                return answers, None
            if "ack" in answer:
                return answers, None
            assert answer["type"] in {"error", "coupon"}, answer
    except ConnectionClosed as exc:
        sock.ws = None
        assert exc.rcvd is not None, f"closed without a close frame after {data!r:.200}"
        return answers, exc.rcvd.code


def check_answer(
    data: str | bytes, *, text: bool, answers: list[dict[str, Any]], code: int | None
) -> None:
    expect = oracle(data, text=text)
    where = f"frame {data!r:.300} (text={text}): answers {answers}, close {code}"
    assert code != 1011, f"internal error: {where}"
    if expect.close is not None:
        assert code == expect.close, where
        return
    assert code is None, where
    if expect.error is not None:
        assert [a["type"] for a in answers] == ["error"], where
        assert answers[0]["code"] == expect.error, where
        return
    final = answers[-1]
    assert final["type"] in {"ack", "decisions"} and final["ack"] == expect.ack, where
    errors = [a for a in answers[:-1] if a["type"] == "error"]
    assert len(errors) >= expect.min_errors, where


@pytest.fixture(scope="module")
def baseline_rss(fuzz_server: EdgeServer) -> int:
    """The server's memory after a warm-up connection and beacon."""
    warm = Socket(fuzz_server)
    for _ in range(20):
        exchange(warm, json.dumps({"type": "events", "events": []}), text=True)
    warm.drop()
    return rss_kib(fuzz_server.process.pid)


@pytest.fixture(scope="module")
def sock(fuzz_server: EdgeServer, baseline_rss: int) -> Any:
    socket = Socket(fuzz_server)
    yield socket
    socket.drop()


@fuzz(250)
@given(TEXT_FRAMES)
def test_text_frames_get_an_error_frame_or_a_documented_close(sock: Socket, frame: Any) -> None:
    answers, code = exchange(sock, frame, text=True)
    check_answer(frame, text=True, answers=answers, code=code)


@fuzz(250)
@given(BINARY_FRAMES)
def test_binary_frames_get_an_error_frame_or_a_documented_close(sock: Socket, frame: bytes) -> None:
    answers, code = exchange(sock, frame, text=False)
    check_answer(frame, text=False, answers=answers, code=code)


@pytest.mark.parametrize("text", [True, False], ids=["text", "binary"])
def test_oversized_frames_close_1009(sock: Socket, text: bool) -> None:
    frame: str | bytes = "x" * (FRAME_LIMIT + 1) if text else b"\x00" * (FRAME_LIMIT + 1)
    answers, code = exchange(sock, frame, text=text)
    check_answer(frame, text=text, answers=answers, code=code)


def first_message_oracle(data: str) -> tuple[str, int | None]:
    """What the server answers to the first message on a socket: the type of the
    answer (``welcome``, an error code, or ``close``) and the close code after it
    (None: the socket stays open)."""
    try:
        message = p.decode_frame(data)
    except MalformedFrame:
        return "close", 1007
    except ProtocolError as exc:  # not an object at all
        return exc.code, 1008
    try:
        p.parse_first(message)  # anything but a valid hello: an error, then 1008
    except ProtocolError as exc:
        return exc.code, 1008
    return "welcome", None


@fuzz(120)
@given(near_valid_hellos() | json_values(8) | near_valid_messages())
def test_first_message_gets_welcome_or_error(
    fuzz_server: EdgeServer, baseline_rss: int, hello: Any
) -> None:
    """On a fresh socket: welcome, or an error then close 1008; undecodable: 1007."""
    data = json.dumps(hello)
    expected, close = first_message_oracle(data)
    ws = connect(
        f"{fuzz_server.ws}/ws?site=demo",
        compression=None,
        user_agent_header=BROWSER_UA,
        legacy=True,
    )
    where = f"first message {data:.300}: expected {expected}, close {close}"
    try:
        ws.send(data)
        try:
            answer = json.loads(ws.recv(timeout=RECEIVE_TIMEOUT_S))
        except TimeoutError:
            pytest.fail(f"no answer: {where}")
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 1007 == close, where
            return
        if expected == "welcome":
            assert answer["type"] == "welcome", (answer, where)
            return
        assert answer["type"] == "error" and answer["code"] == expected, (answer, where)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECEIVE_TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == close, where
    finally:
        ws.close()


CONTENT_TYPES = st.sampled_from(
    [None, "text/plain", "application/json", "application/msgpack", "application/msgpack; x=1"]
)


def _beacon(message: Any, visitor: str | None, session: str | None) -> Any:
    if not isinstance(message, dict):
        return message
    beacon = dict(message)
    if visitor is not None:
        beacon["visitor"] = visitor
    if session is not None:
        beacon["session"] = session
    return beacon


BEACON_BODIES = st.one_of(
    st.binary(max_size=200),
    st.builds(
        _beacon,
        near_valid_messages(),
        st.sampled_from([new_id(), "guest", None]),
        st.sampled_from([new_id(), None]),
    ).map(lambda m: json.dumps(m).encode()),
    json_values().map(lambda v: json.dumps(v).encode()),
    st.integers(1, 30_000).map(lambda d: deep_json(d, objects=False).encode()),
    st.sampled_from([b"", b"\xff\xfe", b"1e999", b'{"type":"\\ud800"}', b"x" * (FRAME_LIMIT + 1)]),
)


def beacon_oracle(body: bytes, content_type: str | None) -> int:
    if len(body) > FRAME_LIMIT:
        return 413
    binary = (content_type or "").startswith("application/msgpack")
    try:
        if not binary and not _is_utf8(body):
            return 400
        message = p.decode_frame(body if binary else body.decode("utf-8"))
        if p.message_type(message) != "events":
            return 400
        p.parse_events(message, beacon=True)
    except ProtocolError:
        return 400
    return 200


@fuzz(300)
@given(
    BEACON_BODIES
    | near_valid_messages().map(lambda m: _packb(_packable(_beacon(m, new_id(), new_id())))),
    CONTENT_TYPES,
)
def test_collect_answers_200_400_or_413(
    fuzz_server: EdgeServer, baseline_rss: int, body: bytes, content_type: str | None
) -> None:
    headers = {"user-agent": BROWSER_UA}
    if content_type:
        headers["content-type"] = content_type
    answer = httpx.post(
        f"{fuzz_server.http}/collect?site=demo", content=body, headers=headers, timeout=5
    )
    assert answer.status_code in {200, 400, 403, 413}, (body[:200], answer.status_code, answer.text)
    assert answer.status_code == beacon_oracle(body, content_type), (body[:200], answer.text)
    assert answer.json()["type"] in {"ack", "error"}


def test_server_is_healthy_and_memory_flat(
    fuzz_server: EdgeServer, baseline_rss: int, sock: Socket
) -> None:
    """Runs last in this module: after every fuzz test above."""
    sock.drop()
    health = httpx.get(f"{fuzz_server.http}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert fuzz_server.process.poll() is None
    grown = rss_kib(fuzz_server.process.pid) - baseline_rss
    print(f"server RSS grew by {grown} KiB over the fuzz run; {sock.reconnects} connections")
    assert grown < RSS_GROWTH_KIB, f"server RSS grew by {grown} KiB"
    log = fuzz_server.output()
    # edge's own "connection failed" (a 1011) and uvicorn's 500 must never appear,
    # nor any traceback (a non-UTF-8 text frame closes 1007 quietly:
    # edge.tracker.ws_protocol).
    assert "connection failed" not in log, log[-3000:]
    assert "Exception in ASGI application" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
