"""edge serve's transport (edge/tracker/transport.py, edge/tracker/openfiles.py):
request deadlines, the header size limit, the open-files budget, and frame
limits counted on arrival. Issue 12, items 3, 8 and 9; each test is a repro
from the review, over real sockets against a real ``edge serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edge.config.settings import Settings
from edge.tracker.openfiles import Budget
from tests.client import Visitor, open_socket
from tests.helpers import ROOT, EdgeServer, edge_server, free_port

PAGE = "http://127.0.0.1/demo"
HANDSHAKE = (
    b"GET /ws?site=demo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)
MIB = 1 << 20
HEADER_LINES = b"".join(b"X-Pad-%04d: %s\r\n" % (i, b"a" * 1000) for i in range(1024))  # ~1 MiB


@pytest.fixture(scope="module")
def strict() -> Iterator[EdgeServer]:
    """A request deadline of 1 s; the header limit at its default (16 KiB)."""
    with edge_server(env={"EDGE_REQUEST_TIMEOUT_S": "1"}) as server:
        yield server


def connect(server: EdgeServer, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)
    sock.settimeout(timeout_s)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a socket timeout fails the test)."""
    chunks = []
    with sock:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- the request deadline (items 3 and 8) ---------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_by_the_deadline(strict: EdgeServer) -> None:
    sock = connect(strict)
    started = time.monotonic()
    assert read_all(sock) == b""  # closed, with nothing to say: no request came
    assert 0.8 < time.monotonic() - started < 4


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /healthz HT",
        HANDSHAKE,
        b"POST /collect?site=demo HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
    ],
    ids=["half-a-request-line", "an-unfinished-upgrade", "half-a-body"],
)
def test_half_a_request_gets_408_and_close(strict: EdgeServer, partial: bytes) -> None:
    sock = connect(strict)
    sock.sendall(partial)
    started = time.monotonic()
    assert read_all(sock).startswith(b"HTTP/1.1 408 ")
    assert 0.8 < time.monotonic() - started < 4


def test_a_request_sent_a_byte_at_a_time_does_not_move_the_deadline(strict: EdgeServer) -> None:
    sock = connect(strict)
    started = time.monotonic()
    with contextlib.suppress(OSError):  # the server closes while we trickle
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            sock.send(bytes([byte]))
            time.sleep(0.1)
    assert read_all(sock).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 4


def test_the_next_request_on_a_kept_alive_connection_has_a_deadline_too(
    strict: EdgeServer,
) -> None:
    """uvicorn's keep-alive timeout ends at the first byte of the next request."""
    sock = connect(strict)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while not answer.endswith(b"}"):  # the whole JSON answer
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0")
    assert read_all(sock).startswith(b"HTTP/1.1 408 ")


async def test_a_websocket_outlives_the_request_deadline(strict: EdgeServer) -> None:
    visitor = Visitor(strict.ws)
    await visitor.connect()
    await asyncio.sleep(1.5)
    answers = await visitor.track(visitor.event("page_view", url=PAGE))
    assert answers[-1]["ack"] == 1
    await visitor.close()


# --- the header size limit (item 8) ----------------------------------------------------


