"""Tests for the decision engine (edge.decisioning.engine.decide).

Sites are real folders loaded with ``load_site``; profiles are built by the
real event fold (``edge.core.updates.apply``) from parsed protocol events, so every
test goes through the same path as production: events -> profile -> decide.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.config.sites import Site, load_site
from edge.core import offers
from edge.core.context import VisitContext
from edge.core.profile import Profile
from edge.core.updates import apply, new_profile
from edge.decisioning.attributes import Page
from edge.decisioning.engine import Decision, Decisions, decide
from edge.errors import ConfigError
from edge.tracker.protocol import parse_event

TZ = ZoneInfo("Europe/Warsaw")
SHOP = "https://shop.example"
VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
TAB = "f00d0a9b2d3e4f5061728394a5b6c717"
# Wednesday 12 March 2025, noon in Warsaw (CET, UTC+1).
T0 = datetime(2025, 3, 12, 12, 0, tzinfo=TZ).timestamp()
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
DEMO = Path(__file__).resolve().parents[2] / "profiles" / "demo"

BAR = "    widget: {kind: bar, headline: {en: hi}}\n"


def warsaw(*args: int) -> float:
    """A wall-clock time in the site's time zone as a timestamp."""
    return datetime(*args, tzinfo=TZ).timestamp()  # type: ignore[misc]


def make_site(
    tmp_path: Path,
    campaigns: str,
    *,
    segments: str | None = None,
    name: str = "shop",
) -> Site:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "site.yaml").write_text(
        f"site: {{id: {name}, timezone: Europe/Warsaw, allowed_origins: ['{SHOP}']}}\n"
    )
    (folder / "campaigns.yaml").write_text(textwrap.dedent(campaigns))
    if segments is not None:
        (folder / "segments.yaml").write_text(textwrap.dedent(segments))
    return load_site(folder)


class Browser:
    """One visitor in one tab: sends events through ``apply``, asks ``decide``."""

    def __init__(
        self, site: Site, *, visitor: str = VISITOR, tab: str = TAB, now: float = T0
    ) -> None:
        self.site = site
        self.profile: Profile | None = None
        self.ctx = VisitContext(visitor=visitor, session=tab, url=f"{SHOP}/")
        self.now = now
        self.seq = 0
        self.url = f"{SHOP}/"

    def send(self, kind: str, **fields: Any) -> None:
        self.seq += 1
        raw = {"seq": self.seq, "id": f"{self.ctx.session[:8]}-{self.seq:06d}", "type": kind}
        event = parse_event({**raw, **fields})
        self.profile = apply(self.profile, event, self.ctx, self.site, self.now)

    def later(self, seconds: float) -> Browser:
        self.now += seconds
        return self

    def view(self, path: str = "/", *, referrer: str | None = None, after: float = 10.0) -> None:
        self.now += after
        self.url = path if path.startswith("http") else f"{SHOP}{path}"
        self.send("page_view", url=self.url, referrer=referrer)

    def widget(self, campaign: str, action: str, *, variant: str = "a", step: int = 0) -> None:
        """A widget event; the server decided to show that widget before
        (only then does the tracker report it, edge.core.offers)."""
        profile = self.profile or new_profile(self.ctx.visitor, self.now)
        self.profile = offers.record(profile, [(campaign, variant, step)], self.now, 20)
        self.send(
            "widget", campaign=campaign, variant=variant, action=action, step=step, url=self.url
        )

    def show(self, decision: Decision) -> None:
        """What the tracker does with a decision it displays."""
        self.widget(decision.campaign, "impression", variant=decision.variant, step=decision.step)

    def decide(self, trigger: str = "page_view", *, explain: bool = True) -> Decisions:
        return decide(
            self.profile,
            self.ctx,
            self.site,
            self.now,
            trigger=trigger,
            page=Page(url=self.url),
            explain=explain,
        )

    def shown(self, trigger: str = "page_view") -> list[str]:
        return [d.campaign for d in self.decide(trigger).items]

    def get(self, campaign: str, trigger: str = "page_view") -> Decision | None:
        return next((d for d in self.decide(trigger).items if d.campaign == campaign), None)

    def why_not(self, campaign: str, trigger: str = "page_view") -> str:
        prefix = f"campaign {campaign}: "
        lines = [t for t in self.decide(trigger).trace if t.startswith(prefix)]
        assert len(lines) == 1, lines
        return lines[0].removeprefix(prefix)


def one(campaign_id: str, body: str = "", *, placement: str = "bar", priority: int = 0) -> str:
    """A campaign list entry (indented for a top-level ``campaigns:`` list)."""
    lines = [f"  - id: {campaign_id}", f"    placement: {placement}", f"    priority: {priority}"]
    lines += [f"    {line}" for line in textwrap.dedent(body).splitlines() if line.strip()]
    return "\n".join(lines) + "\n" + BAR


