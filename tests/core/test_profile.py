"""Unit tests for edge/core/profile.py: the immutable profile and its msgpack layout."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import msgpack
import pytest

from edge.core.profile import (
    WINDOW_BITS,
    Cart,
    CartLine,
    CategoryView,
    CustomCount,
    Profile,
    Session,
    Stream,
    ViewedProduct,
    decode_profile,
    encode_profile,
    evolve,
    from_wire,
    to_wire,
)

VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
SESSION_A = "f00d0a9b2d3e4f5061728394a5b6c717"
SESSION_B = "beef0a9b2d3e4f5061728394a5b6c717"


def rich_profile() -> Profile:
    return Profile(
        visitor=VISITOR,
        created_at=1_700_000_000.5,
        level="verified",
        contact="h1:" + "ab" * 32,
        customer_id="cust-42",
        consent=True,
        first_seen=1_700_000_000.5,
        last_seen=1_700_000_900.25,
        visits=3,
        pageviews=17,
        events=25,
        session=Session(
            started_at=1_700_000_800.0,
            last_at=1_700_000_900.25,
            landing="https://shop.example/?utm_source=facebook",
            referrer="https://www.facebook.com/",
            source="facebook",
            medium="social",
            campaign="spring",
            term="oak lamp",
            referrer_domain="facebook.com",
            pageviews=4,
            pages=("/c/lamps", "/p/lamp", "/"),
        ),
        previous_visit_at=1_699_990_000.0,
        products=(
            ViewedProduct("LMP-01", "Lamp", "lamps", 49.0, 1_700_000_850.0, 3),
            ViewedProduct("VAS-02", None, None, None, 1_700_000_700.0, 1),
        ),
        categories=(CategoryView("lamps", 3, 1_700_000_850.0), CategoryView("vases", 1, 1.0)),
        custom=(CustomCount("newsletter:open", 2, 1_700_000_860.0),),
        cart=Cart(
            lines=(
                CartLine("LMP-01", 2, 49.0, "Lamp", "lamps"),
                CartLine("MUG-07", 1, None, None, None),
            ),
            value=98.0,
            currency="EUR",
            updated_at=1_700_000_870.0,
        ),
        orders=2,
        revenue=123.45,
        last_order_at=1_699_990_000.0,
        order_ids=("A-2", "A-1"),
        streams=(
            Stream(SESSION_A, 12, 0b1011, 1_700_000_900.25),
            Stream(SESSION_B, 3, (1 << 64) - 1, 1_700_000_100.0),
        ),
        event_ids=("k3J9aQ2m", "p0Zx81Lr"),
        props=(("loyalty_points", 120), ("member", True), ("plan", "pro"), ("ratio", 0.5)),
    )


# --- msgpack round trip -----------------------------------------------------


def test_round_trip_of_a_rich_profile_is_equal() -> None:
    profile = rich_profile()
    data = encode_profile(profile)
    assert isinstance(data, bytes)
    decoded = decode_profile(data)
    assert decoded == profile
    # nested values come back with their types, not as lists
    assert isinstance(decoded.session, Session)
    assert decoded.session.pages == ("/c/lamps", "/p/lamp", "/")
    assert isinstance(decoded.cart.lines, tuple)
    assert decoded.cart.lines[0] == CartLine("LMP-01", 2, 49.0, "Lamp", "lamps")
    assert decoded.streams[1].window == (1 << 64) - 1
    assert decoded.order_ids == ("A-2", "A-1")
    assert decoded.event_ids == ("k3J9aQ2m", "p0Zx81Lr")
    assert decoded.props == rich_profile().props
    assert isinstance(decoded.props[0], tuple)


def test_a_profile_stored_before_props_loads_without_them() -> None:
    wire = to_wire(rich_profile())
    del wire["props"]
    assert from_wire(wire).props == ()
    assert from_wire(wire) == dataclasses.replace(rich_profile(), props=())


def test_round_trip_of_a_minimal_profile() -> None:
    profile = Profile(visitor=VISITOR, created_at=5.0)
    decoded = decode_profile(encode_profile(profile))
    assert decoded == profile
    assert decoded.session is None
    assert decoded.cart == Cart()


def test_wire_layout_is_a_versioned_map_with_records_as_arrays() -> None:
    wire = msgpack.unpackb(encode_profile(rich_profile()), raw=False)
    assert wire["_v"] == 1
    assert wire["visitor"] == VISITOR
    assert wire["products"][0] == ["LMP-01", "Lamp", "lamps", 49.0, 1_700_000_850.0, 3]
    assert wire["streams"][0] == [SESSION_A, 12, 0b1011, 1_700_000_900.25]
    assert wire["cart"][1:] == [98.0, "EUR", 1_700_000_870.0]


def test_from_wire_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    wire = to_wire(rich_profile())
    wire["added_in_a_newer_schema"] = [1, 2, 3]
    assert from_wire(wire) == rich_profile()
    bare = from_wire({"visitor": VISITOR, "created_at": 1.0})
    assert bare == Profile(visitor=VISITOR, created_at=1.0)


# --- Stream: the replay window ----------------------------------------------


def test_new_stream_has_seen_nothing() -> None:
    stream = Stream(SESSION_A)
    assert not stream.seen(1)
    assert not stream.seen(64)


def test_in_order_marks() -> None:
    stream = Stream(SESSION_A)
    for seq in (1, 2, 3):
        stream = stream.mark(seq, float(seq))
    assert (stream.hwm, stream.window, stream.last_at) == (3, 0b111, 3.0)
    assert stream.seen(1) and stream.seen(2) and stream.seen(3)
    assert not stream.seen(4)


def test_gap_leaves_missing_sequence_numbers_unseen() -> None:
    stream = Stream(SESSION_A).mark(1, 1.0).mark(5, 2.0)
    assert (stream.hwm, stream.window) == (5, 0b10001)
    assert stream.seen(1) and stream.seen(5)
    assert [stream.seen(s) for s in (2, 3, 4)] == [False, False, False]
    assert not stream.seen(6)


def test_out_of_order_within_the_window_fills_the_gap() -> None:
    stream = Stream(SESSION_A).mark(1, 1.0).mark(5, 2.0)
    later = stream.mark(3, 3.0)
    assert (later.hwm, later.window, later.last_at) == (5, 0b10101, 3.0)
    assert later.seen(3)
    assert not later.seen(2) and not later.seen(4)
    # the oldest position the window holds, 63 behind the high-water mark
    far = Stream(SESSION_A).mark(100, 1.0)
    oldest = 100 - (WINDOW_BITS - 1)
    assert not far.seen(oldest)
    assert far.mark(oldest, 2.0).seen(oldest)
    assert far.mark(oldest, 2.0).window == 1 | 1 << (WINDOW_BITS - 1)


def test_older_than_the_window_counts_as_seen() -> None:
    stream = Stream(SESSION_A).mark(100, 1.0)
    assert stream.window == 1
    assert not stream.seen(100 - (WINDOW_BITS - 1))  # inside the window, never applied
    assert stream.seen(100 - WINDOW_BITS)  # just outside: assumed applied
    assert stream.seen(1)


def test_advancing_drops_bits_that_fall_out_of_the_window() -> None:
    stream = Stream(SESSION_A).mark(1, 1.0).mark(2, 2.0).mark(2 + WINDOW_BITS - 1, 3.0)
    # seq 2 is now 63 behind (the last bit), seq 1 fell out of the 64-bit window
    assert stream.hwm == 65
    assert stream.window == 1 | 1 << (WINDOW_BITS - 1)
    assert not stream.seen(3)
    assert stream.seen(1)  # outside the window: counted as seen


def test_mark_returns_a_new_stream_and_keeps_the_original() -> None:
    stream = Stream(SESSION_A, 4, 0b1, 1.0)
    marked = stream.mark(5, 2.0)
    assert marked is not stream
    assert stream == Stream(SESSION_A, 4, 0b1, 1.0)
    assert marked == Stream(SESSION_A, 5, 0b11, 2.0)


def test_marking_a_seq_older_than_the_window_keeps_the_window_in_64_bits() -> None:
    stream = Stream(SESSION_A).mark(100, 1.0).mark(10, 2.0)
    assert stream.window < 1 << WINDOW_BITS
    profile = Profile(visitor=VISITOR, created_at=1.0, streams=(stream,))
    assert decode_profile(encode_profile(profile)) == profile


_HUGE_JUMP = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from edge.core.profile import Stream
stream = Stream({SESSION_A!r}, 1, 1).mark(2**53 - 1, 1.0)
print(stream.hwm, stream.window)
"""


