"""A preview tab's connection (``edge.core.preview``): the granted campaign is
shown, nothing is stored.

A ``hello`` carrying ``preview`` makes its connection a preview for its whole
life; connections without one never come here. The token is checked first
(``edge.core.preview.verify``, then against the site as configured now). A refused
one is answered with ``error`` ``preview_refused`` before ``welcome``, and
the connection then stores and shows nothing: its events are acknowledged and
dropped, its decisions are empty. A bad or expired link changes nothing, and
is never turned into an ordinary, counted visit.

A granted preview works on a private copy of the visitor's profile: read
once from the store when the tab may be profiled (consent where the site
requires it), changed by the tab's events with the same pure fold as ever
(``edge.core.updates.apply``), so the page behaves as it would, and dropped with
the connection. Nothing goes to the ledger: no event, offer or impression of
a preview is stored on the profile, counted in campaign statistics or
recommendation signals, or handed to automation. A coupon form reveals the
placeholder ``PREVIEW``: no pool code is claimed, no ``coupon_issued`` sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from edge.core import offers
from edge.core.preview import PREVIEW_CODE, Grant, decide_preview, refusal, verify
from edge.core.profile import Profile
from edge.core.updates import apply
from edge.errors import PreviewRefused
from edge.tracker import protocol as p
from edge.tracker.ingest import check_batch, event_of, may_store, next_page, triggers
from edge.tracker.useragent import classify
from edge.widgets.service import Shown, coupon_message, coupon_of, nothing_to_recommend

if TYPE_CHECKING:
    import asyncio

    from edge.core.context import VisitContext
    from edge.core.site import Site
    from edge.decisioning.attributes import Page
    from edge.stores.ledger import Hot
    from edge.tracker.ingest import Ingest


class Connection(Protocol):
    """What a preview uses of its connection (``edge.tracker.ws.Connection``,
    which imports this module: a protocol here instead of an import back)."""

    site: Site
    ctx: VisitContext | None
    bot: bool
    hot: Hot | None
    opening: asyncio.Task[Hot] | None
    loop: asyncio.AbstractEventLoop
    preview: PreviewSession | None
    page: Page
    ingest: Ingest

    async def send(self, message: dict[str, Any]) -> None: ...
    async def load(self, deadline: float, *, patient: bool = False) -> bool: ...
    def may_store(self) -> bool: ...
    def _release_late(self, opening: asyncio.Task[Hot]) -> None: ...



@dataclass
class PreviewSession:
    """The preview state of one connection: what was granted (None: the token
    was refused, and why), the private copy of the profile, and the widgets
    sent with their html on the current page."""

    grant: Grant | None
    refused: str | None = None
    profile: Profile | None = None
    sent: set[Shown] = field(default_factory=set)

    def info(self) -> dict[str, Any]:
        if self.grant is None:
            return {"refused": self.refused}
        return self.grant.to_wire()


def _grant(conn: Connection, token: str) -> Grant:
    if conn.bot:
        raise PreviewRefused("robots get no preview")
    secret = conn.ingest.settings.admin_token
    grant = verify(token, secret.encode() if secret else None, conn.site.id, conn.ingest.clock())
    problem = refusal(grant, conn.site)
    if problem is not None:
        raise PreviewRefused(problem)
    return grant


async def start(conn: Connection, hello: p.Hello) -> None:
    """Make ``conn`` a preview connection (granted, or refused: inert) and
    answer its ``hello``: ``preview_refused`` first if the token is refused,
    then ``welcome`` (with ``preview``: the grant, or why it was refused),
    then the events the hello carried."""
    assert conn.ctx is not None and hello.preview is not None
    try:
        session = PreviewSession(_grant(conn, hello.preview))
    except PreviewRefused as exc:
        conn.ingest.counters.refuse(exc.code)
        await conn.send(p.error(exc.code, exc.message))
        session = PreviewSession(None, exc.message)
    conn.preview = session  # before anything can fail: never an ordinary connection
    acked, css = 0, None
    if session.grant is not None:
        acked = await _read_profile(conn, session)
        css = conn.site.renderer.stylesheet()
    welcome = p.welcome(conn.ctx.visitor, hello.session, acked, conn.site.version, css)
    welcome["preview"] = session.info()
    await conn.send(welcome)
    if hello.events:
        await answer(conn, session, {"type": "events", "events": hello.events})


async def _read_profile(conn: Connection, session: PreviewSession) -> int:
    """Take the private copy of the visitor's profile (none without consent,
    or while the store does not answer in time) and release the stored one
    at once; returns what the store holds of this tab (``welcome``'s ack)."""
    assert conn.ctx is not None
    if not conn.may_store():
        return 0
    deadline = conn.loop.time() + conn.ingest.settings.answer_deadline_s
    if not await conn.load(deadline):
        if conn.opening is not None:  # still loading: released when done, never used
            conn.opening.add_done_callback(conn._release_late)
            conn.opening = None
        return 0
    hot, conn.hot = conn.hot, None
    assert hot is not None
    conn.ingest.ledger.release(hot)
    session.profile = hot.current
    return hot.base.acked(conn.ctx.session) if hot.base is not None else 0


async def answer(conn: Connection, session: PreviewSession, message: dict[str, Any]) -> None:
    """Answer an ``events`` message of a preview connection: errors, coupons,
    then ``ack``, or ``decisions`` (each item ``preview: true``) with
    ``preview``: the grant and the trace. The events change the private copy
    only; they are acknowledged, and dropped."""
    ctx, site, ingest = conn.ctx, conn.site, conn.ingest
    assert ctx is not None
    batch = p.parse_events(message)
    conn.page = next_page(conn.page, batch.events)
    if any(isinstance(e, p.PageView) for e in batch.events):
        session.sent = set()
    now = ingest.clock()
    before: list[dict[str, Any]] = []
    if session.grant is not None and now >= session.grant.expires:
        session.grant, session.refused = None, "preview token has expired"
        before.append(p.error("preview_refused", session.refused))
    keep = session.grant is not None and conn.may_store()
    errors, accepted, _ = check_batch(batch, site, session.profile, keep, now)
    ingest.counters.messages += 1
    ingest.counters.events += len(accepted)
    if keep:
        for event in accepted:
            session.profile = apply(session.profile, event, ctx, site, now)
    if session.grant is not None:
        before += [c for e in accepted if (c := _coupon(conn, session, e)) is not None]
    wanted = triggers(accepted)
    reply = p.ack(batch.highest_seq)
    if wanted:
        items: list[dict[str, Any]] = []
        trace: list[str] = []
        if session.grant is not None:
            items, trace = await _decide(conn, session, wanted, now, accepted)
        reply = p.decisions(items, seq=batch.highest_seq)
        reply["preview"] = {**session.info(), "trace": trace}
    for frame in (*before, *errors, reply):
        await conn.send(frame)


async def _decide(
    conn: Connection,
    session: PreviewSession,
    wanted: list[str],
    now: float,
    accepted: Sequence[p.Event],
) -> tuple[list[dict[str, Any]], list[str]]:
    ctx, site, ingest, page = conn.ctx, conn.site, conn.ingest, conn.page
    assert ctx is not None and session.grant is not None
    profile = session.profile
    unavailable = ingest.widgets.unavailable(site) | nothing_to_recommend(
        site, profile, page.product
    )
    result = decide_preview(
        session.grant,
        profile,
        ctx,
        site,
        now,
        triggers=tuple(wanted),
        page=page,
        device=classify(ctx.user_agent).to_attributes(),
        unavailable=unavailable,
        events={t: e for t in wanted if (e := event_of(t, site, accepted)) is not None},
    )
    if profile is not None:  # what the tab may report on, as offers do (on the copy)
        decided = [(d.campaign, d.variant, d.step) for d in result.items]
        session.profile = offers.record(profile, decided, now, site.bounds.offers)
    deadline = conn.loop.time() + ingest.settings.answer_deadline_s
    items = await ingest.widgets.render(
        result.items, session.profile, ctx, site, page, deadline=deadline, sent=session.sent
    )
    for item in items:
        item["preview"] = True
    return items, list(result.trace)


def _coupon(conn: Connection, session: PreviewSession, event: p.Event) -> dict[str, Any] | None:
    """The answer to a coupon form sent in a preview: the consent rules as
    ever, then the form with the placeholder code (never a real one)."""
    ctx, site = conn.ctx, conn.site
    assert ctx is not None
    if not (isinstance(event, p.Widget) and event.action == "convert"):
        return None
    campaign = site.decisioning.by_id.get(event.campaign)
    widget = campaign.widget_for(event.variant, event.step) if campaign else {}
    if campaign is None or coupon_of(widget) is None:
        return None
    if not may_store(site, ctx.consent):
        why = "this site gives coupons only with consent"
        return p.error("consent_required", why, seq=event.seq)
    if widget.get("consent") and not (session.profile and session.profile.marketing_consent):
        return p.error("consent_required", "this form's consent box was not ticked", seq=event.seq)
    message = coupon_message(site, campaign, widget, event.variant, PREVIEW_CODE, ctx)
    return {**message, "preview": True}
