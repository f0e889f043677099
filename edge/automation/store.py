"""Where automation events go: a Redis Stream per site (or an in-memory ring
for the embedded store), abandoned-cart deadlines, and webhook dead letters.

Consumers read the stream with consumer groups (docs/operations.md,
"Automation events"); the stream is capped with ``XADD MAXLEN ~``.

Deadlines (abandoned carts, and the timed kinds of
``edge.core.automation.timed``): one per (kind, visitor) in a sorted set
(score: when it falls due) with the payload it was set with in a hash. The
member is the visitor id for an abandoned cart (the layout before the timed
kinds existed) and ``<kind>|<visitor>`` for the others (``member``).
``claim_due`` runs one Lua script per site that pops the due deadlines, reads
their payloads and appends their events to the stream, all atomically: with
any number of processes claiming at once, each deadline is emitted once, and
a process dying after the claim cannot lose the stream entry.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from edge.core.automation import AutomationEvent
from edge.errors import StoreError
from edge.stores import connect, keys, lua
from edge.stores.connect import REDIS_ERRORS, RedisClient
from edge.stores.lane import Command, Lane, batch, raise_errors

MEMORY_RING = 10_000
# member (see ``member``), due or None (cancel), {"customer": ..., "payload": ...}
Deadline = tuple[str, float | None, Mapping[str, Any] | None]
CART = "cart_abandoned"
DEAD_LETTERS = 1000


class AutomationStore(Protocol):
    async def publish(self, site: str, events: Sequence[AutomationEvent]) -> None:
        """Append to the site's stream; one round trip for Redis."""
        ...

    async def schedule(self, site: str, changes: Sequence[Deadline]) -> None:
        """Set (``due`` a time, with the event's customer and payload) or
        cancel (``due`` None) deadlines, in order."""
        ...

    async def claim_due(self, site: str, now: float, limit: int = 100) -> list[AutomationEvent]:
        """Pop the deadlines due at ``now``, publish and return their events
        (``cart_abandoned`` and the timed kinds); each deadline is claimed by
        one caller only."""
        ...

    async def read(
        self, site: str, count: int, after: str | None = None
    ) -> list[tuple[str, AutomationEvent]]:
        """Up to ``count`` entries (id, event): the latest ones when ``after`` is
        None, else those after that id, oldest first."""
        ...

    async def dead_letter(self, site: str, record: Mapping[str, Any]) -> None: ...

    async def dead_letters(self, site: str) -> list[dict[str, Any]]: ...


def member(kind: str, visitor: str) -> str:
    """The deadline's name in the sorted set: the visitor for a cart."""
    return visitor if kind == CART else f"{kind}|{visitor}"


def parse_member(name: str) -> tuple[str, str]:
    """(kind, visitor) of a deadline; a visitor id never holds ``|``."""
    kind, bar, visitor = name.partition("|")
    return (kind, visitor) if bar else (CART, name)


def _due_event(site: str, name: str, due: float, data: Mapping[str, Any]) -> AutomationEvent:
    kind, visitor = parse_member(name)
    return AutomationEvent(
        kind, site, visitor, due, data.get("customer") or None, data.get("payload") or {}
    )


