"""The wire protocol, version 1, without any I/O (see docs/protocol.md).

Frames are decoded here into validated messages and server messages are
encoded here; the WebSocket and HTTP shells only move bytes. Text frames
carry JSON and binary frames carry msgpack; both carry the same messages.

Validation is strict about what could hurt us (sizes, number ranges, id
formats, NaN) and lenient about what could not (unknown extra fields are
ignored so that a newer tracker still talks to an older server).
One bad event in a batch is refused on its own: the others are applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgpack
import orjson
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

from edge.core.events import (
    BIRTHDAY,
    MAX_SEQ,
    Cart,
    Currency,
    Custom,
    Event,
    Identify,
    Item,
    Items,
    Money,
    PageView,
    ProductView,
    Purchase,
    Scalar,
    ShortText,
    Sku,
    Url,
    Widget,
    _Model,
)
from edge.errors import HelloRequired, InvalidMessage, MalformedFrame
from edge.ids import check_session_id, check_visitor_id

# The event models live in edge.core.events (the core applies them); they are
# re-exported here, where messages are parsed into them.
__all__ = [
    "BIRTHDAY",
    "MAX_SEQ",
    "Cart",
    "Currency",
    "Custom",
    "Event",
    "Identify",
    "Item",
    "Items",
    "Money",
    "PageView",
    "ProductView",
    "Purchase",
    "Scalar",
    "ShortText",
    "Sku",
    "Url",
    "Widget",
]

PROTOCOL_VERSION = 1
MAX_EVENTS_PER_MESSAGE = 100
# Arrays and objects nested deeper than this make a frame malformed (close
# 1007), whatever the framing. The deepest valid message nests 4 levels
# (message, events, event, items or props); the bound leaves room for fields
# a newer tracker may add, and keeps decoding far from Python's recursion
# limit, whose distance depends on the caller's stack (not deterministic).
MAX_NESTING = 32
EVENT_TYPES: Mapping[str, TypeAdapter[Any]] = {
    model.model_fields["type"].annotation.__args__[0]: TypeAdapter(model)  # type: ignore[union-attr]
    for model in (PageView, ProductView, Cart, Purchase, Identify, Custom, Widget)
}


def _cut_lang(value: Any) -> Any:
    return value[:35] if isinstance(value, str) else value


class Hello(_Model):
    type: Literal["hello"]
    v: int = PROTOCOL_VERSION
    visitor: str | None = None  # None asks the server to mint one
    session: str
    url: Url
    referrer: Url | None = None
    title: ShortText | None = None
    screen: Annotated[list[Annotated[int, Field(ge=0, le=100_000)]], Field(max_length=2)] | None = (
        None
    )
    lang: Annotated[str, Field(max_length=35)] | None = None
    # the page's own language (``<html lang>``, any length a page may give:
    # cut, not refused), which widget texts prefer to the browser's ``lang``
    page_lang: Annotated[str | None, BeforeValidator(_cut_lang)] = None
    consent: bool | None = None
    # The first events of the page (its page view), so that its decisions come
    # one round trip after the socket opened: validated as an events message.
    events: list[Any] | None = None
    # A preview link's token (edge.core.preview), kept by the tracker for the tab;
    # checked there (a malformed one is refused as a preview, not as a hello).
    preview: str | None = None


_HELLO = TypeAdapter(Hello)


@dataclass(frozen=True, slots=True)
class EventError:
    """One refused event of a batch: reported, acknowledged, never applied."""

    seq: int | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded ``events`` message: the valid events and the refused ones."""

    events: tuple[Event, ...]
    errors: tuple[EventError, ...]
    highest_seq: int  # over valid and refused events alike; 0 when none carried one
    visitor: str | None = None  # only in beacons (POST /collect)
    session: str | None = None


# --- decoding -----------------------------------------------------------------


_TOO_DEEP = f"cannot decode frame: nested deeper than {MAX_NESTING} levels"


