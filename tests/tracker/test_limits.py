"""Per-connection and per-address limits (edge/tracker/limits.py): the pure
pieces with given times, then the wiring against real servers.

On loopback every client is 127.0.0.1, so the servers here trust 127.0.0.1 as
a proxy and each test speaks for its own client address in X-Forwarded-For;
one server trusts no proxy, to show that the header is then ignored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edge.config.settings import Settings, parse_trusted_proxies
from edge.tracker.limits import (
    AddressLimits,
    Limit,
    LoopStalls,
    TokenBucket,
    address_key,
    client_address,
    refusal_warning,
)
from tests.client import BROWSER_UA, Visitor, new_id, open_socket
from tests.helpers import EdgeServer, edge_server

PAGE = "http://127.0.0.1/demo"
PROXIES = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, 2001:db8:ffff::/48")


# --- the per-connection bucket ------------------------------------------------------


def test_token_bucket_bursts_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=4.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert bucket.take(0.5)  # one token back after half a second at 2/s
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(5)] == [True] * 4 + [False]  # capped at burst


def test_a_stall_of_the_loop_is_credited_to_the_frames_that_waited() -> None:
    """Frames that waited in the kernel while the loop stood still are read
    together: the bucket takes them as if each had been read when it came."""
    bucket = TokenBucket(rate_per_s=2.0, burst=4.0, now=0.0)
    assert [bucket.take(10.0, stalled_s=10.0) for _ in range(25)] == [True] * 24 + [False]
    # the credit is for one read: the next one, later, is back to the burst
    assert [bucket.take(20.0) for _ in range(5)] == [True] * 4 + [False]
    # without a stall, frames read together are one burst
    assert [bucket.take(40.0, stalled_s=0.0) for _ in range(5)] == [True] * 4 + [False]


def test_loop_stalls_are_seen_from_late_ticks() -> None:
    stalls = LoopStalls(0.0, stall_s=0.25)
    for now in (0.1, 0.2, 0.3):
        stalls.tick(now)
    assert stalls.within(0.0, 0.35) == 0.0
    # The loop stood still from 0.3 to 5.3. A read served before the timer's
    # turn sees the stall going on; one after it, the stall the tick recorded.
    assert stalls.within(0.25, 5.3) == pytest.approx(5.0)
    stalls.tick(5.3)
    assert stalls.within(0.25, 5.31) == pytest.approx(5.0)
    assert stalls.within(5.3, 5.4) == 0.0  # read since: nothing waited through it
    stalls.tick(5.4)
    assert stalls.within(5.35, 5.45) == 0.0


def test_an_addresses_bucket_is_credited_for_a_stall_too() -> None:
    limits = AddressLimits(max_connections=0, rate_per_s=5.0, max_addresses=10)
    assert limits.connect("a", 0.0) is None  # 9 of 10 tokens left
    passed = [limits.message("a", 4.0, stalled_s=4.0) for _ in range(30)]
    assert passed == [True] * 29 + [False]  # 9 + 4 s x 5/s, over the burst of 10


# --- the client address ---------------------------------------------------------------


def test_trusted_proxies_parse_addresses_and_networks() -> None:
    assert parse_trusted_proxies(None) == ()
    assert parse_trusted_proxies(" , ") == ()
    assert parse_trusted_proxies("127.0.0.1,::1, 10.1.2.3/8") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    with pytest.raises(ValueError, match=r"'proxy\.example'"):
        parse_trusted_proxies("127.0.0.1, proxy.example")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # an untrusted peer: its header is never read, whatever it says
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # a trusted proxy: the rightmost hop that is not a trusted proxy
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the client's own lie ignored
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.0.0.2"], "198.51.100.1"),  # two proxies
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1, 10.0.0.2"], "198.51.100.1"),  # two headers
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # only proxies: the farthest
        ("127.0.0.1", [], "127.0.0.1"),  # no header: the proxy itself
        ("127.0.0.1", [""], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.1, unknown"], "127.0.0.1"),  # garbage stops the walk
        ("127.0.0.1", ["6.6.6.6, garbage, 10.0.0.2"], "10.0.0.2"),
        # ports and brackets, as some proxies write them
        ("127.0.0.1", ["198.51.100.1:5123"], "198.51.100.1"),
        ("127.0.0.1", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("127.0.0.1", ["[2001:db8::7]"], "2001:db8::7"),
        ("127.0.0.1", ["2001:db8::7"], "2001:db8::7"),
        # IPv4-mapped IPv6 peers are IPv4
        ("::ffff:127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("::ffff:203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("2001:db8:ffff:1::1", ["198.51.100.1"], "198.51.100.1"),  # in a trusted IPv6 network
        # no IP at all
        (None, ["198.51.100.1"], "unknown"),
        ("testclient", ["198.51.100.1"], "testclient"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert str(client_address(peer, forwarded, PROXIES)) == expected


def test_no_trusted_proxy_means_the_header_is_ignored() -> None:
    assert str(client_address("127.0.0.1", ["198.51.100.1"], ())) == "127.0.0.1"


def test_ipv6_clients_are_grouped_by_their_64() -> None:
    one = address_key(ipaddress.ip_address("2001:db8:1:2::1"))
    assert one == "2001:db8:1:2::/64"
    assert address_key(ipaddress.ip_address("2001:db8:1:2:ffff::9")) == one
    assert address_key(ipaddress.ip_address("2001:db8:1:3::1")) != one
    assert address_key(ipaddress.ip_address("198.51.100.1")) == "198.51.100.1"
    assert address_key("unknown") == "unknown"


# --- the per-address table -------------------------------------------------------------


def table(
    max_connections: int = 2, rate_per_s: float = 5.0, max_addresses: int = 100
) -> AddressLimits:
    return AddressLimits(
        max_connections=max_connections, rate_per_s=rate_per_s, max_addresses=max_addresses
    )


def test_the_connection_after_the_limit_is_refused_and_others_pass() -> None:
    limits = table(max_connections=2)
    assert limits.connect("a", 0.0) is None
    assert limits.connect("a", 0.0) is None
    assert limits.connect("a", 0.0) is Limit.CONNECTIONS
    assert limits.connect("b", 0.0) is None  # another address is not affected
    limits.disconnect("a", 0.1)
    assert limits.connect("a", 0.1) is None  # a closed connection frees its place
    assert limits.refused == {(Limit.CONNECTIONS, "ws"): 1}


def test_one_bucket_for_handshakes_messages_and_beacons() -> None:
    limits = table(max_connections=10, rate_per_s=5.0)  # burst 10
    assert limits.connect("a", 0.0) is None
    assert limits.connect("a", 0.0) is None
    passed = [limits.message("a", 0.0) for _ in range(5)]
    assert passed == [True] * 5
    assert limits.beacon("a", 0.0) is None
    assert limits.beacon("a", 0.0) is None
    assert limits.message("a", 0.0)  # 10 tokens: 2 handshakes, 6 messages, 2 beacons
    assert not limits.message("a", 0.0)
    assert limits.beacon("a", 0.0) is Limit.MESSAGES
    assert limits.connect("a", 0.0) is Limit.MESSAGES
    assert limits.beacon("b", 0.0) is None  # another address has its own bucket
    assert limits.message("a", 0.2)  # 5/s: one token back after 0.2 s
    assert not limits.message("a", 0.2)
    assert limits.refused == {
        (Limit.MESSAGES, "ws"): 3,
        (Limit.MESSAGES, "collect"): 1,
    }


def test_a_limit_set_to_zero_is_off() -> None:
    no_rate = table(max_connections=1, rate_per_s=0.0)
    assert no_rate.enabled
    assert no_rate.connect("a", 0.0) is None
    assert all(no_rate.message("a", 0.0) for _ in range(1000))
    assert all(no_rate.beacon("b", 0.0) is None for _ in range(1000))
    assert len(no_rate) == 1  # beacons need no entry without a rate
    assert no_rate.connect("a", 0.0) is Limit.CONNECTIONS
    no_connections = table(max_connections=0, rate_per_s=1.0)
    assert all(no_connections.connect("a", float(t)) is None for t in range(100))
    assert not table(max_connections=0, rate_per_s=0.0).enabled


def test_idle_addresses_are_forgotten_once_their_bucket_is_full() -> None:
    limits = table(rate_per_s=5.0)  # refilled within 2 s
    assert limits.beacon("a", 0.0) is None
    assert limits.connect("b", 0.0) is None
    assert len(limits) == 2
    limits.disconnect("b", 0.1)
    assert len(limits) == 2  # b's bucket is not full yet (9.5 of 10): keep it
    assert limits.beacon("c", 3.0) is None  # any lookup sweeps the refilled ones
    assert len(limits) == 1
    limits.connect("d", 3.0)
    limits.disconnect("d", 10.0)  # full at close: nothing to keep
    assert len(limits) == 1


def test_cycling_addresses_cannot_grow_the_table_past_its_cap() -> None:
    limits = table(rate_per_s=5.0, max_addresses=50)
    for n in range(10_000):  # all within one instant: nothing refills, nothing is swept
        assert limits.beacon(f"10.0.{n // 256}.{n % 256}", 0.0) is None
        assert len(limits) <= 50
    assert limits.evicted == 10_000 - 50


def test_a_table_full_of_connected_addresses_refuses_new_ones() -> None:
    limits = table(max_addresses=3)
    for key in "abc":
        assert limits.connect(key, 0.0) is None
    assert limits.connect("d", 0.0) is Limit.ADDRESSES
    assert limits.beacon("d", 0.0) is Limit.ADDRESSES
    assert limits.connect("a", 0.0) is None  # known addresses still pass
    limits.disconnect("c", 0.0)
    assert limits.connect("d", 0.0) is None  # c's idle entry gives way
    assert len(limits) == 3


def test_connection_counts_balance_across_many_opens_and_closes() -> None:
    limits = table(max_connections=3, rate_per_s=1000.0, max_addresses=10)
    now = 0.0
    for _ in range(50):
        for _ in range(3):
            assert limits.connect("a", now) is None
        assert limits.connect("a", now) is Limit.CONNECTIONS
        for _ in range(3):
            limits.disconnect("a", now)
        now += 1.0
    assert len(limits) == 1  # idle, its bucket 3 tokens short
    assert limits.beacon("b", now + 1.0) is None  # a's bucket is full by then: swept
    assert len(limits) == 1


def test_refusal_warnings_are_throttled() -> None:
    limits = table()
    first = refusal_warning(limits, "198.51.100.1", Limit.CONNECTIONS, 100.0)
    assert first is not None and "198.51.100.1" in first and "EDGE_TRUSTED_PROXIES" in first
    assert refusal_warning(limits, "198.51.100.1", Limit.MESSAGES, 130.0) is None
    assert refusal_warning(limits, "198.51.100.2", Limit.MESSAGES, 161.0) is not None


def test_settings_of_the_limits() -> None:
    settings = Settings.from_env(
        {
            "EDGE_MAX_CONNECTIONS_PER_ADDRESS": "7",
            "EDGE_MAX_MESSAGES_PER_S_PER_ADDRESS": "2.5",
            "EDGE_MAX_TRACKED_ADDRESSES": "1000",
            "EDGE_TRUSTED_PROXIES": "10.0.0.0/8",
        }
    )
    assert settings.max_connections_per_address == 7
    assert settings.max_messages_per_s_per_address == 2.5
    assert settings.max_tracked_addresses == 1000
    assert settings.trusted_proxies == "10.0.0.0/8"
    assert Settings.from_env({"EDGE_TRUSTED_PROXIES": ""}).trusted_proxies is None
    assert Settings.from_env({}).trusted_proxies == "127.0.0.1,::1"
    for bad in (
        {"EDGE_TRUSTED_PROXIES": "10.0.0.0/8,proxy"},
        {"EDGE_MAX_CONNECTIONS_PER_ADDRESS": "-1"},
        {"EDGE_MAX_MESSAGES_PER_S_PER_ADDRESS": "0.1"},
        {"EDGE_MAX_TRACKED_ADDRESSES": "0"},
    ):
        with pytest.raises(ValueError):
            Settings.from_env(bad)


# --- against real servers ------------------------------------------------------------------

# A slow, shared machine must not turn a welcome into the outage answer (ack 0).
PATIENT = {"EDGE_ANSWER_DEADLINE_S": "5"}


@pytest.fixture(scope="module")
def proxied() -> Iterator[EdgeServer]:
    """Behind a "proxy" (127.0.0.1 trusted): 2 connections and 5 messages/s
    (bursts of 10) per address; the per-connection limit stays at its default."""
    env = {
        "EDGE_TRUSTED_PROXIES": "127.0.0.1",
        "EDGE_MAX_CONNECTIONS_PER_ADDRESS": "2",
        "EDGE_MAX_MESSAGES_PER_S_PER_ADDRESS": "5",
        **PATIENT,
    }
    with edge_server(env=env) as server:
        yield server


@pytest.fixture(scope="module")
def scarce() -> Iterator[EdgeServer]:
    """One message per second per address (bursts of 2), 127.0.0.1 trusted."""
    env = {
        "EDGE_TRUSTED_PROXIES": "127.0.0.1",
        "EDGE_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "EDGE_MAX_MESSAGES_PER_S_PER_ADDRESS": "1",
        **PATIENT,
    }
    with edge_server(env=env) as server:
        yield server


@pytest.fixture(scope="module")
def direct() -> Iterator[EdgeServer]:
    """No trusted proxy: X-Forwarded-For means nothing; 2 connections per address."""
    env = {
        "EDGE_TRUSTED_PROXIES": "",
        "EDGE_MAX_CONNECTIONS_PER_ADDRESS": "2",
        "EDGE_MAX_MESSAGES_PER_S_PER_ADDRESS": "0",
    }
    with edge_server(env=env) as server:
        yield server


def forwarded(address: str | None) -> dict[str, str]:
    """What a proxy sends for ``address``: the client's own claim (6.6.6.6,
    ignored) and, rightmost, the address the proxy saw."""
    return {"X-Forwarded-For": f"6.6.6.6, {address}"} if address else {}


async def welcomed(
    server: EdgeServer, address: str | None, visitor: Visitor | None = None
) -> tuple[Visitor, dict[str, Any]]:
    """A visitor's socket as if from ``address``, and the answer to its hello."""
    visitor = visitor or Visitor(server.ws)
    visitor.ws = await open_socket(visitor.url, additional_headers=forwarded(address))
    await visitor.send(
        {
            "type": "hello",
            "v": 1,
            "visitor": visitor.visitor,
            "session": visitor.session,
            "url": PAGE,
        }
    )
    welcome = await visitor.recv()
    assert welcome["type"] == "welcome", welcome
    return visitor, welcome