def campaigns(*entries: str, caps: str = "") -> str:
    return "campaigns:\n" + "".join(entries) + caps


# --- audience -----------------------------------------------------------------------


def test_audience_passes_once_the_attribute_matches(tmp_path: Path) -> None:
    site = make_site(
        tmp_path, campaigns(one("engaged", "audience: {session.pageviews: {$gte: 3}}"))
    )
    browser = Browser(site)
    browser.view("/")
    assert browser.shown() == []
    assert browser.why_not("engaged") == "audience failed at session.pageviews ($gte 3, was 1)"
    browser.view("/a")
    browser.view("/b")
    assert browser.shown() == ["engaged"]
    decision = browser.decide().items[0]
    assert decision.why == "audience matched"
    assert decision.widget == {"kind": "bar", "headline": {"en": "hi"}}
    assert "campaign engaged: shown in bar (audience matched)" in browser.decide().trace


def test_audience_trace_names_the_first_failing_clause_and_literal_values(tmp_path: Path) -> None:
    body = """\
        audience:
          session.pageviews: {$gte: 1}
          visitor.level: claimed
          cart.items: {$gte: 1, $lt: 10}
    """
    site = make_site(tmp_path, campaigns(one("c", body)))
    browser = Browser(site)
    browser.view("/")
    assert browser.why_not("c") == "audience failed at visitor.level (= 'claimed', was 'anonymous')"
    browser.send("identify", email="ann@example.com")
    assert browser.why_not("c") == "audience failed at cart.items ($gte 1, $lt 10, was 0)"
    browser.send("cart", items=[{"sku": "x", "qty": 2}], value=10, currency="EUR")
    assert browser.shown() == ["c"]


def test_audience_trace_says_missing_for_an_absent_attribute(tmp_path: Path) -> None:
    site = make_site(tmp_path, campaigns(one("c", "audience: {session.campaign: spring}")))
    browser = Browser(site)
    browser.view("/")
    assert browser.why_not("c") == "audience failed at session.campaign (= 'spring', was missing)"
    browser.view("/?utm_source=news&utm_medium=email&utm_campaign=spring")
    assert browser.shown() == ["c"]


# --- priority and placements --------------------------------------------------------


def test_one_campaign_per_placement_in_priority_order(tmp_path: Path) -> None:
    config = campaigns(
        one("low-popup", placement="popup", priority=10),
        one("bar-slot", placement="bar", priority=5),
        one("high-popup", placement="popup", priority=20),
        one("low-bar", placement="bar", priority=1),
    )
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    decisions = browser.decide()
    assert [(d.campaign, d.placement) for d in decisions.items] == [
        ("high-popup", "popup"),
        ("bar-slot", "bar"),
    ]
    assert browser.why_not("low-popup") == "popup already taken by high-popup"
    assert browser.why_not("low-bar") == "bar already taken by bar-slot"


def test_a_higher_priority_campaign_that_does_not_apply_leaves_the_slot(tmp_path: Path) -> None:
    config = campaigns(
        one("high", "audience: {visitor.identified: true}", placement="popup", priority=20),
        one("low", placement="popup", priority=10),
    )
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    assert browser.shown() == ["low"]


def test_paused_and_draft_campaigns_are_never_decided(tmp_path: Path) -> None:
    config = campaigns(
        one("paused", "status: paused", priority=3),
        one("draft", "status: draft", priority=2, placement="popup"),
        one("live", priority=1),
    )
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    assert browser.shown() == ["live"]


# --- the global pop-up caps ---------------------------------------------------------


def test_at_most_one_popup_per_page_view_across_messages(tmp_path: Path) -> None:
    config = campaigns(
        one("first", placement="popup", priority=20),
        one("second", "trigger: {exit_intent: true}", placement="popup", priority=10),
        one("bar", placement="bar"),
    )
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    decision = browser.get("first")
    assert decision is not None
    browser.show(decision)
    # The same page asks again (e.g. a later message): "first" is capped per page,
    # and "second" is a different campaign but still a second pop-up on this page.
    assert browser.shown() == ["bar"]
    assert browser.why_not("second") == "global cap: a pop-up was already shown on this page"
    browser.view("/next")
    assert browser.shown() == ["first", "bar"]


def test_a_non_popup_impression_does_not_use_the_popup_allowance(tmp_path: Path) -> None:
    config = campaigns(one("pop", placement="popup"), one("bar", placement="bar"))
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    bar = browser.get("bar")
    assert bar is not None
    browser.show(bar)
    assert browser.shown() == ["pop"]