def decode_frame(data: str | bytes) -> dict[str, Any]:
    """Turn one frame into a message mapping. Text is JSON, binary is msgpack.

    ``MalformedFrame`` when it does not decode or nests deeper than
    ``MAX_NESTING``: the same answer at every depth beyond the bound, whether
    the decoder itself gave up (``RecursionError``, msgpack's stack limit) or
    the decoded value is checked.
    """
    try:
        if isinstance(data, str):
            # orjson: strict JSON (no NaN or Infinity), 64-bit integers, about
            # five times faster than the json module on these messages
            message = orjson.loads(data)
        else:
            message = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.StackError:
        raise MalformedFrame(_TOO_DEEP) from None
    except RecursionError:
        raise MalformedFrame(_TOO_DEEP) from None
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc):
            raise MalformedFrame(_TOO_DEEP) from None
        raise MalformedFrame(f"cannot decode frame: {exc}") from None
    except (ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise MalformedFrame(f"cannot decode frame: {exc}") from None
    if _may_nest_deeply(data) and _nesting_exceeds(message, MAX_NESTING):
        raise MalformedFrame(_TOO_DEEP)
    if not isinstance(message, dict):
        raise InvalidMessage("a message is an object with a 'type'")
    return message


def _may_nest_deeply(data: str | bytes) -> bool:
    """Cheap pre-check: JSON with at most ``MAX_NESTING`` brackets cannot nest
    deeper (the usual case: the walk below is skipped)."""
    if isinstance(data, str):
        return data.count("[") + data.count("{") > MAX_NESTING
    return True


def _nesting_exceeds(value: object, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` deep (the outermost is
    level 1). Level by level, without recursion (a recursive walk would itself
    meet the recursion limit); each container is looked at once."""
    level: list[Any] = [value] if value.__class__ is dict or value.__class__ is list else []
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if item.__class__ is dict else item)
            if child.__class__ is dict or child.__class__ is list
        ]
        if not level:
            return False
    return True


def lowest_seq(message: Mapping[str, Any]) -> int | None:
    """The lowest ``seq`` an ``events`` message carries, read without
    validating it (admission control decides before the message is parsed);
    None when it carries none that is an integer."""
    events = message.get("events")
    if not isinstance(events, list):
        return None
    seqs = [e.get("seq") for e in events if isinstance(e, dict)]
    ints = [s for s in seqs if isinstance(s, int) and not isinstance(s, bool)]
    return min(ints) if ints else None


def message_type(message: Mapping[str, Any]) -> str:
    kind = message.get("type")
    if not isinstance(kind, str):
        raise InvalidMessage("a message is an object with a 'type'")
    return kind


def parse_first(message: Mapping[str, Any]) -> Hello:
    """The first message on a socket, which must be a valid ``hello``:
    ``HelloRequired`` for any other message (the caller then closes 1008)."""
    if message.get("type") != "hello":
        raise HelloRequired("the first message must be hello")
    return parse_hello(message)


def parse_hello(message: Mapping[str, Any]) -> Hello:
    try:
        hello = _HELLO.validate_python(message)
    except ValidationError as exc:
        raise InvalidMessage(_explain(exc)) from None
    if hello.v != PROTOCOL_VERSION:
        raise InvalidMessage(f"protocol version {hello.v} is not supported (this server: 1)")
    if hello.visitor is not None:
        check_visitor_id(hello.visitor)
    check_session_id(hello.session)
    return hello


def parse_events(message: Mapping[str, Any], *, beacon: bool = False) -> Batch:
    """Validate an ``events`` message event by event (see module docstring)."""
    raw = message.get("events")
    if not isinstance(raw, list):
        raise InvalidMessage("'events' must be a list")
    if len(raw) > MAX_EVENTS_PER_MESSAGE:
        raise InvalidMessage(f"at most {MAX_EVENTS_PER_MESSAGE} events per message")
    visitor = session = None
    if beacon:
        visitor = check_visitor_id(message.get("visitor"))
        session = check_session_id(message.get("session"))
    events: list[Event] = []
    errors: list[EventError] = []
    highest = 0
    for item in raw:
        seq = _peek_seq(item)
        highest = max(highest, seq or 0)
        try:
            events.append(parse_event(item))
        except InvalidMessage as exc:
            errors.append(EventError(seq, exc.code, exc.message))
    return Batch(tuple(events), tuple(errors), highest, visitor, session)


class UnknownEventType(InvalidMessage):
    code = "unknown_event_type"


def parse_event(item: object) -> Event:
    if not isinstance(item, dict):
        raise InvalidMessage("an event is an object")
    kind = item.get("type")
    adapter = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if adapter is None:
        raise UnknownEventType(f"unknown event type {kind!r:.40}", seq=_peek_seq(item))
    try:
        event: Event = adapter.validate_python(item)
    except ValidationError as exc:
        raise InvalidMessage(_explain(exc), seq=_peek_seq(item)) from None
    return event


def _peek_seq(item: object) -> int | None:
    seq = item.get("seq") if isinstance(item, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_SEQ:
        return seq
    return None


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# --- encoding -----------------------------------------------------------------


def encode(message: Mapping[str, Any], *, binary: bool) -> str | bytes:
    """Encode a server message in the client's chosen framing."""
    if binary:
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        return packed
    return orjson.dumps(message).decode()


def welcome(
    visitor: str, session: str, acked: int, config_version: str, css: str | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "welcome",
        "v": PROTOCOL_VERSION,
        "visitor": visitor,
        "session": session,
        "ack": acked,
        "config": config_version,
    }
    if css:
        message["css"] = css  # the widgets' stylesheet, once per connection
    return message


def ack(seq: int) -> dict[str, Any]:
    return {"type": "ack", "ack": seq}


def decisions(items: list[dict[str, Any]], *, seq: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "decisions", "items": items}
    if seq is not None:
        message["ack"] = seq
    return message


def error(
    code: str, message: str, *, seq: int | None = None, retry_ms: int | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if seq is not None:
        frame["seq"] = seq
    if retry_ms is not None:
        frame["retry_ms"] = retry_ms
    return frame


def is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
