"""``edge events tail``: print a site's automation stream, one JSON line per event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from edge.automation.store import RedisAutomation
from edge.core.automation import AutomationEvent
from edge.stores import connect, keys


def line(entry_id: str, event: AutomationEvent) -> str:
    return json.dumps({"id": entry_id, **event.to_json()}, separators=(",", ":"))


async def tail(
    url: str,
    site: str,
    count: int,
    follow: bool,
    out: Callable[[str], Any] = print,
    block_ms: int = 5000,
    polls: int | None = None,
) -> int:
    """Print the last ``count`` events, then (``follow``) new ones as they come.
    ``polls`` bounds the follow loop (tests). Returns the number printed.
    ``url``: any form of ``edge.stores.connect``; on a cluster the stream is
    read from the master of the site's ``{au:<site>}`` slot."""
    # A blocked XREAD answers after ``block_ms``: the reply deadline allows it.
    options = connect.ClientOptions(
        max_connections=2, socket_timeout_s=block_ms / 1000 + 5, connect_timeout_s=5
    )
    client = connect.open_client(url, options)
    printed = 0
    try:
        store = RedisAutomation(client)
        last = "$"
        for entry_id, event in await store.read(site, count):
            out(line(entry_id, event))
            printed += 1
            last = entry_id
        stream = keys.automation_stream(site)
        if last == "$":  # nothing yet: start from what exists now
            newest: Any = await client.xrevrange(stream, count=1)
            last = newest[0][0].decode() if newest else "0-0"
        while follow and (polls is None or polls > 0):
            if polls is not None:
                polls -= 1
            reply: Any = await client.xread({stream: last}, count=100, block=block_ms)
            for _, rows in reply or ():
                for entry_id, fields in rows:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    out(line(last, AutomationEvent.from_fields(fields)))
                    printed += 1
    finally:
        await connect.close_client(client)
    return printed
