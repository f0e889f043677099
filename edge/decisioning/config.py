"""The marketers' part of a site's YAML: segments, campaigns, caps (pydantic).

These models only validate shapes and values; ``edge.decisioning.campaigns``
compiles them into the runtime objects the engine reads. Every model forbids
unknown keys, so a typo (``frequncy:``) is an error, not a silently ignored
setting.
"""

from __future__ import annotations

import re
from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAMPAIGN_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WIDGET_KINDS = ("popup", "bar", "coupon", "recommendations", "banner", "html")
Condition = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentConfig(_Strict):
    id: Annotated[str, Field(pattern=CAMPAIGN_ID)]
    name: str | None = None
    condition: Condition
    # kept on the profile (edge.core.segments): segment_entered / segment_left
    # automation events, and the admin API counts and exports its members
    membership: bool = False


# A widget's text: one string (every language) or {language: string}; a URL,
# a coupon or a strategy is checked when the site loads (edge.widgets.check).
Text = str | dict[str, str]
ConvertOn = Literal["click"]


class _Widget(_Strict):
    """A widget's keys, one model per ``kind`` (docs/configuration.md,
    "Widgets"): a key its kind does not read (``headlin:``) is refused like
    every other unknown key. ``close``: the close button's label."""

    close: Text | None = None


class _Linked(_Widget):
    # convert_on: click: a click on the widget's link also records a conversion
    convert_on: ConvertOn | None = None


class PopupWidget(_Linked):
    kind: Literal["popup"]
    headline: Text | None = None
    body: Text | None = None
    cta: Text | None = None
    url: str | None = None
    image: str | None = None


class BarWidget(_Linked):
    kind: Literal["bar"]
    headline: Text | None = None
    cta: Text | None = None
    url: str | None = None


class BannerWidget(_Linked):
    kind: Literal["banner"]
    headline: Text | None = None
    body: Text | None = None
    url: str | None = None
    image: str | None = None


class RecommendationsWidget(_Linked):
    kind: Literal["recommendations"]
    headline: Text | None = None
    strategy: str | None = None
    limit: Any = None  # a whole number from 1 to 24: edge.widgets.check


class CouponWidget(_Widget):
    kind: Literal["coupon"]
    headline: Text | None = None
    body: Text | None = None
    cta: Text | None = None
    email_label: Text | None = None
    name_label: Text | None = None
    ask_name: bool | None = None
    consent: Text | None = None  # the label of a required checkbox
    coupon: Any = None  # {source: generated|pool, ...}: edge.widgets.check
    success_headline: Text | None = None
    success_body: Text | None = None
    exhausted_headline: Text | None = None
    exhausted_body: Text | None = None


class HtmlWidget(BaseModel):
    """The site's own template, which may read any keys of its widget."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["html"]
    template: str | None = None  # required: edge.widgets.check says so, naming the campaign
    convert_on: ConvertOn | None = None


WIDGETS: dict[str, type[BaseModel]] = {
    "popup": PopupWidget,
    "bar": BarWidget,
    "coupon": CouponWidget,
    "recommendations": RecommendationsWidget,
    "banner": BannerWidget,
    "html": HtmlWidget,
}
WidgetConfig = Annotated[
    PopupWidget | BarWidget | CouponWidget | RecommendationsWidget | BannerWidget | HtmlWidget,
    Field(discriminator="kind"),
]


def widget_dict(config: BaseModel) -> dict[str, Any]:
    """A widget's configuration as the renderer reads it: the keys given only."""
    return config.model_dump(mode="json", exclude_unset=True)


class TriggerConfig(_Strict):
    """Exactly one of the keys. The server decides *whether*; the tracker, *when*."""

    page_view: bool | None = None
    delay_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    scroll_pct: Annotated[int, Field(ge=1, le=100)] | None = None
    exit_intent: bool | None = None
    inactivity_s: Annotated[float, Field(ge=1, le=3600)] | None = None
    event: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> TriggerConfig:
        given = [k for k, v in self.model_dump().items() if v is not None and v is not False]
        if len(given) != 1:
            raise ValueError(f"a trigger has exactly one of {', '.join(type(self).model_fields)}")
        return self


