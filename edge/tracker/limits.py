"""Rate and connection limits, per connection and per client address (pure;
time is always given, in ``time.monotonic`` seconds).

Per connection: ``TokenBucket`` (frames per second), counted when the frames
arrive (edge.tracker.transport), so that frames queued while the server was
busy are not counted as one burst when they are handled.

``LoopStalls``: when the event loop stood still (a stopped process, a long
synchronous step), frames waited in the kernel and are read all at once; the
buckets are credited for the time the loop stood still while they waited, so
an honest client's frames of that time pass as if read when they arrived.

Per client address (docs/protocol.md, "Limits"): ``AddressLimits`` keeps, for
each address, the number of its open WebSocket connections and one token
bucket shared by its handshakes, its messages on every connection and its
``/collect`` beacons. ``client_address`` finds the address: the TCP peer, or
the ``X-Forwarded-For`` hop a trusted proxy vouches for; IPv6 clients are
grouped by their /64 (one subscriber usually holds a whole /64).

Memory is bounded: an address without connections whose bucket has refilled
is indistinguishable from an address never seen, so it is dropped; the table
never holds more than ``max_addresses`` entries (the least recently seen idle
address is evicted first; with none idle, a new address is refused).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from enum import StrEnum

from edge.config.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV6_GROUP_PREFIX = 64  # IPv6 clients share limits per /64
UNKNOWN_ADDRESS = "unknown"  # no peer address at all (a Unix socket): one shared key
WARN_INTERVAL_S = 60.0  # at most one log warning about refusals per this many seconds
FORWARDED = "x-forwarded-for"  # the only proxy header read (RFC 7239 Forwarded is not)
RETRY_AFTER_S = 1  # the Retry-After of a 429: a bucket regains a token within a second


class TokenBucket:
    """``rate_per_s`` sustained, ``burst`` at once. ``take`` says if one may pass.

    ``stalled_s``: how long the event loop stood still while the frame being
    counted waited to be read (``LoopStalls.within``). The bucket may then
    hold up to ``rate_per_s * stalled_s`` more than ``burst``: what it would
    have regained had the frames been counted as they came. The extra is lost
    at the next take at a later time.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float, stalled_s: float = 0.0) -> bool:
        if now > self._last:  # frames read together share one time: refilled once
            cap = self.burst + stalled_s * self.rate_per_s
            self._tokens = min(cap, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class LoopStalls:
    """When the event loop last stood still, from a timer that should tick
    every ``tick_s``: a tick later than ``stall_s`` after the one before
    means the loop did not run in between (``tick``, by the timer)."""

    __slots__ = ("_end", "_last_tick", "_start", "stall_s")

    def __init__(self, now: float, stall_s: float) -> None:
        self.stall_s = stall_s
        self._last_tick = now
        self._start = self._end = now  # the last stall seen, empty so far

    def tick(self, now: float) -> None:
        if now - self._last_tick > self.stall_s:
            self._start, self._end = self._last_tick, now
        self._last_tick = now

    def within(self, since: float, now: float) -> float:
        """Seconds between ``since`` and ``now`` during which the loop stood
        still: the last stall the ticks saw, or the one going on now (no tick
        for too long: the loop has just woken up, before the timer's turn)."""
        if now - self._last_tick > self.stall_s:
            start, end = self._last_tick, now
        elif self._end > since:
            start, end = self._start, self._end
        else:
            return 0.0
        return max(0.0, end - max(start, since))


# --- the client address ---------------------------------------------------------


def _ip(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:192.0.2.1 is 192.0.2.1
    return address


def _hop(value: str) -> IPAddress | None:
    """One ``X-Forwarded-For`` entry: ``ip``, ``ip:port``, ``[ipv6]`` or
    ``[ipv6]:port``; anything else (``unknown``, garbage) is None."""
    value = value.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # IPv4 with a port; a bare IPv6 has several colons
        value = value.partition(":")[0]
    return _ip(value)


def _trusted(address: IPAddress, proxies: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], proxies: tuple[IPNetwork, ...]
) -> IPAddress | str:
    """The client behind the connection from ``peer``.

    ``X-Forwarded-For`` is read only when ``peer`` is a trusted proxy, and then
    from the right: each proxy appends the address it saw, so the rightmost
    hop that is not itself a trusted proxy is the client. Everything to its
    left was written by the client and is ignored. A malformed hop stops the
    walk at the last address a trusted proxy vouched for. A peer that is not
    an IP address (a Unix socket) is returned as it is.
    """
    if peer is None:
        return UNKNOWN_ADDRESS
    address = _ip(peer)
    if address is None:
        return peer[:64]
    if not _trusted(address, proxies):
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        found = _hop(hop)
        if found is None:
            break
        address = found
        if not _trusted(address, proxies):
            break
    return address


def address_key(address: IPAddress | str) -> str:
    """The key limits are counted under: IPv4 as it is, IPv6 by its /64."""
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_GROUP_PREFIX), strict=False)
        return str(network)
    return str(address)


