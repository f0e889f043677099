"""One ASGI WebSocket, as ``edge.tracker.ws`` uses it: no framework in between.

``/ws`` carries every message of every visitor, so it is served as a plain
ASGI app (``edge.app.EdgeApp`` sends it here before Starlette): Starlette's
router, its two error middlewares and its ``WebSocket`` state machine wrapped
every ``send`` in three more coroutines, a tenth of the server's time per
message in a profile (issue 13). What this keeps of them is what the
endpoint needs: the handshake's headers, query and client address, accept,
receive, send and close, the denial response (HTTP 429 to a handshake), and
two rules: sending after the close is a ``RuntimeError``, and a socket that
broke under a send is a ``WebSocketDisconnect`` (1006), as with Starlette.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect


class Socket:
    __slots__ = ("_closed", "_receive", "_send", "headers", "query_params", "scope", "state")

    def __init__(self, scope: Scope, receive: Receive, send: Send, state: Any) -> None:
        self.scope = scope
        self.state = state  # the app's state: its services
        self._receive = receive
        self._send = send
        self._closed = False
        self.headers = Headers(scope=scope)
        self.query_params = QueryParams(scope.get("query_string", b""))

    @property
    def client_host(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    async def accept(self) -> None:
        message = await self._receive()  # the server's websocket.connect comes first
        if message["type"] != "websocket.connect":
            raise WebSocketDisconnect(message.get("code", 1006))
        await self._send({"type": "websocket.accept"})

    async def receive(self) -> Message:
        return await self._receive()

    async def send_text(self, data: str) -> None:
        await self._out({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self._out({"type": "websocket.send", "bytes": data})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Before ``accept`` the server answers the handshake with HTTP 403."""
        await self._out({"type": "websocket.close", "code": code, "reason": reason})
        self._closed = True

    async def send_denial_response(self, response: Response) -> None:
        """An HTTP answer to the handshake (the ASGI denial-response extension)."""
        self._closed = True
        await response(self.scope, self._receive, self._send)

    async def _out(self, message: Message) -> None:
        if self._closed:
            raise RuntimeError("the WebSocket is closed")
        try:
            await self._send(message)
        except OSError:
            self._closed = True
            raise WebSocketDisconnect(code=1006) from None
