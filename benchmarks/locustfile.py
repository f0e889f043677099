"""Locust: the same simulated visitors, driven from Locust's UI.

Each Locust user is one visitor holding its own WebSocket (the ``websockets``
sync client), walking through shop sessions from ``benchmarks.load.World``
(sources, categories, products, carts, purchases, claimed identities, real
User-Agent strings). Every ``events`` message is reported to Locust as a
request named after its event type, with the time until the acknowledging reply.

    ./dev serve &                    # or: EDGE_MAX_MESSAGES_PER_S=1000 .venv/bin/edge serve
    .venv/bin/locust -f benchmarks/locustfile.py --host ws://127.0.0.1:8000
    # open http://127.0.0.1:8089; or headless:
    .venv/bin/locust -f benchmarks/locustfile.py --host ws://127.0.0.1:8000 \\
        --headless -u 200 -r 50 -t 60s

Note: Locust users are closed-loop (a user waits for its answer and then
``wait_time``), so a slow server lowers the offered load instead of showing up
as latency; the open-loop figures come from ``python -m benchmarks run``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from locust import User, between, events, task
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from benchmarks.load import Visit, World, check_loopback

_worlds: dict[str, World] = {}


def _world(host: str) -> World:
    if host not in _worlds:
        _worlds[host] = World("http" + host[2:] if host.startswith("ws") else host)
    return _worlds[host]


class WebSocketVisitor(User):
    """One visitor: a WebSocket per session, one events message per action."""

    wait_time = between(0.5, 3.0)  # a person reading the page
    site = "demo"

    def on_start(self) -> None:
        assert self.host, "pass --host ws://127.0.0.1:PORT"
        check_loopback(self.host)
        self.ws: ClientConnection | None = None
        self.visit: Visit | None = None
        self.seq = 0

    def on_stop(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            finally:
                self.ws = None

    def _fire(self, name: str, started: float, length: int, exc: Exception | None) -> None:
        events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exc,
            context={},
        )

    def _new_session(self) -> None:
        self._close()
        self.visit = _world(self.host or "").new_visit()
        started = time.perf_counter()
        try:
            self.ws = connect(
                f"{self.host}/ws?site={self.site}",
                compression=None,
                user_agent_header=self.visit.user_agent,
                open_timeout=30,
            )
            self.ws.send(json.dumps(self.visit.hello))
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("type") != "welcome":
                raise RuntimeError(f"hello refused: {reply}")
            self.seq = int(reply.get("ack", 0))
            self._fire("hello", started, 0, None)
        except Exception as exc:  # reported to Locust; the next task starts over
            self._fire("hello", started, 0, exc)
            self._close()

    @task
    def act(self) -> None:
        event: dict[str, Any] | None = None
        if self.ws is not None and self.visit is not None:
            event = next(self.visit.events, None)
        if event is None:
            self._new_session()
            if self.ws is None or self.visit is None:
                return
            event = next(self.visit.events)
        self.seq += 1
        event.update(
            seq=self.seq, id=f"{self.visit.session[:8]}{self.seq:08d}", at=int(time.time() * 1000)
        )
        if event.get("referrer") is None:
            event.pop("referrer", None)
        name = str(event["type"])
        started = time.perf_counter()
        assert self.ws is not None
        try:
            self.ws.send(json.dumps({"type": "events", "events": [event]}))
            length = 0
            while True:
                frame = self.ws.recv(timeout=30)
                length += len(frame)
                reply = json.loads(frame)
                if "ack" in reply:
                    if int(reply["ack"]) < self.seq:
                        raise RuntimeError(f"ack {reply['ack']} below seq {self.seq}")
                    break
                if reply.get("type") == "error" and reply.get("seq") is None:
                    raise RuntimeError(f"error {reply.get('code')}")
            self._fire(name, started, length, None)
        except (ConnectionClosed, TimeoutError, RuntimeError, OSError) as exc:
            self._fire(name, started, 0, exc)
            self._close()
