"""``POST /collect?site=<id>``: the beacon path (``navigator.sendBeacon`` when a
page unloads). Same message, validation and dedupe as the WebSocket path."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edge.core.context import VisitContext
from edge.core.site import Site
from edge.errors import InvalidMessage, MalformedFrame, ProtocolError, StoreError
from edge.tracker import protocol as p
from edge.tracker.geo import UNKNOWN
from edge.tracker.ingest import Holding, Ingest, may_store
from edge.tracker.limits import FORWARDED, REFUSALS, RETRY_AFTER_S, AddressLimits, refusal_warning
from edge.tracker.useragent import classify

log = logging.getLogger(__name__)


def _answer(message: dict[str, Any], status: int, origin: str | None) -> Response:
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else None
    return JSONResponse(message, status_code=status, headers=headers)


class TooBig(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    if int(request.headers.get("content-length") or 0) > limit:
        raise TooBig
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooBig
    return body


def _parse(body: bytes, binary: bool) -> tuple[dict[str, Any], p.Batch]:
    message = p.decode_frame(body if binary else _text(body))
    if p.message_type(message) != "events":
        raise InvalidMessage("POST /collect takes an 'events' message")
    return message, p.parse_events(message, beacon=True)


def _over_limit(request: Request) -> Response | None:
    """429 when the client address's bucket (shared with its WebSocket
    messages, edge.tracker.limits) is empty; checked first, so that junk
    floods cost tokens too."""
    limits: AddressLimits = request.app.state.limits
    if limits.rate_per_s <= 0:
        return None
    peer = request.client.host if request.client else None
    key = limits.key(peer, request.headers.getlist(FORWARDED))
    now = time.monotonic()
    refused = limits.beacon(key, now)
    if refused is None:
        return None
    warning = refusal_warning(limits, key, refused, now)
    if warning:
        log.warning(warning)
    answer = _answer(p.error("rate_limited", REFUSALS[refused]), 429, None)
    answer.headers["Retry-After"] = str(RETRY_AFTER_S)
    return answer


async def collect(request: Request) -> Response:
    refused = _over_limit(request)
    if refused is not None:
        return refused
    ingest: Ingest = request.app.state.ingest
    if not ingest.admission.admits(0.0):  # the event loop runs late: this process is full
        ingest.counters.refuse("busy")
        retry_ms = ingest.admission.retry_ms()
        busy = _answer(p.error("busy", "server busy; resend later", retry_ms=retry_ms), 503, None)
        busy.headers["Retry-After"] = str(max(1, round(retry_ms / 1000)))
        return busy
    site = ingest.registry.get(request.query_params.get("site"))
    origin = request.headers.get("origin")
    if site is None:
        return _answer(p.error("unknown_site", "unknown site"), 403, None)
    if not ingest.origin_allowed(site, origin, request.headers.get("host")):
        return _answer(p.error("origin_refused", "origin not allowed for this site"), 403, None)
    limit = ingest.settings.max_frame_bytes
    try:
        body = await _body(request, limit)
    except TooBig:
        return _answer(p.error("too_big", f"body over {limit} bytes"), 413, origin)
    binary = request.headers.get("content-type", "").startswith("application/msgpack")
    try:
        message, batch = _parse(body, binary)
    except ProtocolError as exc:
        return _answer(p.error(exc.code, exc.message), 400, origin)
    assert batch.visitor is not None and batch.session is not None
    consent = message.get("consent")
    peer = request.client.host if request.client else None
    location = (
        ingest.geo.locate(peer, request.headers, request.headers.getlist(FORWARDED))
        if ingest.geo.enabled
        else UNKNOWN
    )
    ctx = VisitContext(
        visitor=batch.visitor,
        session=batch.session,
        user_agent=request.headers.get("user-agent", "")[:512],
        consent=consent if isinstance(consent, bool) else None,
        country=location.country,
        region=location.region,
    )
    bot = classify(ctx.user_agent).is_bot
    if bot:
        ingest.counters.bots += 1
    if bot or not may_store(site, ctx.consent):  # acknowledged, and nothing is kept
        return _answer(p.ack(batch.highest_seq), 200, origin)
    # In flight from here: not while the body was read, at the client's pace.
    with ingest.admission.holding():
        return await _store(ingest, site, batch, ctx, origin)


async def _store(
    ingest: Ingest, site: Site, batch: p.Batch, ctx: VisitContext, origin: str | None
) -> Response:
    try:
        holder = Holding(await ingest.open(site, ctx.visitor))
    except StoreError:
        return _answer(p.error("store_unavailable", "profile store unavailable"), 503, origin)
    try:
        errors, answer = await ingest.process(holder, batch, ctx, site)
    except (TimeoutError, StoreError):  # not stored (yet): the tracker keeps them
        return _answer(p.error("store_unavailable", "not stored yet; resend later"), 503, origin)
    finally:
        if holder.hot is not None:
            ingest.ledger.release(holder.hot)
    if errors:
        answer["errors"] = errors
    return _answer(answer, 200, origin)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFrame("body is not UTF-8") from None
