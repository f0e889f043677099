"""Preview links: see a campaign on the real site before it goes live.

A preview link is a page of the shop with ``?edge_preview=<token>``. The
token names a site, a campaign, optionally a variant and a step, and when it
expires (30 minutes by default, at most 4 hours), and is signed with the
server's admin token (``EDGE_ADMIN_TOKEN``), as identity tokens are signed
with a site's secret (``edge.core.identity``)::

    sig = HMAC-SHA256(admin token, "edge-preview-v1|" + site + "|" + campaign
                      + "|" + variant + "|" + step + "|" + expires)
    token = site "." campaign "." variant "." step "." expires "." sig

with ``-`` for no variant or step, ``step`` counted from 0 (as in decisions)
and ``expires`` in Unix seconds. Ids cannot hold a dot, so the token needs no
escaping in a URL. Only the holder of the admin token can make one; anyone
holding one can see that campaign on that site until it expires, nothing else.

A tab holding a valid token (the tracker keeps it in ``sessionStorage`` and
sends it in ``hello``) is shown the campaign whatever its status, trigger,
schedule, audience, frequency and caps, marked ``preview: true`` and with
the ``edge explain`` trace of the decision; nothing it sends is stored
(docs/configuration.md, "Previews"). The decision is pure and lives here;
the connection's side is ``edge.tracker.preview``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.site import Site
from edge.decisioning.attributes import Page
from edge.decisioning.campaigns import Campaign
from edge.decisioning.engine import Decision, Decisions, decide
from edge.errors import PreviewRefused

PREFIX = "edge-preview-v1"
PARAM = "edge_preview"  # the query parameter of a preview link
DEFAULT_TTL_MIN = 30
MAX_TTL_MIN = 240
CLOCK_SKEW_S = 300  # a token may be this much older than its own lifetime says
MAX_TOKEN_CHARS = 300
PREVIEW_CODE = "PREVIEW"  # the code a coupon form reveals in a preview: never a real one
NOT_CHECKED = "status, trigger, schedule, audience, frequency, pop-up caps and placement priority"
_TOKEN = re.compile(
    r"^([a-z0-9][a-z0-9_-]{0,62})\.([a-z0-9][a-z0-9_-]{0,62})\.([a-z0-9][a-z0-9_-]{0,31}|-)"
    r"\.([0-9]{1,3}|-)\.([0-9]{1,12})\.([0-9a-f]{64})$"
)
PAGE_TRIGGER = {"type": "page_view", "value": True}


@dataclass(frozen=True, slots=True)
class Grant:
    """What a preview token allows: this campaign (this variant, this step;
    None: the first) on this site, until ``expires`` (Unix seconds)."""

    site: str
    campaign: str
    variant: str | None
    step: int | None  # counted from 0, as in decisions
    expires: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "variant": self.variant,
            "step": self.step,
            "expires": self.expires,
        }


# --- tokens ---------------------------------------------------------------------


def _fields(grant: Grant) -> list[str]:
    step = "-" if grant.step is None else str(grant.step)
    return [grant.site, grant.campaign, grant.variant or "-", step, str(grant.expires)]


def signature(secret: bytes, grant: Grant) -> str:
    message = "|".join([PREFIX, *_fields(grant)]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, grant: Grant) -> str:
    """The token of ``grant`` (see the module docstring)."""
    return ".".join([*_fields(grant), signature(secret, grant)])


def verify(token: str, secret: bytes | None, site: str, now: float) -> Grant:
    """The grant of a genuine, unexpired token for ``site``; ``PreviewRefused``
    saying why not. The signature is checked first: a forged token learns
    nothing else."""
    if secret is None:
        raise PreviewRefused("previews are off on this server (no admin token is set)")
    found = _TOKEN.match(token) if len(token) <= MAX_TOKEN_CHARS else None
    if found is None:
        raise PreviewRefused("malformed preview token")
    site_id, campaign, variant, step, expires, sig = found.groups()
    grant = Grant(
        site_id,
        campaign,
        None if variant == "-" else variant,
        None if step == "-" else int(step),
        int(expires),
    )
    if not hmac.compare_digest(signature(secret, grant), sig):
        raise PreviewRefused("preview token signature does not match")
    if grant.site != site:
        raise PreviewRefused(f"preview token is for site {grant.site!r}, not {site!r}")
    if now >= grant.expires:
        minutes = (now - grant.expires) / 60
        raise PreviewRefused(f"preview token expired {minutes:.0f} min ago")
    if grant.expires - now > MAX_TTL_MIN * 60 + CLOCK_SKEW_S:
        raise PreviewRefused(f"preview token lasts longer than {MAX_TTL_MIN} min")
    return grant


def refusal(grant: Grant, site: Site) -> str | None:
    """Why ``grant`` cannot be shown on ``site`` as configured now, or None."""
    campaign = site.decisioning.by_id.get(grant.campaign)
    if campaign is None:
        return f"campaign {grant.campaign!r} is not in site {site.id}'s configuration"
    ids = [v.id for v in campaign.variants]
    if grant.variant is not None and grant.variant not in ids:
        return f"campaign {campaign.id} has no variant {grant.variant!r} (it has {', '.join(ids)})"
    steps = len(campaign.steps)
    if grant.step is not None and not 0 <= grant.step < steps:
        return f"campaign {campaign.id} has {steps} step{'s' if steps > 1 else ''}"
    return None


def mint(
    secret: bytes,
    site: Site,
    campaign: str,
    *,
    now: float,
    variant: str | None = None,
    step: int | None = None,
    ttl_min: float = DEFAULT_TTL_MIN,
) -> tuple[Grant, str]:
    """A grant and its token; ``ValueError`` for a campaign, variant or step
    the site does not have, or a lifetime out of (0, ``MAX_TTL_MIN``]."""
    if not 0 < ttl_min <= MAX_TTL_MIN:
        raise ValueError(f"a preview lasts more than 0 and at most {MAX_TTL_MIN} minutes")
    grant = Grant(site.id, campaign, variant, step, int(now + ttl_min * 60))
    problem = refusal(grant, site)
    if problem is not None:
        raise ValueError(problem)
    return grant, sign(secret, grant)


# --- links -------------------------------------------------------------------------


def page_for(campaign: Campaign, site: Site, page: str | None = None) -> str:
    """The page a preview link of ``campaign`` opens: ``page``, else the
    campaign's ``preview_page``, else ``/``; a path is joined to the site's
    first allowed origin. ``ValueError`` when a path has no origin to go to."""
    target = page or campaign.preview_page or "/"
    if urlsplit(target).scheme in {"http", "https"}:
        return target
    if not target.startswith("/"):
        raise ValueError(f"{target!r} is neither a URL nor a path starting with /")
    origins = sorted(site.allowed_origins)
    if not origins:
        raise ValueError(
            f"site {site.id} lists no allowed_origins to open {target!r} on: give a full URL"
        )
    return origins[0] + target


def link(page: str, token: str) -> str:
    """``page`` with ``edge_preview=<token>`` (replacing one it had)."""
    parts = urlsplit(page)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != PARAM]
    query.append((PARAM, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- the decision -------------------------------------------------------------------


def forced(campaign: Campaign, grant: Grant) -> Decision:
    """The decision a preview shows: the granted arm (else the first) and
    step (else the first), in the campaign's placement, shown at once."""
    variant = grant.variant or campaign.variants[0].id
    step = grant.step or 0
    why = f"preview of variant {variant}"
    if len(campaign.steps) > 1:
        why += f", step {step + 1} of {len(campaign.steps)}"
    widget = campaign.widget_for(variant, step)
    return Decision(campaign.id, variant, campaign.placement, PAGE_TRIGGER, widget, step, why)


