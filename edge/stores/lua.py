"""Lua scripts run by their digest, on one server or a cluster alike.

A script is sent as ``EVALSHA`` of a digest computed here, and loaded
(``SCRIPT LOAD``: on a cluster, into every master) only when Redis answers
NOSCRIPT: after a restart, a flush, or a failover to a node that never saw it.
redis-py's own ``Script`` objects send ``SCRIPT EXISTS`` before every pipeline
on one server, and cannot load a script a cluster pipeline is missing.

Every script's keys go in KEYS, never built inside the script, and all of
them carry one hash tag (``edge.stores.keys``): on Redis Cluster a script runs on the
node owning that slot, and a key of another slot would fail with CROSSSLOT.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from edge.stores.lane import Lane, batch

Arg = str | bytes | int | float


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Arg] = ()) -> Any:
        """Run it now (one round trip; two more the first time on a server)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(client)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def run(
        self, client: Any, lane: Lane | None, keys: Sequence[str], args: Sequence[Arg] = ()
    ) -> Any:
        """Run it now on ``lane`` (``edge.stores.lane.batch``): the per-event
        connection, without redis-py's round trip; as ``__call__`` when
        there is no lane (a cluster routes it by its KEYS)."""
        if lane is None:
            return await self(client, keys, args)
        command = [self.command(keys, args)]
        (reply,) = await batch(client, lane, command)
        if isinstance(reply, NoScriptError):
            await self.load(client)
            (reply,) = await batch(client, lane, command)
        if isinstance(reply, Exception):  # an error reply, as ``__call__`` raises it
            raise reply
        return reply

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[Arg] = ()) -> None:
        """Add it to a pipeline; a NoScriptError among the replies means
        ``load`` and run again what failed (``missing``).

        Queued as a raw command: redis-py's cluster pipeline refuses its
        ``evalsha`` method (a guard from clients that could not route it), yet
        routes a raw EVALSHA by its KEYS like any keyed command."""
        pipe.execute_command(*self.command(keys, args))

    def command(self, keys: Sequence[str], args: Sequence[Arg] = ()) -> tuple[Arg, ...]:
        """The EVALSHA command that runs it, for a batch sent by other means
        (``edge.stores.lane``)."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    async def load(self, client: Any) -> None:
        await client.script_load(self.source)


def missing(replies: Sequence[Any]) -> list[int]:
    """Where a pipeline's replies say NOSCRIPT."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