class MemoryAutomation:
    """For the embedded store (one process): bounded rings of events."""

    def __init__(self, maxlen: int = MEMORY_RING) -> None:
        self._maxlen = maxlen
        self._streams: dict[str, deque[tuple[str, AutomationEvent]]] = {}
        self._due: dict[str, dict[str, tuple[float, Mapping[str, Any]]]] = {}
        self._dead: dict[str, deque[dict[str, Any]]] = {}
        self._seq = 0

    async def publish(self, site: str, events: Sequence[AutomationEvent]) -> None:
        ring = self._streams.setdefault(site, deque(maxlen=self._maxlen))
        for event in events:
            self._seq += 1
            ring.append((f"{int(event.at * 1000)}-{self._seq}", event))

    async def schedule(self, site: str, changes: Sequence[Deadline]) -> None:
        table = self._due.setdefault(site, {})
        for name, due, data in changes:
            if due is None:
                table.pop(name, None)
            else:
                table[name] = (due, data or {})

    async def claim_due(self, site: str, now: float, limit: int = 100) -> list[AutomationEvent]:
        table = self._due.get(site, {})
        due = sorted((at, name) for name, (at, _) in table.items() if at <= now)[:limit]
        events = [_due_event(site, name, at, table.pop(name)[1]) for at, name in due]
        await self.publish(site, events)
        return events

    async def read(
        self, site: str, count: int, after: str | None = None
    ) -> list[tuple[str, AutomationEvent]]:
        ring = list(self._streams.get(site, ()))
        if after is None:
            return ring[-count:] if count > 0 else []
        newer = [entry for entry in ring if _id(entry[0]) > _id(after)]
        return newer[:count]

    async def dead_letter(self, site: str, record: Mapping[str, Any]) -> None:
        self._dead.setdefault(site, deque(maxlen=DEAD_LETTERS)).appendleft(dict(record))

    async def dead_letters(self, site: str) -> list[dict[str, Any]]:
        return list(self._dead.get(site, ()))

    async def close(self) -> None:
        return None


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# Every key of a site's automation carries the tag ``{au:<site>}``: each script
# below touches only its KEYS, in one slot, so it is one atomic step on Redis
# Cluster too.
#
# KEYS[1] deadlines (zset), KEYS[2] payloads (hash: <member> -> payload JSON,
# <member>:c -> customer id), KEYS[3] the stream.
# ARGV[1] now, ARGV[2] limit, ARGV[3] stream max length, ARGV[4] site.
# Returns [member, due, payload, customer, ...] of the deadlines this call claimed.
CLAIM_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
local out = {}
for i = 1, #due, 2 do
  local name, at = due[i], due[i + 1]
  redis.call('ZREM', KEYS[1], name)
  local data = redis.call('HMGET', KEYS[2], name, name .. ':c')
  redis.call('HDEL', KEYS[2], name, name .. ':c')
  local payload, customer = data[1] or '{}', data[2] or ''
  local kind, visitor = string.match(name, '^([^|]+)|(.+)$')
  if not kind then kind, visitor = 'cart_abandoned', name end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
    'type', kind, 'site', ARGV[4], 'visitor', visitor, 'customer', customer,
    'at', string.format('%.3f', tonumber(at)), 'payload', payload)
  table.insert(out, name)
  table.insert(out, at)
  table.insert(out, payload)
  table.insert(out, customer)
end
return out
"""
CLAIM = lua.Script(CLAIM_SCRIPT)

# KEYS[1] deadlines (zset), KEYS[2] payloads (hash). ARGV: one group of four per
# change, in order: member, due (unix s; '' cancels), payload JSON, customer.
# The batch is applied at once, so ``claim_due`` never sees a deadline without
# the payload it was set with (one script, not MULTI: see ``edge.stores.connect``).
SCHEDULE = lua.Script("""
for i = 1, #ARGV, 4 do
  local visitor, due = ARGV[i], ARGV[i + 1]
  if due == '' then
    redis.call('ZREM', KEYS[1], visitor)
    redis.call('HDEL', KEYS[2], visitor, visitor .. ':c')
  else
    redis.call('ZADD', KEYS[1], due, visitor)
    redis.call('HSET', KEYS[2], visitor, ARGV[i + 2], visitor .. ':c', ARGV[i + 3])
  end