def test_a_huge_sequence_jump_is_cheap() -> None:
    # In a child limited to 1 GiB of address space, so a bad shift cannot hurt the host.
    done = subprocess.run(
        [sys.executable, "-c", _HUGE_JUMP], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-300:]
    assert done.stdout.split() == [str(2**53 - 1), "1"]


# --- evolve and immutability ------------------------------------------------


def test_evolve_returns_a_new_object_and_leaves_the_original_untouched() -> None:
    profile = rich_profile()
    before = dataclasses.replace(profile)
    changed = evolve(profile, {"visits": 99, "contact": None})
    assert changed is not profile
    assert type(changed) is Profile
    assert (changed.visits, changed.contact) == (99, None)
    assert profile == before
    assert (profile.visits, profile.contact) == (3, "h1:" + "ab" * 32)
    # everything not named is carried over, by identity
    assert changed.session is profile.session
    assert changed.streams is profile.streams
    assert changed == dataclasses.replace(profile, visits=99, contact=None)


def test_evolve_on_a_small_record() -> None:
    stream = Stream(SESSION_A, 3, 0b101, 2.0)
    assert evolve(stream, {}) == stream
    moved = evolve(stream, {"hwm": 4})
    assert moved == Stream(SESSION_A, 4, 0b101, 2.0)
    assert stream == Stream(SESSION_A, 3, 0b101, 2.0)


