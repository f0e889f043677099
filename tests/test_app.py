"""The app's own wiring, in process (its lifespan run directly): a background
task that crashes is restarted and shown in /readyz and /metrics."""

from __future__ import annotations

import asyncio

import httpx

from edge.app import create_app
from edge.config.settings import Settings
from edge.core.context import VisitContext
from edge.tracker import protocol as p
from tests.client import new_id
from tests.helpers import PROFILES
from tests.runtime.test_supervisor import BuggyStore


async def test_a_crashed_flusher_is_restarted_and_reported() -> None:
    settings = Settings(profiles=PROFILES, demo=False, reload_interval_s=0)
    app = create_app(settings, store=BuggyStore())
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge")
        async with http:
            assert (await http.get("/readyz")).status_code == 200
            ledger = app.state.ingest.ledger
            site = app.state.ingest.registry.get("demo")
            visitor, session = new_id(), new_id()
            hot = await ledger.open("demo", visitor)
            event = p.parse_event({"seq": 1, "id": "e0000001", "type": "custom", "name": "x"})
            stored = ledger.submit(hot, [event], VisitContext(visitor, session), site, 1.0)
            assert await asyncio.wait_for(stored, 5) is not None  # stored after the restart
            ledger.release(hot)
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert any("task flusher crashed" in x for x in ready.json()["problems"])
            metrics = (await http.get("/metrics")).text
            assert 'task="flusher"} 1.0' in metrics


async def test_metrics_show_what_admission_control_sees() -> None:
    settings = Settings(profiles=PROFILES, demo=False, reload_interval_s=0, max_in_flight=96)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge")
        async with http:
            metrics = (await http.get("/metrics")).text
    values = {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(
            ("edge_in_flight", "edge_loop_lag", "edge_cpu_per_message", "edge_resends_refused")
        )
    }
    assert values["edge_in_flight"] == 0
    assert values["edge_in_flight_limit"] == 96  # idle: the ceiling
    assert 0 <= values["edge_loop_lag_seconds"] < 1
    assert values["edge_cpu_per_message_seconds"] == 0  # nothing answered yet
    assert values["edge_resends_refused_total"] == 0
