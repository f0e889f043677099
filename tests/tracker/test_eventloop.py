"""edge serve's event loop (edge.tracker.eventloop): a saturated loop still
accepts a burst of connections within a few turns, so that they can be
welcomed or refused explicitly instead of waiting in the kernel's queue."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from collections.abc import Callable

import pytest
import uvloop

from edge.tracker import eventloop

BURST = 300


class Counting(asyncio.Protocol):
    made: list[asyncio.BaseTransport]

    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def connect_burst(port: int, sockets: list[socket.socket], done: threading.Event) -> None:
    """Complete BURST TCP handshakes: the kernel does, before any accept."""
    for _ in range(BURST):
        sockets.append(socket.create_connection(("127.0.0.1", port)))
    done.set()


def accepted_within_turns(loop_factory: Callable[[], asyncio.AbstractEventLoop], turns: int) -> int:
    """Connections accepted while a loop that spends 20 ms of every turn on
    other work (a saturated server) turns ``turns`` times."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        made: list[asyncio.BaseTransport] = []
        server = await loop.create_server(
            lambda: Counting(made), "127.0.0.1", 0, backlog=BURST + 100
        )
        port = server.sockets[0].getsockname()[1]
        clients: list[socket.socket] = []
        done = threading.Event()
        thread = threading.Thread(target=connect_burst, args=(port, clients, done))
        thread.start()
        done.wait(30)  # the loop is busy meanwhile: the connections wait for accept
        thread.join()
        for _ in range(turns):
            time.sleep(0.02)  # noqa: ASYNC251 - the loop's other work
            await asyncio.sleep(0)
        seen = len(made)
        for transport in made:
            transport.close()
        for client in clients:
            client.close()
        server.close()
        await server.wait_closed()
        return seen

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def test_a_saturated_loop_accepts_a_burst_within_a_few_turns() -> None:
    # Here about 15 a turn (half the budget's spare share, 40, may wait for
    # their protocol, which comes the turn after): 300 need some 20 turns;
    # libuv alone accepts one a turn.
    assert accepted_within_turns(eventloop.new_loop, 30) == BURST


def test_plain_uvloop_accepts_one_connection_a_turn() -> None:
    """Why the loop above exists (and what the test above tells apart)."""
    assert accepted_within_turns(uvloop.new_event_loop, 30) < BURST // 4


def test_the_server_serves_binds_and_closes() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        made: list[asyncio.BaseTransport] = []
        server = await loop.create_server(lambda: Counting(made), "127.0.0.1", 0)
        assert isinstance(server, eventloop.BatchServer) and server.is_serving()
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(50):
            if made:
                break
            await asyncio.sleep(0.01)
        assert len(made) == 1
        made[0].close()
        writer.close()
        server.close()
        await server.wait_closed()
        assert not server.is_serving()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    with asyncio.Runner(loop_factory=eventloop.new_loop) as runner:
        runner.run(main())


class OutOfFiles:
    """A listening socket whose accept fails as at the open-files limit."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tries = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        self.tries += 1
        raise OSError(errno.EMFILE, "Too many open files")


def test_out_of_files_accepting_pauses_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(eventloop, "ACCEPT_RETRY_S", 0.2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        assert isinstance(server, eventloop.BatchServer)
        listening = server.sockets[0]
        loop.remove_reader(listening.fileno())
        failing = OutOfFiles(listening)
        loop.add_reader(listening.fileno(), server._accept, failing)
        client = socket.create_connection(listening.getsockname())  # readable from now on
        await asyncio.sleep(0.1)
        assert failing.tries == 1  # paused: not once a turn
        await asyncio.sleep(0.2)
        assert failing.tries == 2  # and tried again after ACCEPT_RETRY_S
        client.close()
        server.close()
        await server.wait_closed()

    with asyncio.Runner(loop_factory=eventloop.new_loop) as runner:
        runner.run(main())
    assert "accepting paused for 0.2 s: [Errno 24] Too many open files" in caplog.text