def test_popups_per_session_cap(tmp_path: Path) -> None:
    config = campaigns(
        one("pop", placement="popup"), caps="caps: {popups_per_session: 2, popups_per_day: 10}\n"
    )
    browser = Browser(make_site(tmp_path, config))
    for path in ("/1", "/2"):
        browser.view(path)
        decision = browser.get("pop")
        assert decision is not None, path
        browser.show(decision)
    browser.view("/3")
    assert browser.shown() == []
    assert browser.why_not("pop") == "global cap: 2 pop-ups this visit (popups_per_session 2)"
    browser.view("/4", after=31 * MINUTE)  # a new visit
    assert browser.shown() == ["pop"]


def test_popups_per_day_cap(tmp_path: Path) -> None:
    config = campaigns(
        one("pop", placement="popup"), caps="caps: {popups_per_session: 5, popups_per_day: 2}\n"
    )
    browser = Browser(make_site(tmp_path, config))
    for visit in range(2):
        browser.view(f"/visit-{visit}", after=2 * HOUR)
        decision = browser.get("pop")
        assert decision is not None
        browser.show(decision)
    browser.view("/third-visit", after=2 * HOUR)
    assert browser.why_not("pop") == "global cap: 2 pop-ups in 24 hours (popups_per_day 2)"
    browser.view("/next-day", after=20 * HOUR)  # the first impression is now 24h+ old
    assert browser.shown() == ["pop"]


def test_popups_per_session_zero_means_no_popups(tmp_path: Path) -> None:
    config = campaigns(
        one("pop", placement="popup"), caps="caps: {popups_per_session: 0, popups_per_day: 3}\n"
    )
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    assert browser.shown() == []


# --- frequency ------------------------------------------------------------------------