# --- per-address limits -------------------------------------------------------------


class Limit(StrEnum):
    """Why an address was refused (the ``limit`` label of the metric)."""

    CONNECTIONS = "connections"  # too many open WebSocket connections
    MESSAGES = "messages"  # its token bucket is empty
    ADDRESSES = "addresses"  # the table is full of addresses with open connections


# The message of the ``rate_limited`` error (body of the 429, close reason).
REFUSALS = {
    Limit.CONNECTIONS: "too many connections from this address",
    Limit.MESSAGES: "too many messages from this address",
    Limit.ADDRESSES: "too many client addresses at once",
}


class _Entry:
    __slots__ = ("connections", "last", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.connections = 0
        self.tokens = tokens
        self.last = now


class AddressLimits:
    """Open connections and a shared token bucket per address key.

    ``max_connections`` 0 and ``rate_per_s`` 0 turn the respective limit off;
    the bucket holds ``2 * rate_per_s`` (bursts of twice the sustained rate,
    like the per-connection bucket). Invariants: an entry with open
    connections is in ``_active``; one without is in ``_idle``, ordered by
    ``last`` (oldest first); ``len(_active) + len(_idle) <= max_addresses``.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        rate_per_s: float,
        max_addresses: int,
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.max_connections = max_connections
        self.rate_per_s = rate_per_s
        self.burst = 2.0 * rate_per_s
        self.max_addresses = max_addresses
        self.trusted_proxies = trusted_proxies
        # After this long without a token taken, any bucket is full again.
        self._refill_s = self.burst / rate_per_s if rate_per_s > 0 else 0.0
        self._active: dict[str, _Entry] = {}
        self._idle: OrderedDict[str, _Entry] = OrderedDict()
        self.refused: dict[tuple[Limit, str], int] = {}  # (limit, "ws" or "collect") -> count
        self.evicted = 0  # idle addresses dropped before their bucket refilled (table full)
        self._warned_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self.max_connections > 0 or self.rate_per_s > 0

    def __len__(self) -> int:
        return len(self._active) + len(self._idle)

    def key(self, peer: str | None, forwarded_for: Iterable[str]) -> str:
        return address_key(client_address(peer, forwarded_for, self.trusted_proxies))

    # -- the three questions the shells ask

    def connect(self, key: str, now: float) -> Limit | None:
        """A WebSocket handshake from ``key``: None admits it (and counts the
        connection until ``disconnect``), else the limit that refuses it."""
        entry = self._entry(key, now)
        if entry is None:
            return self._refuse(Limit.ADDRESSES, "ws")
        if self.max_connections and entry.connections >= self.max_connections:
            return self._refuse(Limit.CONNECTIONS, "ws")
        if not self._take(entry, now):
            return self._refuse(Limit.MESSAGES, "ws")
        if entry.connections == 0:
            self._idle.pop(key, None)
            self._active[key] = entry
        entry.connections += 1
        return None

    def message(self, key: str, now: float, stalled_s: float = 0.0) -> bool:
        """A frame (a message or a ping) arrived on an open connection of
        ``key``: may it pass? ``stalled_s`` as for ``TokenBucket.take``."""
        if self.rate_per_s <= 0:
            return True
        if self._take(self._active[key], now, stalled_s):
            return True
        self._refuse(Limit.MESSAGES, "ws")
        return False

    def beacon(self, key: str, now: float) -> Limit | None:
        """A ``/collect`` request from ``key``: None lets it pass."""
        if self.rate_per_s <= 0:
            return None
        entry = self._entry(key, now)
        if entry is None:
            return self._refuse(Limit.ADDRESSES, "collect")
        if not self._take(entry, now):
            return self._refuse(Limit.MESSAGES, "collect")
        return None

    def disconnect(self, key: str, now: float) -> None:
        """One connection of ``key`` admitted by ``connect`` closed."""
        entry = self._active[key]
        entry.connections -= 1
        if entry.connections > 0:
            return
        del self._active[key]
        self._refill(entry, now)
        if entry.tokens < self.burst:  # else it equals a fresh entry: nothing to keep
            self._idle[key] = entry  # the newest ``last``: the end keeps the order

    def should_warn(self, now: float) -> bool:
        """True at most once per ``WARN_INTERVAL_S``: log refusals, never flood the log."""
        if self._warned_at is not None and now - self._warned_at < WARN_INTERVAL_S:
            return False
        self._warned_at = now
        return True

    # -- the table

    def _entry(self, key: str, now: float) -> _Entry | None:
        """``key``'s entry, created if need be; None if the table is full of
        addresses with open connections."""
        entry = self._active.get(key)
        if entry is not None:
            return entry
        self._sweep(now)
        entry = self._idle.get(key)
        if entry is not None:
            self._refill(entry, now)
            self._idle.move_to_end(key)  # ``last`` is now the newest
            return entry
        if len(self) >= self.max_addresses:
            if not self._idle:
                return None
            self._idle.popitem(last=False)  # the least recently seen: it regains a full bucket
            self.evicted += 1
        entry = self._idle[key] = _Entry(self.burst, now)  # ``connect`` makes it active
        return entry

    def _sweep(self, now: float) -> None:
        """Drop idle entries whose bucket has refilled (the oldest come first)."""
        while self._idle:
            key, entry = next(iter(self._idle.items()))
            if now - entry.last < self._refill_s:
                return
            del self._idle[key]

    def _refill(self, entry: _Entry, now: float, stalled_s: float = 0.0) -> None:
        if now > entry.last:  # a clock that stood still (or went back) adds nothing
            cap = self.burst + stalled_s * self.rate_per_s
            entry.tokens = min(cap, entry.tokens + (now - entry.last) * self.rate_per_s)
            entry.last = now

    def _take(self, entry: _Entry, now: float, stalled_s: float = 0.0) -> bool:
        if self.rate_per_s <= 0:
            return True
        self._refill(entry, now, stalled_s)
        if entry.tokens >= 1.0:
            entry.tokens -= 1.0
            return True
        return False

    def _refuse(self, limit: Limit, path: str) -> Limit:
        self.refused[limit, path] = self.refused.get((limit, path), 0) + 1
        return limit


def refusal_warning(limits: AddressLimits, key: str, refused: Limit, now: float) -> str | None:
    """The log line for a refusal, at most one per ``WARN_INTERVAL_S`` (the
    metric counts them all). It names the address: a refused reverse proxy
    means ``trusted_proxies`` is missing it."""
    if not limits.should_warn(now):
        return None
    return (
        f"refusing {key}: {REFUSALS[refused]} (per-address limits; behind a reverse "
        f"proxy, EDGE_TRUSTED_PROXIES must name it); further refusals for "
        f"{WARN_INTERVAL_S:.0f} s are only counted (edge_address_refusals_total)"
    )
