"""Routes of the admin API. Every handler runs behind ``_guard``: 404 while no
token is configured, 401 (``WWW-Authenticate: Bearer``) on a missing or wrong
one, the token compared in constant time."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from edge.admin import page, privacy
from edge.admin import segments as members_
from edge.admin.explain import CLIENT_TRIGGERS
from edge.admin.stats import last_days, summarize
from edge.config.settings import Settings
from edge.core import preview
from edge.core.context import VisitContext
from edge.core.identity import customer_visitor
from edge.core.profile import Profile
from edge.core.properties import PropertyError, Scalar, checked_values, set_properties
from edge.core.segments import refreshed
from edge.core.site import Site
from edge.decisioning.attributes import Page
from edge.decisioning.campaigns import KeptSegment
from edge.decisioning.engine import decide
from edge.errors import BadVisitorId, ConfigError, StoreError
from edge.ids import check_visitor_id, is_valid_id, new_id
from edge.tracker.ingest import Ingest
from edge.tracker.useragent import classify
from edge.widgets.service import nothing_to_recommend

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
MAX_DAYS = 400
NO_STORE = {"Cache-Control": "no-store"}


class Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _presented(request: Request, query_token: bool) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query_token:
        return request.query_params.get("token") or None
    return None


def _deny(request: Request, query_token: bool) -> Response | None:
    settings: Settings = request.app.state.settings
    if not settings.admin_token:
        return PlainTextResponse("Not Found", status_code=404)
    given = _presented(request, query_token)
    if given is None or not hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), settings.admin_token.encode()
    ):
        return JSONResponse(
            {"error": "unauthorized", "message": "a valid admin bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="edge admin"', **NO_STORE},
        )
    return None


def _guard(handler: Handler, *, query_token: bool = False) -> Handler:
    async def endpoint(request: Request) -> Response:
        denied = _deny(request, query_token)
        if denied is not None:
            return denied
        try:
            return await handler(request)
        except Problem as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=NO_STORE)
        except StoreError as exc:
            log.warning("admin %s: store error: %s", request.url.path, exc)
            return JSONResponse({"error": "store unavailable"}, status_code=503, headers=NO_STORE)

    return endpoint


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        privacy.dumps(data),
        status_code=status,
        media_type="application/json",
        headers=NO_STORE,
    )


def _ingest(request: Request) -> Ingest:
    ingest: Ingest = request.app.state.ingest
    return ingest


def _site(request: Request) -> Site:
    site = _ingest(request).registry.get(request.path_params["site"])
    if site is None:
        raise Problem(404, "no such site")
    return site


def _visitor(value: str | None) -> str:
    """A device's visitor id, or a customer profile's id (``c`` + 32 hex)."""
    if isinstance(value, str) and value[:1] == "c" and is_valid_id(value[1:]):
        return value
    try:
        return check_visitor_id(value)
    except BadVisitorId as exc:
        raise Problem(400, str(exc)) from None


def _subject(request: Request, site: Site) -> str:
    """The profile a privacy request names: ``/visitors/<id>`` or
    ``/customers/<the shop's customer id>``."""
    customer = request.path_params.get("customer")
    if customer is not None:
        if not 0 < len(customer) <= 128:
            raise Problem(400, "customer id must be 1 to 128 characters")
        return customer_visitor(site.id, customer)
    return _visitor(request.path_params["visitor"])


def _days(request: Request) -> int:
    raw = request.query_params.get("days", "30")
    try:
        days = int(raw)
    except ValueError:
        raise Problem(400, "days must be a whole number") from None
    if not 1 <= days <= MAX_DAYS:
        raise Problem(400, f"days must be between 1 and {MAX_DAYS}")
    return days


async def campaign_report(ingest: Ingest, site: Site, days: int) -> dict[str, Any]:
    """Statistics of every configured campaign over the last ``days`` days."""
    now = ingest.clock()
    names = last_days(now, site.timezone, days)
    campaigns = []
    for campaign in site.decisioning.by_id.values():
        table = await ingest.widgets.stats.read(site.id, campaign.id, names)
        campaigns.append(summarize(campaign, table, names, now, site.timezone))
    return {
        "site": site.id,
        "config": site.version,
        "days": days,
        "from": names[0],
        "to": names[-1],
        "timezone": str(site.timezone),
        "campaigns": campaigns,
    }


