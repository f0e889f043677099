"""A minimal protocol client for tests, over a real WebSocket."""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect

# A real browser's User-Agent: the default of the websockets and httpx clients
# names a Python HTTP library, which edge counts as a robot (no profile).
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36"
)
BROWSER_HEADERS = {"user-agent": BROWSER_UA}


async def open_socket(url: str, **options: Any) -> ClientConnection:
    return await connect(url, compression=None, user_agent_header=BROWSER_UA, **options)


class Busy(Exception):
    """The server refused the hello by admission control: try again after ``retry_ms``."""

    def __init__(self, retry_ms: int) -> None:
        super().__init__(f"server busy; retry in {retry_ms} ms")
        self.retry_ms = retry_ms


def new_id() -> str:
    return secrets.token_hex(16)


class Visitor:
    """One tab of one visitor: numbers events and speaks JSON or msgpack."""

    def __init__(
        self,
        base_ws: str,
        *,
        site: str = "demo",
        visitor: str | None = None,
        session: str | None = None,
        binary: bool = False,
    ) -> None:
        self.url = f"{base_ws}/ws?site={site}"
        self.visitor = visitor or new_id()
        self.session = session or new_id()
        self.binary = binary
        self.seq = itertools.count(1)
        self.ws: ClientConnection | None = None

    async def connect(self, **hello: Any) -> dict[str, Any]:
        self.ws = await open_socket(self.url)
        await self.send(
            {
                "type": "hello",
                "v": 1,
                "visitor": self.visitor,
                "session": self.session,
                "url": "http://127.0.0.1/demo",
                **hello,
            }
        )
        welcome = await self.recv()
        if welcome["type"] == "error" and welcome.get("code") == "busy":
            raise Busy(welcome["retry_ms"])
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        if self.binary:
            await self.ws.send(msgpack.packb(message))
        else:
            await self.ws.send(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        assert self.ws is not None
        frame = await self.ws.recv()
        message: dict[str, Any] = (
            msgpack.unpackb(frame) if isinstance(frame, bytes) else json.loads(frame)
        )
        return message

    def event(self, type_: str, **fields: Any) -> dict[str, Any]:
        seq = next(self.seq)
        return {"seq": seq, "id": f"{self.session[:8]}{seq:08d}", "type": type_, **fields}

    async def track(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Send one events message; return every answer up to the acknowledging one."""
        await self.send({"type": "events", "events": list(events)})
        answers = []
        while True:
            answer = await self.recv()
            answers.append(answer)
            if "ack" in answer:
                return answers

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
