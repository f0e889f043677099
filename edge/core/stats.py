"""Campaign statistics, added up across every node.

Per campaign, arm (variant, or ``holdout``) and day in the site's time zone,
two kinds of figures (docs/statistics.md):

* Activity, on the day it happened: ``impressions``, ``clicks``, ``closes``
  and ``conversions`` (the widget's own goal: a form sent, a click-through
  marked as conversion).
* The experiment's cohort, on the day of each visitor's *first exposure* (their
  first impression; for a holdout visitor the tracker's report of what they
  would have seen): ``visitors`` (one per visitor), and of them the ones who
  ``clicked``, ``converted`` and ``purchased`` within the campaign's
  attribution window (``experiment.attribution_days``, 7 by default) after
  that exposure, each at most once per visitor, plus the ``orders`` and
  ``revenue`` of their purchases in the window, all credited to the arm they
  saw. Outcomes go to the exposure's day, not their own, so the visitors of
  any run of days and their outcomes are the same people; a visitor whose
  state predates ``CampaignState.first_at`` adds no outcomes.

``stat_updates`` is pure and, like ``signal_updates``, derives the counts from
one applied event, so replayed events add nothing. It is fed the events as
they were stored (``Ledger.on_stored``), each against the profile the store
held before it, not as a process first applied them on its own copy: the
profile's campaign state is the single source of truth. A ``convert`` counts
once per visitor, campaign and step (``CampaignState.converted_step``): the
same visitor converting in a second tab, or through a second server process,
changes nothing there and counts nothing (issue 16: 7 conversions for 6
visitors). Robots are never profiled, so they count nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from edge.core import events as p
from edge.core.profile import CampaignState, Profile
from edge.decisioning.campaigns import Campaign
from edge.decisioning.config import DEFAULT_ATTRIBUTION_DAYS

FIELDS = (
    "impressions",
    "visitors",
    "clicks",
    "closes",
    "conversions",
    "clicked",
    "converted",
    "purchased",
    "orders",
    "revenue",
)
_ACTION_FIELD = {
    "impression": "impressions",
    "click": "clicks",
    "close": "closes",
    "convert": "conversions",
}
# action -> (the visitor's counter in CampaignState, the field of its first time)
_FIRST = {"click": ("clicks", "clicked"), "convert": ("conversions", "converted")}
_NO_CAMPAIGNS: Mapping[str, Campaign] = {}


@dataclass(frozen=True, slots=True)
class StatUpdate:
    campaign: str
    arm: str
    field: str
    day: str  # YYYY-MM-DD in the site's time zone
    amount: float = 1.0


def day_of(now: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(now, tz).date().isoformat()


def window_s(campaigns: Mapping[str, Campaign], campaign: str) -> float:
    """The campaign's attribution window in seconds (the default for a
    campaign no longer configured)."""
    found = campaigns.get(campaign)
    return (found.attribution_days if found else DEFAULT_ATTRIBUTION_DAYS) * 86400


def _within(state: CampaignState, now: float, window: float) -> bool:
    """Within the window after the visitor's first exposure (none recorded: no)."""
    return state.first_at > 0 and now - state.first_at <= window


def stat_updates(
    before: Profile | None,
    after: Profile,
    event: p.Event,
    tz: ZoneInfo,
    now: float,
    campaigns: Mapping[str, Campaign] = _NO_CAMPAIGNS,
) -> list[StatUpdate]:
    """The statistics of one stored event; ``campaigns``: the site's
    (``Decisioning.by_id``), for their attribution windows."""
    if isinstance(event, p.Widget):
        return _widget(before, after, event, tz, now, campaigns)
    if isinstance(event, p.Purchase) and before is not None and after.orders > before.orders:
        return _purchase(before, after, event, tz, now, campaigns)
    return []


def _widget(
    before: Profile | None,
    after: Profile,
    event: p.Widget,
    tz: ZoneInfo,
    now: float,
    campaigns: Mapping[str, Campaign],
) -> list[StatUpdate]:
    old = before.campaign(event.campaign) if before is not None else None
    state = after.campaign(event.campaign)
    if state is None or state == old:  # not believed (edge.core.offers): not counted
        return []
    arm = event.variant or "a"
    updates = [StatUpdate(event.campaign, arm, _ACTION_FIELD[event.action], day_of(now, tz))]
    if event.action == "impression" and (old is None or old.impressions == 0):
        updates.append(StatUpdate(event.campaign, arm, "visitors", day_of(state.first_at, tz)))
    first = _FIRST.get(event.action)
    if (
        first is not None
        and (old is None or getattr(old, first[0]) == 0)  # the visitor's first
        and _within(state, now, window_s(campaigns, event.campaign))
    ):
        updates.append(StatUpdate(event.campaign, arm, first[1], day_of(state.first_at, tz)))
    return updates


def _purchase(
    before: Profile,
    after: Profile,
    event: p.Purchase,
    tz: ZoneInfo,
    now: float,
    campaigns: Mapping[str, Campaign],
) -> list[StatUpdate]:
    """The order, for every campaign whose window it falls in; ``purchased``
    when it is the visitor's first order since that exposure."""
    updates = []
    previous = before.last_order_at
    for state in after.campaigns:
        if not (state.impressions and state.variant):
            continue
        if not _within(state, now, window_s(campaigns, state.id)):
            continue
        cohort = day_of(state.first_at, tz)
        updates.append(StatUpdate(state.id, state.variant, "orders", cohort))
        updates.append(StatUpdate(state.id, state.variant, "revenue", cohort, event.value))
        if previous is None or previous < state.first_at:
            updates.append(StatUpdate(state.id, state.variant, "purchased", cohort))
    return updates


Table = dict[str, dict[str, dict[str, float]]]  # day -> arm -> field -> value