async def campaigns(request: Request) -> Response:
    return _json(await campaign_report(_ingest(request), _site(request), _days(request)))


async def export(request: Request) -> Response:
    ingest, site = _ingest(request), _site(request)
    visitor = _subject(request, site)
    data = await privacy.export_visitor(
        ingest.ledger.store,
        ingest.widgets.pools,
        site.id,
        visitor,
        privacy.configured_pools(site.decisioning.by_id.values()),
    )
    if data is None:
        raise Problem(404, "nothing stored about this visitor")
    return _json(data)


async def erase(request: Request) -> Response:
    ingest, site = _ingest(request), _site(request)
    visitor = _subject(request, site)
    settings: Settings = request.app.state.settings
    report = await privacy.erase_visitor(
        ingest.ledger.store,
        ingest.widgets.pools,
        site.id,
        visitor,
        privacy.configured_pools(site.decisioning.by_id.values()),
        tombstone_s=settings.erasure_tombstone_days * 86400,
        ledger=ingest.ledger,
    )
    log.info("admin: visitor erased on site %s", site.id)  # no id in logs
    return _json(report)


async def properties(request: Request) -> Response:
    """Set a profile's custom properties (edge.core.properties): a JSON object of
    property -> value, null deleting it, each checked against the site's
    declaration. Through the ledger like every change, so it is exactly-once
    with the visitor's open tabs and other processes (compare-and-set, the
    change re-applied on what is stored). A customer's profile is created if
    it does not exist yet (the shop may know a customer before their first
    visit); a device's must exist, and one merged into a customer's profile
    leads to it."""
    ingest, site = _ingest(request), _site(request)
    visitor = _subject(request, site)
    try:
        body = await request.json()
    except ValueError:
        raise Problem(400, "the body is not JSON") from None
    try:
        values = checked_values(body, site.declared.properties)
    except PropertyError as exc:
        raise Problem(400, str(exc)) from None
    customer = request.path_params.get("customer")
    now = ingest.clock()
    if customer is None:
        hot = await ingest.aliases.resolve(site, visitor, now)
    else:
        hot = await ingest.ledger.open(site.id, visitor)
    try:
        if hot.current is None and customer is None:
            raise Problem(404, "nothing stored about this visitor")
        change = _setting(values, hot.visitor, customer, site, now)
        before = hot.current
        future = ingest.ledger.submit_change(hot, change, site, now)
        ingest.automate_change(site, before, hot.current, now)  # segment_entered / _left
        try:
            profile = await ingest.ledger.settle(future, ingest.settings.ack_timeout_s)
        except TimeoutError:
            raise Problem(
                503, "not stored in time; it will be (sending it again is safe)"
            ) from None
    finally:
        ingest.ledger.release(hot)
    if profile is None or profile.sealed:  # erased, or merged meanwhile
        raise Problem(409, "the profile was erased or merged meanwhile; send it again")
    log.info("admin: properties set on site %s", site.id)  # no id in logs
    return _json({"site": site.id, "visitor": profile.visitor, "props": dict(profile.props)})


def _setting(
    values: dict[str, Scalar | None], visitor: str, customer: str | None, site: Site, now: float
) -> Callable[[Profile | None], Profile | None]:
    """The pure change ``properties`` queues (re-applied after a lost
    compare-and-set): a sealed profile is left alone, a missing customer
    profile is created, and the kept segments are recomputed with the new
    properties (edge.core.segments), so count and export see it at once."""

    def change(profile: Profile | None) -> Profile | None:
        if profile is None:
            if customer is None:
                return None
            profile = Profile(
                visitor=visitor,
                created_at=now,
                level="verified",
                customer_id=customer,
                first_seen=now,
                last_seen=now,
            )
        if profile.sealed:
            return profile
        return refreshed(set_properties(profile, values), site, now)

    return change