class DaysWindow(_Strict):
    max: Annotated[int, Field(ge=1, le=20)]  # the profile keeps the last 20 impression times
    days: Annotated[float, Field(gt=0, le=3650)]


class FrequencyConfig(_Strict):
    per_page: Annotated[int, Field(ge=1)] = 1
    per_session: Annotated[int, Field(ge=1)] | None = None
    per_visitor: Annotated[int, Field(ge=1)] | None = None
    per_days: DaysWindow | None = None
    min_interval_s: Annotated[float, Field(ge=0)] = 0
    stop_after_closes: Annotated[int, Field(ge=1)] | None = None
    close_pause_days: Annotated[float, Field(gt=0)] | None = None  # None: stopped for good
    stop_after_conversion: bool = True


class ScheduleConfig(_Strict):
    start: datetime | None = None  # naive times are in the site's time zone
    end: datetime | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    hours: (
        Annotated[list[Annotated[int, Field(ge=0, le=24)]], Field(min_length=2, max_length=2)]
        | None
    ) = None

    @model_validator(mode="after")
    def _order(self) -> ScheduleConfig:
        if self.start and self.end:
            if (self.start.tzinfo is None) != (self.end.tzinfo is None):
                raise ValueError("start and end must both have a time zone, or both not")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        if self.hours and self.hours[0] >= self.hours[1]:
            raise ValueError("hours is [from, to) with from < to, e.g. [9, 21]")
        return self


class StepConfig(_Strict):
    widget: WidgetConfig
    until: Literal["close", "conversion"] | None = None
    until_visits: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one_advance(self) -> StepConfig:
        if self.until and self.until_visits:
            raise ValueError("a step advances on 'until' or on 'until_visits', not both")
        return self