async def refusal(server: EdgeServer, address: str | None) -> tuple[int, dict[str, str], Any]:
    """The handshake from ``address`` is refused: its status, headers and body."""
    with pytest.raises(InvalidStatus) as info:
        await open_socket(f"{server.ws}/ws?site=demo", additional_headers=forwarded(address))
    response = info.value.response
    return response.status_code, dict(response.headers), json.loads(response.body or b"null")


async def until_admitted(server: EdgeServer, address: str) -> Visitor:
    """The server counts a connection until it has seen its close: retry a moment."""
    for _ in range(100):
        try:
            visitor, _ = await welcomed(server, address)
        except InvalidStatus:
            await asyncio.sleep(0.05)
        else:
            return visitor
    raise AssertionError(f"{address} never admitted again")


def refusals(server: EdgeServer, limit: str, path: str) -> float:
    """edge_address_refusals_total{limit, path} from /metrics."""
    for line in httpx.get(f"{server.http}/metrics", timeout=5).text.splitlines():
        if (
            line.startswith("edge_address_refusals_total{")
            and f'limit="{limit}"' in line
            and f'path="{path}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


RATE_LIMITED_BODY = {"type": "error", "code": "rate_limited"}


async def test_the_connection_over_the_limit_gets_429_and_another_address_passes(
    proxied: EdgeServer,
) -> None:
    first, _ = await welcomed(proxied, "198.51.100.10")
    second, _ = await welcomed(proxied, "198.51.100.10")
    status, headers, body = await refusal(proxied, "198.51.100.10")
    assert status == 429
    assert headers["retry-after"] == "1"
    assert body == {**RATE_LIMITED_BODY, "message": "too many connections from this address"}
    other, _ = await welcomed(proxied, "198.51.100.11")  # another client behind the proxy
    for visitor in (first, second, other):  # the admitted sockets work
        answers = await visitor.track(visitor.event("page_view", url=PAGE))
        assert answers[-1]["ack"] == 1
    await second.close()
    third = await until_admitted(proxied, "198.51.100.10")  # a closed socket frees its place
    for visitor in (first, third, other):
        await visitor.close()
    assert refusals(proxied, "connections", "ws") >= 1
    # one warning (they are throttled), and no error: uvicorn's spurious
    # "returned without completing handshake" after a 429 is filtered out
    log = proxied.output()
    assert "refusing 198.51.100.10: too many connections from this address" in log, log
    assert "ERROR" not in log and "Traceback" not in log, log


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(direct: EdgeServer) -> None:
    # Two claimed clients that are one real one (127.0.0.1): a third is refused.
    first, _ = await welcomed(direct, "198.51.100.20")
    second, _ = await welcomed(direct, "198.51.100.21")
    assert (await refusal(direct, "198.51.100.22"))[0] == 429
    assert (await refusal(direct, None))[0] == 429
    await first.close()
    await second.close()


async def test_the_message_rate_is_shared_by_an_addresses_connections(
    proxied: EdgeServer,
) -> None:
    """Two tabs of one address, 15 messages each: far below the per-connection
    limit (20/s, bursts of 40), far above the address's (5/s, bursts of 10)."""
    address = "198.51.100.30"
    tabs = [(await welcomed(proxied, address))[0], (await welcomed(proxied, address))[0]]
    for _ in range(15):
        for visitor in tabs:
            await visitor.send({"type": "events", "events": [visitor.event("page_view", url=PAGE)]})
    acked: list[int] = []
    reasons: list[str] = []
    for visitor in tabs:
        highest = 0
        try:
            for _ in range(15):
                answer = await visitor.recv()
                assert answer["ack"] == highest + 1, answer  # in order, none skipped
                highest = answer["ack"]
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 1008
            reasons.append(exc.rcvd.reason)
        acked.append(highest)
        await visitor.close()
    assert reasons and set(reasons) == {"too many messages from this address"}
    assert sum(acked) < 30
    assert refusals(proxied, "messages", "ws") >= 1
    # Every acknowledged event was stored: once the bucket has refilled, each
    # tab (session) is welcomed back with its highest acknowledged sequence.
    await asyncio.sleep(2.5)
    for visitor, highest in zip(tabs, acked, strict=True):
        again, welcome = await welcomed(
            proxied, address, Visitor(proxied.ws, visitor=visitor.visitor, session=visitor.session)
        )
        assert welcome["ack"] == highest
        await again.close()


async def test_pings_count_against_the_address(proxied: EdgeServer) -> None:
    """Issue 12, item 9: pings were not counted at all."""
    visitor, _ = await welcomed(proxied, "198.51.100.35")  # handshake, hello: 2 of 10 tokens
    assert visitor.ws is not None
    with pytest.raises(ConnectionClosed) as info:
        for ping in range(1000):
            await visitor.ws.ping(ping.to_bytes(4, "big"))
            if ping % 10 == 0:
                await asyncio.sleep(0.01)  # the address has 8 tokens left, the socket 39
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008
    assert info.value.rcvd.reason == "too many messages from this address"


def beacon(visitor: str, session: str, seq: int) -> dict[str, Any]:
    event = {"seq": seq, "id": f"{session[:8]}{seq:08d}", "type": "page_view", "url": PAGE}
    return {"type": "events", "visitor": visitor, "session": session, "events": [event]}


async def test_collect_answers_429_and_shares_the_bucket_with_the_socket(
    scarce: EdgeServer,
) -> None:
    visitor, session = new_id(), new_id()
    headers = {"user-agent": BROWSER_UA, **forwarded("198.51.100.40")}
    url = f"{scarce.http}/collect?site=demo"
    async with httpx.AsyncClient(timeout=5) as client:
        for seq in (1, 2):  # the burst: two tokens
            answer = await client.post(url, json=beacon(visitor, session, seq), headers=headers)
            assert answer.status_code == 200 and answer.json()["ack"] == seq
        refused = await client.post(url, json=beacon(visitor, session, 3), headers=headers)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {
            **RATE_LIMITED_BODY,
            "message": "too many messages from this address",
        }
        # the same bucket refuses the address's WebSocket handshake ...
        assert (await refusal(scarce, "198.51.100.40"))[0] == 429
        # ... while another address has its own
        other = {**headers, **forwarded("198.51.100.41")}
        answer = await client.post(url, json=beacon(new_id(), new_id(), 1), headers=other)
        assert answer.status_code == 200
    assert refusals(scarce, "messages", "collect") >= 1
    assert refusals(scarce, "messages", "ws") >= 1
    # The acknowledged beacons were stored, the refused one was not: the
    # session resumes after seq 2 (once two tokens, handshake and hello, are back).
    await asyncio.sleep(2.5)
    tab, welcome = await welcomed(
        scarce, "198.51.100.40", Visitor(scarce.ws, visitor=visitor, session=session)
    )
    assert welcome["ack"] == 2
    await tab.close()