async def explain(request: Request) -> Response:
    ingest, site = _ingest(request), _site(request)
    visitor = _visitor(request.query_params.get("visitor"))
    url = request.query_params.get("page")
    if not url:
        raise Problem(400, "page (the URL to decide for) is required")
    trigger = request.query_params.get("trigger", "page_view")
    user_agent = request.query_params.get("user_agent", "")
    stored = await ingest.ledger.store.load(site.id, visitor)
    if stored is not None and stored.profile.merged_into is not None:  # a device: its customer
        stored = await ingest.ledger.store.load(site.id, stored.profile.merged_into)
    profile = stored.profile if stored else None
    now = ingest.clock()
    ctx = VisitContext(visitor, new_id(), user_agent=user_agent, url=url)
    decisions = decide(
        profile,
        ctx,
        site,
        now,
        trigger="page_view" if trigger in CLIENT_TRIGGERS else trigger,
        page=Page(url=url),
        device=classify(user_agent).to_attributes(),
        unavailable=ingest.widgets.unavailable(site) | nothing_to_recommend(site, profile, None),
        explain=True,
    )
    items = decisions.to_wire()
    trace = list(decisions.trace)
    if trigger in CLIENT_TRIGGERS:  # as edge.admin.explain.run_explain does
        armed = [i for i in items if i["trigger"]["type"] == trigger]
        trace += [
            f"campaign {i['campaign']}: decided, but shows on {i['trigger']['type']}, not {trigger}"
            for i in items
            if i not in armed
        ]
        items = armed
    return _json(
        {
            "site": site.id,
            "config": site.version,
            "page": url,
            "trigger": trigger,
            "visitor": visitor,
            "stored": stored is not None,
            "profile_version": stored.version if stored else None,
            "trace": trace,
            "decisions": items,
            "attributes": decisions.attributes,
        }
    )


async def preview_link(request: Request) -> Response:
    """A preview link (edge.core.preview): ``{"campaign", "variant", "step" (from
    1), "ttl_min", "page"}``, all but ``campaign`` optional; signed with
    this server's admin token, so that this server and its peers accept it."""
    ingest, site = _ingest(request), _site(request)
    try:
        body = await request.json()
    except ValueError:
        raise Problem(400, "the body is JSON: {campaign, variant, step, ttl_min, page}") from None
    if not isinstance(body, dict) or not isinstance(body.get("campaign"), str):
        raise Problem(400, "campaign (the id of the campaign to preview) is required")
    settings: Settings = request.app.state.settings
    assert settings.admin_token is not None  # _guard: no token, no admin API
    ttl_min = _optional(body, "ttl_min", float)
    try:
        grant, token = preview.mint(
            settings.admin_token.encode(),
            site,
            body["campaign"],
            now=ingest.clock(),
            variant=_optional(body, "variant", str),
            step=_step(body.get("step")),
            ttl_min=preview.DEFAULT_TTL_MIN if ttl_min is None else ttl_min,
        )
        campaign = site.decisioning.by_id[grant.campaign]
        page = preview.page_for(campaign, site, _optional(body, "page", str))
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    return _json({"url": preview.link(page, token), "token": token, **grant.to_wire()})


def _optional(body: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind):
        raise Problem(400, f"{key} must be a {'number' if kind is float else 'string'}")
    return value