class VariantConfig(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    weight: Annotated[float, Field(gt=0)] = 1
    widget: WidgetConfig | None = None  # None: the campaign's widget


DEFAULT_ATTRIBUTION_DAYS = 7.0


class ExperimentConfig(_Strict):
    holdout: Annotated[float, Field(ge=0, lt=1)] = 0
    variants: list[VariantConfig] = []
    # Clicks, conversions and purchases count for the campaign's statistics
    # only within this many days of a visitor's first exposure (edge.core.stats).
    attribution_days: Annotated[float, Field(gt=0, le=90)] = DEFAULT_ATTRIBUTION_DAYS

    @model_validator(mode="after")
    def _unique(self) -> ExperimentConfig:
        ids = [v.id for v in self.variants]
        if len(ids) != len(set(ids)):
            raise ValueError("variant ids must be unique")
        if "holdout" in ids:
            raise ValueError("'holdout' is reserved for the holdout group")
        return self


class CampaignConfig(_Strict):
    id: Annotated[str, Field(pattern=CAMPAIGN_ID)]
    name: str | None = None
    status: Literal["active", "paused", "draft"] = "active"
    priority: int = 0
    placement: Annotated[
        str, Field(pattern=r"^(popup|bar|bar-top|bar-bottom|[a-z0-9][a-z0-9_-]{0,62})$")
    ]
    widget: WidgetConfig | None = None
    progressive: Annotated[list[StepConfig], Field(min_length=1)] | None = None
    audience: Condition = {}
    trigger: TriggerConfig = TriggerConfig(page_view=True)
    frequency: FrequencyConfig = FrequencyConfig()
    schedule: ScheduleConfig | None = None
    experiment: ExperimentConfig | None = None
    # The page a preview link opens (edge.core.preview): a path on the site's first
    # allowed origin, or a full URL. Default: /.
    preview_page: (
        Annotated[str, Field(pattern=r"^(/|https?://[^\s/]+)\S*$", max_length=2000)] | None
    ) = None

    @model_validator(mode="after")
    def _content(self) -> CampaignConfig:
        if (self.widget is None) == (self.progressive is None):
            raise ValueError("a campaign has either 'widget' or 'progressive' steps")
        if self.progressive and self.experiment and self.experiment.variants:
            raise ValueError(
                "variants of a progressive campaign are not supported; "
                "use a holdout, or two campaigns"
            )
        return self


class CapsConfig(_Strict):
    """Caps across all campaigns. At most one pop-up per page view, always."""

    popups_per_session: Annotated[int, Field(ge=0)] = 2
    popups_per_day: Annotated[int, Field(ge=0)] = 3


# --- automation events out (edge.automation; docs/configuration.md, "automation") ---

AutomationEvent = Literal[
    "identified",
    "marketing_consent",
    "cart_abandoned",
    "browse_abandoned",
    "customer_away",
    "churn_risk",
    "purchase",
    "watched_page_visited",
    "score_threshold",
    "winback_returned",
    "coupon_issued",
    "widget_converted",
    "segment_entered",
    "segment_left",
]
AUTOMATION_EVENTS: tuple[str, ...] = get_args(AutomationEvent)


class WebhookConfig(_Strict):
    """A signed POST of each listed event (every event when ``events`` is empty)."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+\S*$", max_length=500)]
    events: list[AutomationEvent] = []
    # the name of the environment variable holding the signing secret, never the secret
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class AutomationConfig(_Strict):
    cart_abandon_min: Annotated[float, Field(gt=0, le=30 * 24 * 60)] = 30
    # timed automation beyond carts (docs/configuration.md, "Automation events"); null: off
    browse_abandon_min: Annotated[float, Field(gt=0, le=30 * 24 * 60)] | None = 60
    away_days: Annotated[float, Field(gt=0, le=3650)] | None = 90
    churn_risk_threshold: Annotated[float, Field(gt=0, le=1)] | None = 0.5
    watched_pages: Annotated[list[str], Field(max_length=100)] = []  # path regexes, searched
    webhooks: Annotated[list[WebhookConfig], Field(max_length=10)] = []

    @field_validator("watched_pages")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"watched page {pattern!r} is not a regex: {exc}") from None
        return value


class DecisioningConfig(_Strict):
    saved_groups: dict[str, list[Any]] = {}
    segments: list[SegmentConfig] = []
    campaigns: list[CampaignConfig] = []
    caps: CapsConfig = CapsConfig()
    automation: AutomationConfig = AutomationConfig()


# --- visitor intelligence: RFM, lead score, interests, lifecycle (edge.core.intelligence) ---

Cutoffs = Annotated[list[Annotated[float, Field(ge=0, le=1e12)]], Field(min_length=4, max_length=4)]


class RfmConfig(_Strict):
    """Four ascending cut-offs per score (see docs/configuration.md, "rfm")."""

    recency_days: Cutoffs = [30, 90, 180, 365]
    frequency: Cutoffs = [2, 3, 5, 8]
    monetary: Cutoffs = [100, 250, 500, 1000]

    @field_validator("recency_days", "frequency", "monetary")
    @classmethod
    def _ascending(cls, values: list[float]) -> list[float]:
        if any(b <= a for a, b in pairwise(values)):
            raise ValueError("needs 4 strictly ascending cut-offs, e.g. [30, 90, 180, 365]")
        return values


class ScoreRule(_Strict):
    event: Literal["page_view", "product_view", "cart", "purchase", "identify", "custom", "widget"]
    path: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # regex, searched
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None  # custom only
    points: Annotated[float, Field(ge=-1000, le=1000, allow_inf_nan=False)]

    @field_validator("path")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _name_for_custom(self) -> ScoreRule:
        if self.name is not None and self.event != "custom":
            raise ValueError("'name' matches custom events only (event: custom)")
        return self


class ScoreConfig(_Strict):
    rules: Annotated[list[ScoreRule], Field(max_length=200)] = []
    half_life_days: Annotated[float, Field(gt=0, le=3650)] | None = 30  # None: no decay
    threshold: Annotated[float, Field(gt=0, le=1e6)] = 50


class InterestsConfig(_Strict):
    half_life_days: Annotated[float, Field(gt=0, le=3650)] = 30


class ChurnConfig(_Strict):
    # the expected interval of a customer with a single order (no rhythm of their own yet)
    single_order_days: Annotated[float, Field(gt=0, le=36500)] = 365


class IntelligenceConfig(_Strict):
    rfm: RfmConfig = RfmConfig()
    score: ScoreConfig = ScoreConfig()
    interests: InterestsConfig = InterestsConfig()
    churn: ChurnConfig = ChurnConfig()
    winback_days: Annotated[float, Field(gt=0, le=3650)] = 90
