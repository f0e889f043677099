"""Campaigns compiled for the engine: conditions as closures, schedules as
numbers, experiments as cumulative weights. Built once per configuration
load (``compile_decisioning``); the engine then only reads them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge.core.properties import NO_DECLARATIONS, Declarations
from edge.decisioning.attributes import ALL, PER_PAGE, condition_paths, unknown_attribute
from edge.decisioning.conditions import ConditionError, compile_condition
from edge.decisioning.config import (
    DEFAULT_ATTRIBUTION_DAYS,
    WEEKDAYS,
    CampaignConfig,
    CapsConfig,
    DecisioningConfig,
    FrequencyConfig,
    ScheduleConfig,
    TriggerConfig,
    WidgetConfig,
    widget_dict,
)

Predicate = Callable[[Mapping[str, Any]], bool]
Where = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Clause:
    """One top-level entry of an audience: tested in order, so a trace can say
    which one failed and what the attribute held."""

    key: str
    spec: Any
    test: Predicate
    slot: int = 0  # its place in Decisioning.clause_tests (clauses are shared)


@dataclass(frozen=True, slots=True)
class Audience:
    """The top-level entries of an audience condition, ANDed in YAML order.

    Identical entries of different campaigns (``visitor.identified: false``
    in ten campaigns) are compiled once and share a ``slot``: the engine
    evaluates each distinct entry at most once per decision and reuses the
    answer, which is what keeps a decision over a hundred campaigns cheap.
    """

    clauses: tuple[Clause, ...] = ()
    slots: tuple[int, ...] = ()

    def test(self, attributes: Mapping[str, Any]) -> bool:
        return self.first_failure(attributes) is None

    def first_failure(self, attributes: Mapping[str, Any]) -> Clause | None:
        for clause in self.clauses:
            if not clause.test(attributes):
                return clause
        return None


class ClauseTable:
    """Interns audience entries by their canonical form (see ``Audience``)."""

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        self.tests: list[Predicate] = []

    def slot(self, key: str, value: Any, test: Predicate) -> int:
        canonical = json.dumps({key: value}, sort_keys=True, default=str)
        found = self._slots.get(canonical)
        if found is None:
            found = self._slots[canonical] = len(self.tests)
            self.tests.append(test)
        return found


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: str  # page_view, delay_s, scroll_pct, exit_intent, inactivity_s or event
    value: Any

    @property
    def event(self) -> str | None:
        return self.value if self.kind == "event" else None

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.kind, "value": self.value}


@dataclass(frozen=True, slots=True)
class Schedule:
    start: float | None = None
    end: float | None = None
    weekdays: frozenset[int] | None = None
    hours: tuple[int, int] | None = None

    def closed(self, now: float, tz: ZoneInfo) -> str | None:
        """Why the campaign is outside its schedule at ``now``, or None."""
        if self.start is not None and now < self.start:
            return "before its start"
        if self.end is not None and now >= self.end:
            return "after its end"
        if self.weekdays is None and self.hours is None:
            return None
        local = datetime.fromtimestamp(now, tz)
        if self.weekdays is not None and local.weekday() not in self.weekdays:
            return f"not on {WEEKDAYS[local.weekday()]}"
        if self.hours is not None and not self.hours[0] <= local.hour < self.hours[1]:
            return f"outside hours {self.hours[0]}-{self.hours[1]} (now {local.hour}h)"
        return None


@dataclass(frozen=True, slots=True)
class Step:
    widget: dict[str, Any]
    until: str | None = None  # "close" or "conversion"
    until_visits: int | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    upto: float  # cumulative share of the non-holdout visitors, (0, 1]
    widget: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Campaign:
    """Precomputed flags (``is_popup``, ``event``) keep the engine's loop to
    plain attribute reads."""

    id: str
    name: str
    status: str
    priority: int
    placement: str
    trigger: Trigger
    audience: Audience
    frequency: FrequencyConfig
    schedule: Schedule | None
    steps: tuple[Step, ...]
    variants: tuple[Variant, ...]
    holdout: float
    is_popup: bool = False
    event: str | None = None  # the custom event this campaign waits for
    # No schedule, not a pop-up, shown on page view: for a visitor who never
    # saw it, only the audience decides (the engine's fast path).
    plain: bool = False
    preview_page: str | None = None  # where a preview link opens (edge.core.preview)
    attribution_days: float = DEFAULT_ATTRIBUTION_DAYS  # outcomes count this long after exposure

    def widget_for(self, variant: str, step: int) -> dict[str, Any]:
        """The widget a visitor in ``variant`` sees at ``step``."""
        arm = next((v for v in self.variants if v.id == variant), None)
        if arm is not None and arm.widget is not None:
            return arm.widget
        return self.steps[min(max(step, 0), len(self.steps) - 1)].widget

    def bucket(self, visitor: str, salt: str) -> float:
        """A stable number in [0, 1) for this visitor and campaign: the same on
        every node and after restarts (no state, only a hash)."""
        digest = hashlib.blake2b(f"{salt}|{self.id}|{visitor}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def sticky(self, shown: str, visitor: str) -> Variant | None:
        """The arm a visitor was shown before (``holdout``: None), or their
        hashed arm when that arm is no longer configured."""
        if shown == "holdout" and self.holdout:
            return None
        return next((v for v in self.variants if v.id == shown), None) or self.arm(visitor)

    def shares(self) -> dict[str, float]:
        """Each arm's configured share of the visitors who meet the campaign,
        variants in configuration order, then ``holdout`` when there is one."""
        shares, below = {}, 0.0
        for v in self.variants:
            shares[v.id] = (v.upto - below) * (1 - self.holdout)
            below = v.upto
        if self.holdout:
            shares["holdout"] = self.holdout
        return shares

    def arm(self, visitor: str) -> Variant | None:
        """The experiment arm: None for the holdout group."""
        if self.holdout and self.bucket(visitor, "holdout") < self.holdout:
            return None
        if len(self.variants) == 1:
            return self.variants[0]
        point = self.bucket(visitor, "variant")
        return next((v for v in self.variants if point < v.upto), self.variants[-1])


@dataclass(frozen=True, slots=True)
class KeptSegment:
    """A segment with ``membership: true``: kept on the profile (edge.core.segments)."""

    id: str
    name: str
    test: Predicate


DEFAULT_CAPS = CapsConfig()


@dataclass(frozen=True, slots=True)
class Decisioning:
    campaigns: tuple[Campaign, ...] = ()  # active only, highest priority first
    by_id: Mapping[str, Campaign] = field(default_factory=dict)  # every status
    segments: tuple[tuple[str, Predicate], ...] = ()
    caps: CapsConfig = DEFAULT_CAPS
    clause_tests: tuple[Predicate, ...] = ()  # every distinct audience entry, by slot
    kept: tuple[KeptSegment, ...] = ()  # membership: true, in configuration order
    kept_roots: frozenset[str] = frozenset()  # the namespaces their conditions name
    # The namespaces a decision builds: those the campaigns' audiences name,
    # and the segments' when an audience names segments (edge.decisioning.engine).
    roots: frozenset[str] = ALL


NO_CAMPAIGNS = Decisioning()


# --- compiling ------------------------------------------------------------------


class Problems:
    """Collects every problem with its place, so a marketer sees them all at once."""

    def __init__(self) -> None:
        self.items: list[tuple[Where, str]] = []

    def add(self, where: Where, message: str) -> None:
        self.items.append((where, message))


def compile_decisioning(
    config: DecisioningConfig,
    tz: ZoneInfo,
    problems: Problems,
    declared: Declarations = NO_DECLARATIONS,
) -> Decisioning:
    groups = config.saved_groups
    known = Known(
        frozenset(s.id for s in config.segments),
        frozenset(c.id for c in config.campaigns),
        frozenset(declared.properties),
        {name: frozenset(props) for name, props in declared.events.items()},
    )
    _duplicates(problems, "segments", [s.id for s in config.segments])
    _duplicates(problems, "campaigns", [c.id for c in config.campaigns])
    segments, kept, roots = [], [], set()
    for index, segment in enumerate(config.segments):
        where: Where = ("segments", index, "condition")
        for sub, path in condition_paths(segment.condition):
            if path == "segments":
                problems.add((*where, *sub), "a segment cannot depend on segments")
        test = _compile(segment.condition, groups, where, problems, known)
        segments.append((segment.id, test))
        if segment.membership:
            roots |= _profile_roots(segment.condition, where, problems)
            kept.append(KeptSegment(segment.id, segment.name or segment.id, test))
    table = ClauseTable()
    campaigns = [
        _campaign(c, groups, tz, ("campaigns", i), problems, known, table)
        for i, c in enumerate(config.campaigns)
    ]
    active = sorted((c for c in campaigns if c.status == "active"), key=lambda c: -c.priority)
    return Decisioning(
        tuple(active),
        {c.id: c for c in campaigns},
        tuple(segments),
        config.caps,
        tuple(table.tests),
        tuple(kept),
        frozenset(roots) if kept else frozenset(),
        _decision_roots(config),
    )


def _decision_roots(config: DecisioningConfig) -> frozenset[str]:
    """The namespaces a decision must build: every one a campaign's audience
    names (active or not: a status change recompiles anyway), and when one
    names ``segments``, every one a segment's condition names."""
    roots = _named([c.audience for c in config.campaigns])
    if "segments" in roots:
        roots |= _named([s.condition for s in config.segments])
    return frozenset(roots)


