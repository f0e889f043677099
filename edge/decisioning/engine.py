"""The decision engine: what this visitor should see now, and why.

``decide(profile, context, site, now, ...)`` is pure and synchronous: no I/O,
no clock, no mutation. It walks the site's active campaigns from the highest
priority down and, for each, checks in order of cost: is its placement still
free, does its trigger fit, is it in schedule, is this visitor past its
frequency caps or the site's global pop-up caps, does the audience match.
The first campaign that passes takes its placement (at most one pop-up per
page view); an experiment then picks its arm by a stable hash of visitor and
campaign, and a visitor in the holdout is told so (the tracker records that
they *would have seen* it, so uplift can be measured) while the placement
stays free for the next campaign, as if this one did not exist.

Every decision carries a one-line reason; with ``explain=True`` the result
also traces every campaign that was passed over, and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.core.context import VisitContext
from edge.core.profile import CampaignState, Profile
from edge.core.site import Site
from edge.decisioning import attributes as attrs_
from edge.decisioning.attributes import Page
from edge.decisioning.campaigns import Campaign, Clause
from edge.decisioning.config import CapsConfig

DAY_S = 86400.0
NO_PAGE = Page()
PAGE_TRIGGER = "page_view"


@dataclass(frozen=True, slots=True)
class Decision:
    campaign: str
    variant: str  # the experiment arm, "holdout" for the holdout group
    placement: str
    trigger: dict[str, Any]
    widget: dict[str, Any] | None  # None for the holdout group
    step: int
    why: str

    @property
    def holdout(self) -> bool:
        return self.widget is None

    def to_wire(self) -> dict[str, Any]:
        """The decision as docs/protocol.md lists it (the widget's HTML is
        added by the renderer). Never the widget's configuration: coupon
        sources, pool files and template names are the marketer's, not the
        page's."""
        item = {
            "campaign": self.campaign,
            "variant": self.variant,
            "placement": self.placement,
            "trigger": self.trigger,
            "step": self.step,
            "why": self.why,
        }
        if self.widget is None:
            item["holdout"] = True
        return item


@dataclass(frozen=True, slots=True)
class Decisions:
    items: tuple[Decision, ...] = ()
    trace: tuple[str, ...] = ()  # explain mode only
    attributes: Mapping[str, Any] | None = None  # explain mode only

    def to_wire(self) -> list[dict[str, Any]]:
        return [d.to_wire() for d in self.items]


NOTHING = Decisions()


def decide(  # noqa: C901 - the hot loop is inlined on purpose (a call per campaign costs)
    profile: Profile | None,
    ctx: VisitContext,
    site: Site,
    now: float,
    *,
    trigger: str = PAGE_TRIGGER,
    page: Page = NO_PAGE,
    device: Mapping[str, Any] | None = None,
    explain: bool = False,
    unavailable: frozenset[str] = frozenset(),
    event: Mapping[str, Any] | None = None,
) -> Decisions:
    """Decide for one trigger: ``page_view`` (the page-level campaigns: shown on
    load, after a delay, on scroll, exit intent or inactivity) or ``event:<name>``.
    ``unavailable`` campaigns are passed over (their coupon pool is empty, or
    their block of the shopper's history has nothing in it). ``event``: the
    ``event.*`` attributes of the custom event an ``event:<name>`` decision
    is for (its declared props, ``edge.core.properties``)."""
    decisioning = site.decisioning
    if not decisioning.campaigns and not explain:
        return NOTHING
    roots = attrs_.ALL if explain else decisioning.roots
    attributes = attrs_.build(profile, ctx, site, now, page, device or {}, roots, later=not explain)
    if event is not None:
        attributes["event"] = event
    if "segments" in roots:
        attributes["segments"] = [sid for sid, test in decisioning.segments if test(attributes)]
    states = {s.id: s for s in profile.campaigns} if profile is not None else {}
    popup_block: list[str | None] = []  # computed once, when a pop-up first asks
    taken: dict[str, str] = {}
    tests = decisioning.clause_tests
    memo: list[bool | None] = [None] * len(tests)
    items: list[Decision] = []
    trace: list[str] = []
    for campaign in decisioning.campaigns:
        if campaign.placement in taken:
            if explain:
                trace.append(
                    f"campaign {campaign.id}: {campaign.placement} already taken by "
                    f"{taken[campaign.placement]}"
                )
            continue
        if unavailable and campaign.id in unavailable:
            if explain:
                trace.append(
                    f"campaign {campaign.id}: unavailable (no coupon codes to give, "
                    "or no product of the shopper's own to recommend)"
                )
            continue
        state = states.get(campaign.id)
        if campaign.plain and state is None and trigger == PAGE_TRIGGER and not explain:
            # The fast path: nothing but the audience can stop this campaign.
            # Each distinct audience entry is evaluated once per decision (memo).
            for slot in campaign.audience.slots:
                passed = memo[slot]
                if passed is None:
                    passed = memo[slot] = tests[slot](attributes)
                if not passed:
                    break
            else:
                passed = True
            if not passed:
                continue
        else:
            reason = _blocked(
                campaign,
                trigger,
                profile,
                state,
                site,
                now,
                decisioning.caps,
                popup_block,
                attributes,
                explain,
            )
            if reason is not None:
                if explain:
                    trace.append(f"campaign {campaign.id}: {reason}")
                continue
        unit = profile.visitor if profile is not None else ctx.visitor
        decision = _choose(campaign, unit, state, _step(campaign, state, profile))
        items.append(decision)
        if not decision.holdout:
            taken[campaign.placement] = campaign.id
        if explain:
            trace.append(f"campaign {campaign.id}: shown in {campaign.placement} ({decision.why})")
    return Decisions(tuple(items), tuple(trace), attributes if explain else None)