def test_per_page_default_is_one_impression_per_page(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c"))))
    browser.view("/")
    browser.widget("c", "impression")
    assert browser.shown() == []
    assert browser.why_not("c") == "frequency: already shown on this page"
    browser.view("/next")
    assert browser.shown() == ["c"]


def test_per_page_two(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c", "frequency: {per_page: 2}"))))
    browser.view("/")
    browser.widget("c", "impression")
    assert browser.shown() == ["c"]
    browser.widget("c", "impression")
    assert browser.shown() == []


def test_per_session_resets_in_a_new_visit(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c", "frequency: {per_session: 1}"))))
    browser.view("/")
    browser.widget("c", "impression")
    browser.view("/next", after=29 * MINUTE)  # still the same visit
    assert browser.why_not("c") == "frequency: shown 1 times this visit (per_session 1)"
    browser.view("/back", after=31 * MINUTE)  # 30+ minutes of inactivity: a new visit
    assert browser.profile is not None and browser.profile.visits == 2
    assert browser.shown() == ["c"]


def test_per_visitor(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c", "frequency: {per_visitor: 2}"))))
    for _ in range(2):
        browser.view("/", after=DAY)
        assert browser.shown() == ["c"]
        browser.widget("c", "impression")
    browser.view("/", after=365 * DAY)
    assert browser.why_not("c") == "frequency: shown 2 times (per_visitor 2)"


def test_per_days_window(tmp_path: Path) -> None:
    body = "frequency: {per_days: {max: 2, days: 7}}"
    browser = Browser(make_site(tmp_path, campaigns(one("c", body))))
    browser.view("/a")
    browser.widget("c", "impression")
    browser.view("/b", after=DAY)
    browser.widget("c", "impression")
    browser.view("/c", after=5 * DAY)  # 6 days after the first impression
    assert browser.why_not("c") == "frequency: shown 2 times in 7 days"
    browser.view("/d", after=DAY + MINUTE)  # the first impression left the window
    assert browser.shown() == ["c"]


def test_per_days_counts_the_last_20_impressions(tmp_path: Path) -> None:
    """docs/configuration.md, Frequency: the profile keeps the last 20
    impression times (issue 14, item 7: the docs said 10), and a larger
    ``per_days.max`` is refused at load."""
    body = "frequency: {per_days: {max: 20, days: 7}}"
    browser = Browser(make_site(tmp_path, campaigns(one("c", body))))
    for n in range(20):
        browser.view(f"/p{n}", after=MINUTE)
        assert browser.shown() == ["c"]
        browser.widget("c", "impression")
    browser.view("/p20", after=MINUTE)
    assert browser.why_not("c") == "frequency: shown 20 times in 7 days"
    too_many = campaigns(one("c", "frequency: {per_days: {max: 21, days: 7}}"))
    with pytest.raises(ConfigError, match=r"per_days\.max"):
        make_site(tmp_path, too_many, name="more")


def test_min_interval(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c", "frequency: {min_interval_s: 600}"))))
    browser.view("/")
    browser.widget("c", "impression")
    browser.view("/next", after=60)
    assert browser.why_not("c") == "frequency: shown 60s ago (min_interval_s 600)"
    browser.view("/later", after=541)
    assert browser.shown() == ["c"]


def test_stop_after_conversion(tmp_path: Path) -> None:
    config = campaigns(
        one("stops", priority=2),
        one("goes-on", "frequency: {stop_after_conversion: false}", placement="other"),
    )
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    browser.widget("stops", "impression")
    browser.widget("stops", "convert")
    browser.widget("goes-on", "impression")
    browser.widget("goes-on", "convert")
    browser.view("/next", after=DAY)
    assert browser.shown() == ["goes-on"]
    assert browser.why_not("stops") == "frequency: converted already"


def test_clicks_alone_do_not_cap(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c", "frequency: {stop_after_closes: 1}"))))
    browser.view("/")
    browser.widget("c", "impression")
    browser.widget("c", "click")
    browser.view("/next")
    assert browser.shown() == ["c"]


def test_stop_after_closes_with_a_pause(tmp_path: Path) -> None:
    body = "frequency: {stop_after_closes: 2, close_pause_days: 7}"
    browser = Browser(make_site(tmp_path, campaigns(one("c", body))))
    browser.view("/")
    browser.widget("c", "impression")
    browser.widget("c", "close")
    browser.view("/2")
    assert browser.shown() == ["c"]  # one close is not enough
    browser.widget("c", "impression")
    browser.widget("c", "close")
    browser.view("/3", after=6 * DAY)
    assert browser.why_not("c") == "frequency: closed 2 times, paused for 7 days"
    browser.view("/4", after=DAY)  # 7 days and 20 s after the second close
    assert browser.shown() == ["c"]


def test_stop_after_closes_without_a_pause_stops_for_good(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c", "frequency: {stop_after_closes: 1}"))))
    browser.view("/")
    browser.widget("c", "impression")
    browser.widget("c", "close")
    browser.view("/", after=3650 * DAY)
    assert browser.why_not("c") == "frequency: closed 1 times"


# --- schedule (in the site's time zone) ---------------------------------------------


def decided_at(site: Site, now: float) -> tuple[list[str], str]:
    browser = Browser(site, now=now - 10)
    browser.view("/")  # at exactly ``now``
    return browser.shown(), browser.why_not("s") if not browser.shown() else ""


def test_schedule_start_and_end_are_site_local(tmp_path: Path) -> None:
    body = "schedule: {start: 2025-03-12T10:00:00, end: 2025-03-14T00:00:00}"
    site = make_site(tmp_path, campaigns(one("s", body)))
    assert decided_at(site, warsaw(2025, 3, 12, 9, 59, 59)) == ([], "schedule: before its start")
    # 10:00 in Warsaw is 09:00 UTC: a start read as UTC would still be closed here.
    assert decided_at(site, warsaw(2025, 3, 12, 10, 0)) == (["s"], "")
    assert decided_at(site, warsaw(2025, 3, 13, 23, 59, 59)) == (["s"], "")
    assert decided_at(site, warsaw(2025, 3, 14, 0, 0)) == ([], "schedule: after its end")


def test_schedule_with_explicit_offsets(tmp_path: Path) -> None:
    body = "schedule: {start: '2025-03-12T10:00:00+00:00', end: '2025-03-12T12:00:00+00:00'}"
    site = make_site(tmp_path, campaigns(one("s", body)))
    assert decided_at(site, warsaw(2025, 3, 12, 10, 30))[0] == []  # 09:30 UTC
    assert decided_at(site, warsaw(2025, 3, 12, 11, 0))[0] == ["s"]  # 10:00 UTC
    assert decided_at(site, warsaw(2025, 3, 12, 13, 0))[0] == []  # 12:00 UTC


def test_schedule_weekdays_in_the_site_time_zone(tmp_path: Path) -> None:
    site = make_site(tmp_path, campaigns(one("s", "schedule: {weekdays: [sat, sun]}")))
    # Saturday 00:30 in Warsaw is still Friday 23:30 in UTC.
    assert decided_at(site, warsaw(2025, 3, 15, 0, 30)) == (["s"], "")
    assert decided_at(site, warsaw(2025, 3, 14, 23, 30)) == ([], "schedule: not on fri")
    assert decided_at(site, warsaw(2025, 3, 16, 23, 59)) == (["s"], "")
    assert decided_at(site, warsaw(2025, 3, 17, 0, 0)) == ([], "schedule: not on mon")


def test_schedule_hours_in_the_site_time_zone(tmp_path: Path) -> None:
    site = make_site(tmp_path, campaigns(one("s", "schedule: {hours: [9, 17]}")))
    closed = "schedule: outside hours 9-17 (now 8h)"
    assert decided_at(site, warsaw(2025, 3, 12, 8, 59, 59)) == ([], closed)
    assert decided_at(site, warsaw(2025, 3, 12, 9, 0)) == (["s"], "")
    assert decided_at(site, warsaw(2025, 3, 12, 16, 59)) == (["s"], "")
    assert decided_at(site, warsaw(2025, 3, 12, 17, 0)) == (
        [],
        "schedule: outside hours 9-17 (now 17h)",
    )
    # Summer time (UTC+2): 09:00 in Warsaw is 07:00 UTC.
    assert decided_at(site, warsaw(2025, 7, 1, 9, 0)) == (["s"], "")
    assert decided_at(site, warsaw(2025, 7, 1, 17, 30))[0] == []


# --- triggers ---------------------------------------------------------------------


def test_event_triggered_campaign_waits_for_its_event(tmp_path: Path) -> None:
    config = campaigns(
        one("signup", "trigger: {event: signup_view}", placement="popup", priority=10),
        one("page", placement="bar"),
    )
    browser = Browser(make_site(tmp_path, config))
    browser.view("/")
    browser.send("custom", name="signup_view")
    assert browser.shown() == ["page"]
    assert browser.why_not("signup") == "waits for event 'signup_view'"
    assert browser.shown("event:signup_view") == ["signup"]
    assert browser.why_not("page", "event:signup_view") == "not triggered by this event"
    assert browser.shown("event:other") == []
    decision = browser.get("signup", "event:signup_view")
    assert decision is not None
    assert decision.trigger == {"type": "event", "value": "signup_view"}


@pytest.mark.parametrize(
    ("trigger", "wire"),
    [
        ("{exit_intent: true}", {"type": "exit_intent", "value": True}),
        ("{delay_s: 4}", {"type": "delay_s", "value": 4}),
        ("{scroll_pct: 50}", {"type": "scroll_pct", "value": 50}),
        ("{inactivity_s: 30}", {"type": "inactivity_s", "value": 30}),
        ("{page_view: true}", {"type": "page_view", "value": True}),
    ],
)
def test_trigger_wire_form(tmp_path: Path, trigger: str, wire: dict[str, Any]) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c", f"trigger: {trigger}"))))
    browser.view("/")
    decisions = browser.decide()
    assert [d.trigger for d in decisions.items] == [wire]
    assert decisions.to_wire()[0]["trigger"] == wire


def test_default_trigger_is_page_view(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, campaigns(one("c"))))
    browser.view("/")
    assert browser.decide().to_wire() == [
        {
            "campaign": "c",
            "variant": "a",
            "placement": "bar",
            "trigger": {"type": "page_view", "value": True},
            "step": 0,
            "why": "audience matched",
        }
    ]
    # the widget's configuration stays on the server (issue 12, item 6)
    assert browser.decide().items[0].widget == {"kind": "bar", "headline": {"en": "hi"}}


# --- progressive campaigns --------------------------------------------------------

PROGRESSIVE = """\
campaigns:
  - id: steps
    placement: bar
    frequency: {stop_after_conversion: false}
    progressive:
      - until: close
        widget: {kind: bar, headline: {en: invite}}
      - until: conversion  # a widget with a form: a bar could never convert
        widget: {kind: coupon, headline: {en: incentive}, coupon: {source: generated, prefix: NEWS}}
"""


def test_progressive_until_close_then_until_conversion(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, PROGRESSIVE))
    browser.view("/")
    first = browser.get("steps")
    assert first is not None
    assert (first.step, first.widget, first.why) == (
        0,
        {"kind": "bar", "headline": {"en": "invite"}},
        "audience matched; step 1 of 2",
    )
    browser.show(first)
    browser.widget("steps", "click")
    browser.view("/2")
    still = browser.get("steps")
    assert still is not None and still.step == 0  # a click does not end "until: close"
    browser.show(still)
    browser.widget("steps", "close")
    browser.view("/3")
    second = browser.get("steps")
    assert second is not None
    assert (second.step, second.widget, second.why) == (
        1,
        {
            "kind": "coupon",
            "headline": {"en": "incentive"},
            "coupon": {"source": "generated", "prefix": "NEWS"},
        },
        "audience matched; step 2 of 2",
    )
    browser.show(second)
    browser.widget("steps", "close", step=1)  # closing step 2 does not end it
    browser.view("/4")
    assert browser.get("steps") is not None
    browser.widget("steps", "impression", step=1)
    browser.widget("steps", "convert", step=1)
    browser.view("/5", after=DAY)
    assert browser.shown() == []
    assert browser.why_not("steps") == "finished: every step is done"


def test_until_conversion_on_a_widget_without_a_form_is_refused_at_load(tmp_path: Path) -> None:
    """Only a widget's own ``<form data-edge-form>`` converts it, so a bar
    ``until: conversion`` could never end (issue 14, item 7: the demo's
    newsletter linked to an anchor instead)."""
    never = PROGRESSIVE.replace(
        "{kind: coupon, headline: {en: incentive}, coupon: {source: generated, prefix: NEWS}}",
        "{kind: bar, headline: {en: incentive}, cta: {en: go}, url: /#newsletter}",
    )
    with pytest.raises(ConfigError, match=r"progressive\[1\]\.until: until: conversion never"):
        make_site(tmp_path, never)


UNTIL_VISITS = """\
campaigns:
  - id: steps
    placement: bar
    progressive:
      - until_visits: 2
        widget: {kind: bar, headline: {en: first}}
      - widget: {kind: bar, headline: {en: second}}
"""


def headline(browser: Browser) -> str | None:
    decision = browser.get("steps")
    if decision is None:
        return None
    browser.show(decision)
    widget = decision.widget
    assert widget is not None
    return str(widget["headline"]["en"])


def test_progressive_until_visits_moves_on_with_later_visits(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, UNTIL_VISITS))
    browser.view("/")
    assert headline(browser) == "first"
    browser.view("/again")  # same visit
    assert headline(browser) == "first"
    for _ in range(2):
        browser.view("/", after=HOUR)
    assert browser.profile is not None and browser.profile.visits == 3
    assert headline(browser) == "second"
    browser.view("/", after=HOUR)
    assert headline(browser) == "second"  # the last step stays


def test_progressive_until_visits_counts_two_more_visits(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, UNTIL_VISITS))
    browser.view("/")
    assert headline(browser) == "first"
    browser.view("/", after=HOUR)  # one more visit: not yet
    assert headline(browser) == "first"


def test_progressive_until_visits_for_a_visitor_who_first_sees_it_late(tmp_path: Path) -> None:
    browser = Browser(make_site(tmp_path, UNTIL_VISITS))
    for _ in range(5):
        browser.view("/", after=HOUR)
    assert headline(browser) == "first"
    browser.view("/next")  # same visit
    assert headline(browser) == "first"


# --- experiments --------------------------------------------------------------------

EXPERIMENT = """\
campaigns:
  - id: exp
    placement: popup
    priority: 10
    experiment:
      holdout: 0.2
      variants:
        - {id: red, weight: 1, widget: {kind: popup, headline: {en: red}}}
        - {id: blue, weight: 3}
    widget: {kind: popup, headline: {en: default}}
  - id: fallback
    placement: popup
    priority: 1
    widget: {kind: popup, headline: {en: fallback}}
  - id: split
    placement: bar
    experiment:
      variants:
        - {id: one, weight: 1}
        - {id: two, weight: 1}
        - {id: three, weight: 2}
    widget: {kind: bar}
"""


def visitor_ids(count: int, seed: int = 20250312) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(count)]


def arms(site: Site, visitor: str) -> dict[str, str]:
    ctx = VisitContext(visitor=visitor, session=TAB)
    return {d.campaign: d.variant for d in decide(None, ctx, site, T0).items}


def test_experiment_bucketing_is_deterministic(tmp_path: Path) -> None:
    site = make_site(tmp_path, EXPERIMENT)
    again = load_site(site.folder)
    assert again is not site
    seen = set()
    for visitor in visitor_ids(60):
        first = arms(site, visitor)
        assert arms(site, visitor) == first
        assert arms(again, visitor) == first
        seen.update(first.values())
    assert {"red", "blue", "holdout", "one", "two", "three"} <= seen


def test_experiment_shares_follow_weights_and_holdout(tmp_path: Path) -> None:
    site = make_site(tmp_path, EXPERIMENT)
    n = 4000
    exp: dict[str, int] = {}
    split: dict[str, int] = {}
    for visitor in visitor_ids(n):
        got = arms(site, visitor)
        exp[got["exp"]] = exp.get(got["exp"], 0) + 1
        split[got["split"]] = split.get(got["split"], 0) + 1
    assert abs(exp["holdout"] / n - 0.2) <= 0.03
    treated = n - exp["holdout"]
    assert abs(exp["red"] / treated - 0.25) <= 0.03
    assert abs(exp["blue"] / treated - 0.75) <= 0.03
    assert abs(split["one"] / n - 0.25) <= 0.03
    assert abs(split["two"] / n - 0.25) <= 0.03
    assert abs(split["three"] / n - 0.5) <= 0.03


def test_variant_widget_overrides_the_campaign_widget(tmp_path: Path) -> None:
    site = make_site(tmp_path, EXPERIMENT)
    widgets = {}
    for visitor in visitor_ids(100):
        for d in decide(None, VisitContext(visitor, TAB), site, T0).items:
            widgets[(d.campaign, d.variant)] = d.widget
    assert widgets[("exp", "red")] == {"kind": "popup", "headline": {"en": "red"}}
    assert widgets[("exp", "blue")] == {"kind": "popup", "headline": {"en": "default"}}
    assert widgets[("split", "three")] == {"kind": "bar"}


def test_holdout_is_reported_and_leaves_the_placement_free(tmp_path: Path) -> None:
    site = make_site(tmp_path, EXPERIMENT)
    held = next(v for v in visitor_ids(200) if arms(site, v)["exp"] == "holdout")
    treated = next(v for v in visitor_ids(200) if arms(site, v)["exp"] != "holdout")

    browser = Browser(site, visitor=held)
    browser.view("/")
    decisions = browser.decide()
    exp = decisions.items[0]
    assert (exp.campaign, exp.variant, exp.widget, exp.holdout) == ("exp", "holdout", None, True)
    assert exp.why == "holdout group (20% of visitors)"
    wire = decisions.to_wire()[0]
    assert wire["holdout"] is True and "widget" not in wire
    assert [d.campaign for d in decisions.items if d.placement == "popup"] == ["exp", "fallback"]
    fallback = decisions.items[1]
    assert fallback.holdout is False and fallback.widget is not None
    # The tracker records that the holdout visitor would have seen it.
    browser.widget("exp", "impression", variant="holdout")
    browser.show(fallback)
    assert browser.profile is not None
    state = browser.profile.campaign("exp")
    assert state is not None and state.variant == "holdout"

    other = Browser(site, visitor=treated)
    other.view("/")
    assert [d.campaign for d in other.decide().items if d.placement == "popup"] == ["exp"]
    assert other.why_not("fallback") == "popup already taken by exp"


# --- segments -------------------------------------------------------------------------

SEGMENTS = """\
segments:
  - id: browsers
    condition: {session.pageviews: {$gte: 2}}
  - id: buyers
    condition: {orders.count: {$gte: 1}}
"""


def test_segments_are_computed_and_usable_in_audiences(tmp_path: Path) -> None:
    config = campaigns(one("for-browsers", "audience: {segments: {$in: [browsers]}}"))
    site = make_site(tmp_path, config, segments=SEGMENTS)
    browser = Browser(site)
    browser.view("/")
    decisions = browser.decide()
    assert decisions.attributes is not None and decisions.attributes["segments"] == []
    assert (
        browser.why_not("for-browsers") == "audience failed at segments ($in ['browsers'], was [])"
    )
    browser.view("/2")
    decisions = browser.decide()
    assert [d.campaign for d in decisions.items] == ["for-browsers"]
    assert decisions.attributes is not None and decisions.attributes["segments"] == ["browsers"]
    browser.send("purchase", order_id="o-1", items=[{"sku": "x"}], value=5, currency="EUR")
    assert browser.decide().attributes["segments"] == ["browsers", "buyers"]  # type: ignore[index]
    assert browser.decide(explain=False).attributes is None


def test_segments_all_operator(tmp_path: Path) -> None:
    config = campaigns(one("both", "audience: {segments: {$all: [browsers, buyers]}}"))
    browser = Browser(make_site(tmp_path, config, segments=SEGMENTS))
    browser.view("/")
    browser.view("/2")
    assert browser.shown() == []
    browser.send("purchase", order_id="o-1", items=[{"sku": "x"}], value=5, currency="EUR")
    assert browser.shown() == ["both"]


# --- purity ---------------------------------------------------------------------------


def test_decide_never_mutates_the_profile(tmp_path: Path) -> None:
    config = campaigns(
        one("pop", "frequency: {per_session: 3}", placement="popup", priority=5),
        one("bar", "audience: {segments: {$in: [browsers]}}"),
    )
    site = make_site(tmp_path, config, segments=SEGMENTS)
    browser = Browser(site)
    browser.view("/")
    browser.view("/2")
    browser.widget("pop", "impression")
    browser.send("cart", items=[{"sku": "x", "qty": 2}], value=10, currency="EUR")
    browser.view("/3")
    profile = browser.profile
    assert profile is not None
    before = copy.deepcopy(profile)
    first = browser.decide()
    second = browser.decide("event:anything")
    third = browser.decide(explain=False)
    assert profile == before
    assert browser.decide() == first
    assert [d.campaign for d in first.items] == ["pop", "bar"]
    assert second.items == ()
    assert third.items == first.items
    # the attributes handed out are a fresh copy, not a view of the profile
    assert first.attributes is not None
    first.attributes["session"]["pages"].append("/mutated")  # type: ignore[index]
    assert profile == before
    assert browser.decide().attributes["session"]["pages"] == ["/3", "/2", "/"]  # type: ignore[index]


def test_decide_without_a_profile(tmp_path: Path) -> None:
    config = campaigns(one("new", "audience: {visitor.visits: 0}"))
    site = make_site(tmp_path, config)
    decisions = decide(None, VisitContext(VISITOR, TAB, url=f"{SHOP}/"), site, T0, explain=True)
    assert [d.campaign for d in decisions.items] == ["new"]


# --- the demo site ---------------------------------------------------------------------

DEMO_HOST = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def demo() -> Site:
    return load_site(DEMO)


def demo_browser(demo: Site, visitor: str = VISITOR) -> Browser:
    browser = Browser(demo, visitor=visitor)
    browser.ctx = VisitContext(visitor=visitor, session=TAB, url=f"{DEMO_HOST}/demo")
    return browser


def test_demo_welcome_coupon_after_three_page_views(demo: Site) -> None:
    browser = demo_browser(demo)
    browser.view(f"{DEMO_HOST}/demo")
    browser.view(f"{DEMO_HOST}/demo/c/lighting")
    assert "welcome-coupon" not in browser.shown()
    assert browser.why_not("welcome-coupon") == (
        "audience failed at session.pageviews ($gte 3, was 2)"
    )
    browser.view(f"{DEMO_HOST}/demo/c/textiles")
    coupon = browser.get("welcome-coupon")
    assert coupon is not None
    assert coupon.placement == "popup"
    assert coupon.trigger == {"type": "exit_intent", "value": True}
    assert coupon.widget is not None and coupon.widget["kind"] == "coupon"


def test_demo_hero_banner_by_traffic_source(demo: Site) -> None:
    social = demo_browser(demo, visitor="1b2c3d4e5f60718293a4b5c6d7e8f901")
    social.view(f"{DEMO_HOST}/demo?utm_source=facebook&utm_medium=social")
    social.url = f"{DEMO_HOST}/demo"
    assert social.get("hero-social") is not None
    assert social.get("hero-search") is None
    assert social.why_not("hero-search") == "hero-banner already taken by hero-social"

    search = demo_browser(demo, visitor="2b2c3d4e5f60718293a4b5c6d7e8f902")
    search.view(f"{DEMO_HOST}/demo", referrer="https://www.google.com/search?q=wool+throw")
    hero = search.get("hero-search")
    assert hero is not None and hero.placement == "hero-banner"
    assert search.get("hero-social") is None
    assert search.why_not("hero-social") == (
        "audience failed at session.source ($in ['facebook', 'instagram', 'pinterest', "
        "'tiktok'], was 'google')"
    )

    elsewhere = demo_browser(demo, visitor="3b2c3d4e5f60718293a4b5c6d7e8f903")
    elsewhere.view(f"{DEMO_HOST}/demo/c/lighting", referrer="https://www.google.com/")
    assert {"hero-social", "hero-search"}.isdisjoint(elsewhere.shown())


def test_a_visitor_keeps_their_arm_when_their_profile_id_changes(tmp_path: Path) -> None:
    """Signing in moves a visitor to their customer profile (another id, so
    another hash): the arm they were shown is kept; a customer's devices that
    saw nothing yet share the customer's arm."""
    site = make_site(tmp_path, EXPERIMENT)
    ids = visitor_ids(200)
    device = ids[0]
    shown = arms(site, device)["split"]
    customer = next(v for v in ids[1:] if arms(site, v)["split"] != shown)
    browser = Browser(site, visitor=device)
    browser.view("/")
    browser.widget("split", "impression", variant=shown)
    browser.view("/next", after=30 * HOUR)  # a later visit: no cap stands in the way
    assert browser.profile is not None
    moved = dataclasses.replace(browser.profile, visitor=customer)
    ctx = VisitContext(visitor=device, session=TAB)
    later = T0 + 30 * HOUR + 60
    got = {d.campaign: d.variant for d in decide(moved, ctx, site, later).items}
    assert got["split"] == shown
    # a second device of that customer, with nothing shown yet: the customer's arm
    other = dataclasses.replace(moved, campaigns=())
    fresh = {
        d.campaign: d.variant for d in decide(other, VisitContext(ids[5], TAB), site, T0).items
    }
    assert fresh["split"] == arms(site, customer)["split"]