def test_the_frozen_profile_refuses_assignment() -> None:
    profile = rich_profile()
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.visits = 7  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del profile.contact
    assert profile == rich_profile()


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (Stream(SESSION_A), "hwm"),
        (Session(started_at=1.0, last_at=1.0), "pageviews"),
        (Cart(), "value"),
        (CartLine("LMP-01"), "qty"),
        (ViewedProduct("LMP-01"), "views"),
        (CategoryView("lamps"), "views"),
        (CustomCount("x"), "name"),
    ],
)
def test_records_refuse_assignment(record: object, field: str) -> None:
    before = getattr(record, field)
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError too
        setattr(record, field, 7)
    assert getattr(record, field) == before


def test_profile_helpers() -> None:
    profile = rich_profile()
    assert profile.identified
    assert not Profile(visitor=VISITOR, created_at=1.0).identified
    assert profile.stream(SESSION_B) == Stream(SESSION_B, 3, (1 << 64) - 1, 1_700_000_100.0)
    assert profile.stream("0" * 31 + "1") is None
    assert profile.acked(SESSION_A) == 12
    assert profile.acked("0" * 31 + "1") == 0


def test_every_profile_field_survives_the_wire() -> None:
    """A field left out of the stored layout would silently reset on every load."""
    import dataclasses

    from edge.core.profile import CampaignState, Profile, decode_profile, encode_profile, to_wire

    changed = Profile(
        visitor="ab" * 16,
        created_at=1.0,
        campaigns=(CampaignState("c", impressions=2, recent=(5.0, 4.0), step=1),),
        popups=(3.0,),
        popup_page=7,
    )
    assert set(to_wire(changed)) - {"_v"} == {f.name for f in dataclasses.fields(Profile)}
    assert decode_profile(encode_profile(changed)) == changed


def test_a_campaign_state_stored_before_converted_step_loads() -> None:
    """Profiles stored before ``converted_step`` existed hold shorter records."""
    from edge.core.profile import CampaignState, Profile, from_wire, to_wire

    profile = Profile(visitor="ab" * 16, created_at=1.0, campaigns=(CampaignState("c", 3),))
    data = to_wire(profile)
    data["campaigns"] = [tuple(state)[:-1] for state in data["campaigns"]]
    assert from_wire(data).campaigns == (CampaignState("c", 3, converted_step=-1),)