def _blocked(
    campaign: Campaign,
    trigger: str,
    profile: Profile | None,
    state: CampaignState | None,
    site: Site,
    now: float,
    caps: CapsConfig,
    popup_block: list[str | None],
    attributes: dict[str, Any],
    explain: bool,
) -> str | None:
    """Why ``campaign`` cannot be shown, or None. Cheap checks first; the
    reason is spelt out only when explaining (formatting it is most of the
    cost of a campaign that does not apply)."""
    mismatch = _trigger_mismatch(campaign, trigger)
    if mismatch:
        return mismatch
    if campaign.schedule is not None:
        closed = campaign.schedule.closed(now, site.timezone)
        if closed:
            return f"schedule: {closed}"
    if state is not None and profile is not None:
        if _step(campaign, state, profile) >= len(campaign.steps):
            return "finished: every step is done"
        capped = frequency_cap(campaign, state, profile, now)
        if capped:
            return f"frequency: {capped}"
    if campaign.is_popup:
        if not popup_block:
            popup_block.append(global_popup_cap(profile, caps, now))
        if popup_block[0]:
            return f"global cap: {popup_block[0]}"
    if campaign.audience.test(attributes):
        return None
    return _audience_reason(campaign, attributes) if explain else "audience"


def reveal_refusal(
    campaign: Campaign,
    profile: Profile | None,
    ctx: VisitContext,
    site: Site,
    now: float,
    page: Page = NO_PAGE,
    device: Mapping[str, Any] | None = None,
) -> str | None:
    """Why a coupon of ``campaign``, whose widget was offered to this visitor
    (``edge.core.offers``), may not be revealed now, or None: its schedule has
    closed, or the visitor is no longer in its audience. ``profile`` is the
    visitor as before the form was sent: sending it identifies them, and a
    first-order coupon's audience is "not identified". Frequency caps limit
    how often a widget is *shown*; the offer already passed them."""
    if campaign.schedule is not None:
        closed = campaign.schedule.closed(now, site.timezone)
        if closed:
            return f"schedule: {closed}"
    attributes = attrs_.build(profile, ctx, site, now, page, device or {})
    attributes["segments"] = [sid for sid, test in site.decisioning.segments if test(attributes)]
    if not campaign.audience.test(attributes):
        return _audience_reason(campaign, attributes)
    return None


def _trigger_mismatch(campaign: Campaign, trigger: str) -> str | None:
    wanted = campaign.event
    if wanted is None:
        return None if trigger == PAGE_TRIGGER else "not triggered by this event"
    return None if trigger == f"event:{wanted}" else f"waits for event {wanted!r}"


def _audience_reason(campaign: Campaign, attributes: Mapping[str, Any]) -> str:
    failed = campaign.audience.first_failure(attributes)
    return f"audience failed at {_describe(failed, attributes)}" if failed else "audience"


