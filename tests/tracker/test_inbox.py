"""The per-connection inbox and flag (edge/tracker/inbox.py): what uvicorn's
asyncio.Queue and asyncio.Event did for a WebSocket, cancel-safety included."""

from __future__ import annotations

import asyncio

import pytest

from edge.tracker.inbox import Flag, Inbox


async def test_the_inbox_gives_items_in_order() -> None:
    inbox: Inbox[int] = Inbox()
    for i in range(3):
        inbox.put_nowait(i)
    assert inbox.qsize() == 3
    assert [await inbox.get() for _ in range(3)] == [0, 1, 2]
    assert inbox.empty()


async def test_get_waits_for_the_next_item() -> None:
    inbox: Inbox[str] = Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert await getter == "a"
    assert await inbox.get() == "b"


async def test_a_cancelled_get_takes_nothing() -> None:
    inbox: Inbox[str] = Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("kept")
    getter.cancel()  # woken and cancelled before it ran: the item stays
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert await inbox.get() == "kept"


async def test_a_second_waiting_consumer_is_an_error() -> None:
    inbox: Inbox[int] = Inbox()
    first = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await inbox.get()
    inbox.put_nowait(1)
    assert await first == 1


async def test_the_flag_releases_every_waiter_when_set() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert flag.is_set()


async def test_a_set_flag_does_not_wait_and_a_cleared_one_does() -> None:
    flag = Flag(True)
    await asyncio.wait_for(flag.wait(), 1)
    flag.clear()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    flag.set()
    await asyncio.wait_for(waiter, 1)


async def test_a_cancelled_wait_leaves_the_flag_and_other_waiters_alone() -> None:
    flag = Flag()
    leaving = asyncio.create_task(flag.wait())
    staying = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert not flag.is_set() and not staying.done()
    flag.set()
    await asyncio.wait_for(staying, 1)