def _named(conditions: list[Mapping[str, Any]]) -> set[str]:
    return {path.split(".")[0] for c in conditions for _, path in condition_paths(c)}


def _profile_roots(condition: Mapping[str, Any], where: Where, problems: Problems) -> set[str]:
    """The namespaces a kept segment's condition names; page, device, time and
    geo are refused: a membership kept on the profile is the profile's."""
    roots = set()
    for sub, path in condition_paths(condition):
        root = path.split(".")[0]
        if root in PER_PAGE:
            problems.add(
                (*where, *sub),
                f"a segment kept on the profile (membership: true) cannot depend on "
                f"{root}.*: page, device, time and geo belong to one page view",
            )
        roots.add(root)
    return roots


def _duplicates(problems: Problems, section: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for index, item in enumerate(ids):
        if item in seen:
            problems.add((section, index, "id"), f"id {item!r} is used twice")
        seen.add(item)


@dataclass(frozen=True, slots=True)
class Known:
    """The ids a condition may name (``segments``, ``campaigns.<id>.*``,
    ``props.<declared property>``, ``event.<prop>``): ``event`` is the
    custom event whose decision the condition is for (None: not a campaign
    triggered by an event)."""

    segments: frozenset[str]
    campaigns: frozenset[str]
    props: frozenset[str] = frozenset()
    events: Mapping[str, frozenset[str]] = field(default_factory=dict)
    event: str | None = None


def _compile(
    condition: Mapping[str, Any],
    groups: Mapping[str, list[Any]],
    where: Where,
    problems: Problems,
    known: Known,
) -> Predicate:
    bad = False
    for sub, path in condition_paths(condition):
        message = unknown_attribute(path)
        if message:
            problems.add((*where, *sub), message)
            bad = True
        elif path == "segments":
            for name in _strings(condition_at(condition, sub)):
                if name not in known.segments:
                    problems.add((*where, *sub), f"unknown segment {name!r}")
                    bad = True
        elif path.startswith("campaigns.") and path.split(".")[1] not in known.campaigns:
            problems.add((*where, *sub), f"unknown campaign {path.split('.')[1]!r}")
            bad = True
        elif path.startswith(("props.", "event.")) or path in ("props", "event"):
            message = _declared(path, known)
            if message:
                problems.add((*where, *sub), message)
                bad = True
    try:
        test = compile_condition(condition, groups)
    except ConditionError as exc:
        problems.add((*where, *exc.path), exc.message)
        return _never
    return _never if bad else test


def _declared(path: str, known: Known) -> str | None:
    """Why ``props.<name>`` or ``event.<prop>`` names nothing declared, or None."""
    root, _, rest = path.partition(".")
    name = rest.split(".")[0]
    if root == "props":
        if name in known.props:
            return None
        listed = ", ".join(sorted(known.props)) or "none are declared"
        return f"unknown property {path!r}: declare it under properties: (declared: {listed})"
    if known.event is None:
        return f"{path!r}: event.* is only set for a campaign with trigger: {{event: <name>}}"
    props = known.events.get(known.event)
    if props is None:
        return f"{path!r}: the event {known.event!r} is not declared under events: with its props"
    if name not in props:
        listed = ", ".join(sorted(props)) or "none"
        return f"unknown prop {path!r} of event {known.event!r} (declared: {listed})"
    return None


def condition_at(condition: Any, sub: Where) -> Any:
    for key in sub:
        condition = condition[key]
    return condition


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)