def frequency_cap(
    campaign: Campaign, state: CampaignState, profile: Profile, now: float
) -> str | None:
    f = campaign.frequency
    # A progressive campaign's steps say what follows a conversion; it stops
    # when its last step is done (see _step), not at the first conversion.
    if f.stop_after_conversion and state.conversions and len(campaign.steps) == 1:
        return "converted already"
    if f.stop_after_closes and state.closes >= f.stop_after_closes:
        pause = f.close_pause_days
        if pause is None:
            return f"closed {state.closes} times"
        if now - state.closed_at < pause * DAY_S:
            return f"closed {state.closes} times, paused for {pause:g} days"
    if f.per_visitor and state.impressions >= f.per_visitor:
        return f"shown {state.impressions} times (per_visitor {f.per_visitor})"
    session = profile.session
    if (
        f.per_session
        and session
        and state.session_at == session.started_at
        and (state.session_impressions >= f.per_session)
    ):
        return f"shown {state.session_impressions} times this visit (per_session {f.per_session})"
    if state.page == profile.pageviews and state.page_impressions >= f.per_page:
        return "already shown on this page"
    if f.per_days:
        since = now - f.per_days.days * DAY_S
        recent = sum(1 for t in state.recent if t > since)
        if recent >= f.per_days.max:
            return f"shown {recent} times in {f.per_days.days:g} days"
    if f.min_interval_s and now - state.last_at < f.min_interval_s:
        return f"shown {now - state.last_at:.0f}s ago (min_interval_s {f.min_interval_s:g})"
    return None


def global_popup_cap(profile: Profile | None, caps: CapsConfig, now: float) -> str | None:
    popups = profile.popups if profile is not None else ()
    if profile is not None and popups and profile.popup_page == profile.pageviews:
        return "a pop-up was already shown on this page"
    session = profile.session if profile is not None else None
    started = session.started_at if session is not None else now
    this_visit = sum(1 for t in popups if t >= started)
    if this_visit >= caps.popups_per_session:
        return f"{this_visit} pop-ups this visit (popups_per_session {caps.popups_per_session})"
    today = sum(1 for t in popups if t > now - DAY_S)
    if today >= caps.popups_per_day:
        return f"{today} pop-ups in 24 hours (popups_per_day {caps.popups_per_day})"
    return None


def _step(campaign: Campaign, state: CampaignState | None, profile: Profile | None) -> int:
    """The progressive step due now: the stored one, moved on by visits."""
    if state is None:
        return 0
    step = state.step
    visits = (profile.visits if profile else 0) - state.step_visit
    while step < len(campaign.steps):
        needed = campaign.steps[step].until_visits
        if not needed or visits < needed:
            break
        visits -= needed
        step += 1
    return step


def _choose(campaign: Campaign, unit: str, state: CampaignState | None, step: int) -> Decision:
    """The arm is the one this visitor was shown before (so signing in, which
    moves them to their customer profile, keeps their arm), else a stable
    hash of the profile id: one customer's devices share it."""
    arm = (
        campaign.arm(unit)
        if state is None or not state.variant
        else campaign.sticky(state.variant, unit)
    )
    trigger = campaign.trigger.to_wire()
    if arm is None:
        return Decision(
            campaign.id,
            "holdout",
            campaign.placement,
            trigger,
            None,
            step,
            f"holdout group ({campaign.holdout:.0%} of visitors)",
        )
    widget = arm.widget if arm.widget is not None else campaign.steps[step].widget
    why = "audience matched"
    if len(campaign.steps) > 1:
        why += f"; step {step + 1} of {len(campaign.steps)}"
    if len(campaign.variants) > 1:
        why += f"; variant {arm.id}"
    return Decision(campaign.id, arm.id, campaign.placement, trigger, widget, step, why)


def _describe(clause: Clause, attributes: Mapping[str, Any]) -> str:
    spec = clause.spec
    if clause.key.startswith("$"):
        return f"{clause.key} (no alternative matched)"
    if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
        wanted = ", ".join(f"{op} {_short(v)}" for op, v in spec.items())
    else:
        wanted = f"= {_short(spec)}"
    return f"{clause.key} ({wanted}, was {_short(_lookup(attributes, clause.key))})"


def _lookup(attributes: Mapping[str, Any], path: str) -> Any:
    value: Any = attributes
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if value is None:
        text = "missing"
    return text if len(text) <= 60 else text[:57] + "..."
