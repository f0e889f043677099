"""The load generator's lean HTTP/1.1 client (benchmarks/http1.py): keep-alive
reuse, the pool's bound, ``Connection: close``, deadlines, and a real edge
server's ``/collect``. Behaviour only, never a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest

from benchmarks.http1 import Pool, ProtocolError
from tests.helpers import edge_server

pytestmark = [pytest.mark.timeout(30)]


@dataclass
class Server:
    """Answers each request with its body's length, after ``delay_s`` (the
    first request's own ``first_delay_s``), keeping the connection unless
    ``close`` is set."""

    delay_s: float = 0.0
    first_delay_s: float | None = None
    close: bool = False
    chunked: bool = False
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests += 1
                first = self.requests == 1 and self.first_delay_s is not None
                await asyncio.sleep(self.first_delay_s if first else self.delay_s)  # type: ignore[arg-type]
                answer = str(len(body)).encode()
                if self.chunked:
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(answer), answer))
                else:
                    connection = b"Connection: close\r\n" if self.close else b""
                    writer.write(
                        b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s"
                        % (connection, len(answer), answer)
                    )
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def http() -> AsyncIterator[Server]:
    state = Server()
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    async with server:
        yield state
        server.close()


async def test_posts_reuse_one_kept_connection(http: Server) -> None:
    pool = Pool(http.url, size=4)
    answers = [await pool.post("/x", b"a" * n, {}, 5.0) for n in range(1, 6)]
    assert [(a.status, a.body) for a in answers] == [(200, str(n).encode()) for n in range(1, 6)]
    assert http.connections == 1
    await pool.close()


async def test_the_pool_opens_at_most_size_connections(http: Server) -> None:
    http.delay_s = 0.02
    pool = Pool(http.url, size=2)
    answers = await asyncio.gather(*(pool.post("/x", b"ab", {}, 5.0) for _ in range(10)))
    assert all(a.body == b"2" for a in answers)
    assert http.most_open == 2 and http.connections == 2
    await pool.close()


async def test_connection_close_is_honoured(http: Server) -> None:
    http.close = True
    pool = Pool(http.url, size=1)
    for _ in range(3):
        assert (await pool.post("/x", b"abc", {}, 5.0)).body == b"3"
    assert http.connections == 3
    assert pool.open <= 1
    await pool.close()


async def test_a_late_answer_times_out_and_its_connection_is_dropped(http: Server) -> None:
    http.first_delay_s = 0.5
    pool = Pool(http.url, size=1)
    with pytest.raises(TimeoutError):
        await pool.post("/x", b"a", {}, 0.1)
    # the late answer must not be read as the next request's
    assert (await pool.post("/x", b"abcd", {}, 5.0)).body == b"4"
    assert http.connections == 2
    await pool.close()


async def test_a_chunked_answer_is_a_protocol_error(http: Server) -> None:
    http.chunked = True
    pool = Pool(http.url, size=1)
    with pytest.raises(ProtocolError, match="chunked"):
        await pool.post("/x", b"a", {}, 5.0)
    assert pool.open == 0
    await pool.close()


async def test_edge_collect_answers_through_it() -> None:
    with edge_server() as server:
        pool = Pool(server.http, size=2)
        headers = {"Content-Type": "text/plain;charset=UTF-8", "User-Agent": "Mozilla/5.0"}
        answer = await pool.post("/collect?site=demo", b"{oops", headers, 5.0)
        assert answer.status == 400
        assert orjson.loads(answer.body)["code"] == "malformed"
        await pool.close()