end
return #ARGV / 4
""")


class RedisAutomation:
    """Streams, deadlines and dead letters in Redis (layout in ``edge.stores.keys``)."""

    def __init__(
        self,
        client: RedisClient,
        *,
        maxlen: int = 100_000,
        owns_client: bool = False,
        lane: Lane | None = None,
    ) -> None:
        """``lane``: publish and schedule on it (the profile store's,
        ``RedisStore.lane``: they follow stored events), rather than through
        a connection from the pool; a lane is not closed here."""
        self._client = client
        self._maxlen = maxlen
        self._owns_client = owns_client
        self._lane = lane

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisAutomation:
        """Any URL form of ``edge.stores.connect``."""
        return cls(connect.open_client(url), owns_client=True, **options)

    async def publish(self, site: str, events: Sequence[AutomationEvent]) -> None:
        if not events:
            return
        stream = keys.automation_stream(site)
        commands: list[Command] = [
            ("XADD", stream, "MAXLEN", "~", self._maxlen, "*", *_flat(event.to_fields()))
            for event in events
        ]
        try:
            raise_errors(await batch(self._client, self._lane, commands))
        except REDIS_ERRORS as exc:  # an error reply (a ResponseError) included
            raise StoreError(f"publishing automation events failed: {exc}") from exc

    async def schedule(self, site: str, changes: Sequence[Deadline]) -> None:
        if not changes:
            return
        args: list[str] = []
        for name, due, data in changes:
            if due is None:
                args += [name, "", "", ""]
            else:
                data = data or {}
                payload = json.dumps(data.get("payload") or {}, separators=(",", ":"))
                args += [name, repr(float(due)), payload, data.get("customer") or ""]
        deadlines = [keys.cart_deadlines(site), keys.cart_payloads(site)]
        try:
            await SCHEDULE.run(self._client, self._lane, deadlines, args)
        except REDIS_ERRORS as exc:
            raise StoreError(f"recording automation deadlines failed: {exc}") from exc

    async def claim_due(self, site: str, now: float, limit: int = 100) -> list[AutomationEvent]:
        try:
            reply = await CLAIM(
                self._client,
                [keys.cart_deadlines(site), keys.cart_payloads(site), keys.automation_stream(site)],
                [repr(now), limit, self._maxlen, site],
            )
        except REDIS_ERRORS as exc:
            raise StoreError(f"claiming due automation deadlines failed: {exc}") from exc
        events = []
        for i in range(0, len(reply), 4):
            try:
                payload = json.loads(_text(reply[i + 2]))
            except ValueError:
                payload = {}
            data = {"customer": _text(reply[i + 3]) or None, "payload": payload}
            events.append(_due_event(site, _text(reply[i]), float(reply[i + 1]), data))
        return events

    async def read(
        self, site: str, count: int, after: str | None = None
    ) -> list[tuple[str, AutomationEvent]]:
        stream = keys.automation_stream(site)
        if count <= 0:
            return []
        try:
            rows: Any
            if after is None:
                rows = list(reversed(await self._client.xrevrange(stream, count=count) or []))
            else:
                rows = await self._client.xrange(stream, min=f"({after}", count=count) or []
        except REDIS_ERRORS as exc:
            raise StoreError(f"reading automation events failed: {exc}") from exc
        return [
            (_text(entry_id), AutomationEvent.from_fields(fields or {}))
            for entry_id, fields in rows
        ]

    async def dead_letter(self, site: str, record: Mapping[str, Any]) -> None:
        key = keys.webhook_dead_letters(site)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.lpush(key, json.dumps(dict(record), separators=(",", ":")))
                pipe.ltrim(key, 0, DEAD_LETTERS - 1)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreError(f"recording a dead letter failed: {exc}") from exc

    async def dead_letters(self, site: str) -> list[dict[str, Any]]:
        try:
            rows = await self._client.lrange(keys.webhook_dead_letters(site), 0, -1)
        except REDIS_ERRORS as exc:
            raise StoreError(f"reading dead letters failed: {exc}") from exc
        return [json.loads(row) for row in rows]

    async def close(self) -> None:
        if self._owns_client:
            await connect.close_client(self._client)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flat(fields: Mapping[str, str]) -> list[str]:
    """A stream entry's fields as XADD takes them: name, value, name, value."""
    return [item for pair in fields.items() for item in pair]