def test_a_mebibyte_of_header_lines_gets_431_and_close(strict: EdgeServer) -> None:
    for head in (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", HANDSHAKE):
        sock = connect(strict)
        sock.sendall(head + HEADER_LINES)
        assert read_all(sock).startswith(b"HTTP/1.1 431 ")
    sock = connect(strict)  # one line that never ends
    sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Long: " + b"a" * MIB)
    assert read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_header_lines_streamed_without_end_do_not_grow_the_servers_memory(
    strict: EdgeServer,
) -> None:
    """The review's 200 MiB of header lines took the server from 105 to 328 MB,
    and the connection was never closed. Measured while the socket is open."""
    before = rss_kib(strict.process.pid)
    sock = connect(strict)
    with contextlib.suppress(OSError):  # the server may cut us off first
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(64):
            sock.sendall(HEADER_LINES)
    grown = rss_kib(strict.process.pid) - before
    sock.close()
    assert grown < 16 * 1024, f"server RSS grew by {grown} KiB with 64 MiB of header lines"
    assert httpx.get(f"{strict.http}/healthz", timeout=5).status_code == 200


def test_requests_within_the_header_limit_pass(strict: EdgeServer) -> None:
    cookie = {"Cookie": "c=" + "a" * 12_000}  # a shop's cookies are sent to edge's subdomain too
    assert httpx.get(f"{strict.http}/healthz", headers=cookie, timeout=5).status_code == 200
    sock = connect(strict)  # (websockets allows 8 KiB per line in a handshake)
    sock.sendall(HANDSHAKE + b"Cookie: c=" + b"a" * 8_000 + b"\r\nX-More: " + b"a" * 6_000)
    sock.sendall(b"\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")
    sock.close()


# --- the open-files budget (item 3) ----------------------------------------------------


@pytest.fixture(scope="module")
def cramped() -> Iterator[EdgeServer]:
    """200 open files, 64 kept: 136 client connections, then 16 spare ones."""
    env = {
        "EDGE_MAX_OPEN_FILES": "200",
        "EDGE_OPEN_FILES_RESERVE": "64",
        "EDGE_REQUEST_TIMEOUT_S": "60",  # the idle connections stay
    }
    with edge_server(env=env) as server:
        yield server


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_idle_connections_past_the_limit_leave_healthz_answering(
    cramped: EdgeServer,
) -> None:
    """The review: 1,100 idle sockets under a limit of 1,024 made /healthz and
    reloads fail with "Too many open files". Here 400 under a limit of 200."""
    assert "open files: limit 200, client connections up to 136" in cramped.output()
    idle = [connect(cramped) for _ in range(400)]
    try:
        await asyncio.sleep(0.5)
        assert open_files(cramped.process.pid) < 200
        async with httpx.AsyncClient(timeout=5) as client:
            for path in ("/healthz", "/readyz", "/metrics"):  # operators are answered ...
                assert (await client.get(f"{cramped.http}{path}")).status_code == 200, path
            busy = await client.get(f"{cramped.http}/demo")  # ... visitors refused, quickly
            assert (busy.status_code, busy.headers["retry-after"]) == (503, "1")
        with pytest.raises(InvalidStatus) as info:
            await open_socket(f"{cramped.ws}/ws?site=demo")
        assert info.value.response.status_code == 503
        assert info.value.response.headers["retry-after"] == "1"
    finally:
        for sock in idle:
            sock.close()
    await asyncio.sleep(0.5)
    visitor = Visitor(cramped.ws)  # and once they are gone, visitors are served again
    await visitor.connect()
    assert (await visitor.track(visitor.event("page_view", url=PAGE)))[-1]["ack"] == 1
    await visitor.close()
    log = cramped.output()
    assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]
    assert "over the open-files budget" in log