def as_live(site: Site, campaign: Campaign) -> Site:
    """``site`` with ``campaign`` among the active ones (as if it went live),
    in its place by priority and file order."""
    decisioning = site.decisioning
    if campaign.status == "active":
        return site
    order = {cid: index for index, cid in enumerate(decisioning.by_id)}
    active = sorted(
        (*decisioning.campaigns, replace(campaign, status="active")),
        key=lambda c: (-c.priority, order[c.id]),
    )
    return replace(site, decisioning=replace(decisioning, campaigns=tuple(active)))


def decide_preview(
    grant: Grant,
    profile: Profile | None,
    ctx: VisitContext,
    site: Site,
    now: float,
    *,
    triggers: tuple[str, ...] = ("page_view",),
    page: Page | None = None,
    device: Mapping[str, Any] | None = None,
    unavailable: frozenset[str] = frozenset(),
    events: Mapping[str, Mapping[str, Any]] | None = None,
) -> Decisions:
    """What a preview tab is shown, and the trace of why: the granted
    campaign first, in its placement whatever the engine would say; then
    what the engine decides for the visitor (its copy of the profile) with
    that campaign live, except what the preview's placement already holds.
    The trace says what was forced, what the campaign would meet live, then
    every other campaign, as ``edge explain`` does. ``events``: the
    ``event.*`` attributes of each ``event:<name>`` trigger (the props of the
    custom event that asked, as the ordinary path reads them). Pure."""
    campaign = site.decisioning.by_id[grant.campaign]
    shown = forced(campaign, grant)
    live_site = as_live(site, campaign)
    trace = [
        f"preview: campaign {campaign.id} shown in {campaign.placement} ({shown.why}); "
        f"not checked: {NOT_CHECKED}"
    ]
    if campaign.status != "active":
        trace.append(f"campaign {campaign.id}: status {campaign.status}: shown to no one else")
    items = [shown]
    for trigger in triggers:
        decided = decide(
            profile,
            ctx,
            live_site,
            now,
            trigger=trigger,
            page=page or Page(url=ctx.url),
            device=device,
            unavailable=unavailable,
            explain=True,
            event=(events or {}).get(trigger),
        )
        taken = {d.campaign for d in decided.items if _displaced(d, shown)}
        label = "live" if campaign.status == "active" else "if it were live"
        head = "" if trigger == "page_view" else f"on {trigger}: "
        for line in decided.trace:
            cid = line.split(":", 1)[0].removeprefix("campaign ")
            if cid == campaign.id:
                line = f"campaign {cid}, {label}:{line.split(':', 1)[1]}"
            elif cid in taken:
                line = f"{line}; the preview takes {shown.placement}: not shown"
            trace.append(head + line)
        seen = {d.campaign for d in items}
        items += [d for d in decided.items if d.campaign not in seen | taken]
    return Decisions(tuple(items), tuple(trace), None)


def _displaced(decision: Decision, shown: Decision) -> bool:
    """A live decision the preview pushes out: the campaign itself, or one
    in the preview's placement (a holdout takes no placement: it stays)."""
    if decision.campaign == shown.campaign:
        return True
    return decision.placement == shown.placement and not decision.holdout