def _never(attributes: Mapping[str, Any]) -> bool:
    return False


def _audience(
    condition: Mapping[str, Any],
    groups: Mapping[str, list[Any]],
    where: Where,
    problems: Problems,
    known: Known,
    table: ClauseTable,
) -> Audience:
    clauses = []
    for key, value in condition.items():
        test = _compile({key: value}, groups, where, problems, known)
        clauses.append(Clause(str(key), value, test, table.slot(str(key), value, test)))
    return Audience(tuple(clauses), tuple(c.slot for c in clauses))


def _widget(config: WidgetConfig | None) -> dict[str, Any]:
    return widget_dict(config) if config is not None else {}


def _campaign(
    c: CampaignConfig,
    groups: Mapping[str, list[Any]],
    tz: ZoneInfo,
    where: Where,
    problems: Problems,
    known: Known,
    table: ClauseTable,
) -> Campaign:
    if c.progressive:
        steps = tuple(Step(_widget(s.widget), s.until, s.until_visits) for s in c.progressive)
    else:
        steps = (Step(_widget(c.widget)),)
    experiment = c.experiment
    variants: tuple[Variant, ...] = (Variant("a", 1.0, None),)
    holdout, attribution_days = 0.0, DEFAULT_ATTRIBUTION_DAYS
    if experiment is not None:
        holdout, attribution_days = experiment.holdout, experiment.attribution_days
        if experiment.variants:
            total = sum(v.weight for v in experiment.variants)
            running, built = 0.0, []
            for v in experiment.variants:
                running += v.weight
                built.append(
                    Variant(v.id, running / total, _widget(v.widget) if v.widget else None)
                )
            variants = tuple(built)
    trigger = _trigger(c.trigger)
    return Campaign(
        id=c.id,
        name=c.name or c.id,
        status=c.status,
        priority=c.priority,
        placement=c.placement,
        trigger=trigger,
        audience=_audience(
            c.audience,
            groups,
            (*where, "audience"),
            problems,
            replace(known, event=trigger.event),
            table,
        ),
        frequency=c.frequency,
        schedule=_schedule(c.schedule, tz),
        steps=steps,
        variants=variants,
        holdout=holdout,
        is_popup=c.placement == "popup",
        event=trigger.event,
        plain=c.schedule is None and c.placement != "popup" and trigger.event is None,
        preview_page=c.preview_page,
        attribution_days=attribution_days,
    )


def _trigger(config: TriggerConfig) -> Trigger:
    for kind, value in config.model_dump().items():
        if value is not None and value is not False:
            return Trigger(kind, value)
    raise AssertionError("TriggerConfig guarantees one key")  # pragma: no cover


def _schedule(config: ScheduleConfig | None, tz: ZoneInfo) -> Schedule | None:
    if config is None:
        return None

    def stamp(value: datetime | None) -> float | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=tz)).timestamp()

    weekdays = frozenset(WEEKDAYS.index(d) for d in config.weekdays) if config.weekdays else None
    hours = (config.hours[0], config.hours[1]) if config.hours else None
    return Schedule(stamp(config.start), stamp(config.end), weekdays, hours)