@contextlib.contextmanager
def soft_open_files_limit(soft: int) -> Iterator[None]:
    """This process's soft limit lowered for a while (child processes inherit it)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def limits_of(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open-files limit")


def test_the_soft_limit_is_raised_to_the_hard_one_at_start() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard > 256, "this test needs a hard limit above 256"
    with soft_open_files_limit(256), edge_server() as server:
        assert limits_of(server.process.pid) == (hard, hard)
    with soft_open_files_limit(256), edge_server(env={"EDGE_MAX_OPEN_FILES": "300"}) as server:
        assert limits_of(server.process.pid) == (300, hard)


def test_a_limit_that_leaves_no_room_for_clients_refuses_to_start() -> None:
    env = {**os.environ, "EDGE_MAX_OPEN_FILES": "100", "EDGE_OPEN_FILES_RESERVE": "128"}
    args = [sys.executable, "-m", "edge", "serve", "--port", str(free_port())]
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "open-file limit (100) leaves no room for client connections" in done.stderr


def test_the_budget_keeps_the_reserve_and_the_redis_pool() -> None:
    embedded = Settings.from_env({"EDGE_OPEN_FILES_RESERVE": "100"})
    assert Budget.of(1024, embedded) == Budget(1024, 100, 924, 25)
    on_redis = embedded.with_(redis_url="redis://127.0.0.1:6379/0", redis_max_connections=32)
    assert Budget.of(1024, on_redis) == Budget(1024, 132, 892, 25)
    with pytest.raises(ValueError, match="leaves no room"):
        Budget.of(132, on_redis)
    for bad in (
        {"EDGE_REQUEST_TIMEOUT_S": "0"},
        {"EDGE_MAX_HEADER_BYTES": "100"},
        {"EDGE_MAX_OPEN_FILES": "-1"},
        {"EDGE_OPEN_FILES_RESERVE": "8"},
    ):
        with pytest.raises(ValueError):
            Settings.from_env(bad)


# --- frames counted on arrival (item 9) ------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[EdgeServer]:
    """The frame limits at their defaults: 20 per second, bursts of 40."""
    with edge_server() as server:
        yield server


class Tab:
    """An honest tab: one event every ``every_s``, sent without waiting for the
    answers, until ``stop``; ``run`` returns once every one is acknowledged
    (and raises ConnectionClosed if the server closes the socket). Like the
    tracker, after a ``busy`` answer it sends nothing for ``retry_ms``, then
    resends every event not acknowledged yet."""

    def __init__(self, server: EdgeServer, every_s: float) -> None:
        self.visitor = Visitor(server.ws)
        self.every_s = every_s
        self.stop = asyncio.Event()
        self.sent = self.acked = 0
        self.going = asyncio.Event()  # set once three events are acknowledged
        self.outbox: list[dict[str, Any]] = []
        self.hold_until = 0.0
        self.busy = 0  # busy answers received

    async def run(self) -> int:
        await self.visitor.connect()
        receiver = asyncio.create_task(self._receive())
        while not self.stop.is_set():
            event = self.visitor.event("custom", name="tick")
            self.outbox.append(event)
            self.sent = event["seq"]
            await self._flush([event])
            await asyncio.sleep(self.every_s)
        for _ in range(300):  # 15 s at most for the last answers (and resends)
            if receiver.done():
                receiver.result()  # ConnectionClosed: the server closed this tab
            if self.acked == self.sent:
                break
            await self._flush([])
            await asyncio.sleep(0.05)
        receiver.cancel()
        await self.visitor.close()
        return self.acked

    async def _flush(self, new: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self.hold_until:
            return  # held: sent with the resend
        if self.hold_until:  # the hold is over: resend what is not acknowledged
            self.hold_until = 0.0
            new = [e for e in self.outbox if e["seq"] > self.acked]
        if new:
            await self.visitor.send({"type": "events", "events": new})

    async def _receive(self) -> None:
        while True:
            answer = await self.visitor.recv()
            if answer.get("code") == "busy":
                self.busy += 1
                loop = asyncio.get_running_loop()
                self.hold_until = loop.time() + answer["retry_ms"] / 1000
            self.acked = answer.get("ack", self.acked)
            self.outbox = [e for e in self.outbox if e["seq"] > self.acked]
            if self.acked >= 3:
                self.going.set()


async def test_a_ping_flood_closes_that_socket_and_others_are_answered(
    served: EdgeServer,
) -> None:
    """The review: ~200,000 pings/s on one socket took the whole CPU."""
    flooder = Visitor(served.ws)
    await flooder.connect()
    assert flooder.ws is not None
    tab = Tab(served, 0.05)
    honest = asyncio.create_task(tab.run())
    await asyncio.wait_for(tab.going.wait(), 10)
    with pytest.raises(ConnectionClosed) as info:
        for pings in range(200_000):
            await flooder.ws.ping(pings.to_bytes(4, "big"))
            if pings % 100 == 0:
                await asyncio.sleep(0)  # let the client read the server's close
    await asyncio.sleep(0.5)
    tab.stop.set()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "too many messages")
    assert await honest == tab.sent > 0  # the other tab: all acknowledged, never closed


async def test_a_server_that_stood_still_does_not_close_honest_tabs(served: EdgeServer) -> None:
    """The review: after a stall, the messages queued meanwhile were counted as
    one burst and closed 19 of 20 honest tabs with 1008. Here the server is
    stopped for 5 s while three tabs send 10 messages/s: 50 wait in the kernel
    for each, more than a burst (40), all of them sent at an honest rate."""
    tabs = [Tab(served, 0.1) for _ in range(3)]
    running = [asyncio.create_task(tab.run()) for tab in tabs]
    await asyncio.sleep(1)
    os.kill(served.process.pid, signal.SIGSTOP)
    try:
        before = [tab.sent for tab in tabs]
        await asyncio.sleep(5)
        during = [tab.sent - sent for tab, sent in zip(tabs, before, strict=True)]
    finally:
        os.kill(served.process.pid, signal.SIGCONT)
    assert min(during) > 40, during  # more than a burst waited in the kernel
    await asyncio.sleep(1)
    for tab in tabs:
        tab.stop.set()
    acked = await asyncio.gather(*running)  # a tab closed with 1008 raises ConnectionClosed
    assert acked == [tab.sent for tab in tabs]


async def test_a_burst_is_answered_up_to_the_refused_message(served: EdgeServer) -> None:
    visitor = Visitor(served.ws)
    await visitor.connect()
    events = [visitor.event("custom", name="tick") for _ in range(100)]
    for event in events:
        await visitor.send({"type": "events", "events": [event]})
    answers: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            answers.append(await visitor.recv())
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "too many messages")
    # the hello took one token of 40: the 39 messages after it are answered, in order
    assert [a["ack"] for a in answers] == list(range(1, len(answers) + 1))
    assert 39 <= len(answers) < 100
    again = Visitor(served.ws, visitor=visitor.visitor, session=visitor.session)
    assert (await again.connect())["ack"] == len(answers)  # stored, every one
    await again.close()