def _step(value: Any) -> int | None:
    """A step as people count them (the first is 1) to the decisions' (from 0)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Problem(400, "step counts from 1 (the first step)")
    return value - 1


def _segment(request: Request, site: Site) -> KeptSegment:
    """The segment the path names: kept on the profile, or a 404 / 409."""
    wanted = request.path_params["segment"]
    kept = next((s for s in site.decisioning.kept if s.id == wanted), None)
    if kept is not None:
        return kept
    if any(sid == wanted for sid, _ in site.decisioning.segments):
        raise Problem(409, f"segment {wanted!r} is not kept on the profile (membership: true)")
    raise Problem(404, "no such segment")


async def segment_count(request: Request) -> Response:
    """How many profiles are in a kept segment: reads every profile of the site."""
    ingest, site = _ingest(request), _site(request)
    segment = _segment(request, site)
    found, read = await members_.count(ingest.ledger.store, site.id, segment.id)
    return _json(
        {
            "site": site.id,
            "segment": segment.id,
            "name": segment.name,
            "members": found,
            "profiles_read": read,
            "at": ingest.clock(),
        }
    )


async def segment_refresh(request: Request) -> Response:
    """Recompute every profile's kept segments now (a backfill, e.g. after a
    segment became kept): ``{"site", "profiles_read", "changed", "at"}``."""
    ingest, site = _ingest(request), _site(request)
    now = ingest.clock()
    try:
        done = await members_.refresh(
            ingest.ledger, site, now, ingest.settings.ack_timeout_s, ingest.automate_change
        )
    except TimeoutError:
        raise Problem(503, "not stored in time; it will be (refreshing again is safe)") from None
    log.info("admin: segments refreshed on site %s (%d changed)", site.id, done.changed)
    return _json(
        {"site": site.id, "profiles_read": done.profiles_read, "changed": done.changed, "at": now}
    )


async def segment_members(request: Request) -> Response:
    """A page of members (JSON, ``cursor`` and ``limit``), or every member
    as NDJSON (``format=ndjson``), streamed as the profiles are read."""
    ingest, site = _ingest(request), _site(request)
    segment = _segment(request, site)
    store = ingest.ledger.store
    if request.query_params.get("format") == "ndjson":
        return StreamingResponse(
            _ndjson(members_.members(store, site.id, segment.id)),
            media_type="application/x-ndjson",
            headers=NO_STORE,
        )
    limit = _limit(request.query_params.get("limit", "100"))
    try:
        found = await members_.page(
            store, site.id, segment.id, request.query_params.get("cursor") or None, limit
        )
    except members_.BadCursor as exc:
        raise Problem(400, str(exc)) from None
    return _json(
        {"site": site.id, "segment": segment.id, "members": found.members, "cursor": found.cursor}
    )


def _limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise Problem(400, "limit must be a whole number") from None
    if not 1 <= limit <= members_.MAX_LIMIT:
        raise Problem(400, f"limit must be between 1 and {members_.MAX_LIMIT}")
    return limit


async def _ndjson(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """One JSON object a line; a store failure half-way ends the stream with
    an ``{"error": ...}`` line (the status, 200, is sent already)."""
    try:
        async for row in rows:
            yield _line(row)
    except StoreError as exc:
        log.warning("admin: segment export: store error: %s", exc)
        yield _line({"error": "store unavailable"})


def _line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


async def reload(request: Request) -> Response:
    ingest = _ingest(request)
    registry = ingest.registry
    try:  # off the event loop, with the watcher's budget (edge.config.registry)
        changed = await registry.reload_in_background(ingest.settings.reload_timeout_s)
    except ConfigError as exc:
        raise Problem(500, "; ".join(exc.problems)) from None
    site_problems, config = registry.report()
    if config["last_reload"] == "overdue":
        raise Problem(500, f"a configuration reload is still running: {config['error']}")
    for site in registry.sites.values():
        await ingest.widgets.sync_pools(site)  # idempotent
    sites: dict[str, dict[str, Any]] = {
        name: {"version": site.version, "problems": site_problems.get(name, [])}
        for name, site in registry.sites.items()
    }
    for name, problems in site_problems.items():
        sites.setdefault(name, {"version": None, "problems": problems})
    log.info("admin: configuration reloaded (changed: %s)", changed)
    return _json({"changed": changed, "reloads": registry.reloads, "sites": sites})


async def index(request: Request) -> Response:
    ingest = _ingest(request)
    reports = [
        await campaign_report(ingest, site, page.CHART_DAYS)
        for _, site in sorted(ingest.registry.sites.items())
    ]
    html = page.render(reports, generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    return HTMLResponse(
        html,
        headers={
            **NO_STORE,
            # The token may be in this page's URL: never send it on as a Referer.
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


routes: list[BaseRoute] = [
    Route("/", _guard(index, query_token=True), methods=["GET"]),
    Route("/sites/{site}/campaigns", _guard(campaigns), methods=["GET"]),
    Route("/sites/{site}/visitors/{visitor}", _guard(export), methods=["GET"]),
    Route("/sites/{site}/visitors/{visitor}", _guard(erase), methods=["DELETE"]),
    Route("/sites/{site}/customers/{customer}", _guard(export), methods=["GET"]),
    Route("/sites/{site}/customers/{customer}", _guard(erase), methods=["DELETE"]),
    Route("/sites/{site}/visitors/{visitor}/properties", _guard(properties), methods=["PATCH"]),
    Route("/sites/{site}/customers/{customer}/properties", _guard(properties), methods=["PATCH"]),
    Route("/sites/{site}/explain", _guard(explain), methods=["GET"]),
    Route("/sites/{site}/preview", _guard(preview_link), methods=["POST"]),
    Route("/sites/{site}/segments/refresh", _guard(segment_refresh), methods=["POST"]),
    Route("/sites/{site}/segments/{segment}", _guard(segment_count), methods=["GET"]),
    Route("/sites/{site}/segments/{segment}/members", _guard(segment_members), methods=["GET"]),
    Route("/reload", _guard(reload), methods=["POST"]),
]
