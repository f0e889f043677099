"""Per-connection waiting primitives, small enough for 10,000 idle sockets.

uvicorn gives every WebSocket an ``asyncio.Queue`` (its messages for the app)
and an ``asyncio.Event`` (the socket is writable). Each is built for many
producers and consumers: the queue holds three deques and an Event of its
own, and every deque starts with a block of 64 slots, so the two come to
about 4 KiB per connection before a single message, which is a sixth of what
an idle connection costs in all (``benchmarks``, scenario ``connections``).

A WebSocket needs less: one consumer (the app's ``receive``) and, for the
flag, the few tasks that send on it. ``Inbox`` and ``Flag`` keep a list and
a future only while someone waits: about 200 bytes for both.

Both are cancel-safe as the asyncio ones are: a ``get`` cancelled while
waiting takes nothing from the inbox; a ``wait`` cancelled leaves the flag as
it was.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """A FIFO with one consumer: ``put_nowait`` never blocks (the protocol
    bounds what it queues itself), ``get`` waits for an item."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Inbox.get: another task is already waiting")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Flag:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait``, with the
    waiters' list made only when someone waits on a cleared flag."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> None:
        if self._value:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
