"""The ASGI application: routes, lifespan, and the services they share."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from edge import __version__
from edge.admin import routes as admin_routes
from edge.admin.metrics import Metrics
from edge.automation.service import AutomationService
from edge.automation.store import AutomationStore, MemoryAutomation, RedisAutomation
from edge.config.registry import SiteRegistry
from edge.config.settings import Settings, parse_trusted_proxies
from edge.errors import ConfigError, StoreError
from edge.runtime.breaker import StallWatch
from edge.runtime.supervisor import Supervisor
from edge.stores import ProfileStore, open_store
from edge.stores.coupons import CouponPools, MemoryPools, RedisPools
from edge.stores.ledger import Ledger
from edge.stores.redis import RedisStore
from edge.stores.signals import MemorySignalStore, RedisSignalStore, SignalStore
from edge.stores.stats import MemoryStats, RedisStats, StatsStore
from edge.tracker.collect import collect
from edge.tracker.geo import open_geo
from edge.tracker.ingest import Ingest
from edge.tracker.limits import AddressLimits
from edge.tracker.ws import quiet_uvicorn_noise, websocket_app
from edge.widgets.service import WidgetService

log = logging.getLogger(__name__)

# A link to static/js/edge.js in a checkout, the file itself in a built wheel.
TRACKER_JS = Path(__file__).resolve().parent / "static" / "edge.js"
# The preview overlay, which edge.js loads only in a preview tab (edge.core.preview).
PREVIEW_JS = TRACKER_JS.with_name("edge-preview.js")


async def tracker_js(request: Request) -> Response:
    source: bytes = request.app.state.tracker_js
    headers = {"Cache-Control": "public, max-age=300", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(
            request.app.state.tracker_js_gz, media_type="text/javascript", headers=headers
        )
    return Response(source, media_type="text/javascript", headers=headers)


async def preview_js(request: Request) -> Response:
    headers = {"Cache-Control": "public, max-age=300"}
    return Response(request.app.state.preview_js, media_type="text/javascript", headers=headers)


def pools_for(store: ProfileStore) -> CouponPools:
    """Coupon pools live where the profiles do."""
    if isinstance(store, RedisStore):
        return RedisPools(store.client)
    return MemoryPools()


def stats_for(store: ProfileStore) -> StatsStore:
    """And campaign statistics."""
    if isinstance(store, RedisStore):
        return RedisStats(store.client, store.lane)
    return MemoryStats()


def signals_for(store: ProfileStore) -> SignalStore:
    """So do recommendation signals."""
    if isinstance(store, RedisStore):
        return RedisSignalStore(store.client, lane=store.lane)
    return MemorySignalStore()


def automation_for(store: ProfileStore, settings: Settings) -> AutomationStore:
    """Automation streams too (a bounded ring in memory for the embedded store)."""
    if isinstance(store, RedisStore):
        return RedisAutomation(
            store.client, maxlen=settings.automation_stream_maxlen, lane=store.lane
        )
    return MemoryAutomation(min(settings.automation_stream_maxlen, 100_000))


async def readyz(request: Request) -> Response:
    """Ready when the store answers, at least one site is configured and no
    background task crashed lately (edge.runtime.supervisor)."""
    ingest: Ingest = request.app.state.ingest
    problems = list(request.app.state.supervisor.problems())
    try:
        await asyncio.wait_for(ingest.ledger.store.ping(), 2.0)
    except (StoreError, TimeoutError) as exc:
        problems.append(f"store: {exc or 'timeout'}")
    if not ingest.registry.sites:
        problems.append("no valid site configuration")
    status = 503 if problems else 200
    return JSONResponse({"ready": not problems, "problems": problems}, status_code=status)


async def metrics(request: Request) -> Response:
    return Response(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def healthz(request: Request) -> Response:
    ingest: Ingest = request.app.state.ingest
    registry = ingest.registry
    site_problems, config = registry.report()  # a reload over its budget shows here too
    sites: dict[str, dict[str, Any]] = {
        name: {
            "version": site.version,
            "problems": site_problems.get(name, []),
            "coupons": ingest.widgets.pool_report(site),
        }
        for name, site in registry.sites.items()
    }
    for name, problems in site_problems.items():
        sites.setdefault(name, {"version": None, "problems": problems})
    return JSONResponse(
        {
            "status": "ok",
            "version": __version__,
            "store": ingest.ledger.store.kind,
            "sites": sites,
            "config": config,
            "connections": ingest.counters.connections,
            "hot_profiles": ingest.ledger.hot_count,
            "config_reloads": registry.reloads,
        }
    )


class EdgeApp:
    """The ASGI app: ``/ws``, which carries every visitor's messages, goes
    straight to its endpoint (``edge.tracker.socket`` says why); HTTP routes
    and the lifespan go to Starlette. Attributes are Starlette's (``state``)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await websocket_app(scope, receive, send, self.app.state)
        else:
            await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def create_app(settings: Settings | None = None, store: ProfileStore | None = None) -> EdgeApp:
    """Build the app. ``store`` overrides the one ``settings`` names (tests)."""
    settings = settings or Settings.from_env()
    registry = SiteRegistry(settings.profiles)
    registry.reload()  # fail fast on a missing profiles folder
    routes: list[BaseRoute] = [
        Route("/collect", collect, methods=["POST"]),
        Route("/edge.js", tracker_js),
        Route("/edge-preview.js", preview_js),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Mount("/admin", routes=admin_routes),  # 404 unless EDGE_ADMIN_TOKEN is set
    ]
    if settings.demo:
        from edge.demo import root
        from edge.demo import routes as demo_routes

        routes += [*demo_routes, Route("/", root)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # (not ``store or ...``: an empty embedded store has a length of 0)
        the_store = store if store is not None else open_store(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            pool_timeout_s=settings.redis_timeout_s,
            socket_timeout_s=settings.redis_socket_timeout_s,
            connect_timeout_s=settings.redis_connect_timeout_s,
            breaker_failures=settings.redis_breaker_failures,
            breaker_cooldown_s=settings.redis_breaker_cooldown_s,
        )
        ledger = Ledger(the_store)
        # docs/operations.md, "Store outages": a write that hangs releases its messages
        breaker = getattr(the_store, "breaker", None)
        ledger.stall_watch = StallWatch(settings.answer_deadline_s, breaker, the_store.ping)
        supervisor: Supervisor = app.state.supervisor
        ledger.start(supervisor)
        widgets = WidgetService(pools_for(the_store), signals_for(the_store), stats_for(the_store))
        for site in registry.sites.values():
            await widgets.sync_pools(site)
        app.state.ingest = Ingest(settings, registry, ledger, widgets, geo=app.state.geo)
        app.state.ingest.admission.start()  # its loop-lag ticker
        automation = AutomationService(
            automation_for(the_store, settings),
            claim_interval_s=settings.automation_claim_interval_s,
            webhook_attempts=settings.webhook_attempts,
            webhook_backoff_s=settings.webhook_backoff_s,
            webhook_timeout_s=settings.webhook_timeout_s,
        )
        app.state.automation = automation
        app.state.ingest.automate = automation.observe
        app.state.ingest.automate_change = automation.changed
        widgets.on_coupon = automation.coupon_issued
        ledger.on_stored = widgets.count  # campaign statistics, as stored
        widgets.on_task = automation.on_task = supervisor.watch
        automation.start(lambda: list(registry.sites.values()))
        app.state.metrics.watch(app.state.ingest)
        tune_gc()
        app.state.ingest.latency = app.state.metrics.observe
        ledger.observe_batch = app.state.metrics.store_seconds.observe
        supervisor.start("reloader", lambda: _watch(registry, widgets, settings))
        try:
            yield
        finally:
            app.state.ingest.admission.lag.stop()
            await ledger.stop()
            await supervisor.stop()
            await automation.close()
            await widgets.close()
            if store is None:
                await the_store.close()
            app.state.geo.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    source = TRACKER_JS.read_bytes()
    app.state.tracker_js = source
    app.state.tracker_js_gz = gzip.compress(source, compresslevel=9, mtime=0)
    app.state.preview_js = PREVIEW_JS.read_bytes()
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.supervisor = Supervisor()
    app.state.metrics.watch_supervisor(app.state.supervisor)
    app.state.metrics.watch_transport()
    app.state.limits = AddressLimits(
        max_connections=settings.max_connections_per_address,
        rate_per_s=settings.max_messages_per_s_per_address,
        max_addresses=settings.max_tracked_addresses,
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
    )
    app.state.metrics.watch_limits(app.state.limits)
    app.state.geo = open_geo(settings)  # a bad file: GeoError (a ValueError) before serving
    quiet_uvicorn_noise()
    return EdgeApp(app)


# The collector's thresholds (gc.set_threshold): young, middle, old. What a
# pass costs is what it walks: at 1,000 events/s over 1,000 connections each
# connection's waiting state (its coroutines, the message it holds, its hot
# profile's tuples) lives about a second, so it outlives the young pass and
# is walked once by a middle one. At (700, 4, 1000) a middle pass came about
# every 1.3 s and walked some 30,000 such objects: 8-19 ms of CPU, the p99 of
# the steady benchmark (11-12 ms). At (200, 2, 8000) the same objects are
# walked in passes of at most about 1.3 ms (young ones at most 0.6 ms), for
# no more collector CPU in all (it fell: 340 against 550 ms in 25 s): steady
# p99 4.0-4.3 ms (benchmarks/RESULTS.md, "The collector"). The old
# generation, a pass over the whole heap (30-50 ms), runs after 8,000 middle
# passes (about every 5 minutes at that rate) and only when a quarter of the
# heap is new since the last one (CPython's own rule). A young generation of
# 50,000 (an earlier setting) took 17 ms a pass, up to 87.
GC_THRESHOLDS = (200, 2, 8000)


def tune_gc() -> None:
    """Short collector pauses: everything built at start-up (modules, compiled
    sites, templates) is moved out of the collector's sight (``gc.freeze``),
    the young and middle generations are collected often and so quickly, and
    a full collection is rare (``GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _watch(registry: SiteRegistry, widgets: WidgetService, settings: Settings) -> None:
    """Reload profiles/ every reload_interval_s (0: never) and at once on
    SIGHUP, off the event loop with a budget (SiteRegistry.reload_in_background:
    a slow file never stops the server answering, and a reload over its budget
    is shown in /healthz); (re)load the coupon pools of changed sites. A
    failure is logged and shown in /healthz, and retried at the next interval."""
    versions = {name: site.version for name, site in registry.sites.items()}
    wake = asyncio.Event()
    _on_sighup(wake)
    interval_s = settings.reload_interval_s if settings.reload_interval_s > 0 else None
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval_s)
        wake.clear()
        try:
            await registry.reload_in_background(settings.reload_timeout_s)
            for name, site in registry.sites.items():
                if versions.get(name) != site.version:
                    versions[name] = site.version
                    await widgets.sync_pools(site)
        except ConfigError as exc:  # the profiles folder vanished ...: in /healthz, retried
            log.error("reloading site configuration failed: %s", "; ".join(exc.problems))
        except Exception:  # nothing may stop the watcher; logged, retried
            log.exception("reloading site configuration failed")


def _on_sighup(wake: asyncio.Event) -> None:
    """SIGHUP wakes the watcher, which reloads at once (one reload at a time)."""
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, wake.set)
